"""NADO decoding (baseline of the ACF paper): ``q(v | prefix) ~ p(v | prefix) * R(prefix + v)``.

NADO's head scores every next token from the prefix's last hidden state, so, like ARM, it costs one backbone
row per step with a cached prefix; unlike RAD/ARM there is no top-k and no strength: the guide is the exact
Bayes-rule reweighting, and the sampler's own filters (top-p...) apply to ``q`` afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detoxlab.guides.base import register_guide
from detoxlab.guides.reward import ArmSession, RewardGuide
from detoxlab.sampling import SamplingSettings


class NadoSession(ArmSession):
    @torch.inference_mode()
    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        log_r = F.logsigmoid(self.rm.token_logits(self.h).float())
        return logits.float() + log_r[..., :logits.shape[-1]]


@register_guide("nado")
class NadoGuide(RewardGuide):
    """``guide.json``: ``reward_model`` (the NADO artifact, relative to the guide)."""

    session_class = NadoSession
    start_key = "acf.nado.start_text"
    backbone_calls_per_step = 1
    backbone_rows_per_step = 1

    def sampling_settings(self, settings: SamplingSettings) -> SamplingSettings:
        return settings

    def scoring_session(self, input_ids, attention_mask):
        return self.session(input_ids, attention_mask)  # an exact reweighting of every token: no filter

    def session(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> NadoSession:
        if self.rm is None:
            raise RuntimeError(f"guide {self.spec.get('name')}: call .to(device, dtype) before decoding")
        return NadoSession(self.rm, input_ids, attention_mask, self.start_id, beta=1.0, k=0, label=0)
