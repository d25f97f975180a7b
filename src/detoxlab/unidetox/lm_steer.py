"""LM-Steer: a d x d steering matrix on the output word embeddings, learned with the LM frozen.

Training fits ``W`` so that the steered model ``e'(v) = e(v) + train_epsilon * W e(v)`` assigns high likelihood
to the toxic corpus; detoxifying then uses ``e'(v) = e(v) - epsilon * W e(v)`` (epsilon > 0 steers away from the
corpus, epsilon < 0 towards it). Because ``e'(v) . h = e(v) . (h - epsilon * h W)``, the frozen LM's final
hidden states are computed once and only the output layer runs during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from detoxlab.models.logits import output_logits
from detoxlab.training.finetune import collate, tokenize_for_training


@torch.no_grad()
def output_inputs(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 8,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states that feed the output layer [N, d], and the next-token targets [N] (pads dropped)."""
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    hook = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: captured.append(a[0]))
    hs, ys = [], []
    try:
        seqs = tokenize_for_training(tokenizer, texts, max_length)
        for start in range(0, len(seqs), batch_size):
            ids, mask, labels = (t.to(device) for t in collate(seqs[start:start + batch_size], tokenizer.pad_token_id))
            captured.clear()
            model(input_ids=ids, attention_mask=mask)
            h, y = captured[0][:, :-1], labels[:, 1:]
            keep = y != -100
            hs.append(h[keep].float())
            ys.append(y[keep])
    finally:
        hook.remove()
    return torch.cat(hs), torch.cat(ys)


def steered_logits(model, h: torch.Tensor, weight: torch.Tensor, epsilon: float) -> torch.Tensor:
    return output_logits(model, h + epsilon * (h @ weight))


def train_steer(model, tokenizer, texts: Sequence[str], section: dict, seed: int, progress: bool = True,
                ) -> tuple[torch.Tensor, dict]:
    """Fit W on ``texts``; returns (W [d, d], history)."""
    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    h, y = output_inputs(model, tokenizer, texts, section["max_length"])
    d = h.shape[-1]
    weight = torch.zeros(d, d, device=h.device, requires_grad=True)
    opt = torch.optim.Adam([weight], lr=section["lr"])
    rng = np.random.default_rng(seed)
    eps, bs = section["train_epsilon"], section["batch_tokens"]
    losses = []
    total = section["epochs"] * int(np.ceil(len(y) / bs))
    bar = tqdm(total=total, desc="lm-steer", unit="step", disable=not progress, mininterval=5)
    for _ in range(section["epochs"]):
        order = torch.as_tensor(rng.permutation(len(y)), device=h.device)
        for start in range(0, len(y), bs):
            idx = order[start:start + bs]
            loss = torch.nn.functional.cross_entropy(steered_logits(model, h[idx], weight, eps).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    bar.close()
    # the steering matrix acts as eps * W: store the product so that a system's epsilon is in units of it
    with torch.no_grad():
        before = float(torch.nn.functional.cross_entropy(steered_logits(model, h, torch.zeros_like(weight), 0.0), y))
        after = float(torch.nn.functional.cross_entropy(steered_logits(model, h, weight, eps), y))
    return (eps * weight).detach(), {"loss": losses, "n_tokens": int(len(y)), "corpus_nll_before": before,
                                     "corpus_nll_after": after}
