#!/usr/bin/env bash
# Wall time of a promotion on the sandbox, split into its phases: a clean
# switch from test to prod, then a 10 % canary of CANARY_FOR at 10 it/s.
# Each starts from a new deployment on test (made with boto3 from .venv).
#
#   benches/promote.sh [CANARY_FOR]      # default 5m
#
# Needs .venv with moto (run scripts/test once). All on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
canary_for="${1:-5m}"
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$root/target}/release/stagecheck"
source "$root/benches/lib.sh"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
start_moto
start_sandbox
aws_url="$(sed -n 's/^aws endpoint on //p' "$work/sandbox.out" | head -n 1)"

# A new deployment of the draft on test; prod logging at INFO (the canary needs it).
prepare() {
    "$root/.venv/bin/python3" - "$aws_url" <<'PY'
import sys, boto3
ag = boto3.client("apigateway", endpoint_url=sys.argv[1], region_name="us-east-1")
api = next(a["id"] for a in ag.get_rest_apis()["items"] if a["name"] == "users")
d = ag.create_deployment(restApiId=api, description="bench")["id"]
ag.update_stage(restApiId=api, stageName="test", patchOperations=[{"op": "replace", "path": "/deploymentId", "value": d}])
ag.update_stage(restApiId=api, stageName="prod", patchOperations=[{"op": "replace", "path": "/*/*/logging/loglevel", "value": "INFO"}])
PY
    sleep 1.5
}

# Isolation from every other stage (the default), so the same file runs on prod.
sed -e "s#^base_url = .*#base_url = \"$sandbox_url/{stage}\"#" -e 's/^isolate_from = .*//' \
    scenarios/user-crud.toml >"$work/crud.toml"
if ! grep -q '^rest_api' "$work/crud.toml"; then
    sed -i 's#^\[target\]#[target]\nrest_api = "users"#' "$work/crud.toml"
fi

phases() {
    [ -s "$1" ] || { echo "no promotion document; stderr:" >&2; cat "${1%.json}.log" >&2; return 1; }
    python3 - "$1" "$2" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
t = p["timings"]
total = sum(v for v in t.values() if isinstance(v, (int, float)))
c = p.get("canary") or {}
extra = f", canary share {c['share']:.1f}% of {c['canary']['requests'] + c['primary']['requests']}" if c else ""
print(f"| {sys.argv[2]} | {p['outcome']} | {t['audit_s']:.2f} | {t['gate_s']:.2f} | {t['switch_s']:.2f} | "
      f"{t['propagation_s']:.2f} | {t['smoke_s']:.2f} | {total:.2f}{extra} |")
PY
}

echo "| promotion | outcome | audit s | gate s | switch s | propagation s | smoke / canary traffic s | total s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
prepare
"$bin" promote "$work/crud.toml" --from test --to prod --aws-endpoint "$aws_url" --settle 2s \
    --journal-dir "$work/journal" -q -o "$work/switch.json" >/dev/null 2>"$work/switch.log" || true
phases "$work/switch.json" "switch"
prepare
"$bin" promote "$work/crud.toml" --from test --to prod --aws-endpoint "$aws_url" --settle 2s \
    --canary 10% --canary-for "$canary_for" --canary-rate 10 \
    --journal-dir "$work/journal" -q -o "$work/canary.json" >/dev/null 2>"$work/canary.log" || true
phases "$work/canary.json" "canary 10 % for $canary_for"
