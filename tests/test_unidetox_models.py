"""Derived models (deltas, aliases, LM-Steer), Task Arithmetic, grid selection and the UniDetox plan."""

from __future__ import annotations

import math

import pytest
import torch

from detoxlab import config as config_mod
from detoxlab.artifacts import ArtifactError, write_json
from detoxlab.models.alias import save_alias
from detoxlab.models.derived import attach_steer, save_derived
from detoxlab.models.registry import load_model
from detoxlab.unidetox import plan
from detoxlab.unidetox import task_arithmetic as ta
from detoxlab.unidetox.lm_steer import steered_logits, train_steer
from detoxlab.unidetox.select import choose
from tests.conftest import REPO


def test_task_arithmetic_on_tensors():
    base = {"w": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([0.5])}
    toxic = {"w": torch.tensor([2.0, 2.0, 1.0])}
    tau = ta.task_vector(base, toxic)
    assert torch.equal(tau["w"], torch.tensor([1.0, 0.0, -2.0])) and set(tau) == {"w"}
    assert torch.equal(ta.negate(base, tau, 0.5)["w"], torch.tensor([0.5, 2.0, 4.0]))
    assert torch.equal(ta.negate(base, tau, 0.0)["w"], base["w"])
    with pytest.raises(ValueError, match="architecture of the toxic model"):
        ta.check_same_architecture({"w": torch.zeros(4)}, toxic, "other", "toxic")


def test_delta_round_trip_and_alias(tiny_llama_dir, tmp_path):
    model, tok, _ = load_model(tiny_llama_dir)
    name = "model.layers.1.mlp.up_proj.weight"
    new = dict(model.named_parameters())[name].detach() + 1.0
    save_derived(tmp_path / "tiny.x", tiny_llama_dir, root="tiny_llama", delta={name: new})
    derived, _, manifest = load_model(tmp_path / "tiny.x")
    assert manifest["root"] == "tiny_llama"
    assert torch.equal(dict(derived.named_parameters())[name], new)
    other = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(dict(derived.named_parameters())[other], dict(model.named_parameters())[other])
    save_alias(tmp_path / "tiny.chosen", tmp_path / "tiny.x", root="tiny_llama")
    aliased, _, _ = load_model(tmp_path / "tiny.chosen")
    assert torch.equal(dict(aliased.named_parameters())[name], new)


