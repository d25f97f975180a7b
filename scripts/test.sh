#!/usr/bin/env bash
# Sets up the environment (if needed) and runs the test suite, one test file per worker on two workers
# (the end-to-end workflow runs leave cores idle between jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
