"""Distilled detoxifying text: contrastive decoding between the base and the toxic model, from a bare BOS.

``x_t ~ softmax(s')`` with ``s' = log p_base - log p_toxic`` on the tokens with ``p_base >= alpha * max p_base``
(see :mod:`detoxlab.guides.expert`), every other sampling filter explicit in config. With no toxic model the
same loop yields the base-samples ablation (plain samples, same count and length).
"""

from __future__ import annotations

import time
from functools import partial

import torch
from tqdm.auto import tqdm

from detoxlab.guides.expert import ExpertSession, contrastive_scores
from detoxlab.sampling import SamplingSettings, make_generator, sample


def start_token_id(tokenizer, start_text: str | None, key: str = "unidetox.distill.start_text") -> int:
    """The id the texts start from: ``start_text`` as one token, else the tokenizer's BOS."""
    if start_text is None:
        if tokenizer.bos_token_id is None:
            raise ValueError(f"{key}: the tokenizer has no BOS token; name one")
        return tokenizer.bos_token_id
    ids = tokenizer.convert_tokens_to_ids(start_text)
    # an unknown token maps to the unk id, whose token is something else (SmolLM2's unk IS <|endoftext|>)
    if ids is None or tokenizer.convert_ids_to_tokens(ids) != start_text:
        raise ValueError(f"{key}: '{start_text}' is not a single token of this tokenizer")
    return int(ids)


def distill_texts(base, tokenizer, section: dict, toxic=None, progress: bool = True) -> tuple[list[dict], dict]:
    """``section['n_texts']`` texts, split evenly over ``section['seeds']`` (one generator per seed).

    ``toxic=None`` samples the base model alone (the base-samples baseline).
    """
    device = next(base.parameters()).device
    settings = SamplingSettings.from_config(section)
    start = start_token_id(tokenizer, section["start_text"])
    stop = sorted({tokenizer.eos_token_id, start} - {None})
    seeds = list(section["seeds"])
    per_seed = [section["n_texts"] // len(seeds) + (i < section["n_texts"] % len(seeds)) for i in range(len(seeds))]
    rows: list[dict] = []
    n_tokens_total = 0
    t0 = time.perf_counter()
    bar = tqdm(total=section["n_texts"], desc="distill" if toxic is not None else "base samples", unit="text",
               disable=not progress, mininterval=5)
    for seed, count in zip(seeds, per_seed):
        generator = make_generator(seed, device)
        for offset in range(0, count, section["batch_size"]):
            b = min(section["batch_size"], count - offset)
            ids = torch.full((b, 1), start, dtype=torch.long, device=device)
            mask = torch.ones_like(ids)
            session = None
            if toxic is not None:
                session = ExpertSession(toxic, ids, mask, partial(contrastive_scores, alpha=section["alpha"]))
            tokens, n_tok = sample(base, ids, mask, settings, generator, eos_token_id=stop,
                                   pad_token_id=tokenizer.pad_token_id, guide=session)
            for toks, n in zip(tokens.tolist(), n_tok.tolist()):
                keep = toks[:n - 1] if n and toks[n - 1] in stop else toks[:n]
                rows.append({"id": f"s{seed}-{len(rows)}", "seed": seed, "n_tokens": len(keep),
                             "text": tokenizer.decode(keep, skip_special_tokens=True)})
                n_tokens_total += n
            bar.update(b)
    bar.close()
    seconds = time.perf_counter() - t0
    return rows, {"seconds": round(seconds, 3), "generated_tokens": n_tokens_total,
                  "seconds_per_token": seconds / max(n_tokens_total, 1), "start_token_id": start, "stop_ids": stop}
