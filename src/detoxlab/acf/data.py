"""Token sequences for NADO and ACF: a prompt, a continuation, the oracle's label and the row's domain.

Positions are the language model's own: ``ids[j]`` predicts ``ids[j + 1]``; the continuation's predictions are
positions ``prompt_len - 1 .. len(ids) - 2``. A text without a prompt (a corpus row) takes its first token as
the prompt, so every sequence has a position that conditions on its "prompt".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch

TOXIC, GENERAL = "toxic", "general"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sequence:
    ids: tuple[int, ...]
    prompt_len: int
    label: float = math.nan
    prompt_id: str = ""
    domain: str = TOXIC
    weight: float = 1.0

    @property
    def n_predicted(self) -> int:
        return len(self.ids) - self.prompt_len


def sample_sequence(row: dict, tokenizer, max_length: int, domain: str = TOXIC) -> Sequence | None:
    """A labelled sample (``prompt``, continuation ``tokens``, ``label``) as a sequence truncated to ``max_length``;
    None when nothing of the continuation fits.

    The continuation keeps the sampler's own token ids; re-tokenising prompt + continuation text could merge
    tokens across the boundary and describe a sequence the model never produced.
    """
    prompt = tokenizer(row["prompt"]).input_ids
    ids = (list(prompt) + list(row["tokens"]))[:max_length]
    if not prompt or len(ids) <= len(prompt):
        return None
    return Sequence(tuple(ids), len(prompt), float(row.get("label", math.nan)), row.get("prompt_id", ""), domain,
                    float(row.get("weight", 1.0)))


def from_samples(rows: Seq[dict], tokenizer, max_length: int, domain: str = TOXIC) -> list[Sequence]:
    seqs = [s for s in (sample_sequence(r, tokenizer, max_length, domain) for r in rows) if s is not None]
    if len(seqs) < len(rows):  # a prompt that fills max_length leaves nothing of its continuation to learn
        log.warning("%d of %d samples left out: their prompt alone fills max_length %d (raise it)",
                    len(rows) - len(seqs), len(rows), max_length)
    return seqs


def from_texts(texts: Seq[str], tokenizer, max_length: int, domain: str = TOXIC,
               labels: Seq[float] | None = None) -> list[Sequence]:
    """Corpus rows without a prompt: the first token stands in for it."""
    out = []
    for i, t in enumerate(texts):
        ids = tokenizer(t).input_ids[:max_length]
        if len(ids) >= 2:
            out.append(Sequence(tuple(ids), 1, math.nan if labels is None else float(labels[i]), f"text{i}",
                                domain))
    return out


def prediction_index(seqs: Seq[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch row, position) of every continuation prediction of a right-padded batch of ``seqs``."""
    rows, pos = [], []
    for b, s in enumerate(seqs):
        js = range(s.prompt_len - 1, len(s.ids) - 1)
        rows += [b] * len(js)
        pos += list(js)
    return torch.tensor(rows, dtype=torch.long), torch.tensor(pos, dtype=torch.long)


def prediction_logits(model, seqs: Seq[Sequence], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s logits at every continuation prediction of ``seqs`` ([N, V], float32, row order of
    ``prediction_index``) and the tokens they predict [N]."""
    from detoxlab.training.finetune import pad_right

    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in pad_right([list(s.ids) for s in seqs], pad_id))
    rows, pos = (t.to(device) for t in prediction_index(seqs))
    return model(input_ids=ids, attention_mask=mask).logits[rows, pos].float(), ids[rows, pos + 1]


def mc_prompt_r(seqs: Seq[Sequence]) -> dict[str, float]:
    """Monte-Carlo ``R(x)``: the (importance-weighted) mean label of each prompt's samples."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for s in seqs:
        if math.isfinite(s.label):
            num[s.prompt_id] = num.get(s.prompt_id, 0.0) + s.weight * s.label
            den[s.prompt_id] = den.get(s.prompt_id, 0.0) + s.weight
    return {k: num[k] / den[k] for k in num if den[k] > 0}
