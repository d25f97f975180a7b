"""What each reward-model variant trains on, how its learning rate is chosen, and the budgets it is given."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from detoxlab import config as config_mod
from detoxlab.rewards.model import build
from detoxlab.rewards.plan import VARIANTS
from detoxlab.rewards.steps import learning_rates, training_objective
from detoxlab.rewards.train import objective_loss, prepare, train, train_lr_grid, validate, validation_loss
from detoxlab.training.finetune import FinetuneSettings
from tests.conftest import REPO
from tests.test_rewards import _examples, _randomise


@pytest.fixture(scope="module")
def tok(tiny_llama):
    return tiny_llama[1]


@pytest.fixture(scope="module")
def teacher(tiny_llama_dir):
    rad, _ = build(tiny_llama_dir, 1, "rad", ["toxicity"])
    return _randomise(rad)


@pytest.mark.parametrize("variant, regularised, baseline", [("arm_distilled", True, True),
                                                             ("arm_noreg", False, True),
                                                             ("arm_nobaseline", False, False)])
def test_ablations_drop_the_regulariser_then_the_baseline_too(tiny_llama_dir, tok, teacher, variant, regularised,
                                                               baseline):
    """ARM paper section 4.4: no regulariser; no regulariser and no baseline. Checked on the built objective and
    model, as the training step builds them."""
    v = VARIANTS[variant]
    rm, _ = build(tiny_llama_dir, 1, v.kind, ["toxicity"], v.baseline)
    _randomise(rm, 2)
    objective = training_objective(variant, {"reg_weight": 1.0})
    data = prepare(rm, _examples(tok, 8), tok.pad_token_id, objective=objective["objective"], teacher=teacher,
                   frozen=True)
    idx = range(len(data))
    full = objective_loss(rm, data, idx, tok.pad_token_id, generator=torch.Generator().manual_seed(0), **objective)
    data_term = objective_loss(rm, data, idx, tok.pad_token_id, objective["objective"])
    assert objective["objective"] == "distill"
    assert (full.item() > data_term.item() + 1e-6) == regularised  # the regulariser's term is positive when on
    h = torch.cat(data.feats)
    assert bool(rm.baseline_scores(h).abs().sum() > 0) == baseline
    assert ("w" in {n for n, p in rm.named_parameters() if any(p is q for q in rm.head_parameters())}) == baseline
    assert ("no baseline" in v.display) == (not baseline) and ("no regulariser" in v.display) == (not regularised)


@pytest.mark.parametrize("objective", ["labels", "distill"])
def test_lr_grid_keeps_the_run_with_the_lowest_validation_loss(tiny_llama_dir, tok, teacher, objective):
    train_ex, val_ex = _examples(tok, 24), _examples(tok, 8)[1::2]
    lrs = [1e-5, 1e-3, 1e-2, 1e-1]  # the best is inside the grid (labels 1e-3, distill 1e-2)
    settings = FinetuneSettings(lr=lrs[0], batch_size=8, epochs=3, train_layers=0, grad_clip=1.0)
    kw = {"objective": objective, "reg_weight": 1.0, "teacher": teacher if objective == "distill" else None,
          "progress": False}
    rm, _ = build(tiny_llama_dir, 1, "arm", ["toxicity"])
    out = train_lr_grid(rm, train_ex, val_ex, settings, lrs, tok.pad_token_id, **kw)
    runs = out["lr_selection"]
    assert [r["lr"] for r in runs] == lrs
    for r in runs:  # every recorded loss is what that lr reaches alone, from the same start
        alone, _ = build(tiny_llama_dir, 1, "arm", ["toxicity"])
        train(alone, train_ex, replace(settings, lr=r["lr"]), tok.pad_token_id, **kw)
        held = prepare(alone, val_ex, tok.pad_token_id, objective=objective, teacher=kw["teacher"], frozen=True)
        assert validation_loss(alone, held, tok.pad_token_id, objective) == pytest.approx(r["validation_loss"])
    losses = [r["validation_loss"] for r in runs]
    assert len({round(x, 6) for x in losses}) == len(lrs)  # the grid makes a difference here
    best = min(runs, key=lambda r: r["validation_loss"])
    assert out["lr"] == best["lr"] != lrs[-1]  # not simply the last run left in the model
    held = prepare(rm, val_ex, tok.pad_token_id, objective=objective, teacher=kw["teacher"], frozen=True)
    assert validation_loss(rm, held, tok.pad_token_id, objective) == pytest.approx(best["validation_loss"])
    if objective == "distill":  # the criterion is the report's "MSE to teacher"
        got = validate(rm, val_ex, tok.pad_token_id, 0, teacher)["teacher_mse"]
        assert got == pytest.approx(best["validation_loss"], rel=1e-4)


def test_a_diverging_lr_loses_and_is_recorded(tiny_llama_dir, tok):
    rm, _ = build(tiny_llama_dir, 1, "arm", ["toxicity"])
    settings = FinetuneSettings(lr=1e-3, batch_size=8, epochs=2, train_layers=0, grad_clip=None)
    out = train_lr_grid(rm, _examples(tok, 16), _examples(tok, 4), settings, [1e-3, 1e30], tok.pad_token_id,
                        progress=False)
    assert out["lr"] == 1e-3 and out["lr_selection"][1]["validation_loss"] is None
    assert "diverged" in out["lr_selection"][1]["diverged"]
    assert all(torch.isfinite(p).all() for p in rm.parameters()) and not rm.training
    with pytest.raises(ValueError, match="needs validation texts"):
        train_lr_grid(rm, _examples(tok, 16), [], settings, [1e-3, 1e-4], tok.pad_token_id, progress=False)


def test_teacher_and_students_get_the_same_budget_and_an_lr_grid(monkeypatch):
    monkeypatch.chdir(REPO)
    g = config_mod.load(REPO / "config" / "config.yaml")["guided"]
    t, s = g["teacher"], g["student"]
    for key in ("epochs", "batch_size", "max_steps", "warmup_steps", "max_length", "train_layers", "grad_clip"):
        assert t[key] == s[key], key
    assert len(learning_rates(t)) > 1 and len(learning_rates(s)) > 1
    paper = config_mod.load(REPO / "config" / "paper.yaml")["guided"]  # the papers' own single values
    assert learning_rates(paper["teacher"]) == [2e-5] and learning_rates(paper["student"]) == [1e-5]
