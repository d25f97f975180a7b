"""Device, dtype and thread selection for rule code.

A job uses CUDA only when it was given a GPU (CUDA visible and requested); otherwise it runs on the CPU in
float32. ``torch.cuda`` is never touched when the config or the environment rules a GPU out.
"""

from __future__ import annotations

import os

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        if preference == "cuda":
            raise RuntimeError("device: 'cuda' requested but CUDA_VISIBLE_DEVICES hides every GPU")
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise RuntimeError("device: 'cuda' requested but no CUDA device is available")
    return torch.device("cpu")


def pick_dtype(cfg_dtype: dict, device: torch.device) -> torch.dtype:
    return _DTYPES[cfg_dtype.get(device.type, "float32")]


def set_threads(threads: int | None) -> None:
    """Match torch's intra-op threads to what the scheduler granted the job."""
    if threads:
        torch.set_num_threads(int(threads))


def runtime(cfg: dict, threads: int | None = None) -> tuple[torch.device, torch.dtype]:
    set_threads(threads)
    device = pick_device(cfg.get("device", "auto"))
    return device, pick_dtype(cfg.get("dtype", {}), device)
