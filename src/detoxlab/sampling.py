"""Batched, seeded ancestral sampling with a KV cache, and a hook for decoding-time guides.

Kept separate from ``transformers.generate`` so that every setting is explicit (no hidden ``top_k=50``) and a
guide can rewrite the next-token logits at every step with state of its own (its own models and caches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 20
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    stop_at_eos: bool = True

    @classmethod
    def from_config(cls, gen: dict) -> SamplingSettings:
        return cls(max_new_tokens=gen["max_new_tokens"], temperature=gen["temperature"], top_k=gen["top_k"],
                   top_p=gen["top_p"], stop_at_eos=gen.get("stop_at_eos", True))


class GuideSession(Protocol):
    """Per-batch state of a decoding-time guide."""

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, V] of the base model -> logits to sample from."""

    def update(self, next_tokens: torch.Tensor) -> None:
        """Advance the guide's own state by the sampled tokens [B]."""


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability reaches ``p`` (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    # drop a token when the mass strictly before it already reaches p
    drop_sorted = (cum - sorted_logits.softmax(-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_distribution(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """The exact distribution the sampler draws from: temperature, then top-k, then top-p (reference form)."""
    logits = logits.float() / settings.temperature
    logits = top_p_filter(top_k_filter(logits, settings.top_k), settings.top_p)
    return logits.softmax(-1)


def inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row from (unnormalised) ``probs`` [B, N]; float64 CDF, so zero-mass entries are never drawn.

    A cumulative sum and a binary search are far cheaper than ``torch.multinomial`` on a 262k vocabulary.
    """
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError("cannot sample: a row's next-token distribution has no mass (all logits -inf, or NaN)")
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=torch.float64)
    idx = torch.searchsorted(cdf, u * total, right=True)
    return idx.clamp_(max=probs.shape[-1] - 1).squeeze(-1)


#: candidates examined before falling back to a full sort; the nucleus of a trained LM is almost always smaller
NUCLEUS_CANDIDATES = 1024


def sample_next(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> torch.Tensor:
    """Draw next tokens [B] from ``sampling_distribution(logits, settings)``.

    Exact, but avoids sorting the whole vocabulary: the top candidates are sorted, and a row falls back to the
    full distribution only when its nucleus (or top-k set, ties included) is not contained in them.
    """
    raw = logits.float()
    scaled = raw if settings.temperature == 1.0 else raw / settings.temperature
    vocab = scaled.shape[-1]
    k, p = settings.top_k, settings.top_p
    top_k_on = 0 < k < vocab
    n_cand = k if top_k_on else (NUCLEUS_CANDIDATES if p < 1.0 else 0)
    if n_cand == 0 or n_cand >= vocab:
        return inverse_cdf_sample(sampling_distribution(raw, settings), generator)
    vals, idx = torch.topk(scaled, n_cand, dim=-1)  # sorted, descending
    if top_k_on:  # top-k renormalises over the k survivors before top-p, as in the reference
        probs = vals.softmax(-1)
        # the reference keeps every token tied with the k-th logit; topk keeps exactly k. A -inf k-th value
        # (fewer than k allowed tokens, e.g. after a guide's mask) is covered too: those get probability 0
        kth = vals[:, -1:]
        covered = ((scaled >= kth).sum(-1) == k) | torch.isinf(kth).squeeze(-1)
    else:
        probs = scaled.log_softmax(-1).gather(-1, idx).exp()  # true probabilities (faster than logsumexp)
        covered = probs.sum(-1) >= p
    if p < 1.0:
        drop = (probs.cumsum(-1) - probs) >= p
        probs = probs.masked_fill(drop, 0.0)
    out = torch.empty(scaled.shape[0], dtype=torch.long, device=scaled.device)
    if bool(covered.any()):
        out[covered] = idx[covered].gather(-1, inverse_cdf_sample(probs[covered], generator)[:, None]).squeeze(-1)
    if not bool(covered.all()):
        rest = ~covered
        out[rest] = inverse_cdf_sample(sampling_distribution(raw[rest], settings), generator)
    return out


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left padding: real tokens start at position 0 whatever the padding length.
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Forward the prompts once per distinct row and share the cache among repeats.

    Evaluation repeats every prompt ``n`` times; with long prompts (a safety preprompt, few-shot context) the
    prefill would otherwise dominate the cost of a 20-token continuation.
    """
    rows = torch.cat([input_ids, attention_mask], dim=-1)
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if len(uniq) == len(rows):
        uniq, inverse = rows, None
    width = input_ids.shape[1]
    ids, mask = uniq[:, :width], uniq[:, width:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True,
                logits_to_keep=1)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    if inverse is not None:
        past.reorder_cache(inverse)
        logits = logits[inverse]
    return past, logits


@torch.inference_mode()
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: SamplingSettings,
           generator: torch.Generator, eos_token_id: int | list[int] | None, pad_token_id: int,
           guide: GuideSession | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample continuations for a left-padded batch.

    Returns ``(tokens [B, T], n_tokens [B])``: positions after a row's EOS hold ``pad_token_id``;
    ``n_tokens`` counts the generated tokens of each row including its EOS. ``eos_token_id`` may list several
    stop tokens.
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    past, logits = _prefill(model, input_ids, attention_mask)
    next_pos = position_ids_from_mask(attention_mask)[:, -1:] + 1
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    n_tokens = torch.zeros(batch, dtype=torch.long, device=device)
    tokens = []
    stop = None
    if settings.stop_at_eos and eos_token_id is not None:
        stop = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
    for step in range(settings.max_new_tokens):
        if guide is not None:
            logits = guide.adjust(logits)
        nxt = sample_next(logits, settings, generator)
        nxt = nxt.masked_fill(finished, pad_token_id)
        tokens.append(nxt)
        n_tokens += (~finished).long()
        if stop is not None:
            finished |= torch.isin(nxt, stop)
        if step == settings.max_new_tokens - 1 or bool(finished.all()):
            break
        if guide is not None:
            guide.update(nxt)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
        out = model(input_ids=nxt[:, None], attention_mask=attention_mask, position_ids=next_pos,
                    past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos = next_pos + 1
    generated = torch.stack(tokens, dim=1) if tokens else input_ids.new_zeros((batch, 0))
    return generated, n_tokens


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen
