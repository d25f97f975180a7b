"""Log-likelihood of given continuations under a system: a model plus its guide.

A continuation's scored tokens are its own tokenization, so they are the same for every system and every
context (a preprompt, a few-shot header): per-text scores pair up across systems. A guide that rewrites the
next-token logits applies as while decoding, without its sampling filters (``Guide.scoring_session``): the base
model's hidden states come from one teacher-forced forward and the guide's session is stepped through the
continuation, so it sees exactly the prefixes it would see while generating that text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from detoxlab.guides import Guide
from detoxlab.metrics.perplexity import suffix_nll
from detoxlab.models.logits import final_hidden, output_logits
from detoxlab.sampling import position_ids_from_mask


def encode(tokenizer, contexts: Sequence[str], continuations: Sequence[str],
           max_continuation: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each context and continuation; the continuation's are its own (no special tokens), cut to
    its first ``max_continuation``.

    The context is the joint tokenization's prefix where that ends in the continuation's own ids (so the model
    sees the tokens decoding would see, e.g. SmolLM2 splits a preprompt's "\n\n" before a word), else the
    context's own ids; an empty context is the document-start token (BOS, else EOS, as lm-eval's rolling
    loglikelihood), so a text's first token is scored too.
    """
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    own = tokenizer(list(continuations), add_special_tokens=False).input_ids
    joint = tokenizer([c + x for c, x in zip(contexts, continuations)]).input_ids
    ctx, cont = [], []
    for context, full, ids in zip(contexts, joint, own):
        if ids and full[len(full) - len(ids):] == ids:
            prefix = full[:len(full) - len(ids)]
        else:
            prefix = tokenizer(context).input_ids
        ctx.append(prefix or [start])
        cont.append(ids[:max_continuation])
    return ctx, cont


def continuation_nll(model, guide: Guide, contexts: Sequence[list[int]], continuations: Sequence[list[int]],
                     pad_id: int, batch_size: int = 8, progress: bool = False, desc: str = "loglik") -> np.ndarray:
    """Summed NLL of each continuation given its context, under the model and ``guide``.

    Raises ``NotImplementedError`` for a guide whose rule defines no likelihood (see ``Guide.scoring_session``).
    """
    out = np.zeros(len(contexts))
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]) + len(continuations[i]))
    bar = tqdm(total=len(order), desc=desc, disable=not progress, mininterval=5)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ctx, cont = [contexts[i] for i in rows], [continuations[i] for i in rows]
        if guide.adjusts_logits:
            out[rows] = _guided_nll(model, guide, ctx, cont, pad_id)
        else:
            out[rows] = suffix_nll(model, [c + x for c, x in zip(ctx, cont)], [len(x) for x in cont], pad_id)
        bar.update(len(rows))
    bar.close()
    return out


@torch.inference_mode()
def _guided_nll(model, guide: Guide, ctx: list[list[int]], cont: list[list[int]], pad_id: int) -> np.ndarray:
    # layout [left pad | context | continuation | right pad]: every context ends at column c, where the session
    # starts, and the continuation's token t sits at column c + t for every row
    c, t_max = max(len(x) for x in ctx), max(len(x) for x in cont)
    ids = torch.full((len(ctx), c + t_max), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (x, y) in enumerate(zip(ctx, cont)):
        ids[i, c - len(x):c + len(y)] = torch.tensor(x + y)
        mask[i, c - len(x):c + len(y)] = 1
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    h = final_hidden(model, ids, mask, position_ids_from_mask(mask))
    session = guide.scoring_session(ids[:, :c], mask[:, :c])
    nll = torch.zeros(len(ctx), device=device)
    for t in range(t_max):
        logp = session.adjust(output_logits(model, h[:, c - 1 + t]).float()).log_softmax(-1)
        target = ids[:, c + t]
        # finished rows feed pad tokens to the session; their predictions are never read
        nll -= torch.where(mask[:, c + t].bool(), logp.gather(-1, target[:, None]).squeeze(-1), 0.0)
        if t + 1 < t_max:
            session.update(target)
    return nll.cpu().numpy()
