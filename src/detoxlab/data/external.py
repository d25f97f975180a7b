"""Loaders for public data sets: RealToxicityPrompts, ToxiGen (annotated), DGHS,
Jigsaw Unintended Bias, the SST-2 / Amazon Polarity sentiment sets, and Wikitext.

Each loader accepts a Hugging Face hub id (paper-scale runs on machines with
network access) or a local file in the dataset's published schema. The prompt
loaders (RealToxicityPrompts, ToxiGen) return project prompt records::

    {"id", "text", "group", "domain", "split", "source_toxicity"}

the DGHS loader returns toxic-corpus records::

    {"id", "text", "target", "type", "label", "split"}

and the reward-model loaders (Jigsaw, sentiment) return records with continuous
labels in [0, 1], where 1 is the undesired end of each attribute::

    {"id", "text", "labels": {name: float}}

The Wikitext loader returns general-domain paragraphs as ``{"id", "text"}``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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

JIGSAW_HUB_ID = "google/jigsaw_unintended_bias"
# Annotator fractions shared by Kaggle's train.csv and the hub dataset; Kaggle's
# train.csv names the first one `target` (JIGSAW_KAGGLE_TOXICITY).
JIGSAW_LABELS = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
)
JIGSAW_TEXT_COLUMN = "comment_text"
JIGSAW_KAGGLE_TOXICITY = "target"
# Our split names -> the hub dataset's splits. The competition had no validation
# set, so the public leaderboard's test set serves as one.
JIGSAW_HUB_SPLITS = {
    "train": "train",
    "validation": "test_public_leaderboard",
    "test": "test_private_leaderboard",
}

SST2_HUB_ID = "stanfordnlp/sst2"
AMAZON_POLARITY_HUB_ID = "fancyzhx/amazon_polarity"
SENTIMENT_LABEL = "negativity"

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


def _str_cell(value: Any) -> str:
    """A string cell; missing values (None, or NaN from CSV readers) become ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _score_cell(value: Any, where: str, column: str) -> float | None:
    """A numeric cell, or None when it is empty; text that is not a number is a schema error."""
    if isinstance(value, str):
        value = value.strip() or None
    try:
        return _as_float(value)
    except (TypeError, ValueError):
        raise DatasetLoadError(f"{where}, column '{column}': {value!r} is not a number.") from None


def _read_jsonl(path: Path, source: str | Path, what: str) -> list[Any]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetLoadError(
                    f"{what} source '{source}': line {lineno} is not JSON ({exc})."
                ) from exc
    return rows


def _read_csv(path: Path, source: str | Path, what: str) -> tuple[list[str], list[dict[str, Any]]]:
    # utf-8-sig: tolerate a byte-order mark in front of the header.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise DatasetLoadError(
                f"{what} source '{source}' is not a readable CSV ({exc})."
            ) from exc
        return list(reader.fieldnames or []), rows


def _read_table(
    source: str | Path, what: str, suffixes: Sequence[str], **hub_kwargs: Any
) -> tuple[list[str], Iterable[Mapping[str, Any]]]:
    """Column names and rows of a local file (one of `suffixes`) or of a hub split.

    CSV cells are strings ('' when empty); JSON lines keep their JSON types.
    """
    if not _is_local(source):
        table = _hub_load(str(source), what, **hub_kwargs)
        return list(table.column_names), table
    path = _require_file(source, what)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise DatasetLoadError(
            f"{what} source '{source}': unsupported file type (expected {', '.join(suffixes)})."
        )
    if suffix == ".csv":
        return _read_csv(path, source, what)
    rows = _read_jsonl(path, source, what)
    columns: dict[str, None] = {}
    for lineno, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise DatasetLoadError(f"{what} source '{source}': record {lineno} is not an object.")
        columns.update(dict.fromkeys(row))
    return list(columns), rows


def _require_columns(
    columns: Sequence[str], required: Iterable[str], source: str | Path, what: str
) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetLoadError(
            f"{what} source '{source}' lacks column(s) {missing} (found {list(columns)})."
        )


