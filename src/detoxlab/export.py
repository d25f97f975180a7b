"""``detoxlab export``: any model the DAG produced as a standard Hugging Face checkpoint.

Inside ``results/`` a detoxified model is a delta, a LoRA adapter or an LM-Steer matrix over its materialised
base, which only detoxlab can load. The export applies all of it to the weights (LM-Steer folded into the output
layer, LoRA merged) and writes full safetensors, the tokenizer, a generation config with the evaluation's
sampling settings, and a model card with the method, its hyperparameters, its data and its measured metrics:
``AutoModelForCausalLM.from_pretrained(OUT)`` needs nothing from detoxlab.
"""

from __future__ import annotations

import time
from pathlib import Path

from detoxlab.artifacts import ArtifactError, atomic_dir, read_json, read_manifest, write_manifest
from detoxlab.guides.base import NO_GUIDE

EXPORT_KIND = "export"


def resolve_model_dir(target: str, results: str | Path = "results") -> Path:
    """A model directory, a model name, or an unguided system (``<model>--none``) -> the model's directory."""
    path = Path(target)
    if (path / "manifest.json").is_file():
        read_manifest(path, "model")
        return path
    model, sep, guide = target.partition("--")
    if sep and guide != NO_GUIDE:
        raise ValueError(f"{target}: the guide '{guide}' acts while decoding, not in the weights; export the model "
                         f"('{model}') and decode with detoxlab.guides.processor(<guide dir>, model)")
    model_dir = Path(results) / "models" / model
    if not (model_dir / "manifest.json").is_file():
        raise ArtifactError(f"{target}: no finished model at {model_dir} (run the workflow first, or pass the "
                            "model's directory)")
    return model_dir


def _check_destination(out: Path) -> None:
    """Writing replaces ``out`` whole: only an earlier export (or nothing) may be there."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not _is_export(out)):
        raise ValueError(f"{out} exists and is not an earlier export: choose a new directory (nothing written)")


def _is_export(path: Path) -> bool:
    try:
        read_manifest(path, EXPORT_KIND)
        return True
    except ArtifactError:
        return False


def _evaluation_settings(results: Path, system: str) -> dict | None:
    """The sampling settings (and compute dtype) of the report's generations of ``system``, test split first."""
    for split in ("test", "validation"):
        meta = results / "eval" / split / system / "generations.meta.json"
        if meta.is_file():
            info = read_json(meta)
            return {**info["generation"], "dtype": str(info.get("dtype", "")).removeprefix("torch.") or None}
    return None


def _generation_config(model, tokenizer, settings: dict | None):
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    if settings:  # detoxlab's evaluation protocol as the checkpoint's default sampling, and nothing else
        gen.do_sample, gen.temperature = True, float(settings["temperature"])
        gen.top_k, gen.top_p = int(settings["top_k"]), float(settings["top_p"])
        gen.max_new_tokens = int(settings["max_new_tokens"])
        gen.repetition_penalty, gen.typical_p, gen.min_p, gen.no_repeat_ngram_size = 1.0, 1.0, None, 0
    return gen


def export(target: str, out: str | Path, results: str | Path = "results") -> dict:
    """Write ``target`` (see :func:`resolve_model_dir`) as a standalone checkpoint at ``out`` (atomically)."""
    import torch

    from detoxlab.model_card import model_card
    from detoxlab.models.registry import load_model

    results, out = Path(results), Path(out)
    model_dir = resolve_model_dir(target, results)
    _check_destination(out)
    t0 = time.perf_counter()
    model, tokenizer, manifest = load_model(model_dir, "cpu", torch.float32, fold=True)
    system = f"{model_dir.name}--{NO_GUIDE}"
    settings = _evaluation_settings(results, system)
    with atomic_dir(out) as tmp:
        model.generation_config = _generation_config(model, tokenizer, settings)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        card = model_card(model_dir, manifest, results, system, settings, out.name)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        return write_manifest(tmp, EXPORT_KIND, inputs={"model": str(model_dir)},
                              params={"system": system, "generation": settings}, root=manifest.get("root"),
                              architecture=model.config.model_type,
                              n_parameters=sum(p.numel() for p in model.parameters()),
                              seconds=round(time.perf_counter() - t0, 2))
