#!/usr/bin/env bash
# What verification costs in AWS calls and seconds as a run grows: moto, the
# sandbox with its real backend (items in moto's DynamoDB, log lines in moto's
# CloudWatch Logs), API Gateway's execution log at INFO and an access log, and
# scenarios/user-crud.toml with `[verify] routing = "both"`: every request is
# proven by the function's own line and by API Gateway's log followed to the
# function's REPORT, writes read back, isolation from prod checked. Prints, per
# run, the requests sent, the calls stagecheck made (`verify.api_calls`) and
# how long verification took.
#
#   benches/verify-cost.sh [ITERATIONS...]      # default 500 5000 (1 000 and 10 000 requests)
#   RATE=120 LOGS_DEADLINE=10m benches/verify-cost.sh 50000   # 100 000 requests
#
# moto is the limit: at 250 iterations/s it falls behind the sandbox's log
# lines and items past a few thousand iterations, so large runs go slower
# (RATE, iterations/s) and wait longer for the lines (LOGS_DEADLINE).
#
# Needs .venv with moto (run scripts/test once) and python3. All on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(500 5000)
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"
source "$root/benches/lib.sh"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
# The SDK's credential chain must never reach for the instance metadata address.
export AWS_EC2_METADATA_DISABLED=true
start_moto
start_sandbox
# The product talks to the sandbox's AWS endpoint, as a pipeline would: it
# records the stage settings moto does not keep (the execution log's level).
aws_url="$(sed -n 's/^aws endpoint on //p' "$work/sandbox.out" | head -n 1)"
export AWS_ENDPOINT_URL="$aws_url"

# Stage test logs at INFO (API Gateway's execution log) and writes an access
# log with the Lambda request id: every channel verification can read.
"$root/.venv/bin/python" - "$aws_url" <<'PY'
import sys, boto3
url = sys.argv[1]
api = boto3.client("apigateway", endpoint_url=url, region_name="us-east-1")
logs = boto3.client("logs", endpoint_url=url, region_name="us-east-1")
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1")
rest = api.get_rest_apis()["items"][0]["id"]
account = lam.get_function(FunctionName="test-user-service")["Configuration"]["FunctionArn"].split(":")[4]
logs.create_log_group(logGroupName="access/test")
fmt = ('{"requestId":"$context.requestId","lambda":"$context.integration.requestId",'
       '"status":"$context.status","integrationLatency":"$context.integrationLatency"}')
api.update_stage(restApiId=rest, stageName="test", patchOperations=[
    {"op": "replace", "path": "/*/*/logging/loglevel", "value": "INFO"},
    {"op": "replace", "path": "/accessLogSettings/destinationArn",
     "value": f"arn:aws:logs:us-east-1:{account}:log-group:access/test"},
    {"op": "replace", "path": "/accessLogSettings/format", "value": fmt}])
PY
python3 -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_sandbox/reload', method='POST'), timeout=10)" "$sandbox_url"

scenario="$work/both.toml"
sed 's/^\[verify\]$/[verify]\nrouting = "both"/' scenarios/user-crud.toml >"$scenario"
grep -q '^routing = "both"' "$scenario" || { echo "could not set routing in $scenario" >&2; exit 2; }

echo "| iterations | requests | writes checked | requests proven (function / execution log / access log) | BatchGetItem | FilterLogEvents | other calls | verify time | of which waiting for logs |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for n in "${sizes[@]}"; do
    # The sandbox with its backend in moto is the limit; the count, not the
    # duration, ends the run.
    "$bin" run "$scenario" --base-url "$sandbox_url/{stage}" --rate "${RATE:-250}" --duration 60m \
        --iterations "$n" --max-vus 256 --logs-deadline "${LOGS_DEADLINE:-30s}" \
        -q -o "$work/s.json" >/dev/null 2>"$work/run.log" || true
    python3 - "$work/s.json" "$n" "$work/run.log" <<'PY'
import json, sys, datetime
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(f"no summary for {sys.argv[2]} iterations: " + open(sys.argv[3]).read()[-2000:])
v = s.get("verify") or {}
d, l, calls = v.get("dynamodb") or {}, v.get("logs") or {}, dict(v.get("api_calls", {}))
by = l.get("proven_by", {})
proven = (f"{l.get('found', 0)}/{l.get('checked', 0)} ({by.get('function_logs', 0)} / "
          f"{by.get('execution_logs', 0)} / {by.get('access_logs', 0)})")
batch, filt = calls.pop("BatchGetItem", 0), calls.pop("FilterLogEvents", 0)
other = ", ".join(f"{k} {n}" for k, n in sorted(calls.items()) if n) or "-"
# The traffic ends at started_at + duration_s; the summary is written when
# verification ends, which the file's own time stamps.
import os
start = datetime.datetime.fromisoformat(s["started_at"].replace("Z", "+00:00")).timestamp()
verify_s = os.path.getmtime(sys.argv[1]) - start - s["duration_s"]
print(f"| {sys.argv[2]} | {s['totals']['requests']} (dropped {s['totals']['dropped_iterations']} iterations) | {d.get('checked', 0)} | {proven} "
      f"| {batch} | {filt} | {other} | {verify_s:.1f} s | {l.get('waited_s', 0):.1f} s |")
PY
done
