"""UniDetox in the workflow: the whole method on the smoke config's tiny models, and the paper config's DAG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.workflow_utils import copy_workflow, run_with_overlay, snakemake

# smaller than the full smoke config (no MMLU, no preprompt systems) so the run stays short
FAST = ("evaluation:\n  mmlu:\n    enabled: false\nsystems:\n  targets: [tiny_llama, tiny_gemma]\n  guides: []\n"
        "guided: null\nacf: null\n")


@pytest.fixture(scope="module")
def unidetox_run(tmp_path_factory) -> Path:
    return run_with_overlay(tmp_path_factory, "unidetox", FAST)


def _json(path: Path):
    return json.loads(path.read_text())


def test_toxic_corpus_comes_from_training_prompts_only(unidetox_run):
    res = unidetox_run / "results/unidetox"
    meta = _json(res / "toxic_corpus.meta.json")
    assert meta["provenance"]["split"] == "train" and meta["n_texts"] > 0
    assert sum(meta["provenance"]["sampled_score_histogram"]["counts"]) == meta["provenance"]["n_sampled"]
    train_ids = {json.loads(line)["id"] for line in (unidetox_run / "data/prompts/toxicity.jsonl").read_text()
                 .splitlines() if json.loads(line)["split"] == "train"}
    rows = [json.loads(line) for line in (res / "toxic_corpus.jsonl").read_text().splitlines()]
    assert rows and {r["prompt_id"] for r in rows} <= train_ids


def test_models_are_deltas_of_their_base_and_selection_is_recorded(unidetox_run):
    models = unidetox_run / "results/models"
    toxic = _json(models / "tiny_llama.toxic/manifest.json")
    assert toxic["derived"]["base"] == "../tiny_llama" and toxic["training"]["steps"] > 0
    assert toxic["training"]["train_nll_after"] < toxic["training"]["train_nll_before"]
    for target in ("tiny_llama", "tiny_gemma"):
        alias = _json(models / f"{target}.unidetox/manifest.json")
        chosen = alias["selection"]["chosen"]
        assert chosen in {"lr0.001", "lr0.0001"} and len(alias["selection"]["candidates"]) == 2
        assert alias["derived"]["alias_of"] == f"../{target}.unidetox.{chosen}"
    guide = _json(unidetox_run / "results/guides/dexperts/guide.json")
    assert guide["type"] == "dexperts" and (unidetox_run / "results/guides/dexperts" / guide["expert"]).is_dir()
    distilled = [json.loads(line) for line in (unidetox_run / "results/unidetox/distilled.jsonl").read_text()
                 .splitlines()]
    assert len(distilled) == 8 and {r["seed"] for r in distilled} == {0, 1}


def test_report_has_the_unidetox_section(unidetox_run):
    report = unidetox_run / "results/report"
    md = (report / "table.md").read_text()
    for heading in ("## UniDetox and its baselines", "### Does UniDetox detoxify?", "### tiny_llama (paper",
                    "### tiny_gemma (paper", "### Hyperparameter selection", "### Distilled text analysis"):
        assert heading in md, heading
    tiny_llama = md.split("### tiny_llama (paper")[1].split("###")[0]
    for row in ("Base model", "Base samples FT", "DExperts (anti-only)", "Task Arithmetic", "LM-Steer", "UniDetox"):
        assert f"| {row} |" in tiny_llama, row
    assert "| Task Arithmetic |" not in md.split("### tiny_gemma (paper")[1].split("###")[0]
    assert (report / "unidetox_sensitivity.png").stat().st_size > 0
    verdicts = _json(report / "summary.json")["unidetox"]
    assert {v["target"] for v in verdicts} == {"tiny_llama", "tiny_gemma"}
    for v in verdicts:
        assert v["tp_diff_lo"] <= v["tp_diff"] <= v["tp_diff_hi"]
        assert re.search(rf"\*\*{v['target']}\*\*: TP\(UniDetox\)", md)


def test_paper_config_requests_gpus_for_unidetox_rules(tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(work, "-n", "--configfile", "config/paper.yaml", "--cores", "1", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]
    seen = set()
    for job in jobs:
        rule = job.split(":", 1)[0]
        if rule in {"finetune_on_text", "toxic_model", "distill", "lm_steer_train"}:
            assert "gpu=1" in job, rule
            seen.add(rule)
    assert seen == {"finetune_on_text", "toxic_model", "distill", "lm_steer_train"}
    assert "opt_6_7b.unidetox" in out and "falcon_7b.unidetox" in out and "llama2_7b.unidetox" in out
