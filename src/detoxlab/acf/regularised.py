"""Fine-tuning with ACF's regularisers: ``NLL + lambda * KL(target || p_theta)`` per continuation prediction.

The target of a row depends on its sequence's domain:
- ``toxic``: the constraint domain -- NLL, and ``q*`` built from the frozen start model ``p`` and NADO;
- ``general`` (the adaptive regulariser's other domain): NLL, and the ORIGINAL model ``p_theta0``;
- ``task``: NLL only (filtering's kept samples, a classification task);
- ``anchor``: ``q*`` only (contexts where the constraint applies but whose text is not training data).
So the same loop trains ACF (toxic), the adaptive regulariser (toxic + general), filtering (task) and
classification with (task + anchor) and without (task) the regulariser.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detoxlab.acf.data import GENERAL, TOXIC, Sequence, prediction_index, prediction_logits
from detoxlab.acf.objectives import kl_to_target, qstar_log_probs
from detoxlab.training.finetune import FinetuneSettings, batches, pad_right, prepare_trainable, total_steps
from detoxlab.training.loop import train_in_place

TASK, ANCHOR = "task", "anchor"
NLL_DOMAINS = (TOXIC, GENERAL, TASK)
QSTAR_DOMAINS = (TOXIC, ANCHOR)


@dataclass
class Regulariser:
    """What builds ``q*``: the frozen start model, NADO and its ``[start]`` token, ``delta`` and ``R(x)``."""

    reference: torch.nn.Module | None = None  # p: the model at the start of the iteration
    nado: torch.nn.Module | None = None
    start_id: int | None = None
    delta: float = 1.0
    prompt_r: dict[str, float] | None = None  # Monte-Carlo R(x) per prompt id; None: read from the head
    original: torch.nn.Module | None = None  # p_theta0, for general rows


@torch.no_grad()
def qstar_rows(reg: Regulariser, seqs: Seq[Sequence], pad_id: int) -> torch.Tensor:
    """``log q*`` [N, V] at the continuation predictions of ``seqs`` (row order of ``prediction_index``)."""
    from detoxlab.acf.nado import realised_logits

    if reg.reference is None or reg.nado is None:
        raise ValueError("the q* regulariser needs the start model and a NADO model")
    log_p = torch.log_softmax(prediction_logits(reg.reference, seqs, pad_id)[0], -1)
    device = log_p.device
    ids, mask = (t.to(device) for t in pad_right([[reg.start_id, *s.ids] for s in seqs], pad_id))
    h, _ = reg.nado.hidden(ids, mask)
    rows, pos = (t.to(device) for t in prediction_index(seqs))
    log_r_next = F.logsigmoid(reg.nado.token_logits(h[rows, pos + 1]).float())  # NADO position k = j + 1
    if reg.prompt_r is not None:
        missing = sorted({s.prompt_id for s in seqs} - set(reg.prompt_r))
        if missing:
            raise ValueError(f"acf.regulariser.prompt_r: no Monte-Carlo R(x) for prompt '{missing[0]}' (its samples "
                             "did not fit acf.nado.max_length); use 'head' or a longer max_length")
        r_seq = torch.tensor([reg.prompt_r[s.prompt_id] for s in seqs], device=device)
    else:  # the realised logit of the prompt's last token, NADO position P - 1
        r_seq = torch.sigmoid(realised_logits(reg.nado, h, ids, [s.prompt_len - 1 for s in seqs]))
    return qstar_log_probs(log_p, log_r_next, r_seq[rows], reg.delta)


@torch.no_grad()
def original_rows(reg: Regulariser, seqs: Seq[Sequence], pad_id: int) -> torch.Tensor:
    return torch.log_softmax(prediction_logits(reg.original, seqs, pad_id)[0], -1)


def batch_loss(model, seqs: Seq[Sequence], pad_id: int, reg: Regulariser | None, lam: float) -> tuple[torch.Tensor,
                                                                                                       dict]:
    """``mean NLL`` over the NLL domains' predictions ``+ lam * mean KL`` over the regularised predictions."""
    logits, targets = prediction_logits(model, seqs, pad_id)
    device = logits.device
    domain = [seqs[b].domain for b in prediction_index(seqs)[0].tolist()]  # per prediction row, on the CPU

    def rows_in(kinds) -> torch.Tensor:
        return torch.tensor([d in kinds for d in domain], device=device)

    nll_rows = rows_in(NLL_DOMAINS)
    nll = (F.cross_entropy(logits, targets, reduction="none") * nll_rows).sum() / nll_rows.sum().clamp(min=1)
    parts = {"nll": float(nll.detach())}
    if not lam or reg is None:
        return nll, parts
    kl_sum, n_rows = logits.new_zeros(()), 0
    for kinds, build in ((QSTAR_DOMAINS, qstar_rows), ((GENERAL,), original_rows)):
        sub = [s for s in seqs if s.domain in kinds]
        if not sub:
            continue
        target = build(reg, sub, pad_id)
        kl_part = kl_to_target(target, logits[rows_in(kinds)], torch.ones(len(target), device=device))
        kl_sum, n_rows = kl_sum + kl_part * len(target), n_rows + len(target)
        parts["kl_" + kinds[0]] = float(kl_part.detach())
    kl = kl_sum / max(n_rows, 1)
    parts["kl"] = float(kl.detach())
    return nll + lam * kl, parts


def regularised_finetune(model, seqs: Seq[Sequence], pad_id: int, settings: FinetuneSettings,
                         reg: Regulariser | None, lam: float, progress: bool = True) -> dict:
    """Train ``model`` in place; returns the loss history (total, NLL and KL per step)."""
    if not seqs:
        raise ValueError("nothing to fine-tune on: no sequence with a continuation")
    torch.manual_seed(settings.seed)
    names = prepare_trainable(model, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    index = [[i] for i in range(len(seqs))]
    history: dict[str, list[float]] = {"nll": [], "kl": []}

    def loss_of(batch):
        with settings.precision(params[0].device.type):
            loss, parts = batch_loss(model, [seqs[i] for (i,) in batch], pad_id, reg, lam)
        history["nll"].append(parts["nll"])
        history["kl"].append(parts.get("kl", 0.0))
        return loss

    losses = train_in_place(model, params, batches(index, settings.batch_size, settings.epochs, settings.seed),
                            loss_of, total_steps(len(seqs), settings), settings.optimiser_args(), "acf", progress)
    return {"loss": losses, **history, "steps": len(losses), "n_sequences": len(seqs), "trainable": names,
            "n_trainable": sum(p.numel() for p in params)}


@torch.no_grad()
def mean_objective(model, seqs: Seq[Sequence], pad_id: int, reg: Regulariser | None, lam: float,
                   batch_size: int = 8) -> dict:
    """The objective's parts averaged over ``seqs`` (before/after records in the artifact)."""
    totals: dict[str, float] = {}
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        _, parts = batch_loss(model, chunk, pad_id, reg, lam)
        for k, v in parts.items():
            totals[k] = totals.get(k, 0.0) + v * len(chunk)
    return {k: v / len(seqs) for k, v in totals.items()}
