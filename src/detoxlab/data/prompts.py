"""The project's own prompt set (``data/prompts/toxicity.jsonl``; documented in ``data/README.md``).

One JSON object per line with exactly the fields ``id``, ``text``, ``group``, ``domain`` and ``split``.
Every row is validated on load; the first bad row raises :class:`PromptSetError`, whose message
names the file, the line number and the offending field.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from detoxlab.timing import counts_as_loading

SPLITS = ("train", "validation", "test")
DOMAINS = ("id", "ood", "neutral")
FIELDS = ("id", "text", "group", "domain", "split")

_ALLOWED = {"split": SPLITS, "domain": DOMAINS}


class PromptSetError(ValueError):
    """A row of a prompt file is malformed; the message names the file, line number and field."""


def _error(path: Path, lineno: int, field: str | None, msg: str) -> PromptSetError:
    where = f"{path}, line {lineno}" + (f", field {field!r}" if field else "")
    return PromptSetError(f"{where}: {msg}")


def _validate_row(path: Path, lineno: int, line: str) -> dict[str, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _error(path, lineno, None, f"invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise _error(path, lineno, None, f"expected a JSON object, got {type(row).__name__}")
    for field in FIELDS:
        if field not in row:
            raise _error(path, lineno, field, "missing")
        if not isinstance(row[field], str):
            raise _error(path, lineno, field, f"must be a string, got {type(row[field]).__name__}")
        if not row[field].strip():
            raise _error(path, lineno, field, "must be non-empty")
    for field in row:
        if field not in FIELDS:
            raise _error(path, lineno, field, f"unknown field (allowed: {', '.join(FIELDS)})")
    for field, allowed in _ALLOWED.items():
        if row[field] not in allowed:
            raise _error(path, lineno, field, f"{row[field]!r} is not one of {', '.join(allowed)}")
    # Surrounding whitespace changes how the prompt is tokenised, hence what the model continues.
    if row["text"] != row["text"].strip():
        raise _error(path, lineno, "text", "has leading or trailing whitespace")
    return {field: row[field] for field in FIELDS}


def _as_set(values: str | Iterable[str] | None) -> set[str] | None:
    if values is None:
        return None
    return {values} if isinstance(values, str) else set(values)


def _subsample(rows: list[dict[str, str]], k: int, seed: int) -> list[dict[str, str]]:
    by_group: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_group.setdefault(row["group"], []).append(i)
    keep: set[int] = set()
    for group, idx in by_group.items():
        # One generator per group (str seeds are hashed stably): a group's subset does not depend
        # on which other groups or splits were selected.
        rng = random.Random(f"{seed}:{group}")
        keep.update(idx if len(idx) <= k else rng.sample(idx, k))
    return [row for i, row in enumerate(rows) if i in keep]


@counts_as_loading
def load_prompts(
    path: str | os.PathLike[str],
    splits: str | Iterable[str] | None = None,
    groups: str | Iterable[str] | None = None,
    max_per_group: int | None = None,
    seed: int = 0,
) -> list[dict[str, str]]:
    """Load and validate a prompt file, then filter it.

    ``splits`` / ``groups``: keep only these (``None`` keeps all). ``max_per_group``: keep a random
    subset of at most that many rows per group after filtering, deterministic for ``seed``; kept
    rows stay in file order. Raises :class:`PromptSetError` for a malformed file and ``ValueError``
    for an unknown split or group in the filters.
    """
    path = Path(path)
    rows: list[dict[str, str]] = []
    id_line: dict[str, int] = {}
    group_domain: dict[str, tuple[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = _validate_row(path, lineno, line)
            if row["id"] in id_line:
                first_id = id_line[row["id"]]
                raise _error(path, lineno, "id", f"duplicate id {row['id']!r} (first on line {first_id})")
            id_line[row["id"]] = lineno
            # Results are reported per domain, so a group split across domains would be counted twice.
            domain, first = group_domain.setdefault(row["group"], (row["domain"], lineno))
            if row["domain"] != domain:
                msg = f"group {row['group']!r} is {row['domain']!r} here but {domain!r} on line {first}"
                raise _error(path, lineno, "domain", msg)
            rows.append(row)

    split_set, group_set = _as_set(splits), _as_set(groups)
    if split_set is not None and (bad := split_set.difference(SPLITS)):
        raise ValueError(f"unknown split(s) {sorted(bad)}; allowed: {', '.join(SPLITS)}")
    if group_set is not None and (bad := group_set.difference(group_domain)):
        # A typo would otherwise silently evaluate nothing.
        raise ValueError(f"group(s) {sorted(bad)} not in {path}; present: {', '.join(sorted(group_domain))}")
    rows = [
        r for r in rows
        if (split_set is None or r["split"] in split_set) and (group_set is None or r["group"] in group_set)
    ]
    if max_per_group is not None:
        if max_per_group < 1:
            raise ValueError(f"max_per_group must be >= 1, got {max_per_group}")
        rows = _subsample(rows, max_per_group, seed)
    return rows


def summarize(prompts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts: ``{"total": n, "by_group_split": {group: {split: n}}, "by_domain": {domain: n}}``.

    Every group lists all of :data:`SPLITS` (zero where absent) so tables line up.
    """
    pairs = Counter((p["group"], p["split"]) for p in prompts)
    groups = dict.fromkeys(p["group"] for p in prompts)
    return {
        "total": len(prompts),
        "by_group_split": {g: {s: pairs[(g, s)] for s in SPLITS} for g in groups},
        "by_domain": dict(Counter(p["domain"] for p in prompts)),
    }
