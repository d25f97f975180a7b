#!/usr/bin/env bash
# The SLURM integration test: installs Debian's slurm-wlm and munge (needs root) and runs tests/test_slurm.py,
# which starts a single-node cluster, submits the smoke config through profiles/slurm and stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/slurm-cluster.sh install
exec .venv/bin/python -m pytest -m slurm tests/test_slurm.py "$@"
