"""`--sdm conda` on a cluster node: every rule names a conda environment, and that environment installs exactly
the pinned environment the project is tested with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="module")
def rules():
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=[REPO / "config/smoke.yaml"]),
                          snakefile=REPO / "Snakefile", workdir=REPO)
        return {r.name: (r.conda_env, Path(r.snakefile)) for r in wf._workflow.rules}


def test_every_rule_that_runs_code_names_an_existing_conda_env(rules):
    running = {name: spec for name, spec in rules.items() if name != "all"}
    assert running
    for name, (env, snakefile) in running.items():
        assert env, f"rule {name} has no conda: environment"
        assert (snakefile.parent / env).resolve().is_file(), f"rule {name}: {env} not found"


def test_the_conda_env_installs_the_lock_the_tests_run_on():
    env = yaml.safe_load((REPO / "envs/detoxlab.yaml").read_text())
    lock_text = (REPO / "requirements/lock.txt").read_text()
    python = re.search(r"python(?:_requires)?\s*=\s*\"?>=\s*(3\.\d+)", (REPO / "pyproject.toml").read_text())
    assert f"python={python.group(1)}" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-r ../requirements/lock.txt", "--no-deps", "-r ../requirements/assets.txt", "-e .."]
    # the lock pins every package exactly (torch first: its CPU build), so the env cannot resolve differently
    pins = [ln for ln in lock_text.splitlines() if ln and not ln.startswith("#")]
    assert pins[0].startswith("torch==") and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", p) for p in pins)
    for required in ("snakemake", "dvc", "transformers", "alt-profanity-check"):
        assert any(p.lower().startswith(required + "==") for p in pins), required
