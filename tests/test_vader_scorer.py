"""VADER sentiment scorer: negativity = (1 - compound) / 2, checked against vaderSentiment directly."""

from __future__ import annotations

import sys

import pytest

from detoxlab.scorers import SCORERS, ScorerError, build_scorer, score_texts
from detoxlab.scorers.vader import VaderScorer, negativity

vader = pytest.importorskip("vaderSentiment.vaderSentiment")

POSITIVE = "What a wonderful, happy day; I love this great little cafe!"
NEGATIVE = "This was a terrible, awful experience and I hate everything about it."
NEUTRAL = "The meeting is on Tuesday in room four."


@pytest.fixture(scope="module")
def scorer() -> VaderScorer:
    built = build_scorer({"type": "vader"})
    assert isinstance(built, VaderScorer)
    return built


def test_registered_as_vader(scorer: VaderScorer) -> None:
    assert SCORERS["vader"] is VaderScorer and scorer.name == "vader"
    with pytest.raises(ScorerError, match="scorer.lexicon: unknown option"):
        build_scorer({"type": "vader", "lexicon": "custom.txt"})


def test_polarity_direction(scorer: VaderScorer) -> None:
    positive, negative, neutral = scorer.score_batch([POSITIVE, NEGATIVE, NEUTRAL])
    assert positive < 0.5 < negative
    assert neutral == 0.5  # no sentiment words: compound 0
    assert 0.0 <= positive and negative <= 1.0


def test_score_is_mapped_compound(scorer: VaderScorer) -> None:
    analyzer = vader.SentimentIntensityAnalyzer()
    texts = [POSITIVE, NEGATIVE, NEUTRAL, "not bad at all", "It is GOOD!!!", ""]
    expected = [(1.0 - analyzer.polarity_scores(t)["compound"]) / 2.0 for t in texts]
    assert scorer.score_batch(texts) == pytest.approx(expected)
    assert negativity(1.0) == 0.0 and negativity(-1.0) == 1.0 and negativity(0.0) == 0.5


def test_empty_batch(scorer: VaderScorer) -> None:
    assert scorer.score_batch([]) == []


def test_runs_through_score_texts(scorer: VaderScorer) -> None:
    result = score_texts(scorer, [NEGATIVE, POSITIVE, NEGATIVE], batch_size=2)
    assert result.scores[0] == result.scores[2] > 0.5 > result.scores[1]


def test_missing_package_names_the_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vaderSentiment.vaderSentiment", None)
    with pytest.raises(ScorerError, match=r"^scorer\.type: 'vader' needs the vaderSentiment package"):
        build_scorer({"type": "vader"})
