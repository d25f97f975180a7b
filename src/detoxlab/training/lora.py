"""LoRA (via ``peft``) on the blocks that would otherwise train in full, for fine-tunes of models too large to
train and store whole (the paper configs' 7B models on one GPU).

The adapter is injected into the model itself (no wrapper class: every trainer's forward stays the same), only
its matrices train, and the derived model stores just them: ``W' = W + scale * B A`` is merged at load or export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ADAPTER = "default"


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float = 0.0
    modules: tuple[str, ...] | None = None  # last name parts of the linear layers to adapt; None: all of them

    @classmethod
    def from_config(cls, section: dict | None) -> LoraSettings | None:
        if not section:
            return None
        modules = section.get("modules")
        return cls(rank=int(section["rank"]), alpha=float(section["alpha"]), dropout=float(section["dropout"]),
                   modules=tuple(modules) if modules else None)


def _is_linear(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D  # GPT-2's transposed linear layer

    return isinstance(module, (torch.nn.Linear, Conv1D))


def target_modules(model: torch.nn.Module, blocks: list[torch.nn.Module], modules: tuple[str, ...] | None) -> list:
    """Full names of the linear layers inside ``blocks`` that the adapter covers."""
    inside = {id(m) for block in blocks for m in block.modules()}
    names = [name for name, m in model.named_modules()
             if id(m) in inside and _is_linear(m) and (modules is None or name.rsplit(".", 1)[-1] in modules)]
    if not names:
        raise ValueError(f"lora.modules: no linear layer named {list(modules or [])} in the trained blocks")
    return names


def inject(model: torch.nn.Module, settings: LoraSettings, blocks: list[torch.nn.Module]) -> list[str]:
    """Add a rank-``settings.rank`` adapter to the linear layers of ``blocks``; everything else is frozen.
    Returns the names of the trainable (adapter) parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias="none",
                        target_modules=target_modules(model, blocks, settings.modules))
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)
        if p.requires_grad:
            names.append(name)
    return names


def adapter_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The injected LoRA layers by module name (empty for a model without an adapter)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}


def adapter(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict] | None:
    """``(tensors, spec)`` of the trained adapter: ``<module>.lora_A`` [r, in], ``<module>.lora_B`` [out, r] and
    each module's scale; ``None`` when the model has none."""
    layers = adapter_layers(model)
    if not layers:
        return None
    tensors, scale, transposed = {}, {}, []
    for name, m in layers.items():
        tensors[f"{name}.lora_A"] = m.lora_A[ADAPTER].weight.detach().float().cpu().contiguous()
        tensors[f"{name}.lora_B"] = m.lora_B[ADAPTER].weight.detach().float().cpu().contiguous()
        scale[name] = float(m.scaling[ADAPTER])
        if getattr(m, "fan_in_fan_out", False):  # a Conv1D stores its weight as [in, out]
            transposed.append(name)
    return tensors, {"scale": scale, "transposed": transposed}


def merged_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{"<module>.weight": W + scale * B A}`` of every adapted layer, as a plain model names it."""
    tensors, spec = adapter(model)
    base = {f"{name}.weight": m.base_layer.weight.detach().float().cpu() for name, m in adapter_layers(model).items()}
    return {k: base[k] + d for k, d in updates(tensors, spec, "the trained adapter").items()}


def updates(tensors: dict[str, torch.Tensor], spec: dict, source: str) -> dict[str, torch.Tensor]:
    """``{"<module>.weight": scale * B A}``, in each weight's own layout."""
    from detoxlab.artifacts import ArtifactError

    out = {}
    for name, scale in spec["scale"].items():
        if f"{name}.lora_A" not in tensors or f"{name}.lora_B" not in tensors:
            raise ArtifactError(f"{source}: the LoRA adapter file lacks the matrices of '{name}'")
        delta = scale * (tensors[f"{name}.lora_B"].float() @ tensors[f"{name}.lora_A"].float())
        out[f"{name}.weight"] = delta.T if name in spec["transposed"] else delta
    return out


def checked(deltas: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], source: str) -> dict:
    from detoxlab.artifacts import ArtifactError

    for key, delta in deltas.items():
        if key not in weights or tuple(weights[key].shape) != tuple(delta.shape):
            raise ArtifactError(f"{source}: the LoRA update of '{key}' (shape {tuple(delta.shape)}) does not fit "
                                "the base model (a LoRA adapter applies only to the model it was trained on)")
    return deltas


def merge(model: torch.nn.Module, tensors: dict[str, torch.Tensor], spec: dict, source: str) -> None:
    """``W += scale * B A`` on a plain (adapter-free) model, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, delta in checked(updates(tensors, spec, source), params, source).items():
            params[key].add_(delta.to(params[key].device, params[key].dtype))
