"""Offline default scorer: the alt-profanity-check linear model."""

from __future__ import annotations

from .base import Scorer, ScorerError, register_scorer


@register_scorer("profanity_check")
class ProfanityCheckScorer(Scorer):
    """Probability of profanity from ``profanity_check.predict_prob`` (fast, offline, lexical)."""

    def __init__(self) -> None:
        try:
            # Imported here: loading the pickled model costs ~1 s and other scorers should not pay it.
            from profanity_check import predict_prob
        except ImportError as exc:
            raise ScorerError(f"scorer.type: 'profanity_check' needs the alt-profanity-check package ({exc})") from exc
        self._predict_prob = predict_prob

    def score_batch(self, texts: list[str]) -> list[float]:
        if not texts:  # predict_prob([]) raises inside scikit-learn
            return []
        return [float(p) for p in self._predict_prob(list(texts))]
