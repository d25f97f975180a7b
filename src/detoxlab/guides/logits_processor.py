"""Guides in anyone's ``generate()``: a ``transformers`` ``LogitsProcessor`` over a guide's decoding session.

    from detoxlab.guides import processor
    proc = processor("results/guides/smollm2.rad", model)
    model.generate(**enc, do_sample=True, logits_processor=[proc], **proc.generate_kwargs)

The processor drives the same ``GuideSession`` detoxlab's sampler drives: the first call of a ``generate()``
opens it on the prompts, every later call advances it by the token just appended, then adjusts the logits. So
the distribution ``generate`` samples from is the one detoxlab samples from, provided the sampling filters are
the guide's: ``generate_kwargs`` carries them (RAD/ARM keep their own top-k; DExperts applies its nucleus to the
base logits itself, so ``generate`` must not apply another).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LogitsProcessor

from detoxlab.guides.base import Guide, load_guide
from detoxlab.sampling import SamplingSettings


def prompt_mask(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """The attention mask of a left-padded batch: everything from a row's first non-pad token on."""
    if pad_token_id is None:
        return torch.ones_like(input_ids)
    return ((input_ids != pad_token_id).long().cumsum(-1) > 0).long()


class GuideLogitsProcessor(LogitsProcessor):
    """Logit adjustment by ``guide`` (already on the model's device) inside ``model.generate``."""

    def __init__(self, guide: Guide, pad_token_id: int | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0):
        if not guide.adjusts_logits:
            raise ValueError(f"guide type '{guide.type}' does not adjust logits (a prompt guide: prepend "
                             "guide.wrap_prompt(text) to the prompt instead)")
        self.guide, self.pad_token_id = guide, pad_token_id
        self.settings = guide.sampling_settings(SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p))
        self.session, self._seen = None, None
        #: the next generate() call's prompt mask, for padding that is not the pad token (used once, then cleared)
        self.attention_mask: torch.Tensor | None = None

    @property
    def generate_kwargs(self) -> dict:
        """The sampling filters ``generate`` must apply after this processor (the guide's own settings)."""
        s = self.settings
        return {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        seen = self._seen
        if seen is not None and input_ids.shape == (seen.shape[0], seen.shape[1] + 1) \
                and torch.equal(input_ids[:, :-1], seen):
            self.session.update(input_ids[:, -1])
        else:  # the first step of a generate() call: the prompts
            mask, self.attention_mask = self.attention_mask, None
            if mask is None:
                if self.pad_token_id is None and input_ids.shape[0] > 1:
                    raise ValueError("a batch of prompts needs the pad token id to tell padding from text: pass "
                                     "pad_token_id=tokenizer.pad_token_id to processor()")
                mask = prompt_mask(input_ids, self.pad_token_id)
            self.session = self.guide.session(input_ids, mask.to(input_ids.device))
        self._seen = input_ids
        return self.session.adjust(scores).to(scores.dtype)


def processor(guide: str | Path | Guide, model, pad_token_id: int | None = None, **sampling) -> GuideLogitsProcessor:
    """A ``LogitsProcessor`` for the guide artifact at ``guide`` (or a ``Guide``), loaded on ``model``'s device
    and dtype; ``sampling`` (temperature, top_k, top_p) are the filters wanted on top, which the guide may
    override. ``pad_token_id`` defaults to the model's generation config."""
    guide = load_guide(guide) if not isinstance(guide, Guide) else guide
    param = next(model.parameters())
    guide.to(param.device, param.dtype)
    if pad_token_id is None and model.generation_config is not None:
        pad_token_id = model.generation_config.pad_token_id
    return GuideLogitsProcessor(guide, pad_token_id, **sampling)
