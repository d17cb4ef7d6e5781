#!/usr/bin/env bash
# Side-by-side throughput and accuracy: stagecheck against wrk, oha and hey on
# one local target, in alternating rounds, medians and ratios printed.
#
#   benches/peers.sh [ROUNDS] [SECONDS]        # default 3 rounds of 8 s
#   THREADS=2 benches/peers.sh                 # threads per tool (default 1)
#   PARTS="closed open" benches/peers.sh       # some of: closed open co memory
#   BASELINE=/tmp/stagecheck-old benches/peers.sh   # another build beside, in the same rounds
#
# Needs: nginx, wrk and hey from Debian (apt-get install nginx-light wrk hey),
# oha from crates.io (cargo install oha; skipped when absent), python3.
# Every tool gets one thread and 64 connections against one nginx worker
# answering a fixed JSON `return 200`, all on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
secs="${2:-8}"
conns=64
threads="${THREADS:-1}"
parts=" ${PARTS:-closed open co memory} "
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"
source "$root/benches/lib.sh"
nginx_pid_file="$work/nginx.pid"
on_exit+=('[ -f "$nginx_pid_file" ] && kill "$(cat "$nginx_pid_file")" 2>/dev/null')

for tool in nginx wrk hey python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx-light wrk hey)" >&2; exit 2; }
done
oha="$(command -v oha || true)"

port="$(free_port)"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $nginx_pid_file;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
url="http://127.0.0.1:$port/"

cat >"$work/closed.toml" <<TOML
[target]
base_url = "http://127.0.0.1:$port"
stage = "bench"
[load]
model = "closed"
vus = $conns
duration = "${secs}s"
[[steps]]
name = "get"
method = "GET"
path = "/"
TOML

json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# Each takes the URL and prints requests/s; stagecheck reads $toml.
stagecheck_rps() { "$bin" run "$toml" --threads "$threads" -q -o "$work/s.json" >/dev/null || true; json_field "$work/s.json" "round(d['totals']['rps'])"; }
baseline_rps() { "$BASELINE" run "$toml" --threads "$threads" -q -o "$work/b.json" >/dev/null || true; json_field "$work/b.json" "round(d['totals']['rps'])"; }
wrk_rps() { wrk -t"$threads" -c"$conns" -d"${secs}s" "$1" | awk '/Requests\/sec/ {printf "%d\n", $2}'; }
hey_rps() { GOMAXPROCS="$threads" hey -z "${secs}s" -c "$conns" "$1" | awk '/Requests\/sec/ {printf "%d\n", $2}'; }
oha_rps() { TOKIO_WORKER_THREADS="$threads" "$oha" -z "${secs}s" -c "$conns" --no-tui --output-format json "$1" >"$work/oha.json"; json_field "$work/oha.json" "round(d['summary']['requestsPerSec'])"; }
median() { python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:]))))" "$@"; }

# closed_model NAME URL: every tool in turn, $rounds times, then medians and ratios.
closed_model() {
    local name="$1" target="$2" tool rps round
    toml="$work/closed-$name.toml"
    sed "s#^base_url = .*#base_url = \"${target%/*}\"#; s#^path = .*#path = \"/${target##*/}\"#" "$work/closed.toml" >"$toml"
    local tools=(stagecheck wrk hey)
    [ -n "$oha" ] && tools+=(oha)
    [ -n "${BASELINE:-}" ] && tools+=(baseline)
    declare -A results=()
    echo
    echo "closed model, $conns connections, ${secs}s per run, $rounds rounds, $threads thread(s) each; target: $name"
    for round in $(seq 1 "$rounds"); do
        for tool in "${tools[@]}"; do
            rps="$("${tool}_rps" "$target")"
            results[$tool]="${results[$tool]:-} $rps"
            echo "  round $round  $tool  $rps req/s"
        done
    done
    echo
    echo "| tool | median req/s | stagecheck ÷ tool |"
    echo "| --- | --- | --- |"
    local sc m
    sc="$(median ${results[stagecheck]})"
    for tool in "${tools[@]}"; do
        m="$(median ${results[$tool]})"
        echo "| $tool | $m | $(python3 -c "print(f'{$sc/$m:.2f}')") |"
    done
}

if [[ "$parts" == *" closed "* ]]; then
    closed_model "nginx (1 worker)" "$url"
    if has_moto; then
        start_moto
        start_sandbox --no-backend
        closed_model "the sandbox, --no-backend" "$sandbox_url/test/user"
        stop_sandbox
    fi
