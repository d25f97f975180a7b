"""The NADO and ACF objectives as tensor functions (no models): oracle labels, the NADO loss, the closed-form
token conditional of q*, and the regularisers.

Notation (METHODS.md section 3): ``R(x, y_<i)`` is the probability that a continuation sampled from ``p`` after
the prefix satisfies the oracle ``C``. NADO predicts ``R(x, y_<i + v)`` for every next token ``v`` at once, as
a logit ``l[i, v]``; the realised token's logit at position ``i - 1`` is the prefix's own ``R(x, y_<i)``.
Everything is computed in log space (``logsigmoid``, ``logaddexp``), so a token that is almost surely toxic
(``R`` ~ 1e-30) never underflows into a NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def oracle_labels(toxicity: torch.Tensor | list[float], kind: str, threshold: float) -> torch.Tensor:
    """``C(x, y)`` from scorer toxicity: ``hard`` is 1 - [toxicity > threshold]; ``soft`` is 1 - toxicity."""
    tox = torch.as_tensor(toxicity, dtype=torch.float32)
    if kind == "hard":
        return (tox <= threshold).float()
    if kind == "soft":
        return (1.0 - tox).clamp(0.0, 1.0)
    raise ValueError(f"acf.oracle.kind must be 'hard' or 'soft', got '{kind}'")


def importance_weights(log_p_target: torch.Tensor, log_p_proposal: torch.Tensor, groups: list) -> torch.Tensor:
    """Self-normalised weights ``w ~ p(y|x) / pi(y|x)`` over each prompt's samples, scaled to mean 1 per prompt.

    NADO's R is an expectation under ``p``; samples drawn from another model ``pi`` estimate it once reweighted.
    """
    log_w = (log_p_target - log_p_proposal).double()
    out = torch.empty_like(log_w)
    index: dict = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for rows in index.values():
        r = torch.tensor(rows)
        out[r] = torch.softmax(log_w[r], 0) * len(rows)
    return out.float()


def effective_sample_size(weights: torch.Tensor) -> float:
    """Kish's ``(sum w)^2 / sum w^2``: how many unweighted samples the weighted set is worth."""
    w = weights.double()
    return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0


def bernoulli_kl(p: torch.Tensor, logit_q: torch.Tensor) -> torch.Tensor:
    """``KL(Bern(p) || Bern(sigmoid(logit_q)))`` elementwise; ``p`` a probability, ``q`` given by its logit."""
    p = p.clamp(1e-7, 1 - 1e-7)
    return p * (p.log() - F.logsigmoid(logit_q)) + (1 - p) * ((1 - p).log() - F.logsigmoid(-logit_q))


def nado_loss(logits: torch.Tensor, next_tokens: torch.Tensor, labels: torch.Tensor, log_p: torch.Tensor,
              cons_rows: torch.Tensor, prev_rows: torch.Tensor, weights: torch.Tensor | None = None,
              consistency: float = 1.0) -> tuple[torch.Tensor, dict]:
    """NADO's loss over flattened prefix rows.

    Row ``r`` is one prefix of one sample: ``logits[r, v]`` is the logit of ``R(prefix_r + v)``, ``next_tokens[r]``
    the token that follows it (its logit is the next prefix's R, trained by BCE on the sample's ``labels[r]`` --
    every prefix inherits its sample's label -- weighted by ``weights[r]``). Consistency rows ``cons_rows`` [M]
    enforce NADO's recursion ``R(prefix) = sum_v p(v | prefix) R(prefix + v)``: the right side from ``log_p``
    [M, V] (the base model's next-token log-probabilities there) and the row's logits, the left side the realised
    logit of the row before, ``prev_rows`` [M]; the penalty is ``KL(Bern(E) || Bern(sigmoid(realised)))``.
    """
    realised = logits.gather(-1, next_tokens[:, None]).squeeze(-1)
    bce = F.binary_cross_entropy_with_logits(realised, labels.to(realised.dtype), reduction="none")
    w = torch.ones_like(bce) if weights is None else weights.to(bce.dtype)
    bce_mean = (bce * w).sum() / w.sum().clamp(min=1e-8)
    if len(cons_rows):
        log_e = torch.logsumexp(log_p.to(logits.dtype) + F.logsigmoid(logits[cons_rows]), -1)
        cons_mean = bernoulli_kl(log_e.exp(), realised[prev_rows]).mean()
    else:
        cons_mean = bce_mean.new_zeros(())
    loss = bce_mean + consistency * cons_mean
    return loss, {"bce": float(bce_mean.detach()), "consistency": float(cons_mean.detach())}


def qstar_log_probs(log_p: torch.Tensor, log_r_next: torch.Tensor, r_prompt: torch.Tensor,
                    delta: float) -> torch.Tensor:
    """``log q*(v | x, y_<i)``: the I-projection of ``p`` onto ``{q : E_q[C] >= delta}``, one token at a time.

    ``log_p`` [N, V] log-probabilities of the model being projected; ``log_r_next`` [N, V]: ``log R(x, y_<i + v)``;
    ``r_prompt`` [N]: ``R(x)`` of each position's prompt. Where ``R(x) >= delta``, ``p`` already satisfies the
    constraint and ``q* = p``; otherwise
    ``q*(v) ~ p(v) [(delta - R(x)) R(x, y_<i + v) + (1 - delta) R(x)]`` (``delta = 1``: NADO's ``q ~ p R``).
    The result is renormalised over the vocabulary: with the exact R the closed form's denominator is already
    the normaliser, with an estimated R it keeps q* a distribution.
    """
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"acf.regulariser.delta must be in (0, 1], got {delta}")
    r = r_prompt.to(log_p.dtype).clamp(0.0, 1.0)[:, None]
    gap = (delta - r).clamp(min=torch.finfo(log_p.dtype).tiny)  # rows with R(x) >= delta are replaced below
    tilt = gap.log() + log_r_next
    if delta < 1.0:
        tilt = torch.logaddexp(tilt, math.log(1.0 - delta) + r.log())
    projected = torch.log_softmax(log_p + tilt, -1)
    return torch.where(r >= delta, torch.log_softmax(log_p, -1), projected)


def kl_to_target(log_target: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of ``KL(target || softmax(logits))`` over the vocabulary; ``target`` fixed."""
    log_target = log_target.detach()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits are summed in float32
    kl = (log_target.exp() * (log_target - torch.log_softmax(logits, -1))).sum(-1)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1.0)
