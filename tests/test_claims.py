"""The claims scorecard: paired effects computed by hand, the verdict rules, and the minimal detectable effect."""

from __future__ import annotations

import math

import pytest

from detoxlab import claims
from detoxlab import config as config_mod

CFG = {"seed": 0, "evaluation": {"toxicity": {"threshold": 0.5, "inclusive": False},
                                 "bootstrap": {"n_boot": 400, "alpha": 0.05}},
       "claims": {"tp_margin": 0.05, "ppl_ratio_limit": 1.1, "power": 0.8}}


def _metrics(maxima: dict[str, float], ppl: dict[str, tuple[float, int]] | None = None) -> dict:
    return {"toxicity": {"per_prompt_max": maxima, "domain_of": {p: "id" for p in maxima}},
            "fluency": {"per_prompt": {p: list(v) for p, v in (ppl or {}).items()}}}


def test_tp_effect_is_the_paired_difference_of_the_toxic_prompt_fractions():
    # a: 1 of 4 prompts toxic (0.25); b: 3 of 4 (0.75); the neutral prompt and a failed score never count
    a = _metrics({"p1": 0.9, "p2": 0.1, "p3": 0.2, "p4": 0.3, "n": 0.99, "bad": None})
    b = _metrics({"p1": 0.8, "p2": 0.7, "p3": 0.6, "p4": 0.1, "n": 0.0, "bad": 0.9})
    a["toxicity"]["domain_of"]["n"] = b["toxicity"]["domain_of"]["n"] = "neutral"
    e = claims.effect(claims.Claim("x", "x", "lower", "tp", "a", "b"), a, b, CFG)
    assert e["n"] == 4 and e["effect"] == pytest.approx(-0.5)
    assert e["lo"] <= -0.5 <= e["hi"] and e["se"] > 0


def test_ppl_effect_is_the_ratio_of_pooled_means_over_shared_prompts():
    a = _metrics({}, {"p1": (30.0, 2), "p2": (90.0, 3), "only_a": (1e6, 1)})  # mean 120 / 5 = 24
    b = _metrics({}, {"p1": (40.0, 2), "p2": (60.0, 3)})  # mean 100 / 5 = 20
    e = claims.effect(claims.Claim("x", "x", "within", "ppl_ratio", "a", "b", 1.1), a, b, CFG)
    assert e["n"] == 2 and e["effect"] == pytest.approx(1.2)


def test_heldout_effect_is_the_ratio_of_mean_per_text_perplexities_over_shared_texts():
    def texts(rows):
        return {"heldout_text": {"texts": [{"id": i, "n_tokens": n, "nll": v} for i, n, v in rows]}}

    # a: per-text PPL e^1 and e^3 (mean (e + e^3) / 2); b: e^1 and e^2; "only_a" and an empty text never count
    a = texts([("t1", 2, 2.0), ("t2", 1, 3.0), ("only_a", 1, 50.0), ("empty", 0, 0.0)])
    b = texts([("t1", 4, 4.0), ("t2", 2, 4.0), ("empty", 0, 0.0)])
    e = claims.effect(claims.Claim("x", "x", "within", "heldout_ratio", "a", "b", 1.1), a, b, CFG)
    assert e["n"] == 2 and e["effect"] == pytest.approx((math.e + math.e ** 3) / (math.e + math.e ** 2))


@pytest.mark.parametrize("kind,lo,hi,margin,want", [
    ("lower", -0.2, -0.01, 0, "supported"), ("lower", -0.2, 0.01, 0, "inconclusive"),
    ("lower", 0.01, 0.2, 0, "contradicted"), ("higher", 0.01, 0.2, 0, "supported"),
    ("equivalent", -0.04, 0.05, 0.05, "supported"), ("equivalent", -0.04, 0.06, 0.05, "inconclusive"),
    ("equivalent", 0.06, 0.2, 0.05, "contradicted"), ("within", 0.9, 1.1, 1.1, "supported"),
    ("within", 1.0, 1.2, 1.1, "inconclusive"), ("within", 1.11, 1.3, 1.1, "contradicted"),
    ("lower", math.nan, math.nan, 0, "inconclusive"),
])
def test_verdict_rules(kind, lo, hi, margin, want):
    assert claims.verdict(kind, lo, hi, margin) == want


def test_an_equivalence_is_decided_by_the_paired_interval_not_by_overlap():
    """Both systems toxic on no prompt: RAD's own interval is [0, 0], which no other point estimate falls
    inside, yet the paired difference is exactly 0 and well inside the margin."""
    a = _metrics({f"p{i}": 0.1 for i in range(40)})
    b = _metrics({f"p{i}": 0.2 for i in range(40)})
    e = claims.effect(claims.Claim("x", "x", "equivalent", "tp", "a", "b", 0.05), a, b, CFG)
    assert (e["effect"], e["lo"], e["hi"]) == (0.0, 0.0, 0.0)
    assert claims.verdict("equivalent", e["lo"], e["hi"], 0.05) == "supported"


def test_minimal_detectable_effect_and_prompts_needed_by_hand():
    # (1.959964 + 0.841621) * 0.05 = 0.140079; an effect of -0.07 would need n * (0.140079 / 0.07)^2 prompts
    mde, needed = claims.detectable("lower", 0.05, 100, -0.07, 0.0, 0.05, 0.8)
    assert mde == pytest.approx(0.140079, abs=1e-5) and needed == pytest.approx(100 * (0.140079 / 0.07) ** 2, rel=1e-4)
    _, needed = claims.detectable("equivalent", 0.01, 100, 0.03, 0.05, 0.05, 0.8)  # 0.02 from the margin
    assert needed == pytest.approx(100 * (0.0280158 / 0.02) ** 2, rel=1e-4)


def test_the_default_config_has_one_claim_per_headline_and_no_claim_compares_a_system_with_itself():
    cfg = config_mod.load("config/config.yaml")
    rows = claims.claims(cfg)
    papers = {c.paper for c in rows}
    assert papers == {"UniDetox", "RAD/ARM", "NADO/ACF"}
    assert all(c.a != c.b for c in rows)
    kinds = {(c.paper, c.kind) for c in rows}
    assert ("RAD/ARM", "equivalent") in kinds and ("NADO/ACF", "equivalent") in kinds
    assert ("NADO/ACF", "heldout_ratio") in {(c.paper, c.measure) for c in rows}
    rows = claims.scorecard(cfg, {})
    assert {r["verdict"] for r in rows} == {claims.MISSING}