fi

if [[ "$parts" == *" open "* ]]; then
echo
echo "open model at fixed rates against nginx, 5 s each: achieved rate (stagecheck also: scheduling lateness)"
echo "| target it/s | stagecheck achieved | error | schedule lag p99 | dropped | oha -q achieved | hey -c 50 -q rate/50 achieved |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for rate in 100 1000 5000 20000; do
    "$bin" run "$work/closed.toml" --rate "$rate" --duration 5s --max-vus 256 --threads 2 -q -o "$work/o.json" >/dev/null || true
    row="$(json_field "$work/o.json" "'| $rate | %d | %+.2f %% | %.2f ms | %d |' % (d['totals']['requests']/5.0, (d['totals']['requests']/5.0/$rate-1)*100, d['totals']['schedule_lag_ms']['p99'], d['totals']['dropped_iterations'])")"
    oha_rate="-"
    if [ -n "$oha" ]; then
        "$oha" -z 5s -q "$rate" -c 64 --no-tui --output-format json "$url" >"$work/oha-open.json" 2>/dev/null || true
        oha_rate="$(json_field "$work/oha-open.json" "'%d' % d['summary']['requestsPerSec']")"
    fi
    hey_rate="$(hey -z 5s -c 50 -q $((rate / 50)) "$url" | awk '/Requests\/sec/ {printf "%d\n", $2}')"
    echo "$row $oha_rate | $hey_rate |"
done
fi

if [[ "$parts" == *" co "* ]]; then
echo
echo "coordinated omission: the sandbox (--no-backend) holds every answer between 2 s and 3 s once; 200 requests/s for 6 s"
echo "analytic truth: p90 ≈ 400 ms, p99 ≈ 940 ms"
if has_moto; then
    [ -n "$moto_pid" ] || start_moto
    # A fresh sandbox per tool: the stall happens once per process.
    stalled() { start_sandbox --no-backend --fault stall=2s:1s; base="$sandbox_url"; }
    done_stalled() { stop_sandbox; }
    echo "| tool | p50 | p90 | p99 |"
    echo "| --- | --- | --- | --- |"
    stalled
    sed 's#^path = "/"#path = "/user"#' "$work/closed.toml" >"$work/co.toml"
    "$bin" run "$work/co.toml" --base-url "$base/test" --rate 200 --duration 6s --max-vus 400 -q -o "$work/co.json" >/dev/null || true
    json_field "$work/co.json" "'| stagecheck (open model) | %.1f ms | %.1f ms | %.1f ms |' % (d['totals']['latency_ms']['p50'], d['totals']['latency_ms']['p90'], d['totals']['latency_ms']['p99'])"
    done_stalled
    if [ -n "$oha" ]; then
        for correction in "" "--latency-correction"; do
            stalled
            "$oha" -z 6s -q 200 -c 400 --no-tui --output-format json $correction "$base/test/user" >"$work/oha-co.json" 2>/dev/null || true
            json_field "$work/oha-co.json" "'| oha -q 200 ${correction:-(no correction)} | %.1f ms | %.1f ms | %.1f ms |' % (d['latencyPercentiles']['p50']*1000, d['latencyPercentiles']['p90']*1000, d['latencyPercentiles']['p99']*1000)"
            done_stalled
        done
    fi
    stalled
    hey -z 6s -c 4 -q 50 "$base/test/user" >"$work/hey-co.txt" 2>/dev/null || true
    awk '/ 50% in/ {p50=$3} / 90% in/ {p90=$3} / 99% in/ {p99=$3} END {printf "| hey -c 4 -q 50 | %.1f ms | %.1f ms | %.1f ms |\n", p50*1000, p90*1000, p99*1000}' "$work/hey-co.txt"
    done_stalled
else
    echo "  (skipped: run scripts/test once to create .venv with moto)"
fi
fi

if [[ "$parts" == *" memory "* ]]; then
echo
echo "memory: peak RSS of a 20 s open-model run at 5000 it/s (benches/memory.sh: long runs with recording)"
/usr/bin/time -f "  peak RSS %M KiB" "$bin" run "$work/closed.toml" --rate 5000 --duration 20s -q -o "$work/m.json" 2>&1 >/dev/null | tail -1 || true
fi
