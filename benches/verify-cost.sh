#!/usr/bin/env bash
# What verification costs in AWS calls as a run grows: moto, the sandbox with
# its real backend (items in moto's DynamoDB, log lines in moto's CloudWatch
# Logs), and scenarios/user-crud.toml at growing iteration counts. Prints, per
# run, the requests sent and the BatchGetItem and FilterLogEvents calls made,
# as stagecheck counts them (`verify.api_calls` in the summary).
#
#   benches/verify-cost.sh [ITERATIONS...]      # default 100 1000 5000
#
# Needs .venv with moto (run scripts/test once) and python3. All on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 5000)
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"
source "$root/benches/lib.sh"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
start_moto
export AWS_ENDPOINT_URL="$moto_url"
start_sandbox

echo "| iterations | requests | writes checked | invocations checked | BatchGetItem | FilterLogEvents | found | verify time |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for n in "${sizes[@]}"; do
    # moto is the limit (about 300 iterations/s with two requests each); the
    # count, not the duration, ends the run.
    "$bin" run scenarios/user-crud.toml --base-url "$sandbox_url/{stage}" --rate 250 --duration 10m \
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
