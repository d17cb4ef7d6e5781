# Shared by the benchmark scripts (sourced, not run): a work directory that is
# removed on exit, moto from .venv, and the sandbox, all on 127.0.0.1.
# Callers set `root` and `bin` first.

work="$(mktemp -d "${TMPDIR:-/tmp}/stagecheck-bench.XXXXXX")"
moto_pid=""
sandbox_pid=""
declare -a on_exit=()

bench_cleanup() {
    local hook
    for hook in "${on_exit[@]}"; do eval "$hook" || true; done
    [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap bench_cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

has_moto() { [ -x "$root/.venv/bin/moto_server" ]; }

# Starts moto; sets moto_pid and moto_url.
start_moto() {
    has_moto || { echo "no .venv/bin/moto_server: run scripts/test once" >&2; exit 2; }
    local port
    port="$(free_port)"
    "$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    moto_url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        python3 -c "import urllib.request; urllib.request.urlopen('$moto_url/moto-api/data.json', timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "moto did not answer on $moto_url" >&2
    exit 3
}

# Starts the sandbox on moto with extra arguments; sets sandbox_pid and
# sandbox_url (not echoed: a $(…) subshell would lose the pid).
start_sandbox() {
    "$bin" sandbox --aws-endpoint "$moto_url" --listen 127.0.0.1:0 "$@" \
        >"$work/sandbox.out" 2>"$work/sandbox.log" &
    sandbox_pid=$!
    for _ in $(seq 1 300); do
        grep -q "sandbox listening on" "$work/sandbox.out" 2>/dev/null && break
        sleep 0.1
    done
    sandbox_url="$(sed -n 's/^sandbox listening on //p' "$work/sandbox.out" | head -n 1)"
    [ -n "$sandbox_url" ] || { cat "$work/sandbox.log" >&2; exit 3; }
}

stop_sandbox() {
    kill "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
    sandbox_pid=""
}
