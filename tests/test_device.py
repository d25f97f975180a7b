"""Rule code takes the device it was given: the CPU in float32 when no GPU was given, without initialising CUDA."""

from __future__ import annotations

import json

import pytest
import torch

from detoxlab import config as cfgmod
from detoxlab import device as dev
from detoxlab import evaluation as ev
from tests.conftest import REPO

DTYPES = {"cpu": "float32", "cuda": "bfloat16"}


def _forbid(monkeypatch, *names: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.cuda was used although no GPU was given")

    for name in names:
        monkeypatch.setattr(torch.cuda, name, refuse)


@pytest.mark.parametrize("preference, visible", [("cpu", None), ("cpu", "0"), ("auto", ""), ("auto", "-1")])
def test_no_gpu_given_means_cpu_in_float32_without_asking_cuda(preference, visible, monkeypatch):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    _forbid(monkeypatch, "is_available", "device_count", "init", "_lazy_init")
    device = dev.pick_device(preference)
    assert device.type == "cpu" and dev.pick_dtype(DTYPES, device) == torch.float32


def test_a_gpu_asked_for_but_hidden_is_an_error_naming_the_cause(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES"):
        dev.pick_device("cuda")


def test_the_gpu_dtype_applies_only_on_a_gpu():
    assert dev.pick_dtype(DTYPES, torch.device("cuda")) == torch.bfloat16
    assert dev.pick_dtype(DTYPES, torch.device("cpu")) == torch.float32


def test_a_generation_job_without_a_gpu_never_initialises_cuda(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what SLURM or a workstation sets for a CPU job
    cfg = cfgmod.load(REPO / "config/smoke.yaml")
    cfg["device"] = "auto"
    _forbid(monkeypatch, "init", "_lazy_init", "current_device", "set_device")
    out = tmp_path / "generations.jsonl"
    ev.step_generate(cfg, str(tiny_llama_dir), "none", "test", str(out), threads=1)
    meta = json.loads((tmp_path / "generations.meta.json").read_text())
    assert meta["dtype"] == "torch.float32" and out.read_text().count("\n") > 0
