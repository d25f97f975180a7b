"""Models derived from a materialised base model, stored as the difference only.

A derived model directory holds a manifest whose ``derived`` entry says how to rebuild it from its base
(a path relative to the directory, so a results tree can be moved as a whole):

- ``delta``: a safetensors file of the tensors that differ from the base (fine-tuned layers, Task Arithmetic);
  everything else, the tokenizer included, is the base's own.
- ``steer``: an LM-Steer matrix ``W`` and its strength ``epsilon``; output embeddings act as
  ``e'(v) = e(v) - epsilon * W e(v)``, i.e. the final hidden state ``h`` becomes ``h - epsilon * h W`` before the
  output layer (identical logits, and no V x d copy of the embeddings).
- ``lora``: a LoRA adapter (``B``, ``A`` and a scale per adapted linear layer), merged into the weights at load:
  ``W' = W + scale * B A`` (see :mod:`detoxlab.training.lora`).
- ``alias_of``: the model is another derived model (the checkpoint a selection step chose).

Fine-tuning only part of a 135M-270M model, a delta is a few MB to a few hundred MB instead of a full copy,
and Task Arithmetic becomes arithmetic on the delta tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from detoxlab.artifacts import ArtifactError, atomic_dir, read_manifest, relative_path, write_manifest

DELTA_FILE = "delta.safetensors"
STEER_FILE = "steer.safetensors"
LORA_FILE = "lora.safetensors"


def _resolve(model_dir: Path, rel: str) -> Path:
    path = (model_dir / rel).resolve()
    if not path.is_dir():
        raise ArtifactError(f"{model_dir}: its base model {rel} is missing (expected at {path})")
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types on truncated or corrupt files
        raise ArtifactError(f"corrupt tensor file {path}: {type(exc).__name__}: {exc}") from exc


def apply_delta(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Overwrite ``model``'s tensors with ``tensors`` (names and shapes must match exactly)."""
    params = dict(model.named_parameters())
    for name, value in tensors.items():
        if name not in params:
            raise ArtifactError(f"{source}: tensor '{name}' does not exist in the base model "
                                "(a delta applies only to the architecture it was trained on)")
        if params[name].shape != value.shape:
            raise ArtifactError(f"{source}: tensor '{name}' has shape {tuple(value.shape)}, "
                                f"the base model's has {tuple(params[name].shape)}")
        with torch.no_grad():
            params[name].copy_(value.to(params[name].dtype))


class SteerHook:
    """LM-Steer on the output embeddings, as a forward pre-hook on the output layer: h -> h - eps * h W."""

    def __init__(self, weight: torch.Tensor, epsilon: float):
        self.weight, self.epsilon = weight, float(epsilon)

    def __call__(self, module, args):
        h = args[0]
        return (h - self.epsilon * (h @ self.weight.to(h.dtype)),) + tuple(args[1:])


def attach_steer(model: torch.nn.Module, weight: torch.Tensor, epsilon: float):
    """Steer ``model`` in place; returns the hook handle (``.remove()`` undoes it)."""
    head = model.get_output_embeddings()
    device = next(head.parameters()).device
    return head.register_forward_pre_hook(SteerHook(weight.to(device), epsilon))


def fold_steer(model: torch.nn.Module, weight: torch.Tensor, epsilon: float) -> None:
    """LM-Steer folded into the output layer, for a checkpoint that loads without detoxlab:
    ``(h - eps h W) E^T = h (E - eps E W^T)^T``. A V x d copy the hook avoids, so only on export; an output layer
    tied to the input embeddings gets its own tensor (the input side keeps ``E``)."""
    head = model.get_output_embeddings()
    e = head.weight.detach().float()
    folded = e - float(epsilon) * (e @ weight.to(e.device).float().T)
    head.weight = torch.nn.Parameter(folded.to(head.weight.dtype), requires_grad=False)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False


