#!/usr/bin/env bash
# Memory over a long open-model run with write recording on: moto, the sandbox
# answering from memory (--no-backend), and scenarios/user-crud.toml at RATE
# iterations/s (two requests each, one recorded write and two invocations per
# iteration). Prints RSS every minute, the traffic phase's slope after the
# first minute, and the peak (VmHWM, which includes verification).
#
#   benches/memory.sh [RATE] [DURATION]      # default 5000 10m
#
# Needs .venv with moto (run scripts/test once) and python3. All on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rate="${1:-5000}"
duration="${2:-10m}"
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"
source "$root/benches/lib.sh"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
start_moto
start_sandbox --no-backend

# --no-backend stores nothing, so verification finds every write missing: the
# run exits 1 by design; what is measured is the memory, including verification.
"$bin" run scenarios/user-crud.toml --base-url "$sandbox_url/{stage}" --aws-endpoint "$moto_url" \
    --rate "$rate" --duration "$duration" --max-vus 512 --logs-deadline 1s -q -o "$work/summary.json" \
    >/dev/null 2>"$work/run.log" &
run_pid=$!
start=$(date +%s)
: >"$work/rss"
while kill -0 "$run_pid" 2>/dev/null; do
    rss="$(awk '/^VmRSS/ {print $2}' "/proc/$run_pid/status" 2>/dev/null || true)"
    hwm="$(awk '/^VmHWM/ {print $2}' "/proc/$run_pid/status" 2>/dev/null || true)"
    [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss $hwm" >>"$work/rss"
    sleep 1
done
wait "$run_pid" || true

python3 - "$work/rss" "$work/summary.json" "$rate" "$duration" <<'PY'
import json, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 3]
s = json.load(open(sys.argv[2]))
v = s.get("verify") or {}
print(f"open model {sys.argv[3]} it/s for {sys.argv[4]}, write recording on; "
      f"{s['totals']['requests']} requests, dropped {s['totals']['dropped_iterations']}")
d = v.get("dynamodb")
if d:
    print(f"  table {d['table']}: written {d['written']}, recorded {d['recorded']}, "
          f"BatchGetItem calls {v.get('api_calls', {}).get('BatchGetItem', 0)}")
traffic_end = int(s["duration_s"])
print("| t | RSS MB |")
print("| --- | --- |")
shown = [r for r in rows if r[0] % 60 == 0 and r[0] > 0]
for t, rss, _ in shown:
    print(f"| {t // 60} min | {rss / 1000:.1f} |")
traffic = [r for r in rows if 60 <= r[0] <= traffic_end]
if len(traffic) > 2:
    n = len(traffic)
    xs = [r[0] / 60 for r in traffic]; ys = [r[1] / 1000 for r in traffic]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    print(f"traffic phase after 1 min: {min(ys):.1f}-{max(ys):.1f} MB, slope {slope:+.2f} MB/min")
# The issue's yardsticks: RSS between minute 10 and the end of the traffic
# within ±5 % of minute 10's, and the slope of the traffic's second half.
# The last seconds of the traffic overlap verification: left out.
late = [r for r in rows if 600 <= r[0] <= traffic_end - 5]
if late:
    base = late[0][1]
    spread = max(abs(r[1] - base) for r in late) * 100.0 / base
    print(f"from minute 10 to {traffic_end // 60}: {min(r[1] for r in late) / 1000:.1f}-"
          f"{max(r[1] for r in late) / 1000:.1f} MB, within ±{spread:.1f} % of minute 10's {base / 1000:.1f} MB")
half = [r for r in rows if traffic_end / 2 <= r[0] <= traffic_end - 5]
if len(half) > 2:
    n = len(half)
    xs = [r[0] / 60 for r in half]; ys = [r[1] / 1000 for r in half]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    print(f"second half of the traffic: slope {slope:+.3f} MB/min")
if rows:
    print(f"peak RSS (VmHWM, with verification): {rows[-1][2] / 1000:.1f} MB = {rows[-1][2] / 1024:.1f} MiB")
PY
