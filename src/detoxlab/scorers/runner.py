"""Robust batch scoring: dedupe, batch, fall back per item, validate outputs."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import Scorer

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    """Scores aligned with the input texts; NaN marks an item that could not be scored."""

    scores: np.ndarray  # float64, len(texts)
    n_failed: int
    n_unique: int
    seconds: float


def _validated(raw: object, n: int) -> np.ndarray:
    """Coerce a scorer's output to ``n`` float64 values; invalid values (non-finite, outside [0, 1]) become NaN.

    Raises ``ValueError`` when the output is not a flat sequence of ``n`` numbers, so the caller treats the whole
    call as failed rather than misaligning scores with texts.
    """
    arr = np.asarray(raw, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"scorer returned shape {arr.shape}, expected ({n},)")
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
    if bad.any():
        arr = arr.copy()
        arr[bad] = np.nan
    return arr


def _score_one(scorer: Scorer, text: str) -> float:
    try:
        return float(_validated(scorer.score_batch([text]), 1)[0])
    except Exception as exc:  # a scorer failure must not abort the run; the item becomes NaN
        log.debug("scorer %s failed on one item: %s: %s", scorer.name, type(exc).__name__, exc)
        return math.nan


def score_texts(scorer: Scorer, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> ScoreResult:
    """Score ``texts`` with ``scorer``; never raises on scorer failures (failed items are NaN, counted in n_failed).

    Identical texts are scored once. A batch that raises is retried item by item, so one bad input costs only its
    own score.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")

    start = time.perf_counter()
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.intp, count=len(texts))
    unique = list(index)
    unique_scores = np.full(len(unique), np.nan, dtype=np.float64)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(unique), desc=f"scoring ({scorer.name})", unit="text")
    try:
        for lo in range(0, len(unique), batch_size):
            batch = unique[lo : lo + batch_size]
            try:
                unique_scores[lo : lo + len(batch)] = _validated(scorer.score_batch(batch), len(batch))
            except Exception as exc:
                log.warning(
                    "scorer %s: batch of %d failed (%s: %s); retrying item by item",
                    scorer.name, len(batch), type(exc).__name__, exc,
                )
                for j, text in enumerate(batch):
                    unique_scores[lo + j] = _score_one(scorer, text)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()

    scores = unique_scores[inverse]
    n_failed = int(np.isnan(scores).sum())
    if n_failed:
        log.warning("scorer %s: %d of %d texts could not be scored (NaN)", scorer.name, n_failed, len(texts))
    return ScoreResult(scores=scores, n_failed=n_failed, n_unique=len(unique), seconds=time.perf_counter() - start)
