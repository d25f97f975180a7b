"""LoRA as a delta type and gradient checkpointing, on a tiny model: the adapter alone trains and lowers the
loss, the derived model stores only the adapter, and merging it (at load or export) gives the adapted model."""

from __future__ import annotations

import pytest
import torch

from detoxlab import config as cfgmod
from detoxlab.models.derived import LORA_FILE, changed_weights, save_derived, trained_weights
from detoxlab.models.registry import load_model
from detoxlab.training.finetune import FinetuneSettings, finetune, mean_loss
from detoxlab.training.lora import LoraSettings
from tests.test_export import detoxlab_greedy, standalone_greedy

TEXTS = ["The quick brown fox jumps over the lazy dog.", "The recipe calls for two cups of flour.",
         "The meeting was moved to Thursday afternoon."] * 4
LORA = LoraSettings(rank=4, alpha=8.0)


def _settings(**kw) -> FinetuneSettings:
    return FinetuneSettings(**{"lr": 3e-2, "batch_size": 4, "epochs": 4, "max_length": 32, "train_layers": 1,
                               "train_embeddings": False, **kw})


@pytest.fixture(scope="module")
def lora_trained(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss_before = mean_loss(model, tok, TEXTS, 32)
    history = finetune(model, tok, TEXTS, _settings(lora=LORA))
    return model, tok, before, loss_before, history


def test_lora_trains_only_the_adapter_and_lowers_the_loss(lora_trained):
    model, tok, before, loss_before, history = lora_trained
    params = dict(model.named_parameters())
    assert history["trainable"] and all(".lora_" in n for n in history["trainable"])
    assert all(".layers.1." in n for n in history["trainable"])  # only the top block (train_layers: 1)
    for name, value in before.items():  # every original weight: the adapter wraps it as base_layer
        key = name if name in params else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(params[key], value), name
    assert any(params[n].abs().sum() > 0 for n in history["trainable"] if ".lora_B." in n)  # B starts at 0
    assert mean_loss(model, tok, TEXTS, 32) < loss_before - 0.05
    assert history["n_trainable"] < 0.25 * sum(v.numel() for v in before.values())


def test_the_saved_adapter_merges_into_the_adapted_model(lora_trained, tiny_llama_dir, tmp_path):
    model, tok, _, _, history = lora_trained
    weights = trained_weights(model, history["trainable"])
    assert set(weights) == {"lora"}
    out = tmp_path / "models" / "tiny_llama.unidetox.lora"
    manifest = save_derived(out, tiny_llama_dir, root="tiny_llama", **weights)
    assert manifest["derived"]["lora"]["file"] == LORA_FILE and not manifest["derived"]["delta"]
    merged, _, _ = load_model(out)
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    enc = tok(TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        adapted, plain = model(**enc).logits, merged(**enc).logits
    assert torch.allclose(adapted, plain, atol=1e-5)
    # Task Arithmetic's view of a LoRA model: the merged weights of exactly the adapted layers
    base = {n: p.detach() for n, p in load_model(tiny_llama_dir)[0].named_parameters()}
    changed = changed_weights(out, base)
    merged_params = dict(merged.named_parameters())
    assert changed and all(torch.allclose(v, merged_params[k]) for k, v in changed.items())
    assert all(not torch.equal(v, base[k]) for k, v in changed.items())
    # and the export of the merged model decodes as detoxlab decodes the adapter model
    from detoxlab.export import export

    export(str(out), tmp_path / "export")
    assert standalone_greedy(tmp_path / "export") == detoxlab_greedy(out)


def test_gradient_checkpointing_trains_the_same_model(tiny_llama_dir):
    results = []
    for checkpointing in (False, True):
        model, tok, _ = load_model(tiny_llama_dir)
        history = finetune(model, tok, TEXTS, _settings(epochs=1, gradient_checkpointing=checkpointing))
        results.append((history["loss"], {n: p.detach() for n, p in model.named_parameters()},
                        getattr(model, "is_activation_checkpointing", None)))
    (loss_a, params_a, on_a), (loss_b, params_b, on_b) = results
    assert not on_a and on_b
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert all(torch.allclose(params_a[n], params_b[n], atol=1e-6) for n in params_a)


def test_lora_config_is_validated_and_kept_off_reward_heads():
    cfg = cfgmod.load("config/smoke.yaml")
    cfg["acf"]["finetune"]["lora"] = {"rank": 8, "alpha": 16}
    out = cfgmod.validate(cfg)
    assert out["acf"]["finetune"]["lora"] == {"rank": 8, "alpha": 16, "dropout": 0.0, "modules": None}
    assert FinetuneSettings.from_config(out["acf"]["finetune"]).lora == LoraSettings(8, 16.0)
    cfg["acf"]["finetune"]["lora"] = {"rank": 0, "alpha": 16}
    with pytest.raises(cfgmod.ConfigError, match="acf.finetune.lora"):
        cfgmod.validate(cfg)
    cfg = cfgmod.load("config/smoke.yaml")
    cfg["guided"]["teacher"]["lora"] = {"rank": 8, "alpha": 16}
    with pytest.raises(cfgmod.ConfigError, match="guided.teacher"):
        cfgmod.validate(cfg)


def test_lora_with_trained_embeddings_is_a_clear_error(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    with pytest.raises(ValueError, match="train_embeddings: false"):
        finetune(model, tok, TEXTS, _settings(lora=LORA, train_embeddings=True))


def test_a_lora_chain_keeps_every_iteration(tiny_llama_dir, tmp_path):
    """ACF's M_i is stored over the root but trained from M_{i-1}: its adapted layers are stored merged, so the
    saved M_2 is M_1's changes plus M_2's adapter, not the root plus M_2's adapter alone."""
    from detoxlab.acf.steps import _save_model

    root = tmp_path / "models"
    it1, it2 = root / "tiny_llama.acf.seq.it1", root / "tiny_llama.acf.seq.it2"
    for i, (start, out) in enumerate(((tiny_llama_dir, it1), (it1, it2))):
        model, tok, _ = load_model(start)
        history = finetune(model, tok, TEXTS, _settings(lora=LORA, seed=i))
        _save_model(model, history, out, tiny_llama_dir, "tiny_llama", {}, {}, 0.0, {}, {}, start_dir=start)
        enc = tok(TEXTS[:3], return_tensors="pt", padding=True)
        with torch.no_grad():
            assert torch.allclose(model(**enc).logits, load_model(out)[0](**enc).logits, atol=1e-5), out.name
    assert load_model(it1)[2]["derived"]["lora"] and load_model(it2)[2]["derived"]["delta"]


def test_rl_rollouts_are_the_same_with_gradient_checkpointing(tiny_llama_dir):
    from detoxlab.acf.rl import policy_gradient

    prompts = [{"id": f"p{i}", "text": t, "group": "g", "domain": "id", "split": "train"}
               for i, t in enumerate(TEXTS[:3])]
    section = {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 6, "kl": 0.1}
    runs = []
    for checkpointing in (False, True):
        model, tok, _ = load_model(tiny_llama_dir)
        reference = load_model(tiny_llama_dir)[0]
        history = policy_gradient(model, reference, tok, prompts, lambda texts: [len(t) % 2 for t in texts],
                                  section, _settings(gradient_checkpointing=checkpointing), progress=False)
        runs.append(history)
    assert runs[0]["reward"] == runs[1]["reward"]  # the same rollouts: the KV cache is used in both
    assert runs[0]["loss"] == pytest.approx(runs[1]["loss"], rel=1e-4, abs=1e-6)
