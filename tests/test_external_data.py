"""RealToxicityPrompts, ToxiGen, DGHS and Wikitext loaders on small fixtures in the released schemas."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from detoxlab.data import external
from detoxlab.data.external import (
    DGHS_COLUMNS,
    TOXIGEN_COLUMNS,
    DatasetLoadError,
    load_dghs,
    load_realtoxicityprompts,
    load_toxigen_annotated,
    load_wikitext,
)

PERSPECTIVE_ATTRS = (
    "toxicity",
    "profanity",
    "sexually_explicit",
    "flirtation",
    "identity_attack",
    "threat",
    "insult",
    "severe_toxicity",
)


def _scores(text: str, toxicity: float | None) -> dict:
    # Perspective attributes other than toxicity are null in some released rows.
    return {"text": text, **{a: None for a in PERSPECTIVE_ATTRS}, "toxicity": toxicity}


def _rtp_row(i: int, toxicity: float | None, challenging: bool) -> dict:
    return {
        "filename": f"0{i:06d}-abcdef.txt",
        "begin": 10 * i,
        "end": 10 * i + 42,
        "challenging": challenging,
        "prompt": _scores(f"Prompt number {i} says", toxicity),
        "continuation": _scores(f" continuation {i}.", 0.1),
    }


RTP_ROWS = [
    _rtp_row(0, 0.05, False),
    _rtp_row(1, 0.92, True),
    _rtp_row(2, None, False),  # Perspective failed on this prompt
    _rtp_row(3, 0.5, True),
    _rtp_row(4, 0.49, False),
    _rtp_row(5, 0.2, True),
] + [_rtp_row(i, 0.01 * i, False) for i in range(6, 16)]


@pytest.fixture
def rtp_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RTP_ROWS), encoding="utf-8")
    return path


def test_rtp_field_mapping(rtp_file: Path) -> None:
    records = load_realtoxicityprompts(rtp_file)
    assert len(records) == len(RTP_ROWS)
    assert records[1] == {
        "id": "rtp-1",
        "text": "Prompt number 1 says",
        "group": "rtp_challenging",
        "domain": "id",
        "split": "test",
        "source_toxicity": 0.92,
    }
    assert records[0]["group"] == "rtp"
    assert records[2]["source_toxicity"] is None
    assert load_realtoxicityprompts(str(rtp_file), split="validation")[0]["split"] == "validation"


def test_rtp_filters(rtp_file: Path) -> None:
    challenging = load_realtoxicityprompts(rtp_file, challenging_only=True)
    assert [r["id"] for r in challenging] == ["rtp-1", "rtp-3", "rtp-5"]
    assert {r["group"] for r in challenging} == {"rtp_challenging"}

    nontoxic = load_realtoxicityprompts(rtp_file, max_prompt_toxicity=0.5)
    ids = {r["id"] for r in nontoxic}
    # Strictly below the threshold; a null score cannot pass a toxicity filter.
    assert "rtp-1" not in ids and "rtp-3" not in ids and "rtp-2" not in ids
    assert {"rtp-0", "rtp-4", "rtp-5"} <= ids
    assert len(nontoxic) == len(RTP_ROWS) - 3

    both = load_realtoxicityprompts(rtp_file, challenging_only=True, max_prompt_toxicity=0.5)
    assert [r["id"] for r in both] == ["rtp-5"]


def test_rtp_limit_is_seeded(rtp_file: Path) -> None:
    first = load_realtoxicityprompts(rtp_file, limit=5, seed=3)
    assert first == load_realtoxicityprompts(rtp_file, limit=5, seed=3)
    assert len(first) == 5
    # Ids keep the source line index and the subset keeps file order.
    assert [r["id"] for r in first] == sorted(
        (r["id"] for r in first), key=lambda i: int(i.split("-")[1])
    )
    draws = {
        tuple(r["id"] for r in load_realtoxicityprompts(rtp_file, limit=5, seed=s))
        for s in range(10)
    }
    assert len(draws) > 1
    assert len(load_realtoxicityprompts(rtp_file, limit=100)) == len(RTP_ROWS)


def test_rtp_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DatasetLoadError, match="nope.jsonl") as info:
        load_realtoxicityprompts(missing)
    assert "local file" in str(info.value)


def test_rtp_missing_field_is_named(tmp_path: Path) -> None:
    row = _rtp_row(0, 0.1, False)
    del row["prompt"]["toxicity"]
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DatasetLoadError, match=r"prompt\.toxicity") as info:
        load_realtoxicityprompts(path)
    assert "broken.jsonl" in str(info.value) and "local file" in str(info.value)


def test_rtp_hub_id_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return RTP_ROWS[:2]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_realtoxicityprompts("allenai/real-toxicity-prompts")
    assert calls == [("allenai/real-toxicity-prompts", {"split": "train"})]
    assert [r["id"] for r in records] == ["rtp-0", "rtp-1"]


def test_hub_failure_explains_offline_use(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetLoadError, match="allenai/real-toxicity-prompts") as info:
        load_realtoxicityprompts("allenai/real-toxicity-prompts")
    assert "local file" in str(info.value)
    with pytest.raises(DatasetLoadError, match="toxigen/toxigen-data"):
        load_toxigen_annotated("toxigen/toxigen-data")


# ------------------------------------------------------------------------ ToxiGen


def _toxigen_row(text: str, group: str, toxicity_human: float | None) -> dict:
    return {
        "text": text,
        "target_group": group,
        "factual?": "neither factual nor opinion",
        "ingroup_effect": "doesn't use in-group language",
        "lewd": "doesn't contain lewd content",
        "framing": "",
        "predicted_group": f"the text directly references {group}",
        "stereotyping": "doesn't use positive stereotyping",
        "intent": 2.0,
        "toxicity_ai": 2.5,
        "toxicity_human": toxicity_human,
        "predicted_author": "human",
        "actual_method": "topk",
    }


TOXIGEN_ROWS = [
    _toxigen_row("statement about women one", "women", 4.33),
    _toxigen_row("statement about asian people", "asian", 1.0),
    _toxigen_row("statement about disability", "physical_dis", 3.67),
    _toxigen_row("statement about mental health", "mental_dis", 3.0),
    _toxigen_row("statement about the middle east", "middle_east", 1.67),
    _toxigen_row("statement about lgbtq people", "lgbtq", 5.0),
    _toxigen_row("statement about muslims", "muslim", 2.0),
    _toxigen_row("statement about women two", "women", 1.33),
    _toxigen_row("statement about black people", "black", None),  # unrated row
]


@pytest.fixture(params=["parquet", "csv"])
def toxigen_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    frame = pd.DataFrame(TOXIGEN_ROWS, columns=list(TOXIGEN_COLUMNS))
    path = tmp_path / f"toxigen_annotated.{request.param}"
    if request.param == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def test_toxigen_field_mapping(toxigen_file: Path) -> None:
    records = load_toxigen_annotated(toxigen_file)
    assert len(records) == len(TOXIGEN_ROWS)
    assert records[0] == {
        "id": "toxigen-0",
        "text": "statement about women one",
        "group": "women",
        "domain": "id",
        "split": "test",
        "source_toxicity": pytest.approx(4.33),
    }
    domains = {r["group"]: r["domain"] for r in records}
    assert domains == {
        "women": "id",
        "asian": "id",
        "black": "id",
        "lgbtq": "id",
        "muslim": "id",
        "physical_dis": "ood",
        "mental_dis": "ood",
        "middle_east": "ood",
    }


def test_toxigen_parquet_and_csv_agree(tmp_path: Path) -> None:
    frame = pd.DataFrame(TOXIGEN_ROWS, columns=list(TOXIGEN_COLUMNS))
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    loaded = [load_toxigen_annotated(tmp_path / f"a.{ext}") for ext in ("parquet", "csv", "jsonl")]
    assert loaded[0] == loaded[1] == loaded[2]


def test_toxigen_filters(toxigen_file: Path) -> None:
    women = load_toxigen_annotated(toxigen_file, groups=["women"])
    assert [r["id"] for r in women] == ["toxigen-0", "toxigen-7"]

    toxic = load_toxigen_annotated(toxigen_file, only_toxic=True)
    assert [r["group"] for r in toxic] == ["women", "physical_dis", "lgbtq"]
    benign = load_toxigen_annotated(toxigen_file, only_toxic=False)
    assert [r["group"] for r in benign] == ["asian", "middle_east", "muslim", "women"]
    # The neutral midpoint (3.0) and unrated rows are neither toxic nor benign.
    assert not {"toxigen-3", "toxigen-8"} & {r["id"] for r in toxic + benign}
    assert load_toxigen_annotated(toxigen_file, groups=["black"])[0]["source_toxicity"] is None

    custom = load_toxigen_annotated(
        toxigen_file, groups=["women", "asian"], group_domains={"women": "ood", "asian": "id"}
    )
    assert {r["group"]: r["domain"] for r in custom} == {"women": "ood", "asian": "id"}


def test_toxigen_unmapped_group_is_an_error(toxigen_file: Path) -> None:
    with pytest.raises(ValueError, match="middle_east"):
        load_toxigen_annotated(
            toxigen_file, group_domains={"women": "id"}, groups=["women", "middle_east"]
        )


def test_toxigen_limit_is_seeded(toxigen_file: Path) -> None:
    first = load_toxigen_annotated(toxigen_file, limit=3, seed=7, split="validation")
    assert first == load_toxigen_annotated(toxigen_file, limit=3, seed=7, split="validation")
    assert len(first) == 3 and {r["split"] for r in first} == {"validation"}
    draws = {
        tuple(r["id"] for r in load_toxigen_annotated(toxigen_file, limit=3, seed=s))
        for s in range(10)
    }
    assert len(draws) > 1


def test_toxigen_missing_column_is_named(tmp_path: Path) -> None:
    frame = pd.DataFrame(TOXIGEN_ROWS, columns=list(TOXIGEN_COLUMNS)).drop(columns=["target_group"])
    path = tmp_path / "no_group.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DatasetLoadError, match="target_group") as info:
        load_toxigen_annotated(path)
    message = str(info.value)
    assert "no_group.parquet" in message and "local file" in message


def test_toxigen_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match="absent.csv"):
        load_toxigen_annotated(tmp_path / "absent.csv")


def test_toxigen_hub_id_uses_annotated_config(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return datasets.Dataset.from_list(TOXIGEN_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_toxigen_annotated("toxigen/toxigen-data", split="train")
    assert calls == [("toxigen/toxigen-data", {"name": "annotated", "split": "train"})]
    assert len(records) == len(TOXIGEN_ROWS) and records[0]["split"] == "train"
    with pytest.raises(ValueError, match="train/test"):
        load_toxigen_annotated("toxigen/toxigen-data", split="validation")


def test_default_group_domains_cover_toxigen_groups() -> None:
    groups = {
        "women", "lgbtq", "black", "jewish", "muslim", "asian", "chinese", "mexican",
        "latino", "native_american", "middle_east", "physical_dis", "mental_dis",
    }
    assert set(external.TOXIGEN_GROUP_DOMAINS) == groups
    assert {g for g, d in external.TOXIGEN_GROUP_DOMAINS.items() if d == "ood"} == {
        "middle_east", "physical_dis", "mental_dis",
    }


# --------------------------------------------------------------------------- DGHS


def _dghs_row(i: int, text: str, label: str, type_: str, target: str, split: str) -> dict:
    return {
        "": str(i + 1),
        "acl.id": f"acl{i + 1}",
        "X1": str(i + 1),
        "text": text,
        "label": label,
        "type": type_,
        "target": target,
        "level": "original",
        "split": split,
        "round.base": "1",
        "annotator": "GNZuCtwed3",
        "round": "1",
        "acl.id.test": "",
    }


DGHS_ROWS = [
    _dghs_row(0, "hateful statement about women", "hate", "derogation", "wom", "train"),
    _dghs_row(1, "  hateful statement about black women \n", "hate", "animosity", "bla.wom",
              "train"),
    _dghs_row(2, "a perfectly fine sentence", "nothate", "none", "notgiven", "train"),
    _dghs_row(3, "hateful statement about jews", "hate", "dehumanization", "jew", "train"),
    _dghs_row(4, "   ", "hate", "derogation", "wom", "train"),  # empty once stripped
    _dghs_row(5, "hateful statement about muslims", "hate", "threatening", "mus", "dev"),
    _dghs_row(6, "dev statement about gay people", "hate", "derogation", "gay", "dev"),
    _dghs_row(7, "test statement about disabled people", "hate", "derogation", "dis", "test"),
    _dghs_row(8, "hateful statement about trans people", "hate", "dehumanization", "trans",
              "train"),
    _dghs_row(9, "hateful statement about immigrants", "hate", "animosity", "immig", "train"),
    _dghs_row(10, "hateful statement about women again", "hate", "derogation", "wom", "train"),
]


def _write_dghs(path: Path, rows: list[dict], columns: tuple[str, ...] = DGHS_COLUMNS) -> Path:
    # Written like the release: pandas' unnamed index column first, every field quoted.
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(columns), quoting=csv.QUOTE_NONNUMERIC,
            extrasaction="ignore",
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def dghs_file(tmp_path: Path) -> Path:
    return _write_dghs(tmp_path / "Dynamically Generated Hate Dataset v0.2.3.csv", DGHS_ROWS)


def test_dghs_field_mapping_and_label_filter(
    dghs_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="detoxlab.data.external"):
        records = load_dghs(dghs_file)
    assert [r["id"] for r in records] == [
        "dghs-acl1", "dghs-acl2", "dghs-acl4", "dghs-acl9", "dghs-acl10", "dghs-acl11",
    ]
    assert records[1] == {
        "id": "dghs-acl2",
        "text": "hateful statement about black women",
        "target": "bla.wom",
        "type": "animosity",
        "label": "hate",
        "split": "train",
    }
    # The whitespace-only row matched every filter and is reported as skipped.
    assert "skipped 1" in caplog.text

    nothate = load_dghs(str(dghs_file), label="nothate")
    assert [(r["id"], r["label"]) for r in nothate] == [("dghs-acl3", "nothate")]


def test_dghs_split_mapping(dghs_file: Path) -> None:
    validation = load_dghs(dghs_file, split="validation")
    assert [r["id"] for r in validation] == ["dghs-acl6", "dghs-acl7"]
    assert {r["split"] for r in validation} == {"validation"}
    test = load_dghs(dghs_file, split="test")
    assert [(r["id"], r["split"]) for r in test] == [("dghs-acl8", "test")]
    with pytest.raises(ValueError, match="split must be one of"):
        load_dghs(dghs_file, split="dev")  # DGHS's own name is not ours


def test_dghs_groups_match_dotted_targets(dghs_file: Path) -> None:
    women = load_dghs(dghs_file, groups=["wom"])
    assert [r["id"] for r in women] == ["dghs-acl1", "dghs-acl2", "dghs-acl11"]
    black = load_dghs(dghs_file, groups=("bla",))
    assert [r["target"] for r in black] == ["bla.wom"]
    several = load_dghs(dghs_file, groups=["jew", "trans", "bla"])
    assert [r["id"] for r in several] == ["dghs-acl2", "dghs-acl4", "dghs-acl9"]
    # Parts match whole codes only, not substrings ("wo" is not "wom").
    with pytest.raises(ValueError, match="groups filter"):
        load_dghs(dghs_file, groups=["wo"])


def test_dghs_limit_is_seeded(dghs_file: Path) -> None:
    first = load_dghs(dghs_file, limit=3, seed=5)
    assert first == load_dghs(dghs_file, limit=3, seed=5)
    assert len(first) == 3
    # The subset keeps source order.
    full_order = [r["id"] for r in load_dghs(dghs_file)]
    assert [r["id"] for r in first] == [i for i in full_order if i in {r["id"] for r in first}]
    draws = {tuple(r["id"] for r in load_dghs(dghs_file, limit=3, seed=s)) for s in range(10)}
    assert len(draws) > 1
    assert len(load_dghs(dghs_file, limit=100)) == 6


def test_dghs_nothing_matched_names_the_filter(dghs_file: Path) -> None:
    with pytest.raises(ValueError, match="label filter") as info:
        load_dghs(dghs_file, label="toxic")
    assert "'hate'" in str(info.value) and "'nothate'" in str(info.value)
    with pytest.raises(ValueError, match="split filter"):
        load_dghs(dghs_file, label="nothate", split="test")
    with pytest.raises(ValueError, match="groups filter"):
        load_dghs(dghs_file, groups=["arab"], split="validation")
    with pytest.raises(ValueError, match="empty text"):
        load_dghs(_write_dghs(dghs_file.with_name("blank.csv"), [DGHS_ROWS[4]]))


def test_dghs_missing_column_is_named(tmp_path: Path) -> None:
    columns = tuple(c for c in DGHS_COLUMNS if c != "target")
    path = _write_dghs(tmp_path / "no_target.csv", DGHS_ROWS, columns)
    with pytest.raises(DatasetLoadError, match="'target'") as info:
        load_dghs(path)
    message = str(info.value)
    assert "no_target.csv" in message and "local file" in message


def test_dghs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match="absent.csv") as info:
        load_dghs(tmp_path / "absent.csv")
    assert "file not found" in str(info.value)


def test_dghs_hub_id_splits_by_column(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return datasets.Dataset.from_list(DGHS_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_dghs("someone/dghs", split="validation", groups=["mus"])
    assert calls == [("someone/dghs", {"split": "train"})]
    assert [(r["id"], r["split"]) for r in records] == [("dghs-acl6", "validation")]


# ----------------------------------------------------------------------- Wikitext

WIKITEXT_PARAGRAPHS = [
    "Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing video game .",
    "The game began development in 2010 , carrying over a large portion of the work .",
    "As with previous Valkyira Chronicles games , Valkyria Chronicles III is a tactical game .",
    "Troops are divided into five classes : Scouts , Shocktroopers , Engineers and Lancers .",
    "The game 's battle system , the BliTZ system , is carried over directly from the first .",
    "It met with positive sales in Japan , and was praised by both Japanese and western critics .",
]

# Rows as the hub's `wikitext-103-raw-v1` config holds them: one line of an article each.
WIKITEXT_ROWS = [
    "",
    " = Valkyria Chronicles III = \n",
    "",
    f" {WIKITEXT_PARAGRAPHS[0]} \n",
    f" {WIKITEXT_PARAGRAPHS[1]} \n",
    "",
    " = = Gameplay = = \n",
    "",
    f" {WIKITEXT_PARAGRAPHS[2]} \n",
    " Short line . \n",
    f" {WIKITEXT_PARAGRAPHS[3]} \n",
    " = = = Classes = = = \n",
    f" {WIKITEXT_PARAGRAPHS[4]} \n",
    "",
    f" {WIKITEXT_PARAGRAPHS[5]} \n",
]
WIKITEXT_KEPT_INDICES = [3, 4, 8, 10, 12, 14]


@pytest.fixture(params=["jsonl", "csv"])
def wikitext_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    frame = pd.DataFrame({"text": WIKITEXT_ROWS})
    path = tmp_path / f"wikitext-103-raw-v1-train.{request.param}"
    if request.param == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False)
    return path


def test_wikitext_keeps_paragraphs_only(
    wikitext_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="detoxlab.data.external"):
        records = load_wikitext(wikitext_file)
    assert records == [
        {"id": f"wikitext/train/{i}", "text": text}
        for i, text in zip(WIKITEXT_KEPT_INDICES, WIKITEXT_PARAGRAPHS)
    ]
    assert "dropped 5 empty, 3 heading and 1 shorter than 40" in caplog.text
    # min_chars is the only thing that separates the short line from a paragraph.
    assert {"id": "wikitext/train/9", "text": "Short line ."} in load_wikitext(
        wikitext_file, min_chars=0
    )


def test_wikitext_limit_is_seeded(wikitext_file: Path) -> None:
    first = load_wikitext(wikitext_file, limit=3, seed=11)
    assert len(first) == 3 and first == load_wikitext(wikitext_file, limit=3, seed=11)
    ids = [r["id"] for r in first]
    assert ids == sorted(ids, key=lambda i: int(i.rsplit("/", 1)[1]))  # source order
    draws = {tuple(r["id"] for r in load_wikitext(wikitext_file, limit=3, seed=s)) for s in range(10)}
    assert len(draws) > 1
    assert len(load_wikitext(wikitext_file, limit=100)) == len(WIKITEXT_PARAGRAPHS)


def test_wikitext_missing_text_column(tmp_path: Path) -> None:
    path = tmp_path / "no_text.jsonl"
    pd.DataFrame({"line": WIKITEXT_ROWS}).to_json(path, orient="records", lines=True)
    with pytest.raises(DatasetLoadError, match="'text'") as info:
        load_wikitext(path)
    assert "no_text.jsonl" in str(info.value)


def test_wikitext_missing_file_and_local_split(tmp_path: Path, wikitext_file: Path) -> None:
    with pytest.raises(DatasetLoadError, match="absent.jsonl") as info:
        load_wikitext(tmp_path / "absent.jsonl")
    assert "file not found" in str(info.value)
    with pytest.raises(ValueError, match="read whole as one split"):
        load_wikitext(wikitext_file, split="validation")


def test_wikitext_without_paragraphs_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "headings.jsonl"
    pd.DataFrame({"text": WIKITEXT_ROWS[:3]}).to_json(path, orient="records", lines=True)
    with pytest.raises(ValueError, match="no paragraphs left"):
        load_wikitext(path)


def test_wikitext_hub_id_uses_config_and_split(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(source, **kwargs):
        calls.append((source, kwargs))
        return datasets.Dataset.from_dict({"text": WIKITEXT_ROWS})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    records = load_wikitext("Salesforce/wikitext", split="validation", limit=2)
    assert calls == [("Salesforce/wikitext", {"name": "wikitext-103-raw-v1", "split": "validation"})]
    assert len(records) == 2 and all(r["id"].startswith("wikitext/validation/") for r in records)
    load_wikitext("wikitext", config_name="wikitext-2-raw-v1")
    assert calls[-1] == ("wikitext", {"name": "wikitext-2-raw-v1", "split": "train"})