def test_corrupt_delta_is_a_clear_error(tiny_llama_dir, tmp_path):
    save_derived(tmp_path / "tiny.bad", tiny_llama_dir, root="tiny_llama",
                 delta={"model.norm.weight": torch.ones(32)})
    (tmp_path / "tiny.bad" / "delta.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ArtifactError, match="corrupt tensor file"):
        load_model(tmp_path / "tiny.bad")


def test_lm_steer_epsilon_zero_equals_base(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    ids = tok(["the cat sat", "a bird"], return_tensors="pt", padding=True)
    ref = model(**ids).logits
    handle = attach_steer(model, torch.randn(32, 32), 0.0)
    assert torch.equal(model(**ids).logits, ref)
    handle.remove()


def test_lm_steer_hook_equals_steered_output_embeddings(tiny_llama_dir):
    """logits with the hook = h . e'(v) with e'(v) = e(v) - eps W e(v), computed naively."""
    model, tok, _ = load_model(tiny_llama_dir)
    ids = tok(["the cat sat on"], return_tensors="pt")
    hidden = []
    probe = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: hidden.append(a[0]))
    model(**ids)
    probe.remove()
    h = hidden[0][0]  # [T, d]
    W, eps = torch.randn(32, 32) * 0.1, 0.7
    E = model.get_output_embeddings().weight  # [V, d]
    E_steered = E - eps * (E @ W.T)  # row v: e(v) - eps W e(v)
    handle = attach_steer(model, W, eps)
    steered = model(**ids).logits[0]
    handle.remove()
    assert torch.allclose(steered, h @ E_steered.T, atol=1e-5)


def test_lm_steer_training_fits_the_corpus(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    texts = ["the cat sat on the mat"] * 8
    section = {"max_length": 16, "lr": 0.05, "train_epsilon": 1.0, "batch_tokens": 64, "epochs": 20}
    weight, history = train_steer(model, tok, texts, section, seed=0, progress=False)
    assert history["corpus_nll_after"] < history["corpus_nll_before"] - 0.1
    # the stored matrix already includes train_epsilon: h + 1.0 * h W reproduces the trained (toxic) direction
    from detoxlab.unidetox.lm_steer import output_inputs

    h, y = output_inputs(model, tok, texts, 16)
    nll = torch.nn.functional.cross_entropy(steered_logits(model, h, weight, 1.0), y)
    assert abs(float(nll) - history["corpus_nll_after"]) < 1e-4


def test_deployed_lm_steer_sign(tiny_llama_dir, tmp_path):
    """Through the saved model: epsilon > 0 steers away from the training corpus, epsilon < 0 towards it."""
    from detoxlab.training.finetune import mean_loss

    model, tok, _ = load_model(tiny_llama_dir)
    texts = ["the cat sat on the mat"] * 8
    section = {"max_length": 16, "lr": 0.05, "train_epsilon": 1.0, "batch_tokens": 64, "epochs": 20}
    weight, _ = train_steer(model, tok, texts, section, seed=0, progress=False)
    base_nll = mean_loss(model, tok, texts, 16)
    nll = {}
    for eps in (1.0, -1.0):
        save_derived(tmp_path / f"m{eps}", tiny_llama_dir, root="tiny_llama", steer=(weight, eps))
        steered, _, _ = load_model(tmp_path / f"m{eps}")
        nll[eps] = mean_loss(steered, tok, texts, 16)
    assert nll[1.0] > base_nll + 0.05 and nll[-1.0] < base_nll - 0.05


def test_tied_embeddings_survive_a_delta(tiny_llama_dir, tmp_path):
    from detoxlab.models.derived import changed_tensors
    from detoxlab.training.finetune import FinetuneSettings, finetune

    model, tok, _ = load_model(tiny_llama_dir)
    history = finetune(model, tok, ["the cat sat on the mat"] * 4,
                       FinetuneSettings(lr=1e-2, batch_size=4, epochs=1, max_length=16, train_layers=1,
                                        train_embeddings=True), progress=False)
    save_derived(tmp_path / "t", tiny_llama_dir, root="tiny_llama",
                 delta=changed_tensors(model, history["trainable"]))
    again, _, _ = load_model(tmp_path / "t")
    assert again.get_output_embeddings().weight.data_ptr() == again.get_input_embeddings().weight.data_ptr()
    ids = tok(["a bird sang"], return_tensors="pt")
    assert torch.allclose(again(**ids).logits, model(**ids).logits, atol=1e-6)


def _metrics(tmp_path, name, tp, emt, ppl=10.0):
    path = tmp_path / f"{name}.json"
    write_json(path, {"toxicity": {"overall": {"tp": tp, "emt": emt}}, "fluency": {"ppl": ppl}})
    return str(path)


def test_selection_lowest_validation_tp_then_emt(tmp_path):
    cands = [("a", _metrics(tmp_path, "a", 0.3, 0.2)), ("b", _metrics(tmp_path, "b", 0.1, 0.5)),
             ("c", _metrics(tmp_path, "c", 0.1, 0.4))]
    best, table, _ = choose(cands)
    assert best == 2 and [r["candidate"] for r in table] == ["a", "b", "c"]
    nan_first = [("n", _metrics(tmp_path, "n", float("nan"), 0.1))] + cands[:1]
    assert choose(nan_first)[0] == 1


def test_selection_within_a_perplexity_budget(tmp_path):
    base = _metrics(tmp_path, "base", 0.3, 0.3, ppl=40.0)
    cands = [("hot", _metrics(tmp_path, "hot", 0.0, 0.1, ppl=54.0)),
             ("ok", _metrics(tmp_path, "ok", 0.1, 0.2, ppl=43.9)),
             ("worse", _metrics(tmp_path, "worse", 0.2, 0.2, ppl=30.0))]
    assert choose(cands)[0] == 0  # the paper's rule: lowest TP whatever the fluency
    best, _, criterion = choose(cands, [base], 1.1)  # limit 44.0
    assert best == 1 and "1.1" in criterion
    best, _, criterion = choose(cands[:1], [base], 1.1)
    assert best == 0 and "none qualified" in criterion


def test_selection_within_the_highest_unidetox_perplexity(tmp_path):
    """The paper's baseline rule (UniDetox 3.3): the budget is 1.1 x the highest PPL over UniDetox's grid, not
    the base model's and not the first grid point's."""
    unidetox = [_metrics(tmp_path, "ud1", 0.1, 0.1, ppl=30.0), _metrics(tmp_path, "ud2", 0.1, 0.1, ppl=50.0)]
    cands = [("strong", _metrics(tmp_path, "strong", 0.0, 0.1, ppl=56.0)),
             ("mild", _metrics(tmp_path, "mild", 0.2, 0.2, ppl=54.0))]
    best, _, criterion = choose(cands, unidetox, 1.1, "unidetox")  # limit 55.0: 'strong' is over it
    assert best == 1 and "UniDetox" in criterion and "55.0" in criterion
    best, _, criterion = choose(cands, unidetox[:1], 1.1, "unidetox")  # limit 33.0: none qualifies
    assert best == 0 and "none qualified" in criterion

    """Every continuation over max_ppl leaves PPL NaN (null in metrics.json): such a point neither raises nor wins
    on its TP, with or without a perplexity budget; a base without a valid PPL sets no budget."""
    base = _metrics(tmp_path, "base", 0.3, 0.3, ppl=40.0)
    cands = [("broken", _metrics(tmp_path, "broken", 0.0, 0.0, ppl=None)),
             ("ok", _metrics(tmp_path, "ok", 0.2, 0.2, ppl=41.0))]
    assert choose(cands)[0] == 1
    assert choose(cands, [base], 1.1)[0] == 1
    assert choose([cands[0]], [base], 1.1)[0] == 0  # the only point is still chosen, with the reason in the record
    no_base = _metrics(tmp_path, "no_base", 0.3, 0.3, ppl=float("nan"))
    best, table, criterion = choose(cands, [no_base], 1.1)
    assert best == 1 and "no PPL limit" in criterion and math.isnan(table[0]["ppl"])


def _cfg():
    return config_mod.load(REPO / "config" / "smoke.yaml")


def test_plan_names_and_dependencies():
    cfg = _cfg()
    sels = {(s.method, s.target): s for s in plan.selections(cfg)}
    ud = sels[("unidetox", "tiny_gemma")]
    assert ud.model == "tiny_gemma.unidetox" and ud.guide == "none"
    assert [c.model for c in ud.candidates] == ["tiny_gemma.unidetox.lr0.001", "tiny_gemma.unidetox.lr0.0001"]
    assert ("taskarith", "tiny_gemma") not in sels and ("dexperts", "tiny_gemma") not in sels
    dx = sels[("dexperts", "tiny_llama")]
    assert dx.system == "tiny_llama--dexperts" and dx.candidates[0].guide == "dexperts.beta1"
    deps = plan.model_dependencies(cfg, "tiny_gemma.unidetox")
    assert deps == ["results/models/tiny_gemma.unidetox", "results/models/tiny_gemma"]  # trained at the reused lr
    assert plan.model_dependencies(cfg, "tiny_llama.unidetox")[2:] == [
        "results/models/tiny_llama.unidetox.lr0.001", "results/models/tiny_llama.unidetox.lr0.0001"]
    assert "results/models/tiny_llama.toxic" in plan.guide_dependencies(cfg, "dexperts")
    assert config_mod.root_model(cfg, "tiny_gemma.unidetox.lr0.001") == "tiny_gemma"
    assert config_mod.judge_for(cfg, "tiny_gemma.unidetox") == "tiny_llama"


def test_transfer_reuses_the_distillers_choice_and_tunes_nothing_else():
    """UniDetox 3.4: UniDetox and base samples are tuned on the distiller alone; another target's grid is neither
    built nor evaluated on validation (it trains at the distiller's chosen lr), unless the paper's baseline rule
    needs UniDetox's PPL on that target, and then its alias points at the grid point the distiller chose."""
    cfg = _cfg()
    sels = {(s.method, s.target): s for s in plan.selections(cfg)}
    for method in plan.TRANSFERRED:
        moved, own = sels[(method, "tiny_gemma")], sels[(method, "tiny_llama")]
        assert moved.source == "tiny_llama" and moved.trains and not moved.built and own.source is None
        assert plan.ppl_reference(cfg, moved) == []
        assert moved.build_jobs() == [("finetune", f"tiny_gemma.{method}")]
    validated = {c.target for c in plan.tuning_candidates(cfg) if c.method in plan.TRANSFERRED}
    assert validated == {"tiny_llama"}
    assert {c.system for c in plan.tuning_candidates(cfg)} < {c.system for s in sels.values() for c in s.candidates}

    cfg["tuning"].update(max_ppl_ratio=1.1, ppl_reference="unidetox")
    sels = {(s.method, s.target): s for s in plan.selections(cfg)}
    moved, steer = sels[("unidetox", "tiny_gemma")], sels[("lmsteer", "tiny_gemma")]
    assert moved.source == "tiny_llama" and not moved.trains and moved.built == moved.candidates
    assert plan.ppl_reference(cfg, steer) == [c.system for c in moved.candidates]
    assert plan.ppl_reference(cfg, sels[("unidetox", "tiny_llama")]) == []  # UniDetox itself: TP alone
    assert set(moved.candidates) <= set(plan.tuning_candidates(cfg))
    assert sels[("basesamples", "tiny_gemma")].trains  # nothing needs its grid


def test_transfer_without_the_distiller_among_the_targets_is_a_config_error():
    cfg = _cfg()
    cfg["unidetox"]["base_samples"]["targets"] = ["tiny_gemma"]
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg)
    assert err.value.key == "unidetox.base_samples.targets"


def test_task_arithmetic_on_another_architecture_is_a_config_error():
    cfg = _cfg()
    cfg["unidetox"]["task_arithmetic"]["targets"] = ["tiny_gemma"]
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg)
    assert err.value.key == "unidetox.task_arithmetic.targets[0]"
    assert "architecture" in str(err.value)