def _check_local_split(source: str | Path, what: str, split: str) -> None:
    """A local file is read whole as one split, so only the default `train` is meaningful."""
    if split != "train":
        raise ValueError(
            f"{what} source '{source}' is a local file, which is read whole as one split: "
            f"use split='train' (got {split!r}), or a hub id for the {split} split."
        )


def _row_id(prefix: str, row: Mapping[str, Any], id_column: str | None, index: int) -> str:
    """``<prefix>-<the row's own id>``, or ``<prefix>-<row index>`` when the source has none."""
    own = _str_cell(row.get(id_column)).strip() if id_column else ""
    return f"{prefix}-{own or index}"


def _labelled_records(
    rows: Iterable[Mapping[str, Any]],
    make_record: Callable[[int, Mapping[str, Any]], dict[str, Any] | None],
    skip_reason: str,
    source: str | Path,
    what: str,
    limit: int | None,
    seed: int,
) -> list[dict[str, Any]]:
    """One record per row (`make_record` returns None to skip it), then the seeded `limit` subset.

    Skipped rows are logged once; a source with no usable row is an error rather
    than an empty training set.
    """
    kept: list[dict[str, Any]] = []
    n_rows = 0
    for index, row in enumerate(rows):
        n_rows += 1
        record = make_record(index, row)
        if record is not None:
            kept.append(record)
    n_skipped = n_rows - len(kept)
    if n_skipped:
        log.info("%s source '%s': skipped %d row(s) %s.", what, source, n_skipped, skip_reason)
    if not kept:
        raise ValueError(
            f"{what} source '{source}': no rows left ({n_rows} read, all skipped {skip_reason})."
        )
    return [kept[i] for i in _seeded_subset(range(len(kept)), limit, seed)]


