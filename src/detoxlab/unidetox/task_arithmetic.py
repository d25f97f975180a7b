"""Task Arithmetic (negation): ``theta = theta_base - lambda * tau``, ``tau = theta_toxic - theta_base``.

The toxic model is stored as a delta over the base, so ``tau`` lives on exactly those tensors; the result is
again a delta. Negating a task vector needs the toxic model's architecture: any other target is an error.
"""

from __future__ import annotations

import torch


def task_vector(base: dict[str, torch.Tensor], toxic: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: toxic[k].float() - base[k].float() for k in toxic}


def negate(base: dict[str, torch.Tensor], tau: dict[str, torch.Tensor], lam: float) -> dict[str, torch.Tensor]:
    return {k: base[k].float() - lam * tau[k] for k in tau}


def check_same_architecture(target_params: dict[str, torch.Tensor], toxic_delta: dict[str, torch.Tensor],
                            target: str, toxic: str) -> None:
    for name, value in toxic_delta.items():
        if name not in target_params or tuple(target_params[name].shape) != tuple(value.shape):
            raise ValueError(f"unidetox.task_arithmetic: target '{target}' does not have the architecture of the "
                             f"toxic model '{toxic}' (tensor '{name}' missing or of another shape); Task Arithmetic "
                             "applies only to the distillation model's own architecture — use UniDetox to transfer")
