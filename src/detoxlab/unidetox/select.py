"""Choose one candidate of a hyperparameter grid by its validation toxicity, as the UniDetox paper does.

Lowest validation toxicity probability wins; ties go to the lower expected maximum toxicity, then to the
earlier grid entry. Optionally (``tuning.max_ppl_ratio``) only candidates whose validation perplexity stays
within that ratio of the base model's compete (all of them when none does). The choice is written as an alias
(model or guide directory) plus a record of every candidate's validation numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

from detoxlab.artifacts import read_json


def _finite(v) -> float:
    """A stored number, NaN where it is missing (a metrics file writes NaN as null)."""
    return math.nan if v is None or not math.isfinite(v) else float(v)


def _key(m: dict) -> tuple[bool, float, float]:
    """A grid point with no valid perplexity (every continuation dropped) ranks last, then TP, then EMT."""
    tox = m["toxicity"]["overall"]
    nan_last = lambda v: math.inf if math.isnan(_finite(v)) else v  # noqa: E731
    return math.isnan(_finite(m["fluency"]["ppl"])), nan_last(tox["tp"]), nan_last(tox["emt"])


def choose(candidates: list[tuple[str, str]], reference: str | None = None,
           max_ppl_ratio: float | None = None) -> tuple[int, list[dict], str]:
    """``candidates``: (name, validation metrics.json); ``reference``: the base model's validation metrics.

    Returns (index of the chosen one, table, the criterion applied).
    """
    if not candidates:
        raise ValueError("no candidates to select from (empty hyperparameter grid)")
    table = []
    for name, path in candidates:
        m = read_json(path)
        tox = m["toxicity"]["overall"]
        table.append({"candidate": name, "metrics": str(path), "tp": tox["tp"], "emt": tox["emt"],
                      "ppl": _finite(m["fluency"]["ppl"]), "_key": _key(m)})
    pool = list(range(len(table)))
    criterion = "lowest validation TP (then EMT; grid points without a valid PPL last)"
    base_ppl = _finite(read_json(reference)["fluency"]["ppl"]) if reference is not None else math.nan
    if max_ppl_ratio is not None and reference is not None and math.isnan(base_ppl):
        criterion += "; the base model has no valid validation PPL, so no PPL limit"
    elif max_ppl_ratio is not None and reference is not None:
        limit = max_ppl_ratio * base_ppl
        within = [i for i in pool if table[i]["ppl"] <= limit]  # NaN compares False: never within
        criterion += f" among grid points with validation PPL <= {max_ppl_ratio:g} x the base model's ({limit:.1f})"
        if within:
            pool = within
        else:
            criterion += "; none qualified, so among all"
    best = min(pool, key=lambda i: (table[i]["_key"], i))
    for row in table:
        row.pop("_key")
    return best, table, criterion


#: guide.json entries that are paths relative to the guide directory (an alias elsewhere must rebase them)
GUIDE_PATH_KEYS = ("expert", "reward_model")


def write_guide_alias(out_dir: str | Path, target_dir: str | Path, record: dict) -> None:
    """A guide directory standing for the chosen guide: the same guide.json, its paths rebased."""
    from detoxlab.artifacts import atomic_dir, read_manifest, relative_path, write_json, write_manifest

    target_dir, out_dir = Path(target_dir), Path(out_dir)
    read_manifest(target_dir, "guide")
    spec = read_json(target_dir / "guide.json")
    for key in GUIDE_PATH_KEYS:
        if key in spec:
            spec[key] = relative_path(target_dir / spec[key], out_dir)
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "guide.json", spec)
        write_manifest(tmp, "guide", inputs={"alias_of": str(target_dir)}, params=spec, selection=record)
