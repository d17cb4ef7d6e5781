#!/usr/bin/env bash
# Creates ./.venv with the pinned moto, once; sourced by scripts/test and scripts/demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed-$(sha256sum "$root/scripts/requirements.txt" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "==> installing pinned Python tools into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements.txt"
    touch "$stamp"
fi
