"""RAD and ARM in the workflow: the whole method on the smoke config's tiny models, and the paper config's DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detoxlab.rewards.plan import VARIANTS
from tests.workflow_utils import copy_workflow, run_with_overlay, snakemake

FAST = ("evaluation:\n  mmlu:\n    enabled: false\nsystems:\n  targets: [tiny_llama]\n  guides: []\nunidetox: null\n"
        "acf: null\n")


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory) -> Path:
    return run_with_overlay(tmp_path_factory, "guided", FAST)


def _json(path: Path):
    return json.loads(path.read_text())


def test_reward_data_comes_from_in_domain_training_prompts_and_is_split_by_prompt(guided_run):
    rows = [json.loads(line) for line in (guided_run / "results/guided/toxicity/reward_data.jsonl").read_text()
            .splitlines()]
    prompts = [json.loads(line) for line in (guided_run / "data/prompts/toxicity.jsonl").read_text().splitlines()]
    in_domain = {p["id"] for p in prompts if p["split"] == "train" and p["domain"] == "id"}
    # out of domain means unseen: the reward model never sees an OOD or neutral prompt
    assert rows and {r["prompt_id"] for r in rows} <= in_domain
    provenance = _json(guided_run / "results/guided/toxicity/reward_data.meta.json")["provenance"]
    assert provenance["domains"] == ["id"] and provenance["n_prompts"] == len(in_domain)
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], set()).add(r["split"])
        assert 0.0 <= r["labels"]["toxicity"] <= 1.0
    assert all(len(s) == 1 for s in by_prompt.values())  # no prompt on both sides of the split
    assert {"train", "validation"} == {r["split"] for r in rows}


def test_every_variant_is_trained_and_students_record_their_teacher(guided_run):
    for variant in VARIANTS:
        m = _json(guided_run / f"results/rewards/toxicity.{variant}/manifest.json")
        assert m["training"]["steps"] > 0 and m["spec"]["layers"] == 1
        assert "mse" in m["training"]["validation"]
        assert ("teacher" in m["inputs"]) == (VARIANTS[variant].objective == "distill")
        sel = m["training"]["lr_selection"]  # the smoke students choose from two lrs, the teacher has one
        assert [r["lr"] for r in sel["runs"]] == sel["grid"] == ([0.01] if variant == "rad" else [0.01, 0.001])
        assert sel["chosen"] == m["training"]["lr"] == min(sel["runs"], key=lambda r: r["validation_loss"])["lr"]
    guide = _json(guided_run / "results/guides/toxicity.arm_distilled/guide.json")
    assert guide["type"] == "arm" and (guided_run / "results/guides/toxicity.arm_distilled" / guide["reward_model"]
                                       / "reward.json").is_file()
    chosen = _json(guided_run / "results/guides/toxicity.rad/manifest.json")["selection"]
    assert chosen["chosen"] in {"k4.beta0", "k4.beta5"} and len(chosen["candidates"]) == 2


def test_report_has_the_curves_the_tracking_verdict_and_the_cost(guided_run):
    report = guided_run / "results/report"
    text = (report / "table.md").read_text()
    assert "## RAD and ARM: reward-guided decoding" in text and "matches its RAD teacher within" in text
    assert "| toxicity.arm_distilled | validation MSE to the teacher's prefix scores | 0.01: " in text
    for name in ("guided_tradeoff.png", "reward_distribution.png"):
        assert (report / name).stat().st_size > 5000
    summary = _json(report / "summary.json")
    assert summary["guided"]["n"] == 2  # one (k, beta) point per beta of the grid
    rows = {r["system"]: r for r in summary["systems"]}
    assert rows["tiny_llama--toxicity.rad"]["backbone_rows_per_step"] == 4
    assert rows["tiny_llama--toxicity.arm_distilled"]["backbone_rows_per_step"] == 1
    # beta = 0 is plain top-k sampling for every variant: identical generations
    val = guided_run / "results/eval/validation"
    rad0 = (val / "tiny_llama--toxicity.rad.k4.beta0/generations.jsonl").read_text()
    assert rad0 == (val / "tiny_llama--toxicity.arm_labels.k4.beta0/generations.jsonl").read_text()


def test_sentiment_is_a_curve_on_its_own_prompts_and_scorer(guided_run):
    evalset = guided_run / "results/eval/sentiment.test"
    systems = sorted(p.name for p in evalset.iterdir())
    assert systems == ["tiny_llama--none", "tiny_llama--sentiment.arm_distilled.k4.beta5",
                       "tiny_llama--sentiment.rad.k4.beta5"]
    gens = [json.loads(line) for line in (evalset / "tiny_llama--none/generations.jsonl").read_text().splitlines()]
    prompts = {json.loads(line)["id"]: json.loads(line)
               for line in (guided_run / "data/prompts/sentiment.jsonl").read_text().splitlines()}
    assert {prompts[g["prompt_id"]]["group"] for g in gens} == {"negative", "neutral"}
    assert all(prompts[g["prompt_id"]]["split"] == "test" for g in gens)
    assert len(gens) == 6 * 2  # 3 prompts of each of the two groups, 2 samples each
    assert _json(evalset / "tiny_llama--none/scores.meta.json")["scorer"]["type"] == "vader"
    m = _json(evalset / "tiny_llama--sentiment.rad.k4.beta5/metrics.json")
    assert set(m["toxicity"]["sample_rates"]) == {"negative", "neutral"}
    reward_rows = (guided_run / "results/guided/sentiment/reward_data.jsonl").read_text().splitlines()
    assert all("negativity" in json.loads(r)["labels"] for r in reward_rows)
    report = guided_run / "results/report"
    assert "### Attribute `sentiment`: positive rate vs perplexity across beta" in (report / "table.md").read_text()
    assert (report / "sentiment_curve.png").stat().st_size > 5000
    curve = _json(report / "summary.json")["guided"]["curves"]["sentiment"]["rows"]
    assert [r["beta"] for r in curve] == [None, 5.0, 5.0]
    assert set(curve[0]["rates"]) == {"negative", "neutral"}


def test_paper_config_requests_gpus_for_reward_models(tmp_path):
    work = copy_workflow(tmp_path / "paper")
    proc = snakemake(work, "-n", "--configfile", "config/paper.yaml", "--cores", "1", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for rule in ("reward_data", "train_reward"):
        block = out[out.index(f"rule {rule}:"):][:2000]
        assert "gpu=1" in block
    assert "toxicity.rad.k40.beta300" in out and "toxicity.arm_distilled.k20.beta10" in out
    # the sentiment task: DExperts prompts, the SST-2 classifier as scorer, a curve on its own evaluation set
    assert "results/eval/sentiment.test/gpt2_large--sentiment.arm_labels.k40.beta300/metrics.json" in out
    assert "results/guided/sentiment/reward_data.jsonl" in out
