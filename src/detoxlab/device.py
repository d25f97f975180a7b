"""Device, dtype and thread selection for rule code.

A job uses CUDA only when it was given a GPU: the scheduler granted one (``--gpus``, which rules fill from their
``gpu`` resource) and CUDA can see one. Otherwise it runs on the CPU in float32, and ``torch.cuda`` is never
touched when the grant, the config or the environment rules a GPU out.

Snakemake caps how many GPU jobs run at once (``--resources gpu=N``) but tells none of them which GPU is theirs,
so each job claims a free visible GPU with an exclusive lock file, held until the process exits. Locks are
machine-wide, named by the device's entry in CUDA_VISIBLE_DEVICES (or its index), and, inside a SLURM
allocation, by the allocation too: the jobs of one allocation share its GPUs, other allocations' GPUs are not
theirs to wait for.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

import torch

from detoxlab.grant import granted_gpus

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LOCK_DIR_ENV = "DETOXLAB_GPU_LOCK_DIR"
_held: list[int] = []  # descriptors of the locks held: a claim lasts as long as the process
_claimed: int | None = None


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    granted = granted_gpus()
    if granted == 0:
        if preference == "cuda":
            raise RuntimeError("device: 'cuda' requested but the job was granted no GPU (its step's `gpu` "
                               "resource is 0)")
        return torch.device("cpu")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        if preference == "cuda":
            raise RuntimeError("device: 'cuda' requested but CUDA_VISIBLE_DEVICES hides every GPU")
        return torch.device("cpu")
    if torch.cuda.is_available():
        index = _claimed_gpu()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if preference == "cuda":
        raise RuntimeError("device: 'cuda' requested but no CUDA device is available")
    return torch.device("cpu")


def _claimed_gpu() -> int:
    """This process's GPU: claimed once, kept for every later model it loads."""
    global _claimed
    if _claimed is None:
        _claimed = claim_gpu(_physical_ids(torch.cuda.device_count()))
    return _claimed


def _physical_ids(count: int) -> list[str]:
    """Machine-wide names of the visible GPUs: CUDA_VISIBLE_DEVICES entries when set, else indices; prefixed
    by the SLURM allocation, whose device numbering is its own."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(count)]
    allocation = os.environ.get("SLURM_JOB_ID")
    return [f"slurm{allocation}-{i}" if allocation else i for i in ids[:count]]


def _lock_dir() -> Path:
    """One directory per machine (not TMPDIR, which Snakemake may set per job), writable by every user."""
    path = Path(os.environ.get(LOCK_DIR_ENV) or "/tmp/detoxlab-gpu-locks")
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        try:
            path.chmod(0o1777)
        except PermissionError:  # another user created it first
            pass
    return path


def try_claim(ids: list[str]) -> int | None:
    """Index (into ``ids``) of a GPU this process now holds exclusively, or None when every one is taken."""
    for index, gpu in enumerate(ids):
        lock = _lock_dir() / f"gpu-{gpu.replace('/', '_')}.lock"
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: another user's lock file opens too
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)
        return index
    return None


def claim_gpu(ids: list[str], poll_s: float = 2.0) -> int:
    """Claim a free GPU, waiting for one when more GPU jobs run than there are GPUs (a local run without
    ``--resources gpu=N``): two jobs sharing a device would compete for its memory."""
    index = try_claim(ids)
    if index is None:
        log.warning("all %d GPUs are taken by other jobs; waiting for one (run snakemake with --resources gpu=%d)",
                    len(ids), len(ids))
        while index is None:
            time.sleep(poll_s)
            index = try_claim(ids)
    log.info("using GPU %s", ids[index])
    return index


def release_gpus() -> None:
    global _claimed
    _claimed = None
    while _held:
        os.close(_held.pop())


def pick_dtype(cfg_dtype: dict, device: torch.device) -> torch.dtype:
    return _DTYPES[cfg_dtype.get(device.type, "float32")]


def set_threads(threads: int | None) -> None:
    """Match torch's intra-op threads to what the scheduler granted the job."""
    if threads:
        torch.set_num_threads(int(threads))


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def runtime(cfg: dict, threads: int | None = None, inference: bool = False) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of a step; ``inference`` steps (no gradients) read ``inference_dtype``."""
    set_threads(threads)
    device = pick_device(cfg.get("device", "auto"))
    dtype = pick_dtype(cfg.get("inference_dtype" if inference else "dtype", {}), device)
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        log.warning("this CPU has no native bfloat16 (avx512_bf16/amx_bf16): bf16 runs emulated and may be slower "
                    "than float32; set %s.cpu: float32", "inference_dtype" if inference else "dtype")
    return device, dtype
