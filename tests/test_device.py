"""Rule code takes the device it was given: the CPU in float32 when no GPU was given, without initialising CUDA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from detoxlab import config as cfgmod
from detoxlab import device as dev
from detoxlab import evaluation as ev
from detoxlab.grant import GPUS_ENV, grant_gpus
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


def test_a_job_granted_no_gpu_stays_on_the_cpu_without_asking_cuda(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # a workstation with every GPU visible
    monkeypatch.setenv(GPUS_ENV, "")  # so that monkeypatch restores what grant() sets
    grant_gpus(0)  # the CLI's --gpus: the rule's `gpu` resource is 0
    _forbid(monkeypatch, "is_available", "device_count", "init", "_lazy_init")
    assert dev.pick_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="granted no GPU"):
        dev.pick_device("cuda")


@pytest.fixture
def two_fake_gpus(monkeypatch, tmp_path):
    """torch.cuda reporting two devices; set_device calls recorded. Locks go to a private directory."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv(dev.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setenv(GPUS_ENV, "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    dev.release_gpus()
    yield chosen
    dev.release_gpus()


def _hold_lock(path):
    """Another process holding ``path`` exclusively until its stdin closes."""
    code = ("import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_local_gpu_job_takes_a_gpu_no_other_job_holds(two_fake_gpus, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    other = _hold_lock(locks / "gpu-0.lock")  # a concurrent job already on GPU 0
    try:
        device = dev.pick_device("auto")
        assert device == torch.device("cuda", 1) and two_fake_gpus == [1]
        assert dev.pick_device("auto") == device  # a second model of the same job stays on its GPU
        assert dev.try_claim(["0", "1"]) is None  # both taken now: a third job would wait
    finally:
        other.stdin.close()
        other.wait()
    assert dev.try_claim(["0", "1"]) == 0  # freed when that job ended


def test_locks_are_named_by_visible_device_and_slurm_allocation(two_fake_gpus, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the user handed detoxlab physical GPUs 2 and 3
    assert dev.pick_device("cuda") == torch.device("cuda", 0)
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == ["gpu-2.lock"]
    dev.release_gpus()
    # inside SLURM allocation 17 (numbering its own GPUs 0 and 1), a job of allocation 99 holding "its" GPU 0
    # is no reason to wait
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    other = _hold_lock(tmp_path / "locks/gpu-slurm99-0.lock")
    try:
        assert dev.pick_device("auto") == torch.device("cuda", 0)
    finally:
        other.stdin.close()
        other.wait()
    assert (tmp_path / "locks/gpu-slurm17-0.lock").is_file()



def test_a_rule_granting_no_gpu_keeps_its_job_off_cuda_on_a_machine_that_shows_gpus(tiny_llama_dir, tmp_path,
                                                                                      monkeypatch):
    """The rule's command line (`--gpus 0`, its `gpu` resource) decides, not what the machine has."""
    from detoxlab import cli

    monkeypatch.chdir(REPO)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(GPUS_ENV, "")
    _forbid(monkeypatch, "is_available", "device_count", "init", "_lazy_init", "current_device", "set_device")
    out = tmp_path / "generations.jsonl"
    params = json.dumps({**cfgmod.select(cfgmod.load(REPO / "config/smoke.yaml"), cfgmod.STEP_KEYS["generate"]),
                         "device": "auto"})
    assert cli.main(["--params", params, "--threads", "1", "--gpus", "0", "generate", "--model-dir",
                     str(tiny_llama_dir), "--split", "test", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "generations.meta.json").read_text())
    assert meta["dtype"] == "torch.float32" and out.read_text().count("\n") > 0


def test_evaluation_steps_read_the_inference_dtype_and_training_steps_the_training_dtype():
    from detoxlab.config import STEP_KEYS
    from detoxlab.device import runtime

    cfg = {"device": "cpu", "dtype": {"cpu": "float32"}, "inference_dtype": {"cpu": "bfloat16"}}
    assert runtime(cfg)[1] == torch.float32
    assert runtime(cfg, inference=True)[1] == torch.bfloat16
    for step in ("generate", "generate_validation", "perplexity", "mmlu", "toxic_corpus", "distill", "acf_samples",
                 "acf_general"):  # steps without gradients; a dtype change reruns only these
        assert "inference_dtype" in STEP_KEYS[step] and "dtype" not in STEP_KEYS[step]
    for step in ("toxic_model", "finetune", "train_reward", "nado", "acf_finetune", "acf_rl"):
        assert "dtype" in STEP_KEYS[step] and "inference_dtype" not in STEP_KEYS[step]
