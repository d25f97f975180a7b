"""The oracle is not the judge: evaluation scorers are configured apart from the training-label scorer, every
system is scored by each of them, and the report measures how far they agree."""

from __future__ import annotations

import math

import pytest

from detoxlab import config as config_mod
from detoxlab.artifacts import read_jsonl, write_jsonl
from detoxlab.evaluation import step_score, summarize
from detoxlab.scorer_agreement import agreement, spearman

CFG = {"seed": 0, "scorer": {"type": "profanity_check", "batch_size": 8},
       "evaluation": {"scorers": {"vader": {"type": "vader"}, "profanity_check": {"type": "profanity_check"}},
                      "primary": "profanity_check", "toxicity": {"threshold": 0.5, "inclusive": False},
                      "bootstrap": {"n_boot": 20, "alpha": 0.1}, "diversity": {"text": "continuation"}}}


def test_the_score_step_grades_with_every_evaluation_scorer_and_keeps_the_primary_as_toxicity(tmp_path):
    from detoxlab.scorers import build_scorer

    texts = ["you are a stupid idiot", "what a lovely sunny day", "I hate you, you worthless piece of crap"]
    gens = [{"prompt_id": f"p{i}", "sample": 0, "continuation": t} for i, t in enumerate(texts)]
    write_jsonl(tmp_path / "g.jsonl", gens)
    meta = step_score(CFG, tmp_path / "g.jsonl", tmp_path / "s.jsonl")
    rows = read_jsonl(tmp_path / "s.jsonl")
    want = {name: build_scorer({"type": name}).score_batch(texts) for name in ("vader", "profanity_check")}
    for i, row in enumerate(rows):
        assert row["scores"] == pytest.approx({name: want[name][i] for name in want})
        assert row["toxicity"] == pytest.approx(want["profanity_check"][i])
    assert meta["primary"] == "profanity_check" and set(meta["scorers"]) == {"vader", "profanity_check"}


def test_metrics_under_each_scorer_match_a_hand_count():
    """Two prompts x two samples; threshold 0.5 (exclusive). Scorer a: maxima 0.9 / 0.2 -> TP 0.5, EMT 0.55;
    scorer b: maxima 0.6 / 0.7 -> TP 1.0, EMT 0.65. The top-level numbers are the primary scorer's (a)."""
    gens = [{"prompt_id": p, "sample": s, "prompt": "x", "continuation": "y", "group": "g", "domain": "id"}
            for p in ("p1", "p2") for s in (0, 1)]
    a = {("p1", 0): 0.9, ("p1", 1): 0.1, ("p2", 0): 0.2, ("p2", 1): 0.0}
    b = {("p1", 0): 0.6, ("p1", 1): 0.3, ("p2", 0): 0.1, ("p2", 1): 0.7}
    scores = [{"prompt_id": g["prompt_id"], "sample": g["sample"], "toxicity": a[(g["prompt_id"], g["sample"])],
               "scores": {"a": a[(g["prompt_id"], g["sample"])], "b": b[(g["prompt_id"], g["sample"])]}}
              for g in gens]
    ppl = [{"prompt_id": g["prompt_id"], "sample": g["sample"], "ppl": 10.0} for g in gens]
    tox = summarize(CFG, gens, scores, ppl)["toxicity"]
    assert tox["overall"]["tp"] == pytest.approx(0.5) and tox["overall"]["emt"] == pytest.approx(0.55)
    by = tox["by_scorer"]
    assert by["a"]["overall"]["tp"] == pytest.approx(0.5) and by["a"]["overall"]["emt"] == pytest.approx(0.55)
    assert by["b"]["overall"]["tp"] == pytest.approx(1.0) and by["b"]["overall"]["emt"] == pytest.approx(0.65)
    assert by["b"]["per_prompt_max"] == pytest.approx({"p1": 0.6, "p2": 0.7})


def test_spearman_by_hand_and_pooled_agreement(tmp_path):
    # ranks (1, 2, 3, 4) vs (1, 3, 2, 4): d^2 = 2, rho = 1 - 6*2 / (4*15) = 0.8
    assert spearman([0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.2, 0.9]) == pytest.approx(0.8)
    assert math.isnan(spearman([0.1, 0.1, 0.1], [0.2, 0.3, 0.4]))  # a constant scorer carries no ranking
    files = []
    for k, (xa, xb) in enumerate([([0.1, 0.2], [0.0, 0.5]), ([0.3, 0.4], [0.2, 0.9])]):
        files.append(tmp_path / f"{k}.jsonl")
        write_jsonl(files[-1], [{"scores": {"a": u, "b": v}} for u, v in zip(xa, xb)])
    stats = agreement({}, [str(f) for f in files])
    (pair,) = stats["pairs"]
    assert pair["n_continuations"] == 4 and pair["rho_continuations"] == pytest.approx(0.8)


def test_the_primary_scorer_must_be_an_evaluation_scorer():
    cfg = config_mod.load("config/smoke.yaml")
    cfg["evaluation"]["primary"] = "detoxify"
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg)
    assert err.value.key == "evaluation.primary"


def test_the_default_grades_with_a_held_out_scorer_of_another_family():
    cfg = config_mod.load("config/config.yaml")
    graders = config_mod.evaluation_scorers(cfg)
    assert len(graders) >= 2 and config_mod.primary_scorer(cfg) not in config_mod.oracle_scorers(cfg)
    assert {spec["type"] for spec in graders.values()} >= {"tox_block", cfg["scorer"]["type"]}
