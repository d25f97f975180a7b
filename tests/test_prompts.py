"""The shipped prompt set and its loader (detoxlab.data.prompts)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from detoxlab.data.prompts import DOMAINS, FIELDS, SPLITS, PromptSetError, load_prompts, summarize

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts" / "toxicity.jsonl"


@pytest.fixture(scope="module")
def prompts() -> list[dict[str, str]]:
    return load_prompts(PROMPTS)


def _row(i: int = 1, **over: str) -> dict[str, str]:
    row = {"id": f"g-{i:03d}", "text": f"Prompt number {i} ends with", "group": "g", "domain": "id"}
    return {**row, "split": "test", **over}


def _write(tmp_path: Path, lines: list[str | dict]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


# --- the shipped file -------------------------------------------------------------------------------------


def test_shipped_file_is_valid_and_large_enough(prompts):
    assert len(prompts) >= 300
    assert all(tuple(p) == FIELDS for p in prompts)
    assert {p["split"] for p in prompts} == set(SPLITS)
    assert {p["domain"] for p in prompts} == set(DOMAINS)


def test_groups_and_domains(prompts):
    domains: dict[str, set[str]] = {}
    for p in prompts:
        domains.setdefault(p["group"], set()).add(p["domain"])
    assert all(len(d) == 1 for d in domains.values()), domains
    toxic = {g: d.pop() for g, d in domains.items() if g != "neutral"}
    assert len(toxic) >= 8
    assert set(toxic.values()) == {"id", "ood"}
    assert domains["neutral"] == {"neutral"}
    assert toxic["gender"] == toxic["race"] == toxic["religion"] == toxic["sexual_orientation"] == "id"
    assert toxic["disability"] == toxic["age"] == "ood"


def test_split_sizes_per_group(prompts):
    for group, counts in summarize(prompts)["by_group_split"].items():
        assert counts == {"train": 12, "validation": 6, "test": 12}, group


def test_ids_and_texts_unique_and_well_formed(prompts):
    assert len({p["id"] for p in prompts}) == len(prompts)
    assert len({p["text"] for p in prompts}) == len(prompts)
    for p in prompts:
        assert p["id"].rsplit("-", 1)[0] == p["group"] and len(p["id"].rsplit("-", 1)[1]) == 3, p["id"]
        assert 5 <= len(p["text"].split()) <= 20, p["id"]
        assert p["text"][-1] not in ".!?", p["id"]  # openings end mid-sentence


# --- loader ---------------------------------------------------------------------------------------------


def test_filter_by_split_and_group(prompts):
    test = load_prompts(PROMPTS, splits=["test"])
    assert test and {p["split"] for p in test} == {"test"}
    assert test == [p for p in prompts if p["split"] == "test"]
    sel = load_prompts(PROMPTS, splits=("train", "validation"), groups=["age", "gender"])
    assert {p["group"] for p in sel} == {"age", "gender"}
    assert Counter(p["split"] for p in sel) == {"train": 24, "validation": 12}
    assert load_prompts(PROMPTS, groups="neutral") == [p for p in prompts if p["group"] == "neutral"]


def test_unknown_filter_values_raise():
    with pytest.raises(ValueError, match="split"):
        load_prompts(PROMPTS, splits=["dev"])
    with pytest.raises(ValueError, match="nope"):
        load_prompts(PROMPTS, groups=["nope"])
    with pytest.raises(ValueError, match="max_per_group"):
        load_prompts(PROMPTS, max_per_group=0)


def test_max_per_group_is_seeded(prompts):
    a = load_prompts(PROMPTS, splits=["test"], max_per_group=4, seed=1)
    assert a == load_prompts(PROMPTS, splits=["test"], max_per_group=4, seed=1)
    assert a != load_prompts(PROMPTS, splits=["test"], max_per_group=4, seed=2)
    assert set(Counter(p["group"] for p in a).values()) == {4}
    order = {p["id"]: i for i, p in enumerate(prompts)}
    assert [order[p["id"]] for p in a] == sorted(order[p["id"]] for p in a)
    # A larger cap than a group has keeps the whole group.
    assert load_prompts(PROMPTS, groups=["age"], max_per_group=100) == [p for p in prompts if p["group"] == "age"]


def test_summarize_counts(prompts):
    s = summarize(prompts)
    assert s["total"] == len(prompts)
    assert sum(s["by_domain"].values()) == len(prompts)
    assert s["by_domain"]["neutral"] == 30
    assert sum(sum(c.values()) for c in s["by_group_split"].values()) == len(prompts)


# --- malformed files ------------------------------------------------------------------------------------


def test_valid_tmp_file_loads_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path, [_row(1), "", _row(2, split="train")])
    assert [p["id"] for p in load_prompts(path)] == ["g-001", "g-002"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({k: v for k, v in _row(2).items() if k != "text"}, "text"),
        (_row(2, split="dev"), "split"),
        (_row(2, domain="other"), "domain"),
        (_row(2, text="   "), "text"),
        (_row(2, text="ends with a space "), "text"),
        ({**_row(2), "group": 3}, "group"),
        ({**_row(2), "extra": "x"}, "extra"),
        (_row(1), "id"),  # duplicate of line 1
        (_row(2, domain="ood"), "domain"),  # group 'g' already 'id' on line 1
    ],
)
def test_malformed_row_names_file_line_and_field(tmp_path, bad, field):
    path = _write(tmp_path, [_row(1), bad])
    with pytest.raises(PromptSetError) as err:
        load_prompts(path)
    msg = str(err.value)
    assert str(path) in msg and "line 2" in msg and repr(field) in msg, msg


def test_invalid_json_names_line(tmp_path):
    path = _write(tmp_path, [_row(1), _row(2), '{"id": "g-003", "text": '])
    with pytest.raises(PromptSetError, match=r"line 3: invalid JSON"):
        load_prompts(path)


def test_non_object_row(tmp_path):
    path = _write(tmp_path, ['["g-001", "text"]'])
    with pytest.raises(PromptSetError, match="line 1.*JSON object"):
        load_prompts(path)
