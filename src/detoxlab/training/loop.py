"""The one optimisation loop every trainer shares: AdamW, linear warm-up, gradient clipping, a progress bar,
and a clear error when the loss diverges."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def train_in_place(model: torch.nn.Module, params: Sequence[torch.nn.Parameter], batches: Iterable,
                   loss_of: Callable[[object], torch.Tensor], total: int, optimiser_args: dict, desc: str,
                   progress: bool = True) -> list[float]:
    """``optimise`` in train mode, then back to eval mode with every parameter frozen again."""
    model.train()
    losses = optimise(params, batches, loss_of, total, desc=desc, progress=progress, **optimiser_args)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return losses


def optimise(params: Sequence[torch.nn.Parameter], batches: Iterable, loss_of: Callable[[object], torch.Tensor],
             total: int, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
             weight_decay: float = 0.0, grad_clip: float | None = None, warmup_steps: int = 0,
             desc: str = "train", progress: bool = True) -> list[float]:
    """Run at most ``total`` steps of ``loss_of(batch)``; returns the loss of every step."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0)
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=5)
    for step, batch in enumerate(batches):
        if step >= total:
            break
        loss = loss_of(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: training diverged at step {step} (loss {loss.item()}); lower the lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if step % 10 == 0:
            log.info("%s step %d/%d loss %.4f", desc, step, total, losses[-1])
    bar.close()
    return losses
