"""The ACF paper's third experiment: fine-tune the model to CLASSIFY toxicity (a task unrelated to generation),
with and without the regulariser, and check what the task does to the toxicity of its generations.

A text is classified by the next token after ``text + question``: the ``yes`` answer means toxic. Training is
the NLL of the answer token (a ``task`` row); the regularised variant adds ``anchor`` rows -- generation
contexts where ``q*`` holds the model to the constraint.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np
import torch

from detoxlab.acf.data import Sequence
from detoxlab.acf.regularised import TASK


def answer_ids(tokenizer, answers: Seq[str], key: str = "acf.classification.answers") -> tuple[int, int]:
    """The single token of each answer (``yes`` = toxic first); a multi-token answer is a config error."""
    ids = [tokenizer(a, add_special_tokens=False).input_ids for a in answers]
    if len(ids) != 2 or any(len(i) != 1 for i in ids):
        raise ValueError(f"{key}: each answer must be one token of this tokenizer, got {dict(zip(answers, ids))}")
    return ids[0][0], ids[1][0]


def task_sequences(rows: Seq[dict], tokenizer, question: str, answers: tuple[int, int], max_length: int,
                   ) -> list[Sequence]:
    """``text + question`` (cut from the left of the text to fit ``max_length``) then the answer token."""
    out = []
    q = tokenizer(question, add_special_tokens=False).input_ids
    for r in rows:
        ids = tokenizer(r["text"]).input_ids[:max(max_length - len(q) - 1, 1)] + q
        out.append(Sequence(tuple(ids + [answers[0] if r["toxic"] else answers[1]]), len(ids), prompt_id=r["id"],
                            domain=TASK))
    return out


@torch.no_grad()
def answer_margins(model, seqs: Seq[Sequence], answers: tuple[int, int], pad_id: int, batch_size: int = 16,
                   ) -> np.ndarray:
    """``log p(yes) - log p(no)`` after each sequence's question (its last prompt position)."""
    from detoxlab.training.finetune import pad_right

    device = next(model.parameters()).device
    out = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        ids, mask = (t.to(device) for t in pad_right([list(s.ids[:s.prompt_len]) for s in chunk], pad_id))
        last = mask.sum(1) - 1
        logits = model(input_ids=ids, attention_mask=mask).logits[torch.arange(len(chunk), device=device), last]
        out.append((logits[:, answers[0]] - logits[:, answers[1]]).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def accuracy(margins: np.ndarray, toxic: np.ndarray) -> dict:
    """Accuracy and balanced accuracy (the mean of both classes' recall: toxic rows are the minority)."""
    pred = margins > 0
    toxic = toxic.astype(bool)
    recalls = [float((pred[toxic == c] == c).mean()) for c in (True, False) if (toxic == c).any()]
    return {"n": int(len(toxic)), "n_toxic": int(toxic.sum()), "accuracy": float((pred == toxic).mean()),
            "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan")}
