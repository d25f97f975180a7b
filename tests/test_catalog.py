"""What the Snakemake workflow catalog asks of a workflow: a license, documented config, formatted rules, a catalog
file, one schema (lint: tests/test_workflow.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else name


def test_license_file_matches_the_package_metadata():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_config_readme_is_generated_from_the_schema_and_describes_every_section():
    from detoxlab.config import schema
    from detoxlab.config_docs import render

    sch = schema()
    text = (REPO / "config" / "README.md").read_text()
    assert text == render(sch), "config/README.md is out of date: run `detoxlab config-docs`"
    for key in sch["properties"]:
        assert f"## `{key}`" in text
    assert "(no description)" not in text  # every section says what it is for
    assert "| `acf.finetune.lora` |" in text and "| `unidetox.finetune.gradient_checkpointing` |" in text


def test_snakefmt_finds_nothing_to_change():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
    res = subprocess.run([_tool("snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_catalog_file_declares_usage():
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["report"] is True and usage["software-stack-deployment"]["conda"] is True
    flags = usage["mandatory-flags"]["flags"].split()
    assert (REPO / flags[flags.index("--configfile") + 1]).is_file()


def test_one_schema_file():
    workflow_copy = REPO / "workflow" / "schemas" / "config.schema.yaml"
    package = REPO / "src" / "detoxlab" / "schemas" / "config.schema.yaml"
    assert workflow_copy.is_symlink() and workflow_copy.resolve() == package.resolve()
