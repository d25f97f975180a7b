"""Offline sentiment scorer: VADER's rule-based compound score, reported as negativity."""

from __future__ import annotations

from .base import Scorer, ScorerError, register_scorer


def negativity(compound: float) -> float:
    """Map VADER's compound score in [-1, 1] to [0, 1] with 1 = most negative.

    Scorers report the undesired attribute, so sentiment control can reuse the toxicity
    machinery unchanged: a text counts as positive when its negativity is below 0.5.
    """
    return (1.0 - compound) / 2.0


@register_scorer("vader")
class VaderScorer(Scorer):
    """Negativity ``(1 - compound) / 2`` from vaderSentiment (lexicon-based, no model download)."""

    def __init__(self) -> None:
        try:
            # Imported here so that toxicity runs do not need the package.
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise ScorerError(f"scorer.type: 'vader' needs the vaderSentiment package ({exc})") from exc
        self._analyzer = SentimentIntensityAnalyzer()

    def score_batch(self, texts: list[str]) -> list[float]:
        return [negativity(self._analyzer.polarity_scores(text)["compound"]) for text in texts]
