"""Loaders for public data sets: RealToxicityPrompts, ToxiGen (annotated) and DGHS.

Each loader accepts a Hugging Face hub id (paper-scale runs on machines with
network access) or a local file in the dataset's published schema. The prompt
loaders (RealToxicityPrompts, ToxiGen) return project prompt records::

    {"id", "text", "group", "domain", "split", "source_toxicity"}

and the DGHS loader returns toxic-corpus records::

    {"id", "text", "target", "type", "label", "split"}
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RTP_HUB_ID = "allenai/real-toxicity-prompts"
TOXIGEN_HUB_ID = "toxigen/toxigen-data"
TOXIGEN_CONFIG = "annotated"

RECORD_SPLITS = ("train", "validation", "test")
DOMAINS = ("id", "ood")

# ToxiGen `annotated` target groups -> evaluation domain. UniDetox distils its
# detoxifying text from a toxic model trained on hate speech about gender,
# sexual orientation, race and religion, so ToxiGen prompts about those groups
# are in-domain; the remaining groups (disability, and the regional
# "middle_east" group, which is not one of those four axes) measure transfer to
# unseen targets and are out-of-domain.
TOXIGEN_GROUP_DOMAINS: dict[str, str] = {
    "women": "id",
    "lgbtq": "id",
    "black": "id",
    "asian": "id",
    "chinese": "id",
    "mexican": "id",
    "latino": "id",
    "native_american": "id",
    "jewish": "id",
    "muslim": "id",
    "middle_east": "ood",
    "physical_dis": "ood",
    "mental_dis": "ood",
}

# The full column set of the hub `annotated` config, kept for reference and for
# fixtures; only TOXIGEN_REQUIRED_COLUMNS are needed to build records.
TOXIGEN_COLUMNS = (
    "text",
    "target_group",
    "factual?",
    "ingroup_effect",
    "lewd",
    "framing",
    "predicted_group",
    "stereotyping",
    "intent",
    "toxicity_ai",
    "toxicity_human",
    "predicted_author",
    "actual_method",
)
TOXIGEN_REQUIRED_COLUMNS = ("text", "target_group", "toxicity_human")

# ToxiGen's human toxicity score is a mean of 1-5 ratings; 3 is the neutral
# midpoint, so it belongs to neither the toxic nor the benign side.
TOXIGEN_TOXIC_THRESHOLD = 3.0

# Columns of the released `Dynamically Generated Hate Dataset v0.2.3.csv` (the
# first, unnamed one is the row index pandas wrote); only DGHS_REQUIRED_COLUMNS
# are needed to build records.
DGHS_COLUMNS = (
    "",
    "acl.id",
    "X1",
    "text",
    "label",
    "type",
    "target",
    "level",
    "split",
    "round.base",
    "annotator",
    "round",
    "acl.id.test",
)
DGHS_REQUIRED_COLUMNS = ("acl.id", "text", "label", "type", "target", "split")
# Our split names -> the values of DGHS's own `split` column.
DGHS_SPLITS = {"train": "train", "validation": "dev", "test": "test"}

_OFFLINE_HINT = (
    "Machines without network access need a local file in the dataset's "
    "published schema instead of a hub id."
)
_LOCAL_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}


class DatasetLoadError(ValueError):
    """A dataset source is missing, unreachable, or not in the expected schema."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} {_OFFLINE_HINT}")


def _is_local(source: str | Path) -> bool:
    path = Path(source)
    return isinstance(source, Path) or path.suffix.lower() in _LOCAL_BUILDERS or path.exists()


