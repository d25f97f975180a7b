"""Distinct-n diversity, as computed in the DExperts / RAD / UniDetox evaluation code.

For each prompt, every continuation is split with ``text.split(" ")`` (no stripping, no collapsing
of repeated spaces, so ``""`` is one empty word and ``"a  b"`` has three words), n-grams are taken
inside each continuation (never across two continuations), and

    dist-n(prompt) = |distinct n-grams pooled over the prompt's samples| / total words of those samples.

The reported value is the mean over prompts. A prompt with zero words (no continuations) is skipped,
i.e. excluded from the mean rather than counted as 0.

UniDetox scores prompt + continuation: that variant is obtained by the caller passing the
concatenated strings; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _ngrams(words: list[str], n: int) -> Iterable[tuple[str, ...]]:
    # Tuples rather than "_"-joined strings: same counts, without spurious collisions such as
    # ("a_b", "c") vs ("a", "b_c").
    return zip(*(words[i:] for i in range(n)))


def distinct_n_prompt(continuations: Sequence[str], n: int) -> float:
    """Distinct-n of one prompt's samples; NaN if they contain no words (no samples)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total_words = 0
    for text in continuations:
        words = text.split(" ")  # exactly the papers' tokenisation
        total_words += len(words)
        seen.update(_ngrams(words, n))
    return len(seen) / total_words if total_words else float("nan")


def distinct_n(continuations_by_prompt: Mapping[str, Sequence[str]], n: int) -> float:
    """Mean over prompts of per-prompt distinct-n; prompts with zero words are skipped (NaN if none)."""
    vals = [distinct_n_prompt(conts, n) for conts in continuations_by_prompt.values()]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def distinct_report(
    continuations_by_prompt: Mapping[str, Sequence[str]], ns: Iterable[int] = (1, 2, 3)
) -> dict[str, float]:
    """``{"dist1": ..., "dist2": ..., "dist3": ...}`` (one key per ``n`` in ``ns``)."""
    return {f"dist{n}": distinct_n(continuations_by_prompt, n) for n in ns}
