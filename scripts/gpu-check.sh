#!/usr/bin/env bash
# The CUDA paths on one GPU in a few minutes: the smoke config end to end with device cuda and bf16, the guided
# decoders and a LoRA step on a real SmolLM2 (benchmarks/gpu_check.py). Prints one key=value line: tokens/s per
# path and the peak GPU memory. Needs a CUDA build of torch in .venv (or the active python) and one visible GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False with $("$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo 'no torch')); run it on a machine with one NVIDIA GPU and a CUDA build of torch" >&2
  exit 2
fi
export PATH="$(dirname "$PY"):$PATH"
exec "$PY" benchmarks/gpu_check.py "$@"
