"""NADO's token-level model: training on oracle-labelled samples, and reading ``R(x)`` from it.

The model is a reward model of kind ``nado`` (``rewards.model``): the first blocks of the base model, frozen,
fed ``[start] + ids``, with a zero-initialised vocabulary-sized head. NADO position ``k`` has read the first
``k`` tokens of ``ids`` and scores ``R(ids[:k] + v)`` for every ``v``; its realised token is ``ids[k]``.
Per sequence the trained rows are ``k = P-1 .. L-1`` (``P`` the prompt length, ``L`` the length): the first is
``R(x)`` itself, the others the continuation's prefixes; the recursion is enforced at ``k = P .. L-1``, whose
right side needs the base model's next-token distribution after ``ids[:k]`` -- its continuation predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq
from dataclasses import replace

import torch

from detoxlab.acf.data import Sequence, mc_prompt_r, prediction_logits
from detoxlab.acf.objectives import importance_weights, nado_loss
from detoxlab.rewards.model import RewardModel
from detoxlab.rewards.train import hidden_states
from detoxlab.training.finetune import FinetuneSettings, batches, total_steps
from detoxlab.training.loop import train_in_place


@torch.no_grad()
def continuation_log_probs(lm, seqs: Seq[Sequence], pad_id: int, batch_size: int = 16, keep: bool = True,
                           dtype: torch.dtype = torch.float16) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``lm``'s next-token log-probabilities at every continuation prediction of each sequence ([n, V] each, kept
    in ``dtype`` on the CPU when ``keep``) and each continuation's log-likelihood [len(seqs)]."""
    kept, loglik = [], []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        logits, targets = prediction_logits(lm, chunk, pad_id)
        lp = torch.log_softmax(logits, -1)
        sizes = [s.n_predicted for s in chunk]
        loglik += [float(t.sum()) for t in lp.gather(-1, targets[:, None]).squeeze(-1).cpu().split(sizes)]
        if keep:
            kept += [t.to(dtype).cpu() for t in lp.split(sizes)]
    return kept, torch.tensor(loglik, dtype=torch.float64)


def reweight(seqs: Seq[Sequence], loglik_target: torch.Tensor, loglik_proposal: torch.Tensor) -> list[Sequence]:
    """Samples drawn from a proposal, weighted towards the model whose R NADO estimates (per prompt)."""
    w = importance_weights(loglik_target, loglik_proposal, [s.prompt_id for s in seqs])
    return [replace(s, weight=float(x)) for s, x in zip(seqs, w)]


