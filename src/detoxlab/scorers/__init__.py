"""Toxicity scorers (text -> probability in [0, 1]) behind one registry.

Build one from the config's ``scorer`` mapping with :func:`build_scorer` and run it with :func:`score_texts`,
which dedupes, batches and turns scorer failures into NaN instead of aborting.
"""

from .base import SCORERS, Scorer, ScorerError, available_scorers, build_scorer, register_scorer, scorer_from_config
from .runner import ScoreResult, score_texts

# Imported for their registration side effect; heavy dependencies load lazily inside each scorer.
from . import (  # noqa: E402,F401  isort: skip
    detoxify_scorer, hf_classifier, perspective, profanity, tox_block_scorer, vader,
)

__all__ = [
    "SCORERS",
    "ScoreResult",
    "Scorer",
    "ScorerError",
    "available_scorers",
    "build_scorer",
    "register_scorer",
    "score_texts",
    "scorer_from_config",
]
