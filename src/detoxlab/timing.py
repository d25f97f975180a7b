"""Where a step's time goes: start-up (process start, imports, config), loading (models, tokenizers, data) and
compute (the rest), recorded in the metadata of the step's output as ``timing``.

``benchmarks/pipeline.py`` sums these records over a run: a job whose start-up and loading rival its compute is
overhead to remove before any evaluation size is cut. Torch-free: every job imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

#: epoch seconds at which the job's own process started, set by the worker client for a forked step (whose
#: process is the client's, not the fork's)
JOB_START_ENV = "DETOXLAB_JOB_STARTED"

_state = {"step_start": None, "load_s": 0.0, "depth": 0}


def process_start_time(pid: int | str = "self") -> float:
    """Epoch seconds at which process ``pid`` started (10 ms resolution), from /proc; now where /proc is absent.

    The age comes from the uptime clock (/proc/stat's boot time is rounded to the second)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5), counted after "pid (comm)"
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        return time.time()


def job_start_time() -> float:
    value = os.environ.get(JOB_START_ENV)
    return float(value) if value else process_start_time()


def begin() -> None:
    """The step's own work starts now: what came before was start-up."""
    _state.update(step_start=time.time(), load_s=0.0, depth=0)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Time spent inside counts as loading (nested blocks count once)."""
    _state["depth"] += 1
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["load_s"] += time.perf_counter() - t0


def peak_rss_mb() -> float:
    """The step's own peak resident memory (a forked step's, which Snakemake's benchmark cannot see)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def record() -> dict:
    """``startup_s``, ``load_s`` and ``compute_s`` of the step so far (seconds, rounded to ms), its peak memory."""
    now = time.time()
    start = _state["step_start"] or now
    startup = max(0.0, start - job_start_time())
    load = _state["load_s"]
    return {"startup_s": round(startup, 3), "load_s": round(load, 3),
            "compute_s": round(max(0.0, now - start - load), 3), "worker": bool(os.environ.get(JOB_START_ENV)),
            "peak_rss_mb": peak_rss_mb()}


def metadata_file(out: str | os.PathLike) -> Path | None:
    """The metadata of an output: a directory's manifest, a ``.jsonl``'s ``.meta.json``, a ``.json`` itself."""
    out = Path(out)
    if out.is_dir():
        return out / "manifest.json"
    if out.suffix == ".jsonl":
        return out.with_name(out.name.removesuffix(".jsonl") + ".meta.json")
    if out.suffix == ".json":
        return out
    return None


def attach(out: str | os.PathLike | None) -> dict:
    """Add the step's timing record to its output's metadata (rewritten atomically); returns the record."""
    from detoxlab.artifacts import write_json

    rec = record()
    path = metadata_file(out) if out is not None else None
    if path is not None and path.is_file():
        meta = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(meta, dict):
            meta["timing"] = rec
            write_json(path, meta)
    return rec


def counts_as_loading(fn):
    """Decorator: the function's time counts as loading."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with loading():
            return fn(*args, **kwargs)

    return wrapper
