"""RAD and ARM decoding: top-k on the base logits, then ``z + beta * (1 - clamp(r, 0, 1))`` on the survivors.

Both keep a key/value cache of the reward model's prefix (``[start] + prompt + generated``), left-padded and
masked like the base model's.
- RAD scores each of the k candidates as a whole prefix: ONE reward-model call on B x k rows per step. The k
  candidates of a row are k query positions at the same position id, each attending to the cached prefix and
  to itself only (a 4-D mask), so the prefix is never copied k times; the chosen candidate's keys/values then
  extend the cache, so no second call is needed.
- ARM scores every next token from the prefix's last hidden state: one call on B rows per step.
The candidate tokens are ids of the shared tokenizer (the official RAD code decodes them to text and
re-encodes, which breaks on partial UTF-8 tokens).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from detoxlab.artifacts import read_manifest
from detoxlab.guides.base import Guide, register_guide
from detoxlab.sampling import SamplingSettings, position_ids_from_mask


def keep_candidate(past, prefix_len: int, chosen: torch.Tensor) -> None:
    """Cut a cache holding ``prefix_len`` entries plus k candidate entries down to prefix + the chosen one."""
    rows = torch.arange(chosen.shape[0], device=chosen.device)
    for layer in past.layers:
        for attr in ("keys", "values"):
            t = getattr(layer, attr)
            setattr(layer, attr, torch.cat([t[:, :, :prefix_len], t[rows, :, prefix_len + chosen][:, :, None]], 2))


def candidate_mask(prefix_mask: torch.Tensor, k: int) -> torch.Tensor:
    """[B, 1, k, T + k] boolean: candidate j sees the (unpadded) prefix and itself, not the other candidates."""
    b, t = prefix_mask.shape
    own = torch.eye(k, dtype=torch.bool, device=prefix_mask.device)[None].expand(b, k, k)
    return torch.cat([prefix_mask[:, None, :].bool().expand(b, k, t), own], -1)[:, None]


class RewardSession:
    """Shared state: the reward model's prefix cache, and the ``z + beta * reward`` rule on the top-k."""

    def __init__(self, rm, input_ids: torch.Tensor, attention_mask: torch.Tensor, start_id: int, beta: float,
                 k: int, label: int):
        self.rm, self.beta, self.k, self.label = rm, beta, k, label
        b = input_ids.shape[0]
        ids = torch.cat([input_ids.new_full((b, 1), start_id), input_ids], 1)
        self.mask = torch.cat([attention_mask.new_ones((b, 1)), attention_mask], 1)
        pos = position_ids_from_mask(self.mask)
        with torch.inference_mode():
            h, self.past = rm.hidden(ids, self.mask, position_ids=pos, use_cache=True)
        self.h = h[:, -1]
        self.next_pos = pos[:, -1:] + 1
        self.cand = None

    def candidate_toxicity(self, cand: torch.Tensor) -> torch.Tensor:
        """[B, k] predicted attribute score (e.g. toxicity) of appending each candidate."""
        raise NotImplementedError

    @torch.inference_mode()
    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        vals, self.cand = torch.topk(logits.float(), self.k, dim=-1)
        reward = 1.0 - self.candidate_toxicity(self.cand).float().clamp(0.0, 1.0)
        out = torch.full_like(logits, float("-inf"), dtype=torch.float32)
        return out.scatter(-1, self.cand, vals + self.beta * reward)

    def _grow(self) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        self.next_pos = self.next_pos + 1


class RadSession(RewardSession):
    def candidate_toxicity(self, cand):
        b, k = cand.shape
        h, self.past = self.rm.hidden(cand, candidate_mask(self.mask, k), position_ids=self.next_pos.expand(b, k),
                                      past_key_values=self.past, use_cache=True)
        self.scores = self.rm.prefix_scores(h)  # [B, k, L]
        return self.scores[..., self.label]

    @torch.inference_mode()
    def update(self, next_tokens: torch.Tensor) -> None:
        # rows that already stopped carry a pad token that may not be a candidate: any entry does for them
        chosen = (self.cand == next_tokens[:, None]).float().argmax(-1)
        keep_candidate(self.past, self.mask.shape[1], chosen)  # the mask still covers the prefix only
        self._grow()


class ArmSession(RewardSession):
    def candidate_toxicity(self, cand):
        return self.rm.next_scores(self.h, cand)[..., self.label]

    @torch.inference_mode()
    def update(self, next_tokens: torch.Tensor) -> None:
        self._grow()
        h, self.past = self.rm.hidden(next_tokens[:, None], self.mask, position_ids=self.next_pos - 1,
                                      past_key_values=self.past, use_cache=True)
        self.h = h[:, -1]


class RewardGuide(Guide):
    """``guide.json``: ``reward_model`` (path relative to the guide), ``beta``, ``k``, ``label``."""

    adjusts_logits = True
    session_class: type[RewardSession] = RewardSession
    #: the config key naming the reward model's start token (for errors)
    start_key = "guided.reward_model.start_text"

    def __init__(self, spec: dict, directory: Path | None = None):
        super().__init__(spec, directory)
        self.rm = self.start_id = None

    def reward_dir(self) -> Path:
        path = (self.directory / self.spec["reward_model"]).resolve()
        read_manifest(path, "reward_model")
        return path

    def to(self, device: torch.device, dtype: torch.dtype) -> RewardGuide:
        from detoxlab.rewards.model import load
        from detoxlab.unidetox.distill import start_token_id

        self.rm, tokenizer, rm_spec = load(self.reward_dir(), device, dtype)
        self.start_id = start_token_id(tokenizer, rm_spec["start_text"], key=self.start_key)
        self.label = rm_spec["labels"].index(self.spec.get("label") or rm_spec["labels"][0])
        return self

    def sampling_settings(self, settings: SamplingSettings) -> SamplingSettings:
        # the guide keeps the base's top-k itself; the sampler's top-k over the adjusted logits keeps exactly
        # those k survivors (so beta = 0 is plain top-k sampling, draw for draw); no nucleus on top
        return replace(settings, top_k=int(self.spec["k"]), top_p=1.0)

    def scoring_session(self, input_ids, attention_mask):
        raise NotImplementedError(f"{self.type} rescores only the base's top-{self.spec['k']} candidates: tokens "
                                  "outside them have no likelihood")

    def session(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> RewardSession:
        if self.rm is None:
            raise RuntimeError(f"guide {self.spec.get('name')}: call .to(device, dtype) before decoding")
        return self.session_class(self.rm, input_ids, attention_mask, self.start_id, float(self.spec["beta"]),
                                  int(self.spec["k"]), self.label)


@register_guide("rad")
class RadGuide(RewardGuide):
    session_class = RadSession

    backbone_calls_per_step = 1

    @property
    def backbone_rows_per_step(self) -> int:  # one batched call, but on k rows per sequence
        return int(self.spec["k"])


@register_guide("arm")
class ArmGuide(RewardGuide):
    session_class = ArmSession
    backbone_calls_per_step = 1
    backbone_rows_per_step = 1
