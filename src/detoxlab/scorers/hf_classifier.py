"""A Hugging Face sequence classifier as a scorer: the softmax probability of one of its labels.

The paper configs' sentiment oracle is DistilBERT fine-tuned on SST-2 (``label: NEGATIVE``: scorers report the
undesired attribute). Weights load from safetensors only and ``trust_remote_code`` stays off; ``path`` is a local
directory or, where the hub is reachable, a hub id.
"""

from __future__ import annotations

from pathlib import Path

from .base import Scorer, ScorerError, non_empty_str, register_scorer


@register_scorer("hf_classifier")
class HFClassifierScorer(Scorer):
    def __init__(self, *, path: str | None = None, label: str = "NEGATIVE", device: str = "cpu",
                 max_length: int = 512, local_files_only: bool = True) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = non_empty_str("path", path)
        if local_files_only and not Path(path).expanduser().is_dir():
            raise ScorerError(f"scorer.path: no classifier directory at {path} (set scorer.local_files_only: false "
                              "to load a hub id)")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=local_files_only, use_safetensors=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - any loading failure is a config problem of scorer.path
            raise ScorerError(f"scorer.path: cannot load a sequence classifier from {path}: "
                              f"{type(exc).__name__}: {exc}") from None
        labels = {str(v): int(k) for k, v in model.config.id2label.items()}
        if label not in labels:
            raise ScorerError(f"scorer.label: {label!r} is not a label of {path}; labels: {sorted(labels)}")
        self.label, self._index = label, labels[label]
        try:
            self._device = torch.device(non_empty_str("device", device))
            self._model = model.to(self._device).eval()
        except (RuntimeError, AssertionError) as exc:
            raise ScorerError(f"scorer.device: cannot use {device!r}: {exc}") from None
        self._max_length = int(max_length)

    def score_batch(self, texts: list[str]) -> list[float]:
        import torch

        if not texts:
            return []
        enc = self._tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                              max_length=self._max_length).to(self._device)
        with torch.inference_mode():
            probs = self._model(**enc).logits.float().softmax(-1)
        return probs[:, self._index].cpu().tolist()