def test_unknown_unidetox_target_is_a_config_error():
    cfg = _cfg()
    cfg["unidetox"]["targets"] = ["tiny_llama", "nope"]
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg)
    assert err.value.key == "unidetox.targets[1]"


def test_cli_takes_negative_grid_values(tiny_llama_dir, tmp_path):
    """Rules pass grid values as --flag=value: a negative epsilon like -1e-05 must not read as an option."""
    from safetensors.torch import save_file

    from detoxlab.artifacts import atomic_dir, read_manifest, write_manifest
    from detoxlab.cli import main

    with atomic_dir(tmp_path / "steer") as tmp:
        save_file({"W": torch.eye(32)}, str(tmp / "steer.safetensors"))
        write_manifest(tmp, "steer")
    out = tmp_path / "tiny_llama.lmsteer.eps-1e-05"
    rc = main(["--params", "{}", "lm-steer-model", "--model-dir", str(tiny_llama_dir), "--steer-dir",
               str(tmp_path / "steer"), "--epsilon=-1e-05", "--root", "tiny_llama", "--out", str(out)])
    assert rc == 0
    assert read_manifest(out)["derived"]["steer"]["epsilon"] == -1e-05
    assert plan.Candidate("lmsteer", "tiny_llama", -1e-05).model == out.name


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_task_arithmetic_end_to_end_negates_the_toxic_task_vector(tiny_llama_dir, tmp_path, lam):
    """The step reads a toxic model stored as a delta, writes theta_base - lambda (theta_toxic - theta_base) on
    exactly the toxic model's tensors, and the result loads as a model whose other tensors are the base's."""
    from detoxlab.unidetox.steps import task_arithmetic

    base, tok, _ = load_model(tiny_llama_dir)
    base_params = {n: p.detach().clone() for n, p in base.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    changed = ["model.layers.1.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"]
    toxic = {n: base_params[n] + 0.1 * torch.randn(base_params[n].shape, generator=gen) for n in changed}
    save_derived(tmp_path / "tiny.toxic", tiny_llama_dir, root="tiny_llama", delta=toxic)
    task_arithmetic({}, str(tiny_llama_dir), str(tmp_path / "tiny.toxic"), lam, str(tmp_path / "tiny.ta"), "tiny_llama")
    negated, _, manifest = load_model(tmp_path / "tiny.ta")
    assert manifest["params"]["lambda"] == lam
    got = dict(negated.named_parameters())
    for n, p in base_params.items():
        want = p - lam * (toxic[n] - p) if n in toxic else p
        assert torch.allclose(got[n], want, atol=1e-6), n
    ids = tok(["a bird sang"], return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(negated(**ids).logits, base(**ids).logits)
