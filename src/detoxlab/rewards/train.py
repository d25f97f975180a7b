"""Training the reward models: the RAD teacher on labels, the ARM student on labels or distilled from RAD.

Losses over the prefixes ``x_1..x_t`` of ``[start, x_1..x_n]`` (``RewardModel.sequence_targets``):
- cumulative (labels): ``sum_t w_t ||r_t - r||^2 / sum_t w_t`` with ``w_t = t``, summed over label heads;
- distillation: ``(1/n) sum_t ||r_t - r_teacher([x_<=t])||^2``;
- regulariser (ARM): ``<W h_t, e_u>^2`` for one uniformly drawn token u per position (pulls Delta r to 0).

With ``train_layers: 0`` the backbone is frozen and its hidden states are computed once (heads only train,
which is what makes CPU training fast); otherwise the top blocks train as in fine-tuning.

A learning-rate grid trains one run per lr from the same start and keeps the one with the lowest validation loss
of its own objective's data term (:func:`train_lr_grid`); features and teacher scores are computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from detoxlab.rewards.model import RewardModel
from detoxlab.training.finetune import FinetuneSettings, batches, pad_right, select_trainable, total_steps
from detoxlab.training.loop import train_in_place


@dataclass(frozen=True)
class Example:
    ids: list[int]  # [start, x_1..x_n]
    labels: list[float]


def encode(tokenizer, start_id: int, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """``[start] + tokens`` per text, in the tokenizer's own convention (as the guided model sees them)."""
    return [[start_id] + tokenizer(t).input_ids[:max_length - 1] for t in texts]


def cumulative_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``pred`` [B, n, L] prefix scores, ``target`` [B, L] sequence labels, ``valid`` [B, n]; ``w_t = t``."""
    w = torch.arange(1, pred.shape[1] + 1, device=pred.device, dtype=pred.dtype) * valid
    per_pos = ((pred - target[:, None, :]) ** 2).sum(-1)
    return ((w * per_pos).sum(1) / w.sum(1)).mean()


def distillation_loss(pred: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's prefixes of the squared error to the teacher, summed over heads."""
    v = valid.to(pred.dtype)
    per_pos = ((pred - teacher) ** 2).sum(-1)
    return ((v * per_pos).sum(1) / v.sum(1)).mean()


