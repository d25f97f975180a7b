"""profiles/slurm on a real single-node SLURM cluster (Debian slurm-wlm + munge, started by
scripts/slurm-cluster.sh): the smoke config goes through sbatch and gives the local run's report, and jobs that
SLURM kills (scancel, time limit) leave nothing marked complete and are all a rerun resubmits.

Needs root and the Debian packages; scripts/test-slurm.sh installs them and runs this module (`-m slurm`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.workflow_utils import copy_workflow, env, snakemake, snakemake_cmd

pytestmark = pytest.mark.slurm

CONFIGS = ("--configfile", "config/smoke.yaml", "config/overlays/base_only.yaml", "config/cluster.yaml")
# generation asks for a GPU on the `gpu` partition, everything else runs on `cpu`
CLUSTER_OVERLAY = "resources:\n  default: {partition: cpu}\n  generate: {gpu: 1, partition: gpu}\n"
# this cluster has no accounting database (so no sacct); short status intervals keep the test quick
SLURM = ("--profile", "profiles/slurm", "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+?)/(\w+)/\d+\.log\)")
# wildcard values of the smoke systems; SLURM log paths join a job's values with "_", in no fixed order
VALUES = ("tiny_llama", "tiny_gemma", "none", "preprompt_short", "test")
LLAMA, GEMMA = frozenset({"tiny_llama", "none", "test"}), frozenset({"tiny_gemma", "none", "test"})
KILLED = {LLAMA: "CANCELLED", GEMMA: "TIMEOUT"}


def _slurm(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("slurmctld") or not shutil.which("munged"):
        pytest.fail("the SLURM test needs root and Debian's slurm-wlm and munge: run scripts/test-slurm.sh")
    state = tmp_path_factory.mktemp("slurm")
    script = str(REPO / "scripts/slurm-cluster.sh")
    try:
        subprocess.run(["bash", script, "start", str(state)], check=True, timeout=120)
        yield state
    finally:
        # nothing of ours may outlive the test: its jobs, then the daemons and their configuration
        if subprocess.run(["scancel", "--full", "--user", "root"], timeout=60).returncode == 0:
            deadline = time.time() + 60
            while time.time() < deadline and _slurm("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING"):
                time.sleep(1)
        subprocess.run(["bash", script, "stop", str(state)], timeout=120)


def _workdir(path: Path) -> Path:
    work = copy_workflow(path)
    (work / "config/cluster.yaml").write_text(CLUSTER_OVERLAY)
    return work


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    work = _workdir(tmp_path_factory.mktemp("local"))
    proc = snakemake(work, "--profile", "profiles/default", *CONFIGS, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> tuple[Path, str]:
    work = _workdir(tmp_path_factory.mktemp("cluster"))
    proc = snakemake(work, *SLURM, *CONFIGS, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return work, proc.stdout + proc.stderr


def _values(joined: str) -> frozenset:
    if joined in VALUES:
        return frozenset({joined})
    for v in VALUES:
        if joined.startswith(v + "_"):
            return frozenset({v}) | _values(joined[len(v) + 1:])
    raise AssertionError(f"unexpected wildcards {joined}")


def _submitted(log: str) -> dict[str, tuple[str, frozenset]]:
    """SLURM job id -> (rule, wildcard values) of every job the run submitted."""
    return {m[0]: (m[1], _values(m[2])) for m in SUBMITTED.findall(log)}


def _job(jobid: str) -> dict:
    fields = _slurm("scontrol", "show", "job", "--oneliner", jobid).split()
    return dict(f.split("=", 1) for f in fields if "=" in f)


def test_the_smoke_config_runs_through_sbatch_and_gives_the_local_report(slurm_run, local_run):
    work, log = slurm_run
    jobs = _submitted(log)
    rules = sorted(rule for rule, _ in jobs.values())
    assert rules == sorted(["materialize_model"] * 2 + ["generate", "score", "perplexity", "mmlu"] * 4), rules
    # cheap rules ran in the submitting process
    assert re.search(r"^localrule report:", log, re.M) and re.search(r"^localrule metrics:", log, re.M)
    for jobid, (rule, _) in jobs.items():
        # SLURM wrote the job's output under its job id
        assert len(list(work.glob(f"results/logs/slurm/rule_{rule}/*/{jobid}.log"))) == 1, (rule, jobid)
        job = _job(jobid)
        assert job["JobState"] == "COMPLETED" and job["JobName"].startswith("detoxlab_"), job
        if rule == "generate":  # Slurm 22.05 writes gres:gpu:1, later releases gres/gpu:1
            assert job["Partition"] == "gpu" and job.get("TresPerJob") in ("gres:gpu:1", "gres/gpu:1"), job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerJob", ""), job
    for name in ("metrics.json", "tradeoff.csv"):  # the quality metrics (table.csv also has timings)
        local = (local_run / "results/report" / name).read_bytes()
        assert (work / "results/report" / name).read_bytes() == local, name


def _wait_running(log: Path, wildcards: frozenset, deadline: float) -> str:
    """The SLURM id of the job with these wildcard values, once the run has submitted it and SLURM has run it
    for a few seconds (its step is under way)."""
    while time.time() < deadline:
        ids = [j for j, (_, w) in _submitted(log.read_text()).items() if w == wildcards]
        job = _job(ids[0]) if ids else {}
        if job.get("JobState") == "RUNNING" and job["RunTime"] >= "00:00:05":
            return ids[0]
        time.sleep(1)
    pytest.fail(f"no running job for {wildcards}")


def test_jobs_slurm_kills_leave_nothing_complete_and_only_they_are_resubmitted(slurm_run, local_run, tmp_path):
    work = tmp_path / "cluster"
    shutil.copytree(slurm_run[0], work, symlinks=True)  # a finished run, timestamps and metadata included
    outputs = {LLAMA: "results/eval/test/tiny_llama--none/generations.jsonl",
               GEMMA: "results/eval/test/tiny_gemma--none/generations.jsonl"}
    # both generations made to run for minutes: one is cancelled, the other outlives a one-minute limit
    (work / "config/long.yaml").write_text("generation:\n  samples_per_prompt: 20000\n")
    log_path = tmp_path / "failing-run.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(snakemake_cmd(*outputs.values(), *SLURM, "--set-resources", "generate:runtime=1",
                                              *CONFIGS, "config/long.yaml"),
                                cwd=work, env=env(), stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _slurm("scancel", _wait_running(log_path, LLAMA, time.time() + 300))
            proc.wait(timeout=600)
        finally:
            proc.kill()
    log = log_path.read_text()
    assert proc.returncode != 0, log[-3000:]
    jobs = _submitted(log)
    assert len(jobs) == 2 and {w for _, w in jobs.values()} == set(KILLED), jobs
    for jobid, (_, wildcards) in jobs.items():
        assert _job(jobid)["JobState"] == KILLED[wildcards], _job(jobid)
    for path in outputs.values():
        out = work / path
        # nothing under a final name: the earlier run's file was removed, the killed job's write never renamed
        assert not out.exists() and not out.with_name("generations.meta.json").exists(), path
        assert all(p.name.endswith(".tmp") for p in out.parent.glob(".generations*")), path

    # the rerun (the original config) resubmits the two generations and what reads them, nothing else
    rerun = snakemake(work, *SLURM, *CONFIGS, timeout=1200)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-4000:]
    again = list(_submitted(rerun.stdout + rerun.stderr).values())
    assert len(again) == 6 and set(again) == {(r, w) for r in ("generate", "score", "perplexity") for w in KILLED}
    for name in ("metrics.json", "tradeoff.csv"):
        assert (work / "results/report" / name).read_bytes() == (local_run / "results/report" / name).read_bytes()
