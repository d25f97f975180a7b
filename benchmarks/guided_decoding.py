"""Time per generated token of plain top-k sampling, ARM and RAD at several k: same base, batch and machine.

The efficiency claim of ARM (METHODS.md section 2): RAD scores each of the k candidates with the reward model
(one batched call on B x k rows per step), so its cost grows with k; ARM scores every next token from one row
per sequence, so its cost is flat in k and close to plain sampling. The reward heads are freshly initialised
(timing does not depend on what they learnt); the backbone is the first ``--layers`` blocks of the base.
Last line: ``arm_vs_plain`` (at k = 20; target <= 1.3), ``arm_k40_vs_k5`` (target <= 1.1: flat in k),
``rad_k40_vs_k5`` (RAD grows with k), and the backbone calls / rows per step of each.
"""

from __future__ import annotations

import argparse

import torch
from _common import emit, median_time, real_model_dir

from detoxlab.data.prompts import load_prompts
from detoxlab.guides.reward import ArmGuide, RadGuide
from detoxlab.models.registry import load_model
from detoxlab.rewards.model import build
from detoxlab.sampling import SamplingSettings, make_generator, sample
from detoxlab.unidetox.distill import start_token_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", default=None, help="materialised model (default: SmolLM2)")
    ap.add_argument("--layers", type=int, default=5, help="reward-model backbone blocks (default config: 5)")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = real_model_dir(args.model_dir)
    model, tok, _ = load_model(model_dir)
    rms = {kind: build(model_dir, args.layers, kind, ["toxicity"])[0].eval() for kind in ("rad", "arm")}
    start = start_token_id(tok, "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else None)
    prompts = load_prompts("data/prompts/toxicity.jsonl", splits=["test"])[: args.prompts]
    enc = tok([p["text"] for p in prompts for _ in range(args.samples)], return_tensors="pt", padding=True)
    tokens = enc.input_ids.shape[0] * args.new_tokens

    def run(k: int, guide_cls=None) -> tuple[float, int, int]:
        settings = SamplingSettings(max_new_tokens=args.new_tokens, top_k=k, top_p=1.0, stop_at_eos=False)
        guide = None
        if guide_cls is not None:
            guide = guide_cls({"type": guide_cls.type, "k": k, "beta": 10.0})
            guide.rm, guide.start_id, guide.label = rms[guide_cls.type], start, 0
            settings = guide.sampling_settings(settings)

        def once():
            session = guide.session(enc.input_ids, enc.attention_mask) if guide else None
            sample(model, enc.input_ids, enc.attention_mask, settings, make_generator(0, torch.device("cpu")),
                   eos_token_id=None, pad_token_id=tok.pad_token_id, guide=session)

        once()  # warm-up
        calls = guide.backbone_calls_per_step if guide else 0
        rows = guide.backbone_rows_per_step if guide else 0
        return median_time(once, args.repeats) / tokens, calls, rows

    result = {}
    print(f"model={model_dir} rows={enc.input_ids.shape[0]} new_tokens={args.new_tokens} "
          f"reward_layers={args.layers} threads={args.threads}")
    print("method  k   ms/token  RM calls/step  RM rows/step per sequence")
    for k in args.ks:
        for name, cls in (("plain", None), ("arm", ArmGuide), ("rad", RadGuide)):
            spt, calls, rows = run(k, cls)
            result[(name, k)] = spt
            print(f"{name:6s} {k:3d} {spt * 1000:9.3f} {calls:13d} {rows:14d}")
    k_mid = 20 if 20 in args.ks else args.ks[len(args.ks) // 2]
    lo, hi = min(args.ks), max(args.ks)
    emit(arm_vs_plain=result[("arm", k_mid)] / result[("plain", k_mid)],
         rad_vs_plain=result[("rad", k_mid)] / result[("plain", k_mid)],
         **{f"arm_k{hi}_vs_k{lo}": result[("arm", hi)] / result[("arm", lo)],
            f"rad_k{hi}_vs_k{lo}": result[("rad", hi)] / result[("rad", lo)]},
         plain_ms_per_token=result[("plain", k_mid)] * 1000, arm_calls_per_step=1, arm_rows_per_step=1,
         rad_calls_per_step=1, rad_rows_per_step=f"k({k_mid})")


if __name__ == "__main__":
    main()