def regulariser(model: RewardModel, h: torch.Tensor, valid: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``<W h_t, e_u>^2`` (summed over heads) for one uniform token u per position, averaged over positions."""
    u = torch.randint(0, model.embeddings.shape[0], h.shape[:-1], generator=generator).to(h.device)
    delta = model.marginal(h, u[..., None]).squeeze(-2)  # [B, n, L]
    v = valid.to(h.dtype)
    return ((delta ** 2).sum(-1) * v).sum() / v.sum()


def padded_batches(seqs: Sequence[list[int]], pad_id: int, device, batch_size: int = 32):
    """``(chunk, ids, mask)`` over ``seqs`` in order, right-padded on ``device``."""
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        ids, mask = pad_right(chunk, pad_id)
        yield chunk, ids.to(device), mask.to(device)


@torch.no_grad()
def hidden_states(model: RewardModel, seqs: Sequence[list[int]], pad_id: int) -> list[torch.Tensor]:
    """Final hidden states [len, d] of every sequence (the frozen-backbone features)."""
    out = []
    for chunk, ids, mask in padded_batches(seqs, pad_id, model.embeddings.device):
        h, _ = model.hidden(ids, mask)
        out += [h[i, :len(s)].float().cpu() for i, s in enumerate(chunk)]
    return out


@torch.no_grad()
def teacher_scores(teacher: RewardModel, seqs: Sequence[list[int]], pad_id: int) -> list[torch.Tensor]:
    """The RAD teacher's score of every prefix of every sequence, [n, L] each (distillation targets)."""
    out = []
    for chunk, ids, mask in padded_batches(seqs, pad_id, teacher.embeddings.device):
        scores = teacher.sequence_targets(ids, mask)
        out += [scores[i, :len(s) - 1].float().cpu() for i, s in enumerate(chunk)]
    return out


def _stack(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = rows[0].new_zeros((len(rows), width, *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@dataclass(frozen=True)
class Prepared:
    """Examples as the losses read them, computed once and shared by every learning rate of a grid."""

    seqs: list[list[int]]
    labels: list[torch.Tensor]
    targets: list[torch.Tensor] | None  # the teacher's prefix scores (distillation only)
    feats: list[torch.Tensor] | None  # the frozen backbone's hidden states (train_layers 0 only)

    def __len__(self) -> int:
        return len(self.seqs)


def prepare(model: RewardModel, examples: Sequence[Example], pad_id: int, *, objective: str,
            teacher: RewardModel | None, frozen: bool) -> Prepared:
    kept = [e for e in examples if len(e.ids) >= 2]
    seqs = [e.ids for e in kept]
    return Prepared(seqs, [torch.tensor(e.labels, dtype=torch.float32) for e in kept],
                    teacher_scores(teacher, seqs, pad_id) if objective == "distill" else None,
                    hidden_states(model, seqs, pad_id) if frozen else None)


def objective_loss(model: RewardModel, data: Prepared, idx: Sequence[int], pad_id: int, objective: str,
                   reg_weight: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The training objective on examples ``idx``: the data term (cumulative loss on labels, or distillation)
    plus ``reg_weight`` times the Delta-r regulariser."""
    device = model.embeddings.device
    ids, mask = (t.to(device) for t in pad_right([data.seqs[i] for i in idx], pad_id))
    h = _stack([data.feats[i] for i in idx]).to(device) if data.feats is not None else model.hidden(ids, mask)[0]
    pred = model.scores_from_hidden(h, ids)
    valid = mask[:, 1:].to(pred.dtype)
    if objective == "labels":
        loss = cumulative_loss(pred, torch.stack([data.labels[i] for i in idx]).to(device), valid)
    else:
        loss = distillation_loss(pred, _stack([data.targets[i] for i in idx]).to(device), valid)
    if reg_weight:
        loss = loss + reg_weight * regulariser(model, h[:, :-1], valid, generator)
    return loss


@torch.no_grad()
def validation_loss(model: RewardModel, data: Prepared, pad_id: int, objective: str, batch_size: int = 32) -> float:
    """The objective's data term averaged over held-out sequences, without the regulariser: it measures the fit
    to the target (labels or teacher), which is what a learning rate is chosen on."""
    total = 0.0
    for start in range(0, len(data), batch_size):
        idx = range(start, min(start + batch_size, len(data)))
        total += objective_loss(model, data, idx, pad_id, objective).item() * len(idx)
    return total / len(data)


def _check(model: RewardModel, objective: str, reg_weight: float, teacher: RewardModel | None) -> None:
    if objective not in ("labels", "distill"):
        raise ValueError(f"objective must be 'labels' or 'distill', got '{objective}'")
    if objective == "distill" and teacher is None:
        raise ValueError("distillation needs the teacher reward model")
    if reg_weight and model.kind != "arm":
        raise ValueError("the Delta-r regulariser applies to ARM students only")


def _mark_trainable(model: RewardModel, settings: FinetuneSettings) -> list[str]:
    """Heads train; so do the top ``train_layers`` backbone blocks unless it is frozen (0). Returns those blocks'
    parameter names."""
    for p in model.lm.parameters():
        p.requires_grad_(False)
    trained_backbone: list[str] = []
    if settings.train_layers:
        trained_backbone = select_trainable(model.lm, settings.train_layers, settings.train_embeddings)
        model.embeddings.requires_grad_(False)  # ARM's e_i are frozen; a tied input embedding stays frozen too
        trained_backbone = [n for n in trained_backbone if "embed" not in n and "lm_head" not in n]
    for p in model.head_parameters():
        p.requires_grad_(True)
    return trained_backbone


def fit(model: RewardModel, data: Prepared, settings: FinetuneSettings, pad_id: int, *, objective: str,
        reg_weight: float = 0.0, progress: bool = True) -> dict:
    """Train ``model`` in place from its current parameters at ``settings.lr``."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)  # the same regulariser draws at every learning rate
    trained_backbone = _mark_trainable(model, settings)
    params = model.head_parameters() + [p for p in model.lm.parameters() if p.requires_grad]
    index = [[i] for i in range(len(data))]

    def loss_of(batch):
        return objective_loss(model, data, [i for (i,) in batch], pad_id, objective, reg_weight, gen)

    losses = train_in_place(model, params, batches(index, settings.batch_size, settings.epochs, settings.seed),
                            loss_of, total_steps(len(data), settings), settings.optimiser_args(),
                            f"{model.kind}-{objective}", progress)
    return {"loss": losses, "steps": len(losses), "n_texts": len(data), "trained_backbone": trained_backbone,
            "n_trainable": sum(p.numel() for p in params)}


def train(model: RewardModel, examples: Sequence[Example], settings: FinetuneSettings, pad_id: int, *,
          objective: str = "labels", reg_weight: float = 0.0, teacher: RewardModel | None = None,
          progress: bool = True) -> dict:
    """Train ``model`` in place at ``settings.lr``. ``objective``: ``labels`` (cumulative loss) or ``distill``
    (from ``teacher``)."""
    return train_lr_grid(model, examples, [], settings, [settings.lr], pad_id, objective=objective,
                         reg_weight=reg_weight, teacher=teacher, progress=progress)


def _snapshot(model: RewardModel, names: Sequence[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


@torch.no_grad()
def _restore(model: RewardModel, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for n, value in state.items():
        params[n].copy_(value)


def train_lr_grid(model: RewardModel, examples: Sequence[Example], heldout: Sequence[Example],
                  settings: FinetuneSettings, lrs: Sequence[float], pad_id: int, *, objective: str = "labels",
                  reg_weight: float = 0.0, teacher: RewardModel | None = None, progress: bool = True) -> dict:
    """One run per learning rate, each from ``model``'s current parameters with the same batches; ``model`` ends
    as the run with the lowest :func:`validation_loss` on ``heldout`` (the earlier lr on a tie; a run that
    diverges is out). Returns the chosen run's history plus ``lr`` and ``lr_selection`` (every lr's loss)."""
    _check(model, objective, reg_weight, teacher)
    frozen = settings.train_layers == 0
    data = prepare(model, examples, pad_id, objective=objective, teacher=teacher, frozen=frozen)
    held = prepare(model, heldout, pad_id, objective=objective, teacher=teacher, frozen=frozen)
    if not data.seqs:
        raise ValueError("no reward-model training text left after tokenisation")
    if len(lrs) > 1 and not held.seqs:
        raise ValueError(f"choosing among learning rates {list(lrs)} needs validation texts; there are none")
    # what a run can change: the heads, and the backbone unless it is frozen (its features are cached above)
    names = [n for n, _ in model.named_parameters() if not (frozen and n.startswith("lm."))]
    start = _snapshot(model, names) if len(lrs) > 1 else None
    best, record = None, []
    for lr in lrs:
        if start is not None:
            _restore(model, start)
        try:
            history = fit(model, data, replace(settings, lr=float(lr)), pad_id, objective=objective,
                          reg_weight=reg_weight, progress=progress)
        except FloatingPointError as exc:
            if len(lrs) == 1:
                raise
            record.append({"lr": float(lr), "validation_loss": None, "diverged": str(exc)})
            continue
        loss = validation_loss(model, held, pad_id, objective) if held.seqs else None
        record.append({"lr": float(lr), "validation_loss": loss})
        if best is None or loss < best["loss"]:
            best = {"loss": loss, "lr": float(lr), "history": history,
                    "state": _snapshot(model, names) if start is not None else None}
    if best is None:
        raise FloatingPointError(f"reward-model training diverged at every learning rate {list(lrs)}")
    if start is not None:
        _restore(model, best["state"])
    model.eval()  # a diverged last run leaves train mode behind
    model.requires_grad_(False)
    return {**best["history"], "lr": best["lr"], "lr_selection": record}


@torch.no_grad()
def validate(model: RewardModel, examples: Sequence[Example], pad_id: int, seed: int,
             teacher: RewardModel | None = None) -> dict:
    """Validation MSE of the full-sequence score per label, the predicted-score distribution, the spread of
    the marginal term over random next tokens (ARM), and agreement with the teacher where there is one."""
    seqs = [e.ids for e in examples if len(e.ids) >= 2]
    y = np.array([e.labels for e in examples if len(e.ids) >= 2], dtype=float)
    if not seqs:
        return {"n": 0}
    device = model.embeddings.device
    final, all_prefix, spread, teacher_gap = [], [], [], []
    gen = torch.Generator().manual_seed(seed)
    for chunk, ids, mask in padded_batches(seqs, pad_id, device):
        h, _ = model.hidden(ids, mask)
        pred = model.scores_from_hidden(h, ids).float()
        t_pred = teacher.sequence_targets(ids, mask).float() if teacher is not None else None
        for i, s in enumerate(chunk):
            n = len(s) - 1
            final.append(pred[i, n - 1].cpu().numpy())
            all_prefix.append(pred[i, :n, 0].cpu().numpy())
            if t_pred is not None:
                teacher_gap.append(((pred[i, :n] - t_pred[i, :n]) ** 2).sum(-1).mean().item())
        if model.kind == "arm":
            u = torch.randint(0, model.embeddings.shape[0], (*h.shape[:-1], 16), generator=gen).to(device)
            delta = model.marginal(h, u)[..., 0].float()  # [B, T, 16]
            spread += delta.std(-1)[mask.bool()].cpu().tolist()
    final = np.stack(final)
    mse = ((final - y) ** 2).mean(0)
    prefix = np.concatenate(all_prefix)
    hist, edges = np.histogram(np.clip(prefix, -0.5, 1.5), bins=40, range=(-0.5, 1.5))
    out = {"n": len(seqs), "mse": {lab: float(m) for lab, m in zip(model.labels, mse)},
           "label_mean": {lab: float(v) for lab, v in zip(model.labels, y.mean(0))},
           "prefix_score_histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
           "prefix_score_mean": float(prefix.mean()), "prefix_score_std": float(prefix.std())}
    if spread:
        out["marginal_spread"] = float(np.mean(spread))
    if teacher_gap:
        out["teacher_mse"] = float(np.mean(teacher_gap))
    return out
