"""The whole workflow from an empty ``results/``: wall time, job time, where the job time went, critical path.

Copies the workflow (Snakefile, rules, configs, data, profiles) into a scratch directory, runs ``snakemake``
there on one config (default: the smoke config), and reads back what the run recorded:

- each job's start and end from Snakemake's metadata (``.snakemake/metadata``), which also gives the DAG (a
  job's inputs are other jobs' outputs): ``job_s`` is the sum of job times, ``critical_path_s`` the longest
  chain of dependent jobs;
- each step's ``timing:`` line from its log (start-up, loading, compute; see ``detoxlab.timing``):
  ``overhead_share`` is everything that is not compute over ``job_s`` (a job with no timing line counts whole);
- ``calib_tok_s``: the sampler's raw throughput on SmolLM2 (``benchmarks/sampler.py``'s measurement, short),
  measured before and after the run; ``norm_wall_s = wall_s * calib_tok_s / 237`` is the wall time on a machine
  as fast as the one the README's figures come from.

Last line: ``wall_s= jobs= job_s= overhead_share= critical_path_s= calib_tok_s= norm_wall_s=``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import REPO, emit, real_model_dir, sampler_tok_s

REFERENCE_TOK_S = 237.0  # benchmarks/sampler.py on the machine of the README's measured figures
COPIED = ("Snakefile", "workflow", "config", "data", "profiles", "envs", "requirements", "pyproject.toml")


def scratch_copy(dest: Path) -> None:
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)


def read_jobs(workdir: Path) -> list[dict]:
    """One entry per job: rule, outputs, inputs, log, start, end (from Snakemake's per-output metadata)."""
    jobs: dict[int, dict] = {}
    root = workdir / ".snakemake/metadata"
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        rec = json.loads(f.read_text())
        # urlsafe base64 of the output's path, cut into "@"-prefixed directories where it is long
        output = base64.urlsafe_b64decode("".join(p.lstrip("@") for p in f.relative_to(root).parts)).decode()
        job = jobs.setdefault(rec["job_hash"], {"rule": rec["rule"], "outputs": [], "inputs": rec.get("input") or [],
                                    "log": rec.get("log") or [], "start": rec["starttime"],
                                    "end": rec["endtime"]})
        job["start"] = min(job["start"], rec["starttime"])
        job["outputs"].append(output)
    return list(jobs.values())


def critical_path(jobs: list[dict]) -> float:
    producer = {o: i for i, j in enumerate(jobs) for o in j["outputs"]}
    memo: dict[int, float] = {}

    def longest(i: int) -> float:
        if i not in memo:
            j = jobs[i]
            ups = {producer[p] for p in j["inputs"] if p in producer and producer[p] != i}
            memo[i] = (j["end"] - j["start"]) + max((longest(u) for u in ups), default=0.0)
        return memo[i]

    sys.setrecursionlimit(10_000)
    return max((longest(i) for i in range(len(jobs))), default=0.0)


def step_timing(workdir: Path, job: dict) -> dict | None:
    for log in job["log"]:
        path = workdir / log
        if path.is_file():
            for line in reversed(path.read_text(errors="replace").splitlines()):
                if line.startswith("timing: "):
                    return {k: float(v) if k != "worker" else v == "True"
                            for k, v in (item.split("=", 1) for item in line[8:].split())}
    return None


def calibrate(repeats: int) -> float:
    return sampler_tok_s(real_model_dir(None), repeats=repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/smoke.yaml", help="config file, relative to the repository")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--calib-repeats", type=int, default=3)
    ap.add_argument("--keep", default=None, help="run in this directory and keep it (default: a temporary one)")
    ap.add_argument("--no-worker", action="store_true", help="every job in its own process (DETOXLAB_NO_WORKER)")
    args = ap.parse_args()

    calib = [calibrate(args.calib_repeats)]
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="detoxlab-pipeline-"))
    if workdir.exists() and any(workdir.iterdir()):
        sys.exit(f"{workdir} is not empty: the benchmark starts from an empty results/")
    workdir.mkdir(parents=True, exist_ok=True)
    scratch_copy(workdir)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DETOXLAB_WORKER", None)
    if args.no_worker:
        env["DETOXLAB_NO_WORKER"] = "1"
    cmd = ["snakemake", "--profile", "profiles/default", "--configfile", args.config, "--cores", args.cores]
    t0 = time.perf_counter()
    with open(workdir / "snakemake.log", "w") as log:
        rc = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"snakemake failed (exit {rc}); see {workdir / 'snakemake.log'}")
    calib.append(calibrate(args.calib_repeats))

    jobs = read_jobs(workdir)
    kinds: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    job_s = compute_s = 0.0
    for job in jobs:
        seconds = job["end"] - job["start"]
        rec = step_timing(workdir, job) or {}
        kind = kinds[job["rule"]]
        kind["jobs"] += 1
        kind["job_s"] += seconds
        for key in ("startup_s", "load_s", "compute_s"):
            kind[key] += rec.get(key, 0.0)
        kind["untimed"] += not rec
        job_s += seconds
        compute_s += rec.get("compute_s", 0.0)
    print(f"{'rule':24} {'jobs':>5} {'job_s':>9} {'startup_s':>10} {'load_s':>9} {'compute_s':>10} {'other_s':>8}")
    for rule, k in sorted(kinds.items(), key=lambda kv: -kv[1]["job_s"]):
        other = k["job_s"] - k["startup_s"] - k["load_s"] - k["compute_s"]
        print(f"{rule:24} {int(k['jobs']):5d} {k['job_s']:9.1f} {k['startup_s']:10.1f} {k['load_s']:9.1f} "
              f"{k['compute_s']:10.1f} {other:8.1f}" + (f"  ({int(k['untimed'])} untimed)" if k["untimed"] else ""))
    calib_tok_s = sum(calib) / len(calib)
    print(f"calibration: {calib[0]:.0f} tok/s before, {calib[1]:.0f} after; scratch: {workdir}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(wall_s=wall, jobs=len(jobs), job_s=job_s, overhead_share=(job_s - compute_s) / job_s if job_s else 0.0,
         critical_path_s=critical_path(jobs), calib_tok_s=calib_tok_s, norm_wall_s=wall * calib_tok_s / REFERENCE_TOK_S)


if __name__ == "__main__":
    main()
