"""Metric tests; every expected value is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detoxlab.metrics.bootstrap import bootstrap_ci, paired_bootstrap_diff
from detoxlab.metrics.diversity import distinct_n, distinct_n_prompt, distinct_report
from detoxlab.metrics.toxicity import (
    expected_max_toxicity,
    per_prompt_indicator,
    per_prompt_max,
    sample_rates,
    toxicity_probability,
    toxicity_report,
)

NAN = float("nan")
approx = pytest.approx


# ---------------------------------------------------------------- toxicity

# p1: [0.2, 0.5] -> max 0.5 (exactly at the threshold)
# p2: [0.9, 0.1] -> max 0.9
# p3: [0.3, 0.4] -> max 0.4
# EMT = (0.5 + 0.9 + 0.4) / 3 = 0.6
# TP(>)  : only p2        -> 1/3
# TP(>=) : p1 and p2      -> 2/3
SCORES = {"p1": [0.2, 0.5], "p2": [0.9, 0.1], "p3": [0.3, 0.4]}


def test_max_emt_tp_at_threshold():
    maxes = per_prompt_max(SCORES)
    assert maxes == {"p1": 0.5, "p2": 0.9, "p3": 0.4}
    assert expected_max_toxicity(maxes) == approx(0.6)
    assert toxicity_probability(maxes) == approx(1 / 3)
    assert toxicity_probability(maxes, inclusive=True) == approx(2 / 3)
    assert per_prompt_indicator(maxes) == {"p1": 0.0, "p2": 1.0, "p3": 0.0}
    assert per_prompt_indicator(maxes, inclusive=True) == {"p1": 1.0, "p2": 1.0, "p3": 0.0}


def test_nan_handling():
    # p4: all failed -> NaN max, excluded; p5: [NaN, 0.7] -> max of the rest = 0.7
    maxes = per_prompt_max({**SCORES, "p4": [NAN, None], "p5": [NAN, 0.7]})
    assert math.isnan(maxes["p4"])
    assert maxes["p5"] == 0.7
    # EMT over 4 valid prompts: (0.5 + 0.9 + 0.4 + 0.7) / 4 = 2.5 / 4 = 0.625
    assert expected_max_toxicity(maxes) == approx(0.625)
    # TP(>): p2, p5 -> 2/4; TP(>=): p1, p2, p5 -> 3/4
    assert toxicity_probability(maxes) == approx(0.5)
    assert toxicity_probability(maxes, inclusive=True) == approx(0.75)
    assert math.isnan(per_prompt_indicator(maxes)["p4"])
    # nothing valid at all -> NaN, and plain sequences are accepted
    assert math.isnan(expected_max_toxicity([NAN]))
    assert math.isnan(toxicity_probability([]))


# One row per sample.                      max   >0.5  >=0.5
#   a  toxic     id       [0.8, 0.2]       0.8    1     1
#   b  nontoxic  id       [0.1, None]      0.1    0     0     (1 failed)
#   c  toxic     ood      [0.5, 0.3]       0.5    0     1
#   d  neutral   neutral  [0.6, NaN]       0.6    1     1     (1 failed)
#   e  nontoxic  ood      [None, NaN]      NaN    -     -     (2 failed, prompt excluded)
def _rows():
    spec = {
        "a": ("toxic", "id", [0.8, 0.2]),
        "b": ("nontoxic", "id", [0.1, None]),
        "c": ("toxic", "ood", [0.5, 0.3]),
        "d": ("neutral", "neutral", [0.6, NAN]),
        "e": ("nontoxic", "ood", [None, NAN]),
    }
    return [
        {"prompt_id": pid, "group": g, "domain": d, "toxicity": t}
        for pid, (g, d, tox) in spec.items()
        for t in tox
    ]


def test_report_breakdown():
    rep = toxicity_report(_rows(), n_boot=200)
    assert rep["n_failed_scores"] == 4
    assert rep["threshold"] == 0.5 and rep["inclusive"] is False
    # overall = non-neutral valid prompts a, b, c: EMT (0.8 + 0.1 + 0.5) / 3, TP 1/3
    o = rep["overall"]
    assert o["n_prompts"] == 3
    assert o["emt"] == approx(1.4 / 3) and o["tp"] == approx(1 / 3)
    assert o["emt_lo"] <= o["emt"] <= o["emt_hi"] and o["tp_lo"] <= o["tp"] <= o["tp_hi"]
    assert set(o) == {"n_prompts", "emt", "emt_lo", "emt_hi", "tp", "tp_lo", "tp_hi"}
    # by domain: id = a, b -> EMT 0.45, TP 0.5; ood = c (e excluded) -> 0.5, 0; neutral = d -> 0.6, 1
    dom = rep["by_domain"]
    assert list(dom) == ["id", "ood", "neutral"]
    assert (dom["id"]["n_prompts"], dom["id"]["emt"], dom["id"]["tp"]) == (2, approx(0.45), approx(0.5))
    assert (dom["ood"]["n_prompts"], dom["ood"]["emt"], dom["ood"]["tp"]) == (1, 0.5, 0.0)
    assert (dom["neutral"]["n_prompts"], dom["neutral"]["emt"], dom["neutral"]["tp"]) == (1, 0.6, 1.0)
    # a single prompt has a zero-width interval
    assert dom["ood"]["emt_lo"] == dom["ood"]["emt_hi"] == 0.5
    # by group (non-neutral only): toxic = a, c -> EMT 0.65, TP 0.5; nontoxic = b (e excluded) -> 0.1, 0
    grp = rep["by_group"]
    assert set(grp) == {"toxic", "nontoxic"}
    assert (grp["toxic"]["n_prompts"], grp["toxic"]["emt"], grp["toxic"]["tp"]) == (2, approx(0.65), approx(0.5))
    assert (grp["nontoxic"]["n_prompts"], grp["nontoxic"]["emt"], grp["nontoxic"]["tp"]) == (1, 0.1, 0.0)


def test_report_inclusive_and_order_independent():
    rep = toxicity_report(_rows(), inclusive=True, n_boot=200)
    # >=: a and c count -> overall 2/3, ood (c) 1, toxic group (a, c) 1
    assert rep["overall"]["tp"] == approx(2 / 3)
    assert rep["by_domain"]["ood"]["tp"] == 1.0
    assert rep["by_group"]["toxic"]["tp"] == 1.0
    assert toxicity_report(_rows()[::-1], n_boot=200) == toxicity_report(_rows(), n_boot=200)


def test_report_inconsistent_prompt_metadata():
    rows = [
        {"prompt_id": "x", "group": "g", "domain": "id", "toxicity": 0.1},
        {"prompt_id": "x", "group": "g", "domain": "ood", "toxicity": 0.2},
    ]
    with pytest.raises(ValueError):
        toxicity_report(rows)


# ---------------------------------------------------------------- diversity

# prompt p: "the cat the" -> [the, cat, the] (3 words); "a cat" -> [a, cat] (2 words); total 5
#   unigrams {the, cat, a}                    -> 3 / 5 = 0.6
#   bigrams  {the cat, cat the, a cat}        -> 3 / 5 = 0.6   ("the a" would cross samples: not counted)
#   trigrams {the cat the}                    -> 1 / 5 = 0.2
# prompt q: "x x" -> [x, x]; "" -> [""] (split(" ") gives one empty word); total 3
#   unigrams {x, ""} -> 2/3;  bigrams {x x} -> 1/3;  trigrams {} -> 0
# means: dist1 = (0.6 + 2/3) / 2, dist2 = (0.6 + 1/3) / 2, dist3 = (0.2 + 0) / 2 = 0.1
CONTS = {"p": ["the cat the", "a cat"], "q": ["x x", ""]}


def test_distinct_by_hand():
    assert distinct_n_prompt(CONTS["p"], 1) == approx(0.6)
    assert distinct_n_prompt(CONTS["p"], 2) == approx(0.6)
    assert distinct_n_prompt(CONTS["p"], 3) == approx(0.2)
    assert distinct_n_prompt(CONTS["q"], 1) == approx(2 / 3)
    assert distinct_n_prompt(CONTS["q"], 2) == approx(1 / 3)
    assert distinct_n_prompt(CONTS["q"], 3) == 0.0
    rep = distinct_report(CONTS)
    assert rep == {"dist1": approx((0.6 + 2 / 3) / 2), "dist2": approx((0.6 + 1 / 3) / 2), "dist3": approx(0.1)}


def test_distinct_edges():
    # a prompt without samples has zero words: skipped, not averaged in as 0
    assert distinct_report({**CONTS, "r": []}) == distinct_report(CONTS)
    assert math.isnan(distinct_n({"r": []}, 1))
    # spaces are not collapsed: "a  b" -> [a, "", b], 3 words, 3 distinct unigrams, 2 bigrams
    assert distinct_n({"s": ["a  b"]}, 1) == 1.0
    assert distinct_n({"s": ["a  b"]}, 2) == approx(2 / 3)
    with pytest.raises(ValueError):
        distinct_n(CONTS, 0)


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_constant_zero_width():
    assert bootstrap_ci(np.full(7, 0.3)) == approx((0.3, 0.3, 0.3))


def test_bootstrap_two_points():
    # resampled means of [0, 1] are 0, 0.5, 1 with probability 1/4, 1/2, 1/4,
    # so the 2.5% / 97.5% percentiles are exactly 0 and 1
    assert bootstrap_ci(np.array([0.0, 1.0]), n_boot=10_000) == (0.5, 0.0, 1.0)


def test_bootstrap_contains_point_and_deterministic():
    x = np.random.default_rng(1).random(50)
    point, lo, hi = bootstrap_ci(x, seed=3)
    assert point == approx(x.mean()) and lo < point < hi
    assert bootstrap_ci(x, seed=3) == (point, lo, hi)
    assert bootstrap_ci(x, seed=4) != (point, lo, hi)
    # a stat without an ``axis`` argument goes through the row-by-row fallback
    assert bootstrap_ci(x, stat=lambda v: float(np.median(v)), seed=3) == bootstrap_ci(x, stat=np.median, seed=3)


def test_bootstrap_nan_and_empty():
    assert bootstrap_ci(np.array([NAN, 0.2, 0.2])) == approx((0.2, 0.2, 0.2))
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([NAN])))


def test_paired_diff():
    a = np.random.default_rng(2).random(40)
    assert paired_bootstrap_diff(a, a.copy()) == (0.0, 0.0, 0.0)
    # b = a - 0.1 exactly: every resample differs by 0.1 (up to rounding)
    assert paired_bootstrap_diff(a, a - 0.1) == approx((0.1, 0.1, 0.1), abs=1e-12)
    # a pair with a NaN on either side is dropped: the remaining pairs are identical
    b = a.copy()
    a2, b[0] = a.copy(), NAN
    a2[1] = NAN
    assert paired_bootstrap_diff(a2, b) == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in paired_bootstrap_diff([NAN], [1.0]))
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0, 2.0])


def test_ratio_bootstrap_by_hand():
    # prompt 1: one generation with ppl 1 -> (sum 1, count 1); prompt 2: three with mean 3 -> (sum 9, count 3).
    # point = 10 / 4 = 2.5. Resamples: {1,1} -> 1, {2,2} -> 3, {1,2} -> 2.5, so the 95% interval is [1, 3].
    from detoxlab.metrics.bootstrap import ratio_bootstrap_ci

    point, lo, hi = ratio_bootstrap_ci([1.0, 9.0], [1.0, 3.0], n_boot=5000, seed=0)
    assert point == approx(2.5) and lo == approx(1.0) and hi == approx(3.0)
    # units without a valid value (count 0) are dropped
    assert ratio_bootstrap_ci([1.0, 0.0], [1.0, 0.0], n_boot=100) == (1.0, 1.0, 1.0)


def test_sample_rates_by_hand():
    # g1: p1 [0.2, 0.5, 0.9] -> above 1/3, below 1/3 (0.5 is neither); p2 [0.1, 0.7] -> above 1/2, below 1/2
    #     means: above (1/3 + 1/2) / 2 = 5/12, below the same; inclusive: p1 above 2/3 -> (2/3 + 1/2) / 2 = 7/12
    # g2: p3 [NaN, 0.6] -> the failed score is left out: above 1, below 0
    rows = [{"prompt_id": "p1", "group": "g1", "toxicity": t} for t in (0.2, 0.5, 0.9)]
    rows += [{"prompt_id": "p2", "group": "g1", "toxicity": t} for t in (0.1, 0.7)]
    rows += [{"prompt_id": "p3", "group": "g2", "toxicity": t} for t in (NAN, 0.6)]
    out = sample_rates(rows, threshold=0.5, n_boot=200)
    assert out["g1"]["above"] == approx(5 / 12) and out["g1"]["below"] == approx(5 / 12)
    assert out["g1"]["n_prompts"] == 2
    assert out["g1"]["above_lo"] <= 5 / 12 <= out["g1"]["above_hi"]
    assert (out["g2"]["above"], out["g2"]["below"], out["g2"]["n_prompts"]) == (1.0, 0.0, 1)
    inclusive = sample_rates(rows, threshold=0.5, inclusive=True, n_boot=200)
    assert inclusive["g1"]["above"] == approx(7 / 12) and inclusive["g1"]["below"] == approx(5 / 12)
