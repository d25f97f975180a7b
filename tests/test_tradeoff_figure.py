"""The main figure: families, the Pareto front, and a readable image."""

from __future__ import annotations

from detoxlab import tradeoff_figure as tf


def test_pareto_front_by_hand():
    # (ppl, tp): b dominates d (lower on both); a, b, c trade off; e ties a on ppl but is more toxic
    pts = [(10.0, 0.5), (20.0, 0.2), (40.0, 0.1), (30.0, 0.3), (10.0, 0.6)]
    assert tf.pareto_front(pts) == [0, 1, 2]


def test_every_default_system_has_a_family_and_a_short_label():
    cases = {("smollm2", "none"): "base model", ("smollm2", "preprompt_long"): "prompting",
             ("smollm2.unidetox", "none"): "UniDetox and its baselines", ("smollm2", "dexperts"):
             "UniDetox and its baselines", ("smollm2", "toxicity.rad"): "reward-guided decoding",
             ("smollm2.acf.parallel.it3", "none"): "NADO / ACF", ("smollm2", "acf.nado"): "NADO / ACF"}
    for (model, guide), fam in cases.items():
        assert tf.family(model, guide) == fam
    assert tf.short_label("smollm2.acf.cls_reg", "none") == "classification FT + reg."
    assert tf.short_label("smollm2", "toxicity.arm_distilled") == "ARM (distilled)"


def test_the_figure_is_written_with_one_panel_per_base_model(tmp_path):
    row = lambda m, g, tp, ppl: {"model": m, "guide": g, "tp": tp, "tp_lo": tp - 0.05, "tp_hi": tp + 0.05,  # noqa
                                 "ppl": ppl, "ppl_lo": ppl * 0.9, "ppl_hi": ppl * 1.1, "judge": "j"}
    rows = [row("a", "none", 0.3, 40), row("a.unidetox", "none", 0.2, 38), row("b", "none", 0.3, 30),
            row("a", "toxicity.rad", 0.1, float("nan"))]  # a system without PPL is left out, not plotted at 0
    tf.plot(rows, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
