"""Percentile bootstrap confidence intervals over evaluation units (prompts).

Callers pass one value per prompt (e.g. the per-prompt maximum toxicity), never per-sample values:
the prompt is the unit that is resampled, so samples of one prompt stay together. NaN units
(prompts without a valid score) are dropped before resampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Stat = Callable[..., float]
NAN3 = (float("nan"), float("nan"), float("nan"))


def _as_1d(values: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected one value per unit (1-D), got shape {arr.shape}")
    return arr


def _check(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _rowwise(stat: Stat, samples: np.ndarray) -> np.ndarray:
    """``stat`` of every row of an (n_boot, n) matrix; vectorised when ``stat`` takes ``axis``."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.apply_along_axis(stat, 1, samples).astype(float)


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def bootstrap_ci(
    values: np.ndarray | list[float],
    stat: Stat = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return ``(point, lo, hi)``: ``stat`` of the values and its percentile bootstrap interval.

    ``values`` holds one value per prompt; NaN entries are dropped first. Units are resampled with
    replacement ``n_boot`` times (a single ``rng.integers(0, n, size=(n_boot, n))`` draw from
    ``np.random.default_rng(seed)``) and the interval is the (alpha/2, 1 - alpha/2) percentiles of
    the resampled statistics. Empty input (after dropping NaN) gives ``(nan, nan, nan)``.
    """
    _check(n_boot, alpha)
    arr = _as_1d(values)
    arr = arr[~np.isnan(arr)]
    n = arr.size
    if n == 0:
        return NAN3
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _rowwise(stat, arr[idx])
    lo, hi = _percentiles(boot, alpha)
    return float(stat(arr)), lo, hi


def paired_bootstrap_diff(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    stat: Stat = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return ``(diff, lo, hi)`` with ``diff = stat(a) - stat(b)`` for paired per-prompt values.

    ``a[i]`` and ``b[i]`` must belong to the same prompt. Pairs where either side is NaN are dropped;
    both systems are then evaluated on the same resampled prompt indices, so prompt difficulty
    cancels out of the interval. Empty input gives ``(nan, nan, nan)``.
    """
    _check(n_boot, alpha)
    x, y = _as_1d(a), _as_1d(b)
    if x.shape != y.shape:
        raise ValueError(f"paired inputs differ in length: {x.size} vs {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = x.size
    if n == 0:
        return NAN3
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _rowwise(stat, x[idx]) - _rowwise(stat, y[idx])
    lo, hi = _percentiles(boot, alpha)
    return float(stat(x) - stat(y)), lo, hi


def ratio_bootstrap_ci(numerators: np.ndarray | list[float], denominators: np.ndarray | list[float],
                       n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """CI of sum(numerators) / sum(denominators), resampling units (prompts).

    A pooled per-sample mean (e.g. mean perplexity over all generations) whose samples are grouped by prompt:
    unit i contributes its sum and its count, so the interval is for the same quantity as the point estimate.
    """
    num, den = _as_1d(numerators), _as_1d(denominators)
    if num.shape != den.shape:
        raise ValueError(f"numerators and denominators differ in length: {num.shape} vs {den.shape}")
    _check(n_boot, alpha)
    keep = np.isfinite(num) & np.isfinite(den) & (den > 0)
    num, den = num[keep], den[keep]
    if num.size == 0:
        return NAN3
    idx = np.random.default_rng(seed).integers(0, num.size, size=(n_boot, num.size))
    lo, hi = _percentiles(num[idx].sum(axis=1) / den[idx].sum(axis=1), alpha)
    return float(num.sum() / den.sum()), lo, hi


def paired_bootstrap(stat: Callable[[np.ndarray], float], n_units: int, n_boot: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float, float, float]:
    """``(point, lo, hi, se)`` of a statistic of paired units: ``stat(idx)`` computes it on the units ``idx``
    (every system's values indexed by the same resampled units, so unit-level difficulty cancels). ``se`` is the
    standard deviation of the bootstrap replicates, for a minimal detectable effect."""
    _check(n_boot, alpha)
    if n_units == 0:
        return math.nan, math.nan, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, n_units, size=(n_boot, n_units))
    boot = np.array([stat(row) for row in idx], dtype=float)
    boot = boot[np.isfinite(boot)]
    point = float(stat(np.arange(n_units)))
    if boot.size < 2:
        return point, math.nan, math.nan, math.nan
    lo, hi = _percentiles(boot, alpha)
    return point, lo, hi, float(boot.std(ddof=1))
