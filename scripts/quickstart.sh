#!/usr/bin/env bash
# Sets up the environment, runs the whole workflow on the embedded default config, and writes the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
CONFIG=${CONFIG:-config/config.yaml}
snakemake --profile profiles/default --configfile "$CONFIG" --cores "${CORES:-all}" "$@"
snakemake --profile profiles/default --configfile "$CONFIG" --report results/report/report.html
echo "Results: results/report/table.md, results/report/tox_vs_ppl.png, results/report/report.html"
