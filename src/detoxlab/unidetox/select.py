"""Choose one candidate of a hyperparameter grid by its validation toxicity, as the UniDetox paper does.

Lowest validation toxicity probability wins; ties go to the lower expected maximum toxicity, then to the
earlier grid entry. Optionally (``tuning.max_ppl_ratio``) only candidates whose validation perplexity stays
within that ratio of a reference compete (all of them when none does): the base model's PPL, or the highest PPL
of UniDetox's grid (``tuning.ppl_reference``). The choice is written as an alias
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


def choose(candidates: list[tuple[str, str]], references: list[str] = (), max_ppl_ratio: float | None = None,
           reference_kind: str = "base") -> tuple[int, list[dict], str]:
    """``candidates``: (name, validation metrics.json); ``references``: the validation metrics whose highest
    perplexity, times ``max_ppl_ratio``, bounds the choice (the base model's, or UniDetox's grid's).

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
    ref_ppls = [p for p in (_finite(read_json(r)["fluency"]["ppl"]) for r in references) if not math.isnan(p)]
    of = "the base model's" if reference_kind == "base" else "the highest of UniDetox's grid"
    if max_ppl_ratio is not None and references and not ref_ppls:
        criterion += f"; {of} validation PPL is not valid, so no PPL limit"
    elif max_ppl_ratio is not None and ref_ppls:
        limit = max_ppl_ratio * max(ref_ppls)
        within = [i for i in pool if table[i]["ppl"] <= limit]  # NaN compares False: never within
        criterion += f" among grid points with validation PPL <= {max_ppl_ratio:g} x {of} ({limit:.1f})"
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
