#!/usr/bin/env bash
# What verification costs in AWS calls as a run grows: moto, the sandbox with
# its real backend (items in moto's DynamoDB, log lines in moto's CloudWatch
# Logs), and scenarios/user-crud.toml at growing iteration counts. Prints, per
# run, the requests sent and the BatchGetItem and FilterLogEvents calls made,
# counted by stagecheck and cross-checked against moto's own request log.
#
#   benches/verify-cost.sh [ITERATIONS...]      # default 100 1000 5000
#
# Needs .venv with moto (run scripts/test once) and python3. All on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 5000)
work="$(mktemp -d "${TMPDIR:-/tmp}/stagecheck-verify-cost.XXXXXX")"
moto_pid=""
sandbox_pid=""

cleanup() {
    [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

[ -x .venv/bin/moto_server ] || { echo "no .venv/bin/moto_server: run scripts/test once" >&2; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"

moto_port="$(free_port)"
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/data.json', timeout=1)" 2>/dev/null && break
    sleep 0.2
done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
"$bin" sandbox --aws-endpoint "http://127.0.0.1:$moto_port" --listen 127.0.0.1:0 \
    >"$work/sandbox.out" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 1 300); do
    grep -q "sandbox listening on" "$work/sandbox.out" 2>/dev/null && break
    sleep 0.1
done
base="$(sed -n 's/^sandbox listening on //p' "$work/sandbox.out" | head -n 1)"
[ -n "$base" ] || { cat "$work/sandbox.log" >&2; exit 3; }

echo "| iterations | requests | writes checked | invocations checked | BatchGetItem | FilterLogEvents | found | verify time |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for n in "${sizes[@]}"; do
    # moto is the limit (about 300 iterations/s with two requests each); the
    # count, not the duration, ends the run.
    "$bin" run scenarios/user-crud.toml --base-url "$base/{stage}" --rate 250 --duration 10m \
        --iterations "$n" --max-vus 256 -q -o "$work/s.json" >/dev/null 2>"$work/run.log" || true
    python3 - "$work/s.json" "$n" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
v = s.get("verify") or {}
d, l, calls = v.get("dynamodb") or {}, v.get("logs") or {}, v.get("api_calls", {})
found = f"{d.get('found', 0)}/{d.get('checked', 0)} items, {l.get('found', 0)}/{l.get('checked', 0)} log markers"
print(f"| {sys.argv[2]} | {s['totals']['requests']} | {d.get('recorded', 0)} | {l.get('checked', 0)} "
      f"| {calls.get('BatchGetItem', 0)} | {calls.get('FilterLogEvents', 0)} | {found} | {l.get('waited_s', 0):.1f} s logs |")
PY
done
