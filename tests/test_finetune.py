"""Fine-tuning on text: what trains, that pads never enter the loss, and that the loss falls."""

from __future__ import annotations

import pytest
import torch

from detoxlab.models.registry import load_model
from detoxlab.training.finetune import FinetuneSettings, collate, finetune, lm_loss, mean_loss, select_trainable

TEXTS = ["the cat sat on the mat and looked at the dog", "a small bird sang in the tree",
         "we walked to the shop to buy bread", "the sun was warm on the old stone wall"] * 4


def test_select_trainable_top_layers_only(tiny_llama_dir):
    model, _, _ = load_model(tiny_llama_dir)
    names = select_trainable(model, train_layers=1, train_embeddings=False)
    assert names and all(n.startswith(("model.layers.1.", "model.norm")) for n in names)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n not in names)


def test_pad_positions_carry_no_loss(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    seq = tok("the cat sat on the mat").input_ids
    ids, mask, labels = collate([seq, seq + seq], tok.pad_token_id)
    assert (labels[0, len(seq):] == -100).all() and (labels[0, :len(seq)] != -100).all()
    alone = lm_loss(model, *collate([seq], tok.pad_token_id))
    padded = model(input_ids=ids[:1], attention_mask=mask[:1], labels=labels[:1]).loss
    assert torch.allclose(alone, padded, atol=1e-5)


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])  # bf16 autocast over float32 weights (the default)
def test_each_step_changes_trainable_parameters_and_loss_falls(tiny_llama_dir, autocast):
    model, tok, _ = load_model(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    nll0 = mean_loss(model, tok, TEXTS, max_length=32)
    settings = FinetuneSettings(lr=3e-3, batch_size=4, epochs=3, max_length=32, train_layers=1,
                                train_embeddings=False, seed=0, autocast=autocast)
    history = finetune(model, tok, TEXTS, settings, progress=False)
    after = dict(model.named_parameters())
    trained = set(history["trainable"])
    assert all(not torch.equal(before[n], after[n]) for n in trained)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trained)
    assert history["steps"] == 12
    assert mean_loss(model, tok, TEXTS, max_length=32) < nll0 - 0.1
    assert history["loss"][-1] < history["loss"][0]


def test_single_step_changes_every_trainable_tensor(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = FinetuneSettings(lr=1e-3, batch_size=4, epochs=1, max_steps=1, max_length=32, train_layers=2,
                                train_embeddings=True, seed=0)
    history = finetune(model, tok, TEXTS, settings, progress=False)
    assert history["steps"] == 1
    for n in history["trainable"]:
        assert not torch.equal(before[n], dict(model.named_parameters())[n]), n


def test_finetune_is_deterministic(tiny_llama_dir):
    settings = FinetuneSettings(lr=1e-3, batch_size=4, epochs=1, max_length=32, train_layers=1,
                                train_embeddings=False, seed=3)
    runs = []
    for _ in range(2):
        model, tok, _ = load_model(tiny_llama_dir)
        runs.append(finetune(model, tok, TEXTS, settings, progress=False)["loss"])
    assert runs[0] == runs[1]
