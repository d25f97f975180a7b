"""Perplexity of held-out human-written text under the evaluated system: drift from the base model.

The texts are MMLU question stems that no method trains on, disjoint from the evaluated MMLU questions
(``data.mmlu.heldout_stems``) and identical for every system, so per-text NLLs pair up with the base model's.
A preprompt guide's text is context, never scored; a logit guide applies as while decoding, without its
sampling filters (``metrics.likelihood``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detoxlab.data.mmlu import MMLUQuestion
from detoxlab.guides import Guide
from detoxlab.metrics.bootstrap import bootstrap_ci, ratio_bootstrap_ci
from detoxlab.metrics.likelihood import continuation_nll, encode
from detoxlab.metrics.mmlu import question_id


def _unscored(reason: str, n_texts: int) -> dict:
    return {"ppl": math.nan, "token_ppl": math.nan, "n_texts": n_texts, "unscored": reason, "texts": []}


def heldout_perplexity(model, tokenizer, guide: Guide, texts: Sequence[MMLUQuestion], max_length: int,
                       batch_size: int = 8, progress: bool = False) -> dict:
    """Per text: summed NLL of its first ``max_length`` tokens given the guide's context (or the document-start
    token). ``ppl``: the mean of per-text perplexities, ``exp(nll / n_tokens)``; ``token_ppl``:
    ``exp(sum nll / sum n_tokens)`` (pooled over tokens; long texts weigh more). ``heldout_intervals`` adds CIs.
    """
    stems = [q.question.strip() for q in texts]
    prefix = guide.wrap_prompt("")
    if any(guide.wrap_prompt(s) != prefix + s for s in stems):
        return _unscored(f"guide '{guide.type}' rewrites the prompt other than by a prefix", len(stems))
    ctx, cont = encode(tokenizer, [prefix] * len(stems), stems, max_continuation=max_length)
    try:
        nll = continuation_nll(model, guide, ctx, cont, tokenizer.pad_token_id, batch_size=batch_size,
                               progress=progress, desc="held-out ppl")
    except NotImplementedError as exc:  # e.g. RAD/ARM: no likelihood outside the top-k
        return _unscored(str(exc), len(stems))
    n_tokens = np.array([len(x) for x in cont])
    keep = n_tokens > 0
    return {"ppl": float(np.mean(np.exp(nll[keep] / n_tokens[keep]))) if keep.any() else math.nan,
            "token_ppl": math.exp(nll.sum() / n_tokens.sum()) if n_tokens.sum() else math.nan, "n_texts": len(stems),
            "max_length": max_length, "context_tokens": len(ctx[0]) if ctx else 0,
            "texts": [{"id": question_id(q), "subject": q.subject, "n_tokens": int(n), "nll": float(v)}
                      for q, n, v in zip(texts, n_tokens, nll)]}


def heldout_intervals(result: dict, n_boot: int, alpha: float, seed: int) -> dict:
    """``result`` with bootstrap intervals over texts on both perplexities, from its stored per-text NLLs."""
    rows = [t for t in result.get("texts", []) if t["n_tokens"]]
    if not rows:
        return {**result, "ppl_lo": math.nan, "ppl_hi": math.nan, "token_ppl_lo": math.nan, "token_ppl_hi": math.nan}
    nll, n = np.array([t["nll"] for t in rows]), np.array([t["n_tokens"] for t in rows], dtype=float)
    _, lo, hi = bootstrap_ci(np.exp(nll / n), n_boot=n_boot, alpha=alpha, seed=seed)
    _, tok_lo, tok_hi = (math.exp(v) for v in ratio_bootstrap_ci(nll, n, n_boot=n_boot, alpha=alpha, seed=seed))
    return {**result, "ppl_lo": lo, "ppl_hi": hi, "token_ppl_lo": tok_lo, "token_ppl_hi": tok_hi}
