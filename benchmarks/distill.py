"""Cost of UniDetox's contrastive decoding vs plain sampling of the base model (same machine, batch, length).

Distillation runs two forward passes per token (base and toxic model, each with its own KV cache), so its time
ratio to plain sampling is bounded below by about 2. Both decode exactly ``--new-tokens`` tokens from the start
token (no EOS stop). The toxic model is the workflow's when it exists, else a second copy of the base (the
compute is identical). Last line: key=value pairs including ``cost_vs_sampling`` (target <= 2.2).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from _common import REPO, emit, median_time, real_model_dir

from detoxlab.guides.expert import ExpertSession, contrastive_scores
from detoxlab.models.registry import load_model
from detoxlab.sampling import SamplingSettings, make_generator, sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", default=None, help="materialised base model (default: SmolLM2)")
    ap.add_argument("--toxic-dir", default=None, help="toxic model (default: the workflow's, else a base copy)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base_dir = real_model_dir(args.model_dir)
    toxic_dir = args.toxic_dir or next((str(p) for p in [REPO / "results/models/smollm2.toxic"]
                                        if (p / "manifest.json").exists()), str(base_dir))
    base, tok, _ = load_model(base_dir)
    toxic, _, _ = load_model(toxic_dir)
    start = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = torch.full((args.batch, 1), start if start is not None else tok.eos_token_id)
    mask = torch.ones_like(ids)
    settings = SamplingSettings(max_new_tokens=args.new_tokens, top_p=1.0, top_k=0, stop_at_eos=False)
    cpu = torch.device("cpu")

    def plain():
        sample(base, ids, mask, settings, make_generator(0, cpu), None, tok.pad_token_id)

    def contrastive():
        session = ExpertSession(toxic, ids, mask, partial(contrastive_scores, alpha=args.alpha))
        sample(base, ids, mask, settings, make_generator(0, cpu), None, tok.pad_token_id, guide=session)

    plain(), contrastive()  # warm-up
    t_plain = median_time(plain, args.repeats)
    t_cd = median_time(contrastive, args.repeats)
    tokens = args.batch * args.new_tokens
    print(f"base={base_dir} toxic={toxic_dir} batch={args.batch} new_tokens={args.new_tokens} threads={args.threads}")
    print(f"plain sampling: {t_plain:.2f} s ({tokens / t_plain:.0f} tok/s); contrastive decoding: {t_cd:.2f} s "
          f"({tokens / t_cd:.0f} tok/s)")
    emit(plain_tok_per_s=tokens / t_plain, distill_tok_per_s=tokens / t_cd, cost_vs_sampling=t_cd / t_plain,
         batch=args.batch, new_tokens=args.new_tokens)


if __name__ == "__main__":
    main()