class SampleFeatures:
    """What NADO's loss needs per sample: the frozen backbone's hidden states of ``[start] + ids`` ([L + 1, d])
    and the target model's next-token log-probabilities at the continuation's predictions ([n, V]).

    ``cache=True`` computes both once (fast; memory grows as samples x length x vocabulary), ``False`` per batch
    (paper scale: 200k samples x 32k vocabulary would not fit in memory).
    """

    def __init__(self, nado: RewardModel, target, seqs: Seq[Sequence], start_id: int, pad_id: int,
                 batch_size: int = 16, cache: bool = True):
        self.nado, self.target, self.seqs = nado, target, seqs
        self.start_id, self.pad_id, self.batch_size = start_id, pad_id, batch_size
        self.cached = self._compute(range(len(seqs))) if cache else None

    def _compute(self, idx) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        chunk = [self.seqs[i] for i in idx]
        feats = hidden_states(self.nado, [[self.start_id, *s.ids] for s in chunk], self.pad_id)
        lps = continuation_log_probs(self.target, chunk, self.pad_id, self.batch_size)[0] if self.target else None
        return feats, lps

    def loglik(self) -> torch.Tensor:
        """The target's log-likelihood of every sample's continuation [len(seqs)]."""
        if self.cached is None or self.cached[1] is None:
            return continuation_log_probs(self.target, self.seqs, self.pad_id, self.batch_size, keep=False)[1]
        return torch.tensor([float(lp.float().gather(-1, torch.tensor(s.ids[s.prompt_len:])[:, None]).sum())
                             for s, lp in zip(self.seqs, self.cached[1])], dtype=torch.float64)

    def get(self, idx: Seq[int]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if self.cached is None:
            return self._compute(idx)
        feats, lps = self.cached
        return [feats[i] for i in idx], ([lps[i] for i in idx] if lps is not None else None)


def _flat(seqs: Seq[Sequence], feats: Seq[torch.Tensor], log_probs: Seq[torch.Tensor] | None):
    """Flattened rows of ``seqs``: features, realised tokens, labels, weights, recursion rows and their previous
    rows, and the log-probabilities of the recursion rows."""
    h, tok, lab, w, cons, prev = [], [], [], [], [], []
    offset = 0
    for s, f in zip(seqs, feats):
        p, n = s.prompt_len, s.n_predicted
        h.append(f[p - 1:len(s.ids)])
        tok += list(s.ids[p - 1:])
        lab += [s.label] * (n + 1)
        w += [s.weight] * (n + 1)
        cons += range(offset + 1, offset + n + 1)
        prev += range(offset, offset + n)
        offset += n + 1
    as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return (torch.cat(h), as_long(tok), torch.tensor(lab), torch.tensor(w), as_long(cons), as_long(prev),
            torch.cat(list(log_probs)) if log_probs is not None else None)


def _loss(model: RewardModel, batch, consistency: float):
    h, tok, lab, w, cons, prev, lp = batch
    device = model.embeddings.device
    logits = model.token_logits(h.to(device)).float()
    if lp is None:  # no base distribution: the BCE term alone
        cons, prev, lp = cons[:0], prev[:0], logits.new_zeros((0, logits.shape[-1]))
    return nado_loss(logits, tok.to(device), lab.to(device), lp.to(device), cons.to(device), prev.to(device),
                     w.to(device), consistency)


def _batch(features: SampleFeatures, idx: Seq[int]):
    return _flat([features.seqs[i] for i in idx], *features.get(idx))


def train_nado(model: RewardModel, features: SampleFeatures, settings: FinetuneSettings, consistency: float,
               progress: bool = True) -> dict:
    """Train the head in place (the backbone stays frozen)."""
    seqs = features.seqs
    if not seqs:
        raise ValueError("NADO: no labelled sample with a continuation to train on")
    if any(not math.isfinite(s.label) for s in seqs):
        raise ValueError("NADO: every sample needs an oracle label")
    torch.manual_seed(settings.seed)
    params = model.head_parameters()
    for p in params:
        p.requires_grad_(True)
    index = [[i] for i in range(len(seqs))]

    def loss_of(batch):
        # outside autocast: its cat cannot promote the cached fp16 log-probs
        rows = _batch(features, [i for (i,) in batch])
        with settings.precision(params[0].device.type):
            return _loss(model, rows, consistency)[0]

    losses = train_in_place(model, params, batches(index, settings.batch_size, settings.epochs, settings.seed),
                            loss_of, total_steps(len(seqs), settings), settings.optimiser_args(), "nado", progress)
    return {"loss": losses, "steps": len(losses), "n_samples": len(seqs),
            "n_trainable": sum(p.numel() for p in params)}


@torch.no_grad()
def evaluate(model: RewardModel, features: SampleFeatures, consistency: float, batch_size: int = 32) -> dict:
    """The training objective without updates: weighted BCE over all rows, the recursion penalty over its rows."""
    bce = cons = w_sum = n_cons = 0.0
    for start in range(0, len(features.seqs), batch_size):
        batch = _batch(features, range(start, min(start + batch_size, len(features.seqs))))
        _, parts = _loss(model, batch, consistency)
        bce += parts["bce"] * float(batch[3].sum())
        cons += parts["consistency"] * len(batch[4])
        w_sum, n_cons = w_sum + float(batch[3].sum()), n_cons + len(batch[4])
    return {"bce": bce / max(w_sum, 1e-12), "consistency": cons / max(n_cons, 1)}


def realised_logits(model: RewardModel, h: torch.Tensor, nado_ids: torch.Tensor, positions: Seq[int]) -> torch.Tensor:
    """The logit of ``R(ids[:k+1])``: NADO position ``k``'s score of the token that follows it, per row [B]."""
    b = torch.arange(len(positions), device=h.device)
    k = torch.tensor(list(positions), device=h.device)
    return model.token_logits(h[b, k]).float()[b, nado_ids[b, k + 1]]


@torch.no_grad()
def head_prompt_r(model: RewardModel, features: SampleFeatures) -> dict[str, float]:
    """``R(x)`` read from the head at the prompt's last token (NADO position P - 1), per prompt."""
    first = {s.prompt_id: i for i, s in reversed(list(enumerate(features.seqs)))}
    seqs = [features.seqs[i] for i in first.values()]
    feats, _ = features.get(list(first.values()))
    device = model.embeddings.device
    out = {}
    for s, f in zip(seqs, feats):
        ids = torch.tensor([[features.start_id, *s.ids]], device=device)
        out[s.prompt_id] = float(torch.sigmoid(realised_logits(model, f[None].to(device), ids, [s.prompt_len - 1])))
    return out


def prompt_r(model: RewardModel, features: SampleFeatures) -> dict:
    """Both estimates of every prompt's ``R(x)``: the head's and the Monte-Carlo mean of its samples."""
    return {"head": head_prompt_r(model, features), "monte_carlo": mc_prompt_r(features.seqs)}
