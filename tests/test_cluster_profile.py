"""Cluster readiness without a cluster: job sizes scale with the models a job loads, and the paper config
dry-runs through profiles/slurm with a GPU for every training and generation job and none for the others."""

from __future__ import annotations

import re

import pytest

from detoxlab import config as cfgmod
from tests.conftest import REPO
from tests.workflow_utils import copy_workflow, snakemake

# rules that train or run a language model on every token (the papers ran them on GPUs)
GPU_RULES = {"generate", "perplexity", "mmlu", "score", "distill", "toxic_model", "finetune_on_text", "transfer_finetune",
             "lm_steer_train", "reward_data", "train_reward", "acf_samples", "acf_general", "nado", "acf_finetune",
             "acf_filtering", "acf_rl", "acf_classify"}
# rules that only copy, combine or describe artifacts
CPU_RULES = {"materialize_model", "toxic_corpus", "task_arithmetic", "lm_steer_model",
             "unidetox_analysis", "build_guide", "dexperts_guide", "reward_guide", "nado_guide", "select_model",
             "select_guide", "select_reward_guide", "acf_classification_data", "metrics", "report"}


def _resources(**steps) -> dict:
    return {"resources": {"model_params_b": {"big": 7.0, "small": 0.5}, "default": {"mem_mb": 1000, "runtime": 10},
                          **steps}}


def test_memory_and_time_grow_with_the_largest_model_a_job_loads():
    cfg = _resources(finetune={"mem_mb": 2000, "runtime": 60, "gpu": 1, "partition": "gpu", "gpu_model": "a100",
                               "scale": {"mem_mb": 1000, "runtime": 7.5}})
    # by hand: 2000 + 1000 * 7 = 9000 MB, 60 + 7.5 * 7 = 112.5 -> 113 min; a derived model counts as its base
    big = cfgmod.job_resources(cfg, "finetune", ["small", "big.unidetox.lr1e-05"])
    assert big == {"mem_mb": 9000, "runtime": 113, "gpu": 1, "slurm_partition": "gpu", "gpu_model": "a100"}
    small = cfgmod.job_resources(cfg, "finetune", ["small"])  # 2000 + 500, 60 + 3.75 -> 64
    assert (small["mem_mb"], small["runtime"]) == (2500, 64)
    unsized = cfgmod.job_resources(cfg, "finetune", ["not_sized"])
    assert (unsized["mem_mb"], unsized["runtime"]) == (2000, 60)
    # a step without its own entry takes the defaults, asks for no GPU, and is not pinned to a partition
    assert cfgmod.job_resources(cfg, "derive", ["big"]) == {"mem_mb": 1000, "runtime": 10, "gpu": 0}


@pytest.mark.parametrize("resources, key", [
    ({"model_params_b": {"missing_model": 7.0}}, "resources.model_params_b.missing_model"),
    ({"finetune": {"gpu": 2}}, "resources.finetune.gpu"),
    ({"finetune": {"scale": {"gpu": 1}}}, "resources.finetune.scale.gpu"),
])
def test_bad_resources_name_the_key(resources, key, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(REPO / "config/smoke.yaml", {"resources": resources})
    assert err.value.key == key


def _jobs(dry_run: str) -> list[tuple[str, dict, str]]:
    """(rule, resources, wildcards line) of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        head = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and res:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            pairs = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
            jobs.append((head.group(1), pairs, wildcards.group(1) if wildcards else ""))
    return jobs


def test_paper_config_dry_runs_through_the_slurm_profile_with_gpus_only_for_gpu_rules(tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(work, "--profile", "profiles/slurm", "-n", "--configfile", "config/paper.yaml", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = _jobs(proc.stdout)
    rules = {rule for rule, _, _ in jobs}
    assert rules - {"all"} == GPU_RULES | CPU_RULES, rules ^ (GPU_RULES | CPU_RULES)
    for rule, res, _ in jobs:
        if rule == "all":
            continue
        if rule in GPU_RULES:
            assert res["gpu"] == "1" and res["slurm_partition"] == "gpu", (rule, res)
        else:
            assert res.get("gpu", "0") == "0" and "slurm_partition" not in res, (rule, res)
        assert int(res["mem_mb"]) >= 4000 and int(res["runtime"]) >= 10, (rule, res)

    def finetune(target):
        sizes = {(int(r["mem_mb"]), int(r["runtime"])) for rule, r, wc in jobs
                 if rule == "finetune_on_text" and f"target={target}," in wc}
        assert len(sizes) == 1, sizes
        return sizes.pop()

    llama, gpt2_xl = finetune("llama2_7b"), finetune("gpt2_xl")
    assert llama[0] > 2 * gpt2_xl[0] and llama[1] > 2 * gpt2_xl[1]
    assert llama[0] >= 100_000  # a full 7B fine-tune in the paper's precision does not fit in less host memory
