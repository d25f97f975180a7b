"""The guided plan's evaluation sets: an attribute's own prompts, scorer and groups reach the evaluation steps."""

from __future__ import annotations

import copy

import pytest

from detoxlab import config as config_mod
from detoxlab.evaluation import load_prompt_set
from detoxlab.rewards import plan
from tests.conftest import REPO


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.chdir(REPO)
    return config_mod.load(REPO / "config" / "smoke.yaml")


def test_attribute_set_swaps_prompts_scorer_groups_and_samples(cfg):
    assert plan.curve_attributes(cfg) == ["sentiment"]
    assert plan.eval_set(cfg, "sentiment") == "sentiment.test"
    view, split = plan.split_view(cfg, "sentiment.test")
    assert split == "test" and view["scorer"]["type"] == "vader"
    assert view["prompts"]["path"] == "data/prompts/sentiment.jsonl"
    assert view["generation"]["samples_per_prompt"] == 2
    prompts = load_prompt_set(view, split)
    assert {p["group"] for p in prompts} == {"negative", "neutral"}
    assert len(prompts) == 6 and all(p["split"] == "test" for p in prompts)  # max_per_group 3 of each group
    assert cfg["scorer"]["type"] != "vader" and "groups" not in cfg["prompts"]  # the config itself is untouched


def test_project_sets_pass_through_and_unknown_attributes_fail(cfg):
    assert plan.split_view(cfg, "validation") == (cfg, "validation")
    with pytest.raises(ValueError, match="toxicity"):
        plan.split_view(cfg, "toxicity.test")  # the main attribute uses the project's validation/test protocol
    with pytest.raises(ValueError, match="nosuch"):
        plan.split_view(cfg, "nosuch.test")


def test_curve_systems_are_the_base_and_every_grid_point(cfg):
    systems = plan.curve_systems(cfg, "sentiment")
    assert systems[0] == ("tiny_llama", "none")
    # distilled students bring their teacher: rad and arm_distilled at k 4, beta 5
    assert [g for _, g in systems[1:]] == ["sentiment.rad.k4.beta5", "sentiment.arm_distilled.k4.beta5"]
    assert plan.choices(cfg) and all(c.attribute == plan.MAIN_ATTRIBUTE for c in plan.choices(cfg))


def test_validation_uses_the_tuning_subset_of_prompts(cfg):
    sub = copy.deepcopy(cfg)
    sub["prompts"]["max_per_group"] = None
    full = load_prompt_set(sub, "validation")
    sub["tuning"]["max_per_group"] = 2
    fewer = load_prompt_set(sub, "validation")
    groups = {p["group"] for p in full}
    assert len(fewer) == 2 * len(groups) and {p["id"] for p in fewer} < {p["id"] for p in full}
    assert load_prompt_set(sub, "test") == load_prompt_set({**sub, "tuning": {}}, "test")  # test is untouched


def test_reward_jobs_do_not_read_how_an_attribute_is_evaluated(cfg):
    keys = plan.step_keys(cfg, "reward_data", "sentiment")
    before = config_mod.select(cfg, keys)
    changed = copy.deepcopy(cfg)
    changed["guided"]["attributes"]["sentiment"]["evaluation"].update(groups=["negative"], desired="upbeat")
    changed["guided"]["attributes"]["sentiment"]["beta"] = [1.0, 2.0]
    assert config_mod.select(changed, keys) == before  # reward data and models are not rebuilt
    view, _ = plan.split_view(changed, "sentiment.test")
    assert view["prompts"]["groups"] == ["negative"]  # ...while the evaluation set is
    changed["guided"]["attributes"]["sentiment"]["data"]["samples_per_prompt"] = 3
    assert config_mod.select(changed, keys) != before


def test_attribute_threshold_reaches_the_metrics_step(cfg):
    cfg["guided"]["attributes"]["sentiment"]["evaluation"]["threshold"] = 0.4
    view, _ = plan.split_view(cfg, "sentiment.test")
    assert view["evaluation"]["toxicity"]["threshold"] == 0.4 and plan.threshold(cfg, "sentiment") == 0.4
    assert plan.split_view(cfg, "test")[0]["evaluation"]["toxicity"]["threshold"] == 0.5


def _metrics(system: str, rate: float, ppl: float) -> dict:
    entry = {"below": rate, "below_lo": rate - 0.1, "below_hi": rate + 0.1}
    return {"system": system, "toxicity": {"sample_rates": {"negative": entry, "neutral": entry}},
            "fluency": {"ppl": ppl, "ppl_lo": ppl - 1, "ppl_hi": ppl + 1}, "diversity": {"dist2": 0.9},
            "cost": {"seconds_per_token": 0.01}}


def test_curve_section_with_the_project_prompts_from_the_report_params(cfg, tmp_path):
    from detoxlab.rewards.report import curve_section

    del cfg["guided"]["attributes"]["sentiment"]["prompts"]  # an attribute on the project's own prompts
    cfg["guided"]["attributes"]["sentiment"]["prompts"] = None
    report_cfg = config_mod.select(cfg, config_mod.STEP_KEYS["report"])  # what the report job receives
    metrics = {"tiny_llama--none": _metrics("tiny_llama--none", 0.2, 30.0),
               "tiny_llama--sentiment.rad.k4.beta5": _metrics("tiny_llama--sentiment.rad.k4.beta5", 0.6, 35.0)}
    text, summary = curve_section(report_cfg, "sentiment", metrics, tmp_path)
    assert "data/prompts/toxicity.jsonl" in text and "| base (nucleus) | – | – | 0.200 [0.100, 0.300]" in text
    assert [r["rates"]["negative"] for r in summary["rows"]] == [0.2, 0.6]
    assert (tmp_path / "sentiment_curve.png").stat().st_size > 5000