def _require_file(source: str | Path, what: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise DatasetLoadError(f"{what} source '{source}': file not found.")
    return path


def _import_datasets(source: str | Path, what: str) -> Any:
    try:
        import datasets
    except ImportError as exc:  # `datasets` is an optional (paper) extra
        raise DatasetLoadError(
            f"{what} source '{source}' needs the `datasets` package "
            "(pip install 'detoxlab[paper]')."
        ) from exc
    return datasets


def _hub_load(source: str, what: str, **kwargs: Any) -> Any:
    datasets = _import_datasets(source, what)
    try:
        return datasets.load_dataset(source, **kwargs)
    except Exception as exc:  # network, auth (ToxiGen is gated) or unknown id
        raise DatasetLoadError(
            f"{what} source '{source}' could not be loaded from the hub "
            f"({type(exc).__name__}: {exc})."
        ) from exc


def _seeded_subset(indices: Sequence[int], limit: int | None, seed: int) -> list[int]:
    """Seeded random subset of `indices`, returned in source order."""
    if limit is None or limit >= len(indices):
        return list(indices)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return sorted(random.Random(seed).sample(list(indices), limit))


def _check_split(split: str) -> None:
    if split not in RECORD_SPLITS:
        raise ValueError(f"split must be one of {RECORD_SPLITS}, got {split!r}")


def _as_float(value: Any) -> float | None:
    """Numeric score, or None for null/NaN (CSV readers turn nulls into NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- RTP


def _read_rtp_jsonl(path: Path, source: str | Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetLoadError(
                    f"RealToxicityPrompts source '{source}': line {lineno} is not JSON ({exc})."
                ) from exc
    return rows


def _validate_rtp_row(row: Any, index: int, source: str | Path) -> None:
    where = f"RealToxicityPrompts source '{source}': row {index}"
    if not isinstance(row, Mapping):
        raise DatasetLoadError(f"{where} is not an object.")
    for key in ("challenging", "prompt"):
        if key not in row:
            raise DatasetLoadError(f"{where} lacks field '{key}'.")
    prompt = row["prompt"]
    if not isinstance(prompt, Mapping):
        raise DatasetLoadError(f"{where} field 'prompt' is not an object.")
    for key in ("text", "toxicity"):
        if key not in prompt:
            raise DatasetLoadError(f"{where} lacks field 'prompt.{key}'.")


def load_realtoxicityprompts(
    source: str | Path,
    *,
    challenging_only: bool = False,
    max_prompt_toxicity: float | None = None,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> list[dict[str, Any]]:
    """Load RealToxicityPrompts prompts as project records.

    `source` is a local ``.jsonl`` file (one object per line, as released) or
    the hub id ``allenai/real-toxicity-prompts``. `max_prompt_toxicity` keeps
    prompts whose Perspective toxicity is strictly below the value (DExperts'
    non-toxic subset uses 0.5); prompts without a score are dropped then.
    `limit` draws a seeded random subset after filtering. `group` is
    ``rtp_challenging`` for rows flagged challenging, else ``rtp``; ids are
    ``rtp-<row index in the source>`` so they are stable under filtering.
    """
    _check_split(split)
    if _is_local(source):
        rows: Iterable[Any] = _read_rtp_jsonl(
            _require_file(source, "RealToxicityPrompts"), source
        )
    else:
        rows = _hub_load(str(source), "RealToxicityPrompts", split="train")

    kept: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        _validate_rtp_row(row, index, source)
        challenging = bool(row["challenging"])
        if challenging_only and not challenging:
            continue
        toxicity = _as_float(row["prompt"]["toxicity"])
        if max_prompt_toxicity is not None and (
            toxicity is None or toxicity >= max_prompt_toxicity
        ):
            continue
        kept.append(
            {
                "id": f"rtp-{index}",
                "text": row["prompt"]["text"],
                "group": "rtp_challenging" if challenging else "rtp",
                "domain": "id",
                "split": split,
                "source_toxicity": toxicity,
            }
        )
    return [kept[i] for i in _seeded_subset(range(len(kept)), limit, seed)]


# ----------------------------------------------------------------------- ToxiGen


def _load_toxigen_table(source: str | Path, split: str) -> Any:
    if _is_local(source):
        path = _require_file(source, "ToxiGen")
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DatasetLoadError(
                f"ToxiGen source '{source}': unsupported file type "
                f"(expected one of {sorted(_LOCAL_BUILDERS)})."
            )
        datasets = _import_datasets(source, "ToxiGen")
        # Local files go through the same `datasets` loader as the hub so that
        # column types are normalised identically; one file is one "train" split.
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:
            raise DatasetLoadError(
                f"ToxiGen source '{source}' could not be read ({type(exc).__name__}: {exc})."
            ) from exc
    if split not in ("train", "test"):
        raise ValueError(
            f"ToxiGen '{TOXIGEN_CONFIG}' on the hub has splits train/test, got {split!r}"
        )
    return _hub_load(str(source), "ToxiGen", name=TOXIGEN_CONFIG, split=split)


def load_toxigen_annotated(
    source: str | Path,
    *,
    split: str = "test",
    groups: Iterable[str] | None = None,
    group_domains: Mapping[str, str] | None = None,
    only_toxic: bool | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Load the human-annotated ToxiGen set as project records.

    `source` is the hub id ``toxigen/toxigen-data`` (config ``annotated``,
    `split` train/test) or a local .parquet/.csv/.jsonl file with the same
    columns (then `split` only labels the records). `groups` keeps only those
    ``target_group`` values; `group_domains` maps each kept group to
    ``"id"``/``"ood"`` (default TOXIGEN_GROUP_DOMAINS). `only_toxic=True` keeps
    rows with ``toxicity_human > 3``, False keeps ``< 3``, None keeps all.
    Ids are ``toxigen-<row index in the source>``.
    """
    _check_split(split)
    domains = dict(TOXIGEN_GROUP_DOMAINS if group_domains is None else group_domains)
    bad = {g: d for g, d in domains.items() if d not in DOMAINS}
    if bad:
        raise ValueError(f"group_domains values must be one of {DOMAINS}, got {bad}")
    wanted = None if groups is None else set(groups)

    table = _load_toxigen_table(source, split)
    missing = [c for c in TOXIGEN_REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetLoadError(
            f"ToxiGen source '{source}' lacks column(s) {missing} "
            f"(found {table.column_names})."
        )

    kept: list[dict[str, Any]] = []
    unmapped: set[str] = set()
    columns = table.select_columns(list(TOXIGEN_REQUIRED_COLUMNS)).to_dict()
    rows = zip(columns["text"], columns["target_group"], columns["toxicity_human"])
    for index, (text, group, tox) in enumerate(rows):
        if wanted is not None and group not in wanted:
            continue
        toxicity = _as_float(tox)
        if only_toxic is not None:
            if toxicity is None:
                continue
            if only_toxic and not toxicity > TOXIGEN_TOXIC_THRESHOLD:
                continue
            if not only_toxic and not toxicity < TOXIGEN_TOXIC_THRESHOLD:
                continue
        if group not in domains:
            unmapped.add(str(group))
            continue
        kept.append(
            {
                "id": f"toxigen-{index}",
                "text": text,
                "group": group,
                "domain": domains[group],
                "split": split,
                "source_toxicity": toxicity,
            }
        )
    # A group without a domain would silently vanish from the ID/OOD report.
    if unmapped:
        raise ValueError(
            f"ToxiGen source '{source}': target_group value(s) {sorted(unmapped)} have no "
            "domain; add them to group_domains or exclude them with groups."
        )
    return [kept[i] for i in _seeded_subset(range(len(kept)), limit, seed)]


# -------------------------------------------------------------------------- DGHS


def _read_dghs_table(source: str | Path) -> tuple[list[str], Iterable[Mapping[str, Any]]]:
    """Column names and rows of a local DGHS ``.csv`` or a hub dataset."""
    if _is_local(source):
        path = _require_file(source, "DGHS")
        if path.suffix.lower() != ".csv":
            raise DatasetLoadError(
                f"DGHS source '{source}': unsupported file type (expected the released .csv)."
            )
        # utf-8-sig: tolerate a byte-order mark in front of the header.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            try:
                rows = list(reader)
            except csv.Error as exc:
                raise DatasetLoadError(
                    f"DGHS source '{source}' is not a readable CSV ({exc})."
                ) from exc
            return list(reader.fieldnames or []), rows
    # The hub copies hold every row in one split; DGHS's `split` column says
    # which rows are train/dev/test.
    table = _hub_load(str(source), "DGHS", split="train")
    return list(table.column_names), table


def _dghs_cell(value: Any) -> str:
    """A string cell; missing values (None, or NaN from CSV readers) become ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def load_dghs(
    source: str | Path,
    groups: Sequence[str] | None = None,
    label: str = "hate",
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Load DGHS (Dynamically Generated Hate Speech) rows as toxic-corpus records.

    DGHS (Vidgen et al., 2021, "Learning from the worst: Dynamically generated
    datasets to improve online hate detection") holds about 40,000 English
    statements written by annotators over four rounds of adversarial,
    model-in-the-loop collection, each labelled ``hate``/``nothate`` with the
    attack ``type`` and the ``target`` group code(s). The UniDetox paper uses
    its ``hate`` rows targeting gender, sexual orientation, race and religion
    groups as the toxic corpus for its toxic model.

    `source` is the released ``Dynamically Generated Hate Dataset v0.2.3.csv``
    (read with the ``csv`` module) or a hub id of a dataset with the same
    columns, whose single ``train`` split holds all rows. Rows are kept when
    ``label`` equals `label`, DGHS's own ``split`` column matches `split`
    (``validation`` is DGHS's ``dev``), and, if `groups` is given, at least
    one dot-separated part of ``target`` is one of `groups` (``bla.wom``
    matches ``["wom"]``). Rows with empty text are skipped (logged). `limit`
    draws a seeded random subset after filtering, kept in source order.
    Records are ``{"id": "dghs-<acl.id>", "text", "target", "type", "label",
    "split"}`` with stripped text and `split` in our naming.
    """
    _check_split(split)
    dghs_split = DGHS_SPLITS[split]
    wanted = None if groups is None else set(groups)
    if wanted is not None and not wanted:
        raise ValueError("groups must name at least one DGHS target code, or be None")

    columns, rows = _read_dghs_table(source)
    missing = [c for c in DGHS_REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DatasetLoadError(
            f"DGHS source '{source}' lacks column(s) {missing} (found {columns})."
        )

    # Count survivors of each filter so an empty result can name its cause.
    labels_seen: set[str] = set()
    splits_seen: set[str] = set()
    targets_seen: set[str] = set()
    n_rows = n_label = n_split = n_group = n_empty = 0
    kept: list[dict[str, Any]] = []
    for row in rows:
        n_rows += 1
        row_label = _dghs_cell(row["label"])
        labels_seen.add(row_label)
        if row_label != label:
            continue
        n_label += 1
        row_split = _dghs_cell(row["split"])
        splits_seen.add(row_split)
        if row_split != dghs_split:
            continue
        n_split += 1
        target = _dghs_cell(row["target"])
        parts = {part.strip() for part in target.split(".")}
        targets_seen.update(parts)
        if wanted is not None and wanted.isdisjoint(parts):
            continue
        n_group += 1
        text = _dghs_cell(row["text"]).strip()
        if not text:
            n_empty += 1
            continue
        kept.append(
            {
                "id": f"dghs-{_dghs_cell(row['acl.id'])}",
                "text": text,
                "target": target,
                "type": _dghs_cell(row["type"]),
                "label": row_label,
                "split": split,
            }
        )

    if n_empty:
        log.info("DGHS source '%s': skipped %d matching row(s) with empty text.", source, n_empty)
    if not kept:
        where = f"DGHS source '{source}': no rows left"
        if n_rows == 0:
            raise ValueError(f"{where}; the source has no data rows.")
        if n_label == 0:
            raise ValueError(
                f"{where} after the label filter (label={label!r}; "
                f"labels in the source: {sorted(labels_seen)})."
            )
        if n_split == 0:
            raise ValueError(
                f"{where} after the split filter (split={split!r}, DGHS split "
                f"{dghs_split!r}; splits among {label!r} rows: {sorted(splits_seen)})."
            )
        if n_group == 0:
            raise ValueError(
                f"{where} after the groups filter (groups={sorted(wanted or ())}; "
                f"target codes among {label!r} {dghs_split!r} rows: {sorted(targets_seen)})."
            )
        raise ValueError(f"{where}: all {n_empty} matching row(s) have empty text.")
    return [kept[i] for i in _seeded_subset(range(len(kept)), limit, seed)]
