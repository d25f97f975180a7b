"""Every system's toxicity under every evaluation scorer, and how far the scorers agree.

A method trained against the training-label scorer (the oracle) can lower that scorer's numbers without lowering
toxicity: the report therefore shows TP/EMT under each evaluation scorer, marks the ones that are the oracle, and
measures agreement two ways: over continuations (Spearman's rho of the scores, pooled over every scored test
continuation) and over systems (Spearman's rho of the systems' TP).
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np

from detoxlab.artifacts import read_jsonl


def spearman(a, b) -> float:
    """Spearman's rho over the pairs where both values are finite (NaN when fewer than 3 or one is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def pooled_scores(score_files: list[str]) -> dict[str, list[float]]:
    """scorer -> every continuation's score, over all the files (rows written by the score step)."""
    pooled: dict[str, list[float]] = {}
    for path in score_files:
        for row in read_jsonl(path):
            for name, value in (row.get("scores") or {}).items():
                pooled.setdefault(name, []).append(math.nan if value is None else float(value))
    return pooled


def agreement(metrics: dict[str, dict], score_files: list[str]) -> dict:
    """Pairwise agreement of the evaluation scorers on the test split."""
    pooled = pooled_scores(score_files)
    names = list(pooled)
    pairs = []
    for a, b in itertools.combinations(names, 2):
        tp = [(m["toxicity"]["by_scorer"][a]["overall"]["tp"], m["toxicity"]["by_scorer"][b]["overall"]["tp"])
              for m in metrics.values() if {a, b} <= set(m["toxicity"].get("by_scorer", {}))]
        pairs.append({"a": a, "b": b, "n_continuations": int(np.isfinite(np.add(pooled[a], pooled[b])).sum()),
                      "rho_continuations": spearman(pooled[a], pooled[b]), "n_systems": len(tp),
                      "rho_system_tp": spearman(*zip(*tp)) if len(tp) >= 3 else math.nan})
    return {"scorers": names, "pairs": pairs}


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def section(metrics: dict[str, dict], score_files: list[str], oracles: list[str], primary: str) -> tuple[str, dict]:
    """Markdown of the scorers section and its numbers (``summary.json``'s ``scorers``)."""
    stats = agreement(metrics, score_files)
    names = stats["scorers"]
    if len(names) < 2:
        return "", stats
    label = lambda n: n + (" (training labels)" if n in oracles else " (held out)") + (  # noqa: E731
        ", primary" if n == primary else "")
    out = io.StringIO()
    out.write("\n## Toxicity under each evaluation scorer (test split)\n\n")
    out.write(f"The primary scorer (`{primary}`) is behind the results table, the validation selections and the "
              "claims scorecard. A scorer marked *training labels* is the one that labelled the toxic corpus, the "
              "reward data and ACF's oracle: a method can lower its numbers by learning its features. A held-out "
              "scorer trained no method.\n\n")
    head = ["system"] + [f"TP {label(n)}" for n in names] + [f"EMT {n}" for n in names]
    out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for system, m in metrics.items():
        by = m["toxicity"].get("by_scorer", {})
        if not set(names) <= set(by):
            continue
        tps = [f"{_f(by[n]['overall']['tp'])} [{_f(by[n]['overall']['tp_lo'])}, {_f(by[n]['overall']['tp_hi'])}]"
               for n in names]
        out.write("| " + " | ".join([system, *tps, *(_f(by[n]["overall"]["emt"]) for n in names)]) + " |\n")
    out.write("\nAgreement (Spearman's ρ): over continuations, every scored test continuation pooled; over "
              "systems, the systems' TP.\n\n| scorers | ρ continuations (n) | ρ system TP (n) |\n|---|---|---|\n")
    for p in stats["pairs"]:
        out.write(f"| {p['a']} vs {p['b']} | {_f(p['rho_continuations'])} ({p['n_continuations']}) | "
                  f"{_f(p['rho_system_tp'])} ({p['n_systems']}) |\n")
    return out.getvalue(), stats
