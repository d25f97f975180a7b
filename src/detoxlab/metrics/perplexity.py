"""Conditional perplexity of continuations under a judge LM (EVALUATION.md).

Per generation: ``exp((L(prompt+gen)·(n_full−1) − L(prompt)·(n_p−1)) / (n_full − n_p))`` with L the mean token NLL,
i.e. the mean NLL of the continuation's tokens given the prompt. Generations at or above ``max_ppl`` are
dropped (NaN) and counted; the reported figure is the mean of per-generation perplexities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from detoxlab.models.logits import final_hidden, output_logits
from detoxlab.sampling import position_ids_from_mask


def _left_pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.inference_mode()
def suffix_nll(model, seqs: Sequence[list[int]], n_suffix: Sequence[int], pad_id: int,
               head_chunk: int = 256) -> list[float]:
    """Summed NLL of the last ``n_suffix[i]`` tokens of each sequence given everything before them.

    The output layer runs only at the positions that predict a suffix token (on a 262k vocabulary it costs more
    than the decoder), ``head_chunk`` positions at a time.
    """
    device = next(model.parameters()).device
    ids, mask = _left_pad(seqs, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    h = final_hidden(model, ids, mask, position_ids_from_mask(mask))
    width = ids.shape[1]
    rows = torch.tensor([i for i, n in enumerate(n_suffix) for _ in range(n)], dtype=torch.long, device=device)
    cols = torch.tensor([c for n in n_suffix for c in range(width - 1 - n, width - 1)], dtype=torch.long,
                        device=device)
    targets = ids[rows, cols + 1]
    tok_logp = []
    for start in range(0, len(rows), head_chunk):
        logits = output_logits(model, h[rows[start:start + head_chunk], cols[start:start + head_chunk]]).float()
        tgt = targets[start:start + head_chunk]
        # gather minus logsumexp: the same log-probabilities without a second vocabulary-sized tensor
        tok_logp.append(logits.gather(-1, tgt[:, None]).squeeze(-1) - torch.logsumexp(logits, -1))
    flat = torch.cat(tok_logp) if tok_logp else torch.zeros(0, device=device)
    out, offset = [], 0
    for n in n_suffix:
        out.append(-float(flat[offset:offset + n].sum()) if n > 0 else 0.0)
        offset += n
    return out


def conditional_perplexities(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                             batch_size: int = 32, max_ppl: float = 1e4, progress: bool = False,
                             ) -> tuple[list[float], dict]:
    """Per-generation conditional perplexity (NaN for empty or dropped generations) and counts."""
    full_ids = tokenizer([p + c for p, c in zip(prompts, continuations)]).input_ids
    prompt_ids = tokenizer(list(prompts)).input_ids
    pad = tokenizer.pad_token_id
    # Where the judge's tokens of prompt+gen start with the prompt's tokens, one forward gives the continuation
    # NLL; otherwise (a token merged across the boundary) the formula's two-forward form is used.
    items, n_empty, n_unscorable = [], 0, 0
    for i, (f, p, c) in enumerate(zip(full_ids, prompt_ids, continuations)):
        n_cont = len(f) - len(p)
        if n_cont <= 0:  # an empty continuation, or one the judge merges into the prompt's last token
            n_empty, n_unscorable = n_empty + (c == ""), n_unscorable + (c != "")
            continue
        if f[:len(p)] == p:
            items.append((i, f, n_cont, None))
        else:
            items.append((i, f, len(f) - 1, p))
    nll = [math.nan] * len(full_ids)
    n_tokens = [0] * len(full_ids)
    order = sorted(range(len(items)), key=lambda j: len(items[j][1]))  # similar lengths batch together
    bar = tqdm(total=len(items), desc="perplexity", disable=not progress, mininterval=5)
    for start in range(0, len(order), batch_size):
        chunk = [items[j] for j in order[start:start + batch_size]]
        sums = suffix_nll(model, [c[1] for c in chunk], [c[2] for c in chunk], pad)
        mismatched = [(c, s) for c, s in zip(chunk, sums) if c[3] is not None]
        if mismatched:
            prompt_sums = suffix_nll(model, [c[3] for c, _ in mismatched], [len(c[3]) - 1 for c, _ in mismatched], pad)
        for c, s in zip(chunk, sums):
            nll[c[0]] = s
            n_tokens[c[0]] = c[2] if c[3] is None else len(c[1]) - len(c[3])
        for (c, s), ps in zip(mismatched, prompt_sums if mismatched else []):
            nll[c[0]] = s - ps
        bar.update(len(chunk))
    bar.close()
    ppl, n_dropped = [], 0
    for total, n in zip(nll, n_tokens):
        value = math.exp(total / n) if n > 0 and math.isfinite(total) else math.nan
        if value >= max_ppl:
            value, n_dropped = math.nan, n_dropped + 1
        ppl.append(value)
    stats = {"n": len(ppl), "n_empty": n_empty, "n_unscorable": n_unscorable, "n_dropped_over_max": n_dropped,
             "n_boundary_merged": sum(1 for it in items if it[3] is not None), "max_ppl": max_ppl}
    return ppl, stats
