#!/usr/bin/env bash
# Runs SCENARIO as SHARDS shards on the current kubectl context, merges the
# summaries and exits with the merged verdict (0 pass, 1 fail, other: error).
#
#   deploy/kubernetes/run.sh scenarios/load-open.toml [SHARDS] [STAGE]
#
# The image: IMAGE=registry.example.com/stagecheck:1.0 (built from deploy/Dockerfile).
# Optional: NAMESPACE, RUN (the results folder; default: a timestamp),
# TIMEOUT (kubectl wait; default 2h), START_DELAY (seconds from now until every
# shard starts its traffic, long enough for all pods to be scheduled; default 60).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
scenario="${1:?usage: run.sh SCENARIO.toml [SHARDS] [STAGE]}"
shards="${2:-4}"
stage="${3:-test}"
image="${IMAGE:-stagecheck:latest}"
run="${RUN:-$(date -u +%Y%m%dT%H%M%SZ)}"
timeout="${TIMEOUT:-2h}"
start_delay="${START_DELAY:-60}"
ns=(--namespace "${NAMESPACE:-default}")

case "$shards" in ''|*[!0-9]*|0) echo "SHARDS must be a positive number, not '$shards'" >&2; exit 2 ;; esac
case "$start_delay" in ''|*[!0-9]*) echo "START_DELAY must be a number of seconds, not '$start_delay'" >&2; exit 2 ;; esac
# One start time for every shard: pods are scheduled one by one, and shards
# that started apart would add up to a rate the scenario never asked for (the
# merge refuses shards more than 1 s apart).
start_at="$(date -u -d "@$(( $(date +%s) + start_delay ))" +%Y-%m-%dT%H:%M:%SZ)"

# Catch a broken scenario here, not in N pods.
if command -v stagecheck >/dev/null; then stagecheck validate "$scenario"; fi

kubectl "${ns[@]}" apply -f "$here/pvc.yaml"
kubectl "${ns[@]}" create configmap stagecheck-scenario \
    --from-file=scenario.toml="$scenario" --dry-run=client -o yaml | kubectl "${ns[@]}" apply -f -
# Jobs are immutable: the previous run's go first.
kubectl "${ns[@]}" delete job stagecheck-shards stagecheck-merge --ignore-not-found --wait=true

# The manifests' defaults (4 shards, run "demo", stage "test", image) are replaced here.
render() {
    sed -e "s|completions: 4|completions: $shards|" \
        -e "s|parallelism: 4|parallelism: $shards|" \
        -e "s|value: \"4\"|value: \"$shards\"|" \
        -e "s|value: \"demo\"|value: \"$run\"|" \
        -e "s|value: \"test\"|value: \"$stage\"|" \
        -e "s|value: \"+0s\"|value: \"$start_at\"|" \
        -e "s|image: stagecheck:latest|image: $image|" \
        "$1"
}

echo "==> $shards shards of $scenario against stage $stage, starting at $start_at (results: /results/$run)"
render "$here/job-shards.yaml" | kubectl "${ns[@]}" apply -f -
if ! kubectl "${ns[@]}" wait --for=condition=complete job/stagecheck-shards --timeout="$timeout"; then
    kubectl "${ns[@]}" logs -l app.kubernetes.io/component=shard --tail=20 --prefix || true
    echo "a shard failed to run (see above): no merge" >&2
    exit 3
fi

echo "==> merge"
render "$here/job-merge.yaml" | kubectl "${ns[@]}" apply -f -
# The merge ends in success (pass) or failure (a failed verdict): wait for either, 10 minutes at most.
for _ in $(seq 300); do
    done_count="$(kubectl "${ns[@]}" get job stagecheck-merge -o jsonpath='{.status.succeeded}{.status.failed}')"
    [ -n "$done_count" ] && break
    sleep 2
done
kubectl "${ns[@]}" logs job/stagecheck-merge
code="$(kubectl "${ns[@]}" get pods -l app.kubernetes.io/component=merge,job-name=stagecheck-merge \
    -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')"
echo "==> merged verdict: exit $code (reports in /results/$run on the stagecheck-results volume)"
exit "$code"
