"""Jigsaw and SST-2 / Amazon Polarity reward-model loaders on small fixtures in the released schemas."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from detoxlab.data.external import (
    JIGSAW_LABELS,
    DatasetLoadError,
    load_jigsaw,
    load_sentiment_texts,
)

# Kaggle's train.csv header, in the released order.
JIGSAW_KAGGLE_COLUMNS = (
    "id", "target", "comment_text", "severe_toxicity", "obscene", "identity_attack", "insult",
    "threat", "asian", "atheist", "bisexual", "black", "buddhist", "christian", "female",
    "heterosexual", "hindu", "homosexual_gay_or_lesbian", "intellectual_or_learning_disability",
    "jewish", "latino", "male", "muslim", "other_disability", "other_gender",
    "other_race_or_ethnicity", "other_religion", "other_sexual_orientation",
    "physical_disability", "psychiatric_or_mental_illness", "transgender", "white",
    "created_date", "publication_id", "parent_id", "article_id", "rating", "funny", "wow", "sad",
    "likes", "disagree", "sexual_explicit", "identity_annotator_count", "toxicity_annotator_count",
)
SUBTYPES = ("severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")


def _kaggle_row(i: int, text: str, target: float | str, **subtypes: float | str) -> dict:
    row = {column: "" for column in JIGSAW_KAGGLE_COLUMNS}  # identity columns are mostly empty
    row.update(
        id=str(239000 + i), target=target, comment_text=text,
        created_date="2017-03-02 21:40:52.474096+00", publication_id="21",
        parent_id="", article_id=str(160000 + i), rating="approved", funny="0", wow="0",
        sad="0", likes=str(i % 3), disagree="0", identity_annotator_count="0",
        toxicity_annotator_count="4",
    )
    row.update({name: 0.0 for name in SUBTYPES})
    row.update(subtypes)
    return row


KAGGLE_ROWS = [
    _kaggle_row(0, "Thanks for the thoughtful write-up on the new bike lanes.", 0.0),
    _kaggle_row(1, "  What a stupid, clueless take. \n", 0.8, insult=0.75, obscene=0.1),
    _kaggle_row(2, "   ", 0.2),  # empty once stripped
    _kaggle_row(3, "The council vote is on Thursday.", 0.0, severe_toxicity=""),  # unrated
    _kaggle_row(4, "Anyone who disagrees should be run out of town.", 0.6, threat=0.5),
    _kaggle_row(5, "This column is garbage and so is the editor.", 0.7, insult=0.7),
] + [_kaggle_row(i, f"Comment number {i} about the weather.", 0.1 * (i % 4)) for i in range(6, 16)]


def _write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def kaggle_file(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "train.csv", KAGGLE_ROWS, JIGSAW_KAGGLE_COLUMNS)


def test_jigsaw_kaggle_target_is_toxicity(kaggle_file: Path) -> None:
    records = load_jigsaw(kaggle_file)
    assert records[1] == {
        "id": "jigsaw-239001",
        "text": "What a stupid, clueless take.",
        "labels": {
            "toxicity": 0.8, "severe_toxicity": 0.0, "obscene": 0.1, "identity_attack": 0.0,
            "insult": 0.75, "threat": 0.0, "sexual_explicit": 0.0,
        },
    }
    assert all(tuple(r["labels"]) == JIGSAW_LABELS for r in records)
    assert all(0.0 <= v <= 1.0 for r in records for v in r["labels"].values())


def test_jigsaw_label_subsets(kaggle_file: Path) -> None:
    pair = load_jigsaw(str(kaggle_file), labels=("insult", "toxicity"))
    assert pair[1]["labels"] == {"insult": 0.75, "toxicity": 0.8}
    assert load_jigsaw(kaggle_file, labels="threat")[3]["labels"] == {"threat": 0.5}
    with pytest.raises(ValueError, match="labels must be"):
        load_jigsaw(kaggle_file, labels=["toxicity", "profanity"])
    with pytest.raises(ValueError, match="labels must be"):
        load_jigsaw(kaggle_file, labels=[])


def test_jigsaw_skipped_rows_are_counted(
    kaggle_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="detoxlab.data.external"):
        records = load_jigsaw(kaggle_file)
    ids = [r["id"] for r in records]
    # Row 2 has no text; row 3 lacks severe_toxicity, a requested label.
    assert "jigsaw-239002" not in ids and "jigsaw-239003" not in ids
    assert len(records) == len(KAGGLE_ROWS) - 2
    assert "skipped 2 row(s)" in caplog.text and len(caplog.records) == 1
    # Without severe_toxicity among the labels, row 3 is complete.
    assert "jigsaw-239003" in {r["id"] for r in load_jigsaw(kaggle_file, labels=["toxicity"])}


def test_jigsaw_missing_column_is_named(tmp_path: Path) -> None:
    columns = tuple(c for c in JIGSAW_KAGGLE_COLUMNS if c != "insult")
    path = _write_csv(tmp_path / "no_insult.csv", KAGGLE_ROWS, columns)
    with pytest.raises(DatasetLoadError, match="'insult'") as info:
        load_jigsaw(path)
    message = str(info.value)
    assert "no_insult.csv" in message and "'comment_text'" in message  # the columns found
    assert len(load_jigsaw(path, labels=["toxicity", "threat"])) == len(KAGGLE_ROWS) - 1

    no_target = tuple(c for c in JIGSAW_KAGGLE_COLUMNS if c != "target")
    with pytest.raises(DatasetLoadError, match="'toxicity'"):
        load_jigsaw(_write_csv(tmp_path / "no_target.csv", KAGGLE_ROWS, no_target))


def test_jigsaw_bad_values_are_schema_errors(tmp_path: Path) -> None:
    out_of_range = [_kaggle_row(0, "fine text", 1.5)]
    with pytest.raises(DatasetLoadError, match=r"row 0, column 'target'.*outside \[0, 1\]"):
        load_jigsaw(_write_csv(tmp_path / "range.csv", out_of_range, JIGSAW_KAGGLE_COLUMNS))
    not_a_number = [_kaggle_row(0, "fine text", 0.0, insult="high")]
    with pytest.raises(DatasetLoadError, match="'high' is not a number"):
        load_jigsaw(_write_csv(tmp_path / "nan.csv", not_a_number, JIGSAW_KAGGLE_COLUMNS))
    with pytest.raises(ValueError, match="no rows left"):
        load_jigsaw(_write_csv(tmp_path / "empty.csv", KAGGLE_ROWS[2:3], JIGSAW_KAGGLE_COLUMNS))


def test_jigsaw_limit_is_seeded(kaggle_file: Path) -> None:
    first = load_jigsaw(kaggle_file, limit=5, seed=3)
    assert first == load_jigsaw(kaggle_file, limit=5, seed=3)
    assert len(first) == 5
    full_order = [r["id"] for r in load_jigsaw(kaggle_file)]
    chosen = {r["id"] for r in first}
    assert [r["id"] for r in first] == [i for i in full_order if i in chosen]
    draws = {tuple(r["id"] for r in load_jigsaw(kaggle_file, limit=5, seed=s)) for s in range(10)}
    assert len(draws) > 1


def test_jigsaw_local_file_is_one_split(kaggle_file: Path) -> None:
    with pytest.raises(ValueError, match="split='train'"):
        load_jigsaw(kaggle_file, split="validation")
    with pytest.raises(ValueError, match="split must be one of"):
        load_jigsaw(kaggle_file, split="test_public_leaderboard")  # the hub's name is not ours


def _hub_jigsaw_row(text: str, toxicity: float | None) -> dict:
    # The hub dataset renames `target` to `toxicity` and has no `id` column.
    return {"comment_text": text, "toxicity": toxicity, **{n: 0.0 for n in SUBTYPES},
            "female": None, "male": None, "toxicity_annotator_count": 10}


def test_jigsaw_hub_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return datasets.Dataset.from_list(
            [_hub_jigsaw_row("first comment", 0.25), _hub_jigsaw_row("second", None),
             _hub_jigsaw_row("third comment", 0.9)]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_jigsaw("google/jigsaw_unintended_bias", split="validation", labels=["toxicity"])
    assert records == [
        {"id": "jigsaw-0", "text": "first comment", "labels": {"toxicity": 0.25}},
        {"id": "jigsaw-2", "text": "third comment", "labels": {"toxicity": 0.9}},
    ]
    load_jigsaw("google/jigsaw_unintended_bias", split="test")
    load_jigsaw("google/jigsaw_unintended_bias")
    assert [kwargs["split"] for _, kwargs in calls] == [
        "test_public_leaderboard", "test_private_leaderboard", "train",
    ]


# ---------------------------------------------------------------------- Sentiment

SST2_ROWS = [  # stanfordnlp/sst2: idx, sentence (lower-cased, trailing space), label
    {"idx": 0, "sentence": "a gorgeous , witty , seductive movie . ", "label": 1},
    {"idx": 1, "sentence": "the plot is nothing but boilerplate clichés ", "label": 0},
    {"idx": 2, "sentence": "", "label": 1},
    {"idx": 3, "sentence": "an utterly charming and hilarious film ", "label": 1},
    {"idx": 4, "sentence": "it 's a bore . ", "label": 0},
] + [{"idx": i, "sentence": f"sentence number {i} ", "label": i % 2} for i in range(5, 15)]

SST2_TEST_ROWS = [  # the test split hides its labels as -1
    {"idx": 0, "sentence": "uneasy mishmash of styles and genres . ", "label": -1},
    {"idx": 1, "sentence": "this film 's relationship to actual tension is that of a pop-up . ",
     "label": -1},
]

AMAZON_ROWS = [  # fancyzhx/amazon_polarity: label, title, content
    {"label": 1, "title": "Great kettle", "content": "Boils fast and looks nice on the counter."},
    {"label": 0, "title": "Broke in a week", "content": "The handle snapped off after six days."},
    {"label": 0, "title": "", "content": "Arrived late and missing parts."},
    {"label": 1, "title": "Five stars", "content": ""},
]

MTEB_ROWS = [  # mteb/amazon_polarity: text, label, label_text
    {"text": "Works as described. Would buy again.", "label": 1, "label_text": "positive"},
    {"text": "Stopped working after a month.", "label": 0, "label_text": "negative"},
]


@pytest.fixture(params=["jsonl", "csv"])
def sst2_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"sst2_train.{request.param}"
    if request.param == "jsonl":
        return _write_jsonl(path, SST2_ROWS)
    return _write_csv(path, SST2_ROWS, ("idx", "sentence", "label"))


def test_sst2_schema_and_negativity(sst2_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="detoxlab.data.external"):
        records = load_sentiment_texts(sst2_file)
    assert records[:2] == [
        {"id": "sst2-0", "text": "a gorgeous , witty , seductive movie .",
         "labels": {"negativity": 0.0}},
        {"id": "sst2-1", "text": "the plot is nothing but boilerplate clichés",
         "labels": {"negativity": 1.0}},
    ]
    # The empty sentence is skipped; negativity is 1 - label everywhere else.
    assert len(records) == len(SST2_ROWS) - 1 and "skipped 1 row(s)" in caplog.text
    by_id = {f"sst2-{r['idx']}": r["label"] for r in SST2_ROWS}
    assert all(r["labels"]["negativity"] == 1.0 - by_id[r["id"]] for r in records)


def test_sst2_hidden_labels_are_skipped(tmp_path: Path) -> None:
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", SST2_TEST_ROWS + SST2_ROWS[:2])
    assert [r["id"] for r in load_sentiment_texts(mixed)] == ["sst2-0", "sst2-1"]
    hidden = _write_jsonl(tmp_path / "test.jsonl", SST2_TEST_ROWS)
    with pytest.raises(ValueError, match=r"no rows left \(2 read"):
        load_sentiment_texts(hidden)


def test_amazon_schema(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "amazon_polarity.csv", AMAZON_ROWS, ("label", "title", "content"))
    records = load_sentiment_texts(path)
    assert [r["id"] for r in records] == ["amazon-0", "amazon-1", "amazon-2", "amazon-3"]
    assert records[0]["text"] == "Great kettle\nBoils fast and looks nice on the counter."
    assert records[2]["text"] == "Arrived late and missing parts."
    assert records[3]["text"] == "Five stars"
    assert [r["labels"]["negativity"] for r in records] == [0.0, 1.0, 1.0, 0.0]

    mteb = load_sentiment_texts(_write_jsonl(tmp_path / "mteb.jsonl", MTEB_ROWS))
    assert mteb == [
        {"id": "sentiment-0", "text": "Works as described. Would buy again.",
         "labels": {"negativity": 0.0}},
        {"id": "sentiment-1", "text": "Stopped working after a month.",
         "labels": {"negativity": 1.0}},
    ]


def test_unknown_sentiment_schema(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "reviews.csv", [{"review": "ok", "sentiment": "positive"}],
                      ("review", "sentiment"))
    with pytest.raises(DatasetLoadError, match="none of the known schemas") as info:
        load_sentiment_texts(path)
    message = str(info.value)
    assert "'review'" in message and "sentence/label" in message and "title/content/label" in message


def test_sentiment_bad_label_and_file_type(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"idx": 0, "sentence": "fine", "label": 2}])
    with pytest.raises(DatasetLoadError, match="row 0, column 'label': 2 is not 0, 1 or -1"):
        load_sentiment_texts(path)
    parquet = tmp_path / "sst2.parquet"
    parquet.write_bytes(b"")
    with pytest.raises(DatasetLoadError, match="unsupported file type"):
        load_sentiment_texts(parquet)
    with pytest.raises(DatasetLoadError, match="file not found"):
        load_sentiment_texts(tmp_path / "absent.jsonl")


def test_sentiment_limit_is_seeded(sst2_file: Path) -> None:
    first = load_sentiment_texts(sst2_file, limit=4, seed=1)
    assert first == load_sentiment_texts(sst2_file, limit=4, seed=1)
    assert [r["id"] for r in first] == sorted((r["id"] for r in first), key=lambda i: int(i[5:]))
    draws = {tuple(r["id"] for r in load_sentiment_texts(sst2_file, limit=4, seed=s))
             for s in range(10)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="split='train'"):
        load_sentiment_texts(sst2_file, split="validation")


def test_sentiment_hub_split_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return datasets.Dataset.from_list(SST2_ROWS[:2])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_sentiment_texts("stanfordnlp/sst2", split="validation")
    assert calls == [("stanfordnlp/sst2", {"split": "validation"})]
    assert [r["id"] for r in records] == ["sst2-0", "sst2-1"]


def test_sst2_and_amazon_together_make_one_reward_set(tmp_path: Path) -> None:
    from detoxlab.rewards.data import external_data

    sst2 = _write_jsonl(tmp_path / "sst2.jsonl", SST2_ROWS)
    amazon = _write_csv(tmp_path / "amazon.csv", AMAZON_ROWS, ("label", "title", "content"))
    section = {"source": "sentiment", "path": [str(sst2), str(amazon)], "limit": None, "validation_fraction": 0.25}
    rows, provenance = external_data(section, ["negativity"], seed=0)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(SST2_ROWS) - 1 + len(AMAZON_ROWS)
    assert {i.split("-")[0] for i in ids} == {"sst2", "amazon"}
    assert {r["split"] for r in rows} == {"train", "validation"} and provenance["path"] == section["path"]


def _write_sentiment_prompts(root: Path) -> Path:
    root.mkdir()
    texts = {"negative": ["The worst part of the day was", "I hated how"],
             "neutral": ["The meeting is scheduled for", "According to the report,", "The bus leaves at"],
             "positive": ["What a wonderful"]}
    for group, lines in texts.items():
        _write_jsonl(root / f"{group}_prompts.jsonl", [{"prompt": {"text": t}} for t in lines])
    return root


def test_dexperts_sentiment_prompts(tmp_path: Path) -> None:
    from detoxlab.data.external import load_sentiment_prompts
    from detoxlab.evaluation import load_prompt_set

    root = _write_sentiment_prompts(tmp_path / "sentiment_prompts-10k")
    rows = load_sentiment_prompts(root)
    assert [r["id"] for r in rows] == ["negative-0", "negative-1", "neutral-0", "neutral-1", "neutral-2",
                                       "positive-0"]
    assert rows[2] == {"id": "neutral-0", "text": "The meeting is scheduled for", "group": "neutral",
                       "domain": "id", "split": "test"}
    picked = load_sentiment_prompts(root, groups=["negative", "neutral"], limit=1, seed=3)
    assert [r["group"] for r in picked] == ["negative", "neutral"]
    cfg = {"seed": 0, "prompts": {"source": "sentiment_prompts", "path": str(root), "limit": 2,
                                  "groups": ["neutral"]}}
    assert [r["group"] for r in load_prompt_set(cfg, "test")] == ["neutral", "neutral"]
    assert load_prompt_set(cfg, "validation") == []  # the release has no validation split
    with pytest.raises(DatasetLoadError, match="unknown group"):
        load_sentiment_prompts(root, groups=["angry"])
    (root / "positive_prompts.jsonl").write_text('{"prompt": {}}\n')
    with pytest.raises(DatasetLoadError, match=r"row 0 lacks 'prompt.text'"):
        load_sentiment_prompts(root)
    with pytest.raises(DatasetLoadError, match="not a directory"):
        load_sentiment_prompts(tmp_path / "missing")
