"""UniDetox in the workflow: the whole method on the smoke config's tiny models, and the paper config's DAG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.workflow_utils import copy_workflow, run_with_overlay, snakemake

# smaller than the full smoke config (no MMLU, no preprompt systems) so the run stays short
FAST = ("evaluation:\n  mmlu:\n    enabled: false\nsystems:\n  targets: [tiny_llama, tiny_gemma]\n  guides: []\n"
        "guided: null\nacf: null\nexport:\n  models: [tiny_gemma.unidetox, tiny_llama.lmsteer]\n")


@pytest.fixture(scope="module")
def unidetox_run(tmp_path_factory) -> Path:
    return run_with_overlay(tmp_path_factory, "unidetox", FAST)


def _json(path: Path):
    return json.loads(path.read_text())


def test_chosen_models_export_as_standard_checkpoints_with_the_reports_metrics(unidetox_run):
    from tests.test_export import detoxlab_greedy, standalone_greedy

    # a transferred UniDetox model (another architecture) and LM-Steer (folded into the output layer)
    for name in ("tiny_gemma.unidetox", "tiny_llama.lmsteer"):
        out = unidetox_run / "results/export" / name
        assert standalone_greedy(out) == detoxlab_greedy(unidetox_run / "results/models" / name)
        card = (out / "README.md").read_text()
        assert f"System `{name}--none`" in card and "| test |" in card
        assert _json(out / "manifest.json")["inputs"]["model"] == f"results/models/{name}"


def test_toxic_corpus_comes_from_in_domain_training_prompts_only(unidetox_run):
    res = unidetox_run / "results/unidetox"
    meta = _json(res / "toxic_corpus.meta.json")
    assert meta["provenance"]["split"] == "train" and meta["n_texts"] > 0
    assert sum(meta["provenance"]["sampled_score_histogram"]["counts"]) == meta["provenance"]["n_sampled"]
    prompts = [json.loads(line) for line in (unidetox_run / "data/prompts/toxicity.jsonl").read_text().splitlines()]
    in_domain = {p["id"] for p in prompts if p["split"] == "train" and p["domain"] == "id"}
    rows = [json.loads(line) for line in (res / "toxic_corpus.jsonl").read_text().splitlines()]
    # out of domain means unseen: no OOD or neutral prompt contributes toxic text (threshold 0 keeps every sample)
    assert rows and {r["prompt_id"] for r in rows} <= in_domain
    assert meta["provenance"]["domains"] == ["id"] and meta["provenance"]["n_prompts"] == len(in_domain)
    assert meta["provenance"]["groups"] == sorted({p["group"] for p in prompts if p["id"] in in_domain})


def test_models_are_deltas_of_their_base_and_selection_is_recorded(unidetox_run):
    models = unidetox_run / "results/models"
    toxic = _json(models / "tiny_llama.toxic/manifest.json")
    assert toxic["derived"]["base"] == "../tiny_llama" and toxic["training"]["steps"] > 0
    assert toxic["training"]["train_nll_after"] < toxic["training"]["train_nll_before"]
    alias = _json(models / "tiny_llama.unidetox/manifest.json")
    chosen = alias["selection"]["chosen"]
    assert chosen in {"lr0.001", "lr0.0001"} and len(alias["selection"]["candidates"]) == 2
    assert alias["derived"]["alias_of"] == f"../tiny_llama.unidetox.{chosen}"
    # the other family is fine-tuned once, at the distiller's choice: no grid of its own, nothing validated
    moved = _json(models / "tiny_gemma.unidetox/manifest.json")
    assert moved["selection"]["chosen"] == chosen and moved["selection"]["candidates"] == []
    assert moved["selection"]["transferred_from"] == "results/models/tiny_llama.unidetox"
    assert moved["params"]["lr"] == float(chosen.removeprefix("lr")) and moved["derived"]["base"] == "../tiny_gemma"
    assert moved["training"]["steps"] > 0
    assert not list(models.glob("tiny_gemma.unidetox.lr*")) and not list(models.glob("tiny_gemma.basesamples.lr*"))
    assert not list((unidetox_run / "results/eval/validation").glob("tiny_gemma.unidetox*"))
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
    # the paper's baseline rule reads UniDetox's PPL on every model, so each model's grid is built and its
    # alias reuses GPT-2 XL's choice; the baselines' selections read that grid's validation metrics
    assert re.search(r"--transfer-from results/models/gpt2_xl\.unidetox --method unidetox\s+--dirs "
                     r"results/models/opt_6_7b\.unidetox\.lr", out)
    assert re.search(r"--reference results/eval/validation/opt_6_7b\.unidetox\.lr5e-05--none/metrics\.json "
                     r"results/eval/validation/opt_6_7b\.unidetox\.lr1e-05--none/metrics\.json", out)
