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


# the base systems only: the tests that run the workflow several times stay fast
SMOKE = ("--profile", "profiles/default", "--configfile", "config/smoke.yaml", "config/overlays/base_only.yaml",
         "--cores", "2")
