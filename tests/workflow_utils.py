"""Run the real Snakemake workflow in a scratch copy of the repository (results never land in the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

WORKFLOW_FILES = ["Snakefile", "workflow", "config", "data", "envs", "profiles", "requirements"]
BIN = Path(sys.executable).parent


def copy_workflow(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, symlinks=True)
        else:
            shutil.copy2(src, dst / name)
    return dst


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("HF_HUB_OFFLINE", "1")
    return e


def snakemake_cmd(*args: str) -> list[str]:
    return [str(BIN / "snakemake"), *args]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(*args), cwd=workdir, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def run_with_overlay(factory, name: str, overlay: str) -> Path:
    """The smoke config plus ``overlay`` (YAML text) run to completion in a scratch copy; returns the copy."""
    work = copy_workflow(factory.mktemp(name))
    (work / "config/fast.yaml").write_text(overlay)
    proc = snakemake(work, "--profile", "profiles/default", "--configfile", "config/smoke.yaml", "config/fast.yaml",
                     "--cores", "2", timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work


# the base systems only: the tests that run the workflow several times stay fast
SMOKE = ("--profile", "profiles/default", "--configfile", "config/smoke.yaml", "config/overlays/base_only.yaml",
         "--cores", "2")
