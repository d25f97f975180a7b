"""Detoxify classifiers loaded fully offline from a local checkpoint and a local HF config/tokenizer directory.

``detoxify.Detoxify(checkpoint=..., huggingface_config_path=...)`` still resolves the config through the
checkpoint's hub id (e.g. ``bert-base-uncased``), which fails without network, ignores ``num_classes`` when a
config path is given, and lets ``from_pretrained`` silently re-initialise weights the state dict lacks. This module
reads the same checkpoint format but builds the model from ``config_dir`` and loads the weights strictly.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .base import Scorer, ScorerError, non_empty_str, register_scorer

# Detoxify's standardisation of the Jigsaw column names (see detoxify.detoxify.load_checkpoint).
_CLASS_ALIASES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert"}  # position ids start after the padding index


def _load_checkpoint(path: Path, trust: bool) -> dict[str, Any]:
    import torch

    try:
        # The released checkpoints are plain dicts of JSON-like config plus tensors, which the restricted
        # unpickler accepts; anything else needs an explicit opt-in because full unpickling can run code.
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScorerError(
            f"scorer.checkpoint: {path} holds objects beyond tensors and plain containers ({first_line}); "
            "set scorer.trust_checkpoint: true to load it with full unpickling if you trust the file"
        ) from None
    except Exception as exc:
        raise ScorerError(f"scorer.checkpoint: cannot read {path}: {type(exc).__name__}: {exc}") from None


def _parse_checkpoint(loaded: Any, path: Path) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Return (arch args, standardised class names, state dict) from a Detoxify checkpoint."""
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ScorerError(f"scorer.checkpoint: {path} is not a Detoxify checkpoint (needs 'config' and 'state_dict')")
    config = loaded["config"]
    try:
        args = dict(config["arch"]["args"])
    except (KeyError, TypeError):
        raise ScorerError(f"scorer.checkpoint: {path} lacks config.arch.args") from None
    for key in ("model_name", "tokenizer_name", "num_classes"):
        if key not in args:
            raise ScorerError(f"scorer.checkpoint: {path} lacks config.arch.args.{key}")
    # Released checkpoints keep the classes under dataset.args; newer training configs under arch.args.
    classes = (config.get("dataset") or {}).get("args", {}).get("classes") or args.get("classes")
    if not classes or len(classes) != args["num_classes"]:
        raise ScorerError(f"scorer.checkpoint: {path} has no class list matching num_classes={args['num_classes']}")
    state_dict = loaded["state_dict"]
    if not isinstance(state_dict, dict) or not state_dict:
        raise ScorerError(f"scorer.checkpoint: {path} has an empty or invalid state_dict")
    return args, [_CLASS_ALIASES.get(c, c) for c in classes], state_dict


@register_scorer("detoxify")
class DetoxifyScorer(Scorer):
    """Sigmoid probability of one Detoxify label (default ``toxicity``).

    ``model_type`` only names which released model the checkpoint is (e.g. ``original``, ``unbiased``); the
    architecture itself comes from the checkpoint, so nothing is resolved or downloaded by name.
    """

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        config_dir: str | None = None,
        model_type: str = "original",
        label: str = "toxicity",
        device: str = "cpu",
        trust_checkpoint: bool = False,
    ) -> None:
        import torch
        import transformers

        if not checkpoint:
            raise ScorerError("scorer.checkpoint: required for type 'detoxify' (a local .ckpt; nothing is downloaded)")
        if not config_dir:
            raise ScorerError("scorer.config_dir: required for type 'detoxify' (local HF config + tokenizer directory)")
        ckpt_path = Path(checkpoint).expanduser()
        cfg_dir = Path(config_dir).expanduser()
        if not ckpt_path.is_file():
            raise ScorerError(f"scorer.checkpoint: file not found: {ckpt_path}")
        if not (cfg_dir / "config.json").is_file():
            raise ScorerError(f"scorer.config_dir: no config.json in {cfg_dir}")
        self.model_type = non_empty_str("model_type", model_type)
        non_empty_str("label", label)
        try:
            self._device = torch.device(non_empty_str("device", device))
        except RuntimeError as exc:
            raise ScorerError(f"scorer.device: {exc}") from None

        loaded = _load_checkpoint(ckpt_path, bool(trust_checkpoint))
        args, self.class_names, state_dict = _parse_checkpoint(loaded, ckpt_path)
        if label not in self.class_names:
            raise ScorerError(f"scorer.label: {label!r} is not a class of this checkpoint; classes: {self.class_names}")
        self.label = label
        self._label_index = self.class_names.index(label)

        model_cls = getattr(transformers, str(args["model_name"]), None)
        tokenizer_cls = getattr(transformers, str(args["tokenizer_name"]), None)
        if model_cls is None or not hasattr(model_cls, "config_class"):
            raise ScorerError(f"scorer.checkpoint: unknown model class {args['model_name']!r}")
        if tokenizer_cls is None:
            raise ScorerError(f"scorer.checkpoint: unknown tokenizer class {args['tokenizer_name']!r}")

        try:
            config = model_cls.config_class.from_pretrained(
                str(cfg_dir), num_labels=int(args["num_classes"]), local_files_only=True
            )
            self._tokenizer = tokenizer_cls.from_pretrained(str(cfg_dir), local_files_only=True)
        except Exception as exc:
            raise ScorerError(f"scorer.config_dir: cannot load config/tokenizer from {cfg_dir}: {exc}") from None
        model = self._build_model(model_cls, config, state_dict, cfg_dir)
        try:
            self._model = model.to(self._device).eval()
        except (RuntimeError, AssertionError) as exc:  # e.g. CUDA requested but unavailable
            raise ScorerError(f"scorer.device: cannot use {device!r}: {exc}") from None

        limit = self._tokenizer.model_max_length
        if not limit or limit > 100_000:  # tokenizer saved without a length: derive it from the position table
            limit = config.max_position_embeddings - (2 if config.model_type in _ROBERTA_LIKE else 0)
        self._max_length = int(limit)

    @staticmethod
    def _build_model(model_cls: Any, config: Any, state_dict: dict[str, Any], cfg_dir: Path) -> Any:
        model = model_cls(config)
        expected = set(model.state_dict())
        # Raw Lightning checkpoints prefix every weight with the module attribute name.
        if not expected & set(state_dict) and all(k.startswith("model.") for k in state_dict):
            state_dict = {k[len("model."):]: v for k, v in state_dict.items()}
        try:
            result = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:
            raise ScorerError(f"scorer.config_dir: {cfg_dir} does not match the checkpoint's weights: {exc}") from None
        # Older transformers saved buffers such as position_ids that are now non-persistent: derived, not learnt.
        buffers = {name for name, _ in model.named_buffers()}
        unexpected = [k for k in result.unexpected_keys if k not in buffers]
        if result.missing_keys or unexpected:
            raise ScorerError(
                f"scorer.checkpoint: weights do not fit the architecture configured in {cfg_dir} "
                f"(missing: {result.missing_keys[:5]}, unexpected: {unexpected[:5]})"
            )
        return model

    def score_batch(self, texts: list[str]) -> list[float]:
        import torch

        if not texts:
            return []
        enc = self._tokenizer(
            list(texts), return_tensors="pt", padding=True, truncation=True, max_length=self._max_length
        ).to(self._device)
        with torch.inference_mode():
            logits = self._model(**enc).logits
        return torch.sigmoid(logits[:, self._label_index].float()).cpu().tolist()

    def __repr__(self) -> str:
        return f"<DetoxifyScorer {self.model_type!r} label={self.label!r} device={str(self._device)!r}>"
