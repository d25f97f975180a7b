"""Wall clock of ACF's parallel schedule vs the sequential one, each run by Snakemake from scratch.

Each schedule gets its own scratch copy of the workflow with one ACF run (the embedded default's settings unless
``--config`` names another), the base model materialised beforehand (not timed), and Snakemake asked for what the
run's models and report read (``plan.run_artifacts``) at ``--iterations`` iterations with ``--cores`` cores. The
sequential DAG is a chain of 3n jobs; the parallel one has n + 2 levels of up to three independent jobs, so with
equal jobs and three workers its wall clock is (n + 2) / (3n) of the sequential one (``ideal``).
``ideal_weighted`` replaces "equal jobs" by the measured job times (the parallel DAG's critical path over the
sequential sum), and ``cores`` says how many workers the machine had: three concurrent single-threaded jobs need
three cores to overlap fully.
Last line: key=value pairs including ``parallel_vs_sequential`` and ``ideal``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import REPO, emit

from detoxlab import config as cfgmod
from detoxlab.acf import plan
from detoxlab.report import read_benchmark

WORKFLOW_FILES = ["Snakefile", "workflow", "config", "data", "envs", "profiles", "requirements"]
BIN = Path(sys.executable).parent


def scratch(root: Path, schedule: str, base_cfg: dict, iterations: int) -> tuple[Path, dict]:
    work = root / schedule
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    acf = {**base_cfg["acf"], "iterations": iterations,
           "runs": {schedule: {"schedule": schedule, "importance_weights": schedule == "parallel"}}}
    overlay = {"unidetox": None, "guided": None, "acf": acf,
               "systems": {"targets": [base_cfg["acf"]["base"]], "guides": []}}
    (work / "config/bench.yaml").write_text(yaml.safe_dump(overlay))
    return work, cfgmod.validate(cfgmod.deep_merge(base_cfg, overlay))


def snakemake(work: Path, config: str, cores: int, *targets: str) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(BIN / "snakemake"), "--configfile", config, "config/bench.yaml", "--cores", str(cores), *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"snakemake failed in {work}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml", help="whose acf section and models to use")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--cores", type=int, default=3, help="Snakemake --cores (>= 3 lets an iteration overlap)")
    ap.add_argument("--workdir", default=str(REPO / ".cache/benchmarks/acf_schedule"))
    args = ap.parse_args()
    n = args.iterations
    base_cfg = cfgmod.load(REPO / args.config)
    root = Path(args.workdir)
    walls, cfgs, works = {}, {}, {}
    for schedule in ("sequential", "parallel"):
        work, cfg = scratch(root, schedule, base_cfg, n)
        # materialising the model is not part of the schedule: done (or copied from the workflow's) untimed
        snakemake(work, args.config, args.cores, *{f"results/models/{m}" for m in (cfg["acf"]["base"],
                                                                                   cfg["acf"]["nado"]["backbone"])})
        art = plan.run_artifacts(cfg, schedule)
        walls[schedule] = snakemake(work, args.config, args.cores, *art["samples"], *art["nado"], *art["models"])
        cfgs[schedule], works[schedule] = cfg, work
        print(f"{schedule}: {len(plan.schedule_jobs(cfgs[schedule], schedule))} jobs, {walls[schedule]:.1f} s")

    def measured(schedule: str) -> tuple[dict, dict]:
        jobs = plan.schedule_jobs(cfgs[schedule], schedule)
        files = plan.benchmark_files(cfgs[schedule], schedule)
        return jobs, {j: read_benchmark(works[schedule] / f)["s"] for j, f in files.items()}

    seq_jobs, seq_s = measured("sequential")
    par_jobs, par_s = measured("parallel")
    seq_path = plan.critical_path(seq_jobs, {j: 1.0 for j in seq_jobs})[0]
    par_path = plan.critical_path(par_jobs, {j: 1.0 for j in par_jobs})[0]
    weighted = plan.critical_path(par_jobs, par_s)[0] / sum(seq_s.values())
    emit(iterations=n, cores=os.cpu_count() or 0, snakemake_cores=args.cores, sequential_s=walls["sequential"],
         parallel_s=walls["parallel"], critical_path_sequential=int(seq_path), critical_path_parallel=int(par_path),
         ideal_weighted=weighted, ideal=(n + 2) / (3 * n),
         parallel_vs_sequential=walls["parallel"] / walls["sequential"])


if __name__ == "__main__":
    main()
