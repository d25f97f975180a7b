"""Throughput of detoxlab's sampler vs transformers' generate() on the same model, prompts and settings.

Both decode the same left-padded batch for exactly ``--new-tokens`` tokens (EOS does not stop either, so the
work is identical) with nucleus sampling p=0.9, top-k off, temperature 1, a KV cache and attention masks.
Last line: key=value pairs including ``ratio_vs_generate`` (ours tokens/s over generate's; target >= 0.9).
"""

from __future__ import annotations

import argparse

import torch
from _common import emit, median_time, real_model_dir

from detoxlab.data.prompts import load_prompts
from detoxlab.models.registry import load_model
from detoxlab.sampling import SamplingSettings, make_generator, sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", default=None, help="materialised model (default: SmolLM2)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = real_model_dir(args.model_dir)
    model, tok, _ = load_model(model_dir)
    prompts = load_prompts("data/prompts/toxicity.jsonl", splits=["test"])[: args.prompts]
    texts = [p["text"] for p in prompts for _ in range(args.samples)]
    enc = tok(texts, return_tensors="pt", padding=True)
    settings = SamplingSettings(max_new_tokens=args.new_tokens, top_p=0.9, top_k=0, temperature=1.0,
                                stop_at_eos=False)

    def ours():
        sample(model, enc.input_ids, enc.attention_mask, settings, make_generator(0, torch.device("cpu")),
               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

    @torch.inference_mode()
    def generate():
        torch.manual_seed(0)
        model.generate(**enc, do_sample=True, top_p=0.9, top_k=0, temperature=1.0, max_new_tokens=args.new_tokens,
                       min_new_tokens=args.new_tokens, pad_token_id=tok.pad_token_id, use_cache=True)

    ours(), generate()  # warm-up
    t_ours = median_time(ours, args.repeats)
    t_gen = median_time(generate, args.repeats)
    tokens = len(texts) * args.new_tokens
    print(f"model={model_dir} rows={len(texts)} new_tokens={args.new_tokens} threads={args.threads}")
    print(f"detoxlab sampler: {t_ours:.2f} s ({tokens / t_ours:.0f} tok/s); generate(): {t_gen:.2f} s "
          f"({tokens / t_gen:.0f} tok/s)")
    emit(ours_tok_per_s=tokens / t_ours, generate_tok_per_s=tokens / t_gen, ratio_vs_generate=t_gen / t_ours,
         rows=len(texts), new_tokens=args.new_tokens)


if __name__ == "__main__":
    main()