def load_derived(model_dir: Path, spec: dict, device, dtype, fold: bool = False):
    """``fold``: LM-Steer goes into the weights instead of a hook (a model that needs no detoxlab code)."""
    from detoxlab.models.registry import load_model

    if spec.get("alias_of"):
        model, tokenizer, _ = load_model(_resolve(model_dir, spec["alias_of"]), device, dtype, fold=fold)
        return model, tokenizer
    model, tokenizer, _ = load_model(_resolve(model_dir, spec["base"]), device, dtype, fold=fold)
    if spec.get("delta"):
        apply_delta(model, read_tensors(model_dir / spec["delta"]), str(model_dir))
    if spec.get("lora"):
        from detoxlab.training import lora

        lora.merge(model, read_tensors(model_dir / spec["lora"]["file"]), spec["lora"], str(model_dir))
    if spec.get("steer"):
        steer = read_tensors(model_dir / spec["steer"]["file"])
        if fold:
            fold_steer(model, steer["W"], spec["steer"]["epsilon"])
        else:
            attach_steer(model, steer["W"].to(device), spec["steer"]["epsilon"])
    return model, tokenizer


def changed_weights(model_dir: str | os.PathLike, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The new values of the tensors a fine-tuned derived model changed: its delta, or its LoRA layers merged
    into ``base`` (its base model's parameters)."""
    from detoxlab.models.registry import MODEL_KIND

    model_dir = Path(model_dir)
    spec = read_manifest(model_dir, MODEL_KIND).get("derived") or {}
    if spec.get("delta"):
        return read_tensors(model_dir / spec["delta"])
    if spec.get("lora"):
        from detoxlab.training import lora

        updates = lora.updates(read_tensors(model_dir / spec["lora"]["file"]), spec["lora"], str(model_dir))
        return {k: base[k].float() + d for k, d in lora.checked(updates, base, str(model_dir)).items()}
    return {}


def save_derived(out_dir: str | os.PathLike, base_dir: str | os.PathLike, *, root: str,
                 delta: dict[str, torch.Tensor] | None = None, steer: tuple[torch.Tensor, float] | None = None,
                 lora: tuple[dict[str, torch.Tensor], dict] | None = None, inputs: dict | None = None,
                 params: dict | None = None, **extra) -> dict:
    """Write a derived model directory atomically (tensors first, manifest last)."""
    out_dir = Path(out_dir)
    spec: dict = {"base": relative_path(base_dir, out_dir), "delta": None, "steer": None}
    with atomic_dir(out_dir) as tmp:
        if delta:
            save_file({k: v.detach().contiguous().cpu() for k, v in delta.items()}, str(tmp / DELTA_FILE))
            spec["delta"] = DELTA_FILE
        if lora is not None:
            tensors, lora_spec = lora
            save_file(tensors, str(tmp / LORA_FILE))
            spec["lora"] = {"file": LORA_FILE, **lora_spec}
        if steer is not None:
            weight, epsilon = steer
            save_file({"W": weight.detach().contiguous().cpu()}, str(tmp / STEER_FILE))
            spec["steer"] = {"file": STEER_FILE, "epsilon": float(epsilon)}
        return write_manifest(tmp, "model", inputs=inputs, params=params, root=root, derived=spec, **extra)


def changed_tensors(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().float().cpu().clone() for n in names}


def trained_weights(model: torch.nn.Module, names: list[str], merge: bool = False) -> dict:
    """``save_derived``'s keyword for what a fine-tune changed: its LoRA adapter, else the trained tensors.
    ``merge``: the adapted layers' merged values instead of the adapter (a model saved over another base than
    the one it started from: the adapter alone would drop the start's own changes)."""
    from detoxlab.training import lora

    if lora.adapter_layers(model):
        return {"delta": lora.merged_weights(model)} if merge else {"lora": lora.adapter(model)}
    return {"delta": changed_tensors(model, names)}