# --------------------------------------------------------------------------- RTP


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
        rows: Iterable[Any] = _read_jsonl(
            _require_file(source, "RealToxicityPrompts"), source, "RealToxicityPrompts"
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
    _require_columns(table.column_names, TOXIGEN_REQUIRED_COLUMNS, source, "ToxiGen")

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

    # The hub copies hold every row in one split; DGHS's `split` column says
    # which rows are train/dev/test.
    columns, rows = _read_table(source, "DGHS", (".csv",), split="train")
    _require_columns(columns, DGHS_REQUIRED_COLUMNS, source, "DGHS")

    # Count survivors of each filter so an empty result can name its cause.
    labels_seen: set[str] = set()
    splits_seen: set[str] = set()
    targets_seen: set[str] = set()
    n_rows = n_label = n_split = n_group = n_empty = 0
    kept: list[dict[str, Any]] = []
    for row in rows:
        n_rows += 1
        row_label = _str_cell(row["label"])
        labels_seen.add(row_label)
        if row_label != label:
            continue
        n_label += 1
        row_split = _str_cell(row["split"])
        splits_seen.add(row_split)
        if row_split != dghs_split:
            continue
        n_split += 1
        target = _str_cell(row["target"])
        parts = {part.strip() for part in target.split(".")}
        targets_seen.update(parts)
        if wanted is not None and wanted.isdisjoint(parts):
            continue
        n_group += 1
        text = _str_cell(row["text"]).strip()
        if not text:
            n_empty += 1
            continue
        kept.append(
            {
                "id": f"dghs-{_str_cell(row['acl.id'])}",
                "text": text,
                "target": target,
                "type": _str_cell(row["type"]),
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


# ------------------------------------------------------------------------ Jigsaw


def _jigsaw_labels(labels: str | Iterable[str]) -> tuple[str, ...]:
    wanted = (labels,) if isinstance(labels, str) else tuple(labels)
    unknown = [label for label in wanted if label not in JIGSAW_LABELS]
    if not wanted or unknown or len(set(wanted)) != len(wanted):
        raise ValueError(
            f"labels must be distinct names from {JIGSAW_LABELS}, got {list(wanted)}"
        )
    return wanted


def _jigsaw_label_columns(
    columns: Sequence[str], labels: Sequence[str], source: str | Path
) -> dict[str, str]:
    """Source column of each requested label (Kaggle's train.csv calls toxicity `target`)."""
    mapping = {label: label for label in labels}
    if "toxicity" in mapping and "toxicity" not in columns and JIGSAW_KAGGLE_TOXICITY in columns:
        mapping["toxicity"] = JIGSAW_KAGGLE_TOXICITY
    _require_columns(columns, [JIGSAW_TEXT_COLUMN, *mapping.values()], source, "Jigsaw")
    return mapping


def _unit_score(value: Any, where: str, column: str) -> float | None:
    score = _score_cell(value, where, column)
    if score is not None and not 0.0 <= score <= 1.0:
        raise DatasetLoadError(f"{where}, column '{column}': {score} is outside [0, 1].")
    return score


def load_jigsaw(
    source: str | Path,
    labels: str | Iterable[str] = JIGSAW_LABELS,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Load Jigsaw Unintended Bias comments with their toxicity fractions as reward-model records.

    Jigsaw Unintended Bias in Toxicity Classification (Borkan et al., 2019)
    holds about 1.8 million Civil Comments in its train set, each rated by a
    panel of crowd raters; every attribute is the fraction of raters who chose
    it, so it lies in [0, 1]. RAD trains its toxicity reward model on these
    fractions rather than on binary labels.

    `source` is Kaggle's ``train.csv`` (columns ``id``, ``comment_text``,
    ``target`` = the toxicity fraction, ``severe_toxicity``, ``obscene``,
    ``identity_attack``, ``insult``, ``threat``, ``sexual_explicit``, then
    identity and annotation-count columns), or the hub id
    ``google/jigsaw_unintended_bias`` (a manual-download dataset built from
    those files) or a copy with its columns: ``comment_text``, ``toxicity``
    and the same subtype names; splits ``train``, ``test_public_leaderboard``,
    ``test_private_leaderboard``.
    On the hub, `split` ``validation`` / ``test`` read the public / private
    leaderboard test sets; a local file is read whole and accepts only
    ``train``. A local file may name the toxicity column ``toxicity`` instead
    of ``target`` (the competition's expanded test files do).

    Records are ``{"id": "jigsaw-<id, or the row index>", "text": <stripped
    comment_text>, "labels": {label: fraction for each of `labels`}}``. Rows
    with empty text or without a value for a requested label are skipped
    (logged once). `limit` draws a seeded random subset, kept in source order.
    """
    _check_split(split)
    wanted = _jigsaw_labels(labels)
    if _is_local(source):
        _check_local_split(source, "Jigsaw", split)
    columns, rows = _read_table(source, "Jigsaw", (".csv",), split=JIGSAW_HUB_SPLITS[split])
    label_columns = _jigsaw_label_columns(columns, wanted, source)
    id_column = "id" if "id" in columns else None

    def make_record(index: int, row: Mapping[str, Any]) -> dict[str, Any] | None:
        text = _str_cell(row.get(JIGSAW_TEXT_COLUMN)).strip()
        where = f"Jigsaw source '{source}', row {index}"
        scores = {
            label: _unit_score(row.get(column), where, column)
            for label, column in label_columns.items()
        }
        if not text or any(score is None for score in scores.values()):
            return None
        return {"id": _row_id("jigsaw", row, id_column, index), "text": text, "labels": scores}

    return _labelled_records(
        rows, make_record, "with empty text or a missing label", source, "Jigsaw", limit, seed
    )


# --------------------------------------------------------------------- Sentiment


@dataclass(frozen=True)
class _SentimentSchema:
    """Columns that identify a sentiment data set; `name` is also the record-id prefix."""

    name: str
    text_columns: tuple[str, ...]
    id_column: str | None = None


# Checked in order: the first schema whose text columns (and `label`) are all
# present wins.
_SENTIMENT_SCHEMAS = (
    _SentimentSchema("sst2", ("sentence",), id_column="idx"),
    _SentimentSchema("amazon", ("title", "content")),
    # Copies that already merged title and review into one column (MTEB's).
    _SentimentSchema("sentiment", ("text",)),
)


def _sentiment_schema(columns: Sequence[str], source: str | Path) -> _SentimentSchema:
    for schema in _SENTIMENT_SCHEMAS:
        if all(c in columns for c in (*schema.text_columns, "label")):
            return schema
    expected = " or ".join(
        "/".join((*schema.text_columns, "label")) for schema in _SENTIMENT_SCHEMAS
    )
    raise DatasetLoadError(
        f"Sentiment source '{source}' has columns {list(columns)}, none of the known "
        f"schemas ({expected})."
    )


def _polarity(value: Any, where: str) -> int | None:
    """0 (negative) or 1 (positive); None when missing or hidden (SST-2's test labels are -1)."""
    label = _score_cell(value, where, "label")
    if label is None or label == -1:
        return None
    if label not in (0, 1):
        raise DatasetLoadError(f"{where}, column 'label': {value!r} is not 0, 1 or -1.")
    return int(label)


def load_sentiment_texts(
    source: str | Path,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Load SST-2 or Amazon Polarity as sentiment reward-model records.

    RAD and ARM train their sentiment reward model on these two sets. The
    schema is detected from the columns:

    - SST-2 (hub ``stanfordnlp/sst2``): ``idx``, ``sentence``, ``label`` (0
      negative, 1 positive); splits train/validation/test, whose test labels
      are hidden as -1, so its test split has no usable rows.
    - Amazon Polarity (hub ``fancyzhx/amazon_polarity``): ``label`` (0
      negative, 1 positive), ``title``, ``content``; splits train/test. The
      text is the title and the review joined by a newline (either may be empty).
    - copies with one ``text`` column and ``label`` (``mteb/amazon_polarity``).

    `source` is a hub id (`split` is passed through) or a local .csv/.jsonl
    file with one of these column sets, read whole as the ``train`` split.
    Records are ``{"id": "sst2-<idx>" | "amazon-<row index>" |
    "sentiment-<row index>", "text", "labels": {"negativity": 1.0 - label}}``:
    negativity is the undesired attribute, as scorers report it. Rows without
    text or with a missing or -1 label are skipped (logged once). `limit` draws
    a seeded random subset, kept in source order.
    """
    _check_split(split)
    if _is_local(source):
        _check_local_split(source, "Sentiment", split)
    columns, rows = _read_table(source, "Sentiment", (".csv", ".jsonl"), split=split)
    schema = _sentiment_schema(columns, source)

    def make_record(index: int, row: Mapping[str, Any]) -> dict[str, Any] | None:
        parts = (_str_cell(row.get(column)).strip() for column in schema.text_columns)
        text = "\n".join(part for part in parts if part)
        label = _polarity(row.get("label"), f"Sentiment source '{source}', row {index}")
        if not text or label is None:
            return None
        return {
            "id": _row_id(schema.name, row, schema.id_column, index),
            "text": text,
            "labels": {SENTIMENT_LABEL: 1.0 - label},
        }

    return _labelled_records(
        rows, make_record, "without text or a 0/1 label", source, "Sentiment", limit, seed
    )


# ------------------------------------------------- DExperts / ARM sentiment prompts

SENTIMENT_PROMPT_GROUPS = ("negative", "neutral", "positive")


def load_sentiment_prompts(
    source: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
    groups: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Load the OpenWebText sentiment prompts of DExperts (used by RAD and ARM) as project records.

    `source` is the released ``sentiment_prompts-10k`` directory: ``negative_prompts.jsonl``,
    ``neutral_prompts.jsonl`` and ``positive_prompts.jsonl``, one ``{"prompt": {"text": ...}}`` per line
    (5K neutral, 2.5K of each polarity). The file names the group; ids are ``<group>-<line index>``.
    `groups` loads only those files; `limit` draws a seeded subset per group. The release has one split, which
    is returned as `split` (the evaluation split).
    """
    _check_split(split)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DatasetLoadError(f"Sentiment prompts source '{source}' is not a directory with "
                               + ", ".join(f"{g}_prompts.jsonl" for g in SENTIMENT_PROMPT_GROUPS) + ".")
    wanted = list(groups or SENTIMENT_PROMPT_GROUPS)
    if bad := sorted(set(wanted) - set(SENTIMENT_PROMPT_GROUPS)):
        raise DatasetLoadError(f"Sentiment prompts: unknown group(s) {bad}; the release has "
                               f"{', '.join(SENTIMENT_PROMPT_GROUPS)}.")
    out: list[dict[str, Any]] = []
    for group in wanted:
        path = _require_file(root / f"{group}_prompts.jsonl", "Sentiment prompts")
        records = []
        for index, row in enumerate(_read_jsonl(path, source, "Sentiment prompts")):
            text = row.get("prompt", {}).get("text") if isinstance(row, Mapping) else None
            if not isinstance(text, str) or not text.strip():
                raise DatasetLoadError(f"Sentiment prompts source '{path}': row {index} lacks 'prompt.text'.")
            records.append({"id": f"{group}-{index}", "text": text, "group": group, "domain": "id",
                             "split": split})
        out += [records[i] for i in _seeded_subset(range(len(records)), limit, seed)]
    return out


# ---------------------------------------------------------------------- Wikitext

WIKITEXT_HUB_ID = "Salesforce/wikitext"
WIKITEXT_CONFIG = "wikitext-103-raw-v1"


def load_wikitext(
    source: str | Path,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
    min_chars: int = 40,
    config_name: str = WIKITEXT_CONFIG,
) -> list[dict[str, Any]]:
    """Load Wikitext paragraphs as general-domain text (ACF's adaptive regulariser).

    `source` is a hub id (``Salesforce/wikitext`` or ``wikitext``, loaded with
    `config_name` and `split`) or a local .csv/.jsonl file with the hub's single
    ``text`` column, read whole as the ``train`` split. Hub rows are lines of
    Wikipedia articles: empty lines, headings (`` = Title = `` and
    `` = = Section = = ``) and paragraphs. Only paragraphs are kept: lines are
    stripped, and empty lines, headings and lines shorter than `min_chars` are
    dropped (counts logged); the text is not otherwise normalised. Records are
    ``{"id": "wikitext/<split>/<row index in the source>", "text"}``. `limit`
    draws a seeded random subset, kept in source order.
    """
    _check_split(split)
    if _is_local(source):
        _check_local_split(source, "Wikitext", split)
    columns, rows = _read_table(
        source, "Wikitext", (".csv", ".jsonl"), name=config_name, split=split
    )
    _require_columns(columns, ("text",), source, "Wikitext")

    kept: list[dict[str, Any]] = []
    n_empty = n_heading = n_short = 0
    for index, row in enumerate(rows):
        text = _str_cell(row.get("text")).strip()
        if not text:
            n_empty += 1
        elif text.startswith("=") and text.endswith("="):
            n_heading += 1
        elif len(text) < min_chars:
            n_short += 1
        else:
            kept.append({"id": f"wikitext/{split}/{index}", "text": text})
    log.info(
        "Wikitext source '%s': kept %d paragraph(s); dropped %d empty, %d heading and "
        "%d shorter than %d characters.",
        source, len(kept), n_empty, n_heading, n_short, min_chars,
    )
    if not kept:
        raise ValueError(
            f"Wikitext source '{source}': no paragraphs left ({n_empty} empty, {n_heading} "
            f"heading and {n_short} short line(s) dropped; min_chars={min_chars})."
        )
    return [kept[i] for i in _seeded_subset(range(len(kept)), limit, seed)]
