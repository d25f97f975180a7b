"""A second LM decoding in lockstep with the base, and the two rules that combine their logits.

- contrastive decoding (UniDetox's distillation): ``s = log p_base - log p_toxic`` on the tokens the base finds
  plausible (``p_base >= alpha * max p_base``), ``-inf`` elsewhere;
- DExperts anti-expert only: ``(1 + beta) z_base - beta z_toxic`` on the base's nucleus.

The expert keeps its OWN key/value cache (the official UniDetox code hands the base model's cache to the toxic
model; we do not) and sees exactly the tokens the base sees, so the two must share a tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from detoxlab.artifacts import read_manifest
from detoxlab.guides.base import Guide, register_guide
from detoxlab.sampling import SamplingSettings, _prefill, position_ids_from_mask, top_p_filter

Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def plausibility_mask(base_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """True where ``p_base(v) >= alpha * max_w p_base(w)`` (compared in log space)."""
    logp = base_logits.float().log_softmax(-1)
    return logp >= logp.max(-1, keepdim=True).values + math.log(alpha)


def contrastive_scores(base_logits: torch.Tensor, expert_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s'``: log-probability difference where plausible under the base, ``-inf`` elsewhere."""
    s = base_logits.float().log_softmax(-1) - expert_logits.float().log_softmax(-1)
    return s.masked_fill(~plausibility_mask(base_logits, alpha), float("-inf"))


def anti_expert_logits(base_logits: torch.Tensor, expert_logits: torch.Tensor, beta: float,
                       top_p: float) -> torch.Tensor:
    """DExperts with an anti-expert only: the ensemble on the base's nucleus (filtered before ensembling)."""
    base = base_logits.float()
    return top_p_filter(base, top_p) + beta * (base - expert_logits.float())


class ExpertSession:
    """Runs ``expert`` on the same tokens as the base, with its own cache; ``adjust`` applies ``combine``."""

    def __init__(self, expert, input_ids: torch.Tensor, attention_mask: torch.Tensor, combine: Combine):
        self.expert, self.combine = expert, combine
        self.mask = attention_mask
        with torch.inference_mode():
            self.past, self.logits = _prefill(expert, input_ids, attention_mask)
        self.next_pos = position_ids_from_mask(attention_mask)[:, -1:] + 1

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        return self.combine(logits, self.logits)

    @torch.inference_mode()
    def update(self, next_tokens: torch.Tensor) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=-1)
        out = self.expert(input_ids=next_tokens[:, None], attention_mask=self.mask, position_ids=self.next_pos,
                          past_key_values=self.past, use_cache=True)
        self.past, self.logits = out.past_key_values, out.logits[:, -1, :]
        self.next_pos = self.next_pos + 1


class ExpertGuide(Guide):
    """A guide with a second model stored as a path (relative to the guide directory) in ``guide.json``."""

    backbone_calls_per_step = 1
    backbone_rows_per_step = 1
    adjusts_logits = True

    def __init__(self, spec: dict, directory: Path | None = None):
        super().__init__(spec, directory)
        self.expert = None

    def expert_dir(self) -> Path:
        path = (self.directory / self.spec["expert"]).resolve()
        read_manifest(path, "model")
        return path

    def to(self, device: torch.device, dtype: torch.dtype) -> ExpertGuide:
        from detoxlab.models.registry import load_model

        self.expert, _, _ = load_model(self.expert_dir(), device, dtype)
        return self

    def combine(self, base_logits: torch.Tensor, expert_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def session(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExpertSession:
        if self.expert is None:
            raise RuntimeError(f"guide {self.spec.get('name')}: call .to(device, dtype) before decoding")
        return ExpertSession(self.expert, input_ids, attention_mask, self.combine)


@register_guide("contrastive")
class ContrastiveGuide(ExpertGuide):
    """UniDetox's contrastive decoding as a guide (``expert``: the toxic model, ``alpha``): what the distillation
    step samples from, usable in any decoder."""

    def combine(self, base_logits, expert_logits):
        return contrastive_scores(base_logits, expert_logits, self.spec["alpha"])

    def scoring_session(self, input_ids, attention_mask):
        raise NotImplementedError("contrastive decoding gives the tokens outside the base's plausible set no "
                                  "likelihood")


@register_guide("dexperts")
class AntiExpertGuide(ExpertGuide):
    """DExperts (anti-only) with the toxic model as anti-expert; the nucleus is taken on the base logits."""

    def combine(self, base_logits, expert_logits):
        return anti_expert_logits(base_logits, expert_logits, self.spec["beta"], self.spec["top_p"])

    def sampling_settings(self, settings: SamplingSettings) -> SamplingSettings:
        from dataclasses import replace

        return replace(settings, top_p=1.0)  # the nucleus was already applied to the base inside combine

    def scoring_session(self, input_ids, attention_mask):
        # the ensemble on the whole vocabulary: the nucleus is a sampling filter, not part of the model
        session = self.session(input_ids, attention_mask)
        session.combine = lambda base, expert: anti_expert_logits(base, expert, self.spec["beta"], 1.0)
        return session
