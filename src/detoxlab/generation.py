"""Generate continuations for a prompt set with a system (model + guide) and store every sample."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from detoxlab.guides import Guide
from detoxlab.sampling import SamplingSettings, make_generator, sample
from detoxlab.timing import peak_rss_mb


def generate(model, tokenizer, prompts: Sequence[dict], guide: Guide, settings: SamplingSettings,
             samples_per_prompt: int, batch_size: int, seed: int, progress: bool = True,
             keep_tokens: bool = False) -> tuple[list[dict], dict]:
    """Return one row per (prompt, sample) and run statistics (time, tokens, peak memory).

    Every prompt is repeated ``samples_per_prompt`` times and rows are cut into batches of ``batch_size``; the
    output is deterministic for a seed, a batch size and a device. ``keep_tokens`` adds each continuation's
    token ids (``tokens``), which training on the samples needs: re-tokenised text may not be what was sampled.
    """
    device = next(model.parameters()).device
    settings = guide.sampling_settings(settings)
    generator = make_generator(seed, device)
    jobs = [(p, s) for p in prompts for s in range(samples_per_prompt)]
    rows: list[dict] = []
    n_generated = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="generate", unit="sample", disable=not progress, mininterval=5)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        texts = [guide.wrap_prompt(p["text"]) for p, _ in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True).to(device)
        session = guide.session(enc["input_ids"], enc["attention_mask"])
        tokens, n_tok = sample(model, enc["input_ids"], enc["attention_mask"], settings, generator,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                               guide=session)
        for (prompt, s), toks, n in zip(chunk, tokens.tolist(), n_tok.tolist()):
            stopped = bool(n and settings.stop_at_eos and toks[n - 1] == tokenizer.eos_token_id)
            text = tokenizer.decode(toks[:n], skip_special_tokens=True)
            rows.append({"prompt_id": prompt["id"], "group": prompt["group"], "domain": prompt["domain"],
                         "split": prompt["split"], "sample": s, "prompt": prompt["text"], "continuation": text,
                         "n_tokens": n, "stopped_at_eos": stopped, **({"tokens": toks[:n]} if keep_tokens else {})})
            n_generated += n
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - t0
    stats = {"seconds": round(seconds, 3), "generated_tokens": n_generated,
             "seconds_per_token": seconds / max(n_generated, 1), "samples": len(rows),
             "peak_rss_mb": peak_rss_mb(), "backbone_calls_per_step": guide.backbone_calls_per_step,
             "backbone_rows_per_step": guide.backbone_rows_per_step,
             "device": str(device), "torch_threads": torch.get_num_threads()}
    return rows, stats
