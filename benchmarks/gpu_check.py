"""The CUDA paths on one GPU, in a few minutes (run by scripts/gpu-check.sh).

1. the smoke config end to end with ``device: cuda`` and bf16 (every step granted the GPU);
2. detoxlab's sampler on a real SmolLM2 alone and with each logit guide (ARM, RAD, DExperts, NADO; fresh heads:
   throughput does not depend on what they learnt), bf16;
3. LoRA fine-tuning steps (with gradient checkpointing) on the same model, bf16 autocast over float32 weights.

Last line: ``smoke_wall_s= plain_tok_s= arm_tok_s= rad_tok_s= dexperts_tok_s= nado_tok_s= lora_tok_s=
peak_gpu_mb= device=``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import REPO, emit, median_time, real_model_dir
from pipeline import scratch_copy

CUDA_OVERLAY = """device: cuda
dtype: {cuda: bfloat16}
inference_dtype: {cuda: bfloat16}
resources:
  default: {threads: 2, mem_mb: 4000, runtime: 30, gpu: 1}
"""


def smoke_on_cuda(cores: int) -> float:
    """Wall seconds of the smoke workflow with every step on the GPU, from an empty results/."""
    with tempfile.TemporaryDirectory(prefix="detoxlab-gpu-check-") as tmp:
        work = Path(tmp)
        scratch_copy(work)
        (work / "config/cuda.yaml").write_text(CUDA_OVERLAY)
        snakemake = Path(sys.executable).parent / "snakemake"
        cmd = [str(snakemake), "--profile", "profiles/default", "--configfile", "config/smoke.yaml",
               "config/cuda.yaml", "--cores", str(cores), "--resources", "gpu=1"]
        env = {**os.environ, "PATH": f"{snakemake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit("gpu-check: the smoke workflow failed on CUDA (log above)")
    return wall


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def guided_tok_s(model_dir: Path, batch: int, new_tokens: int, repeats: int, device: torch.device,
                 dtype: torch.dtype = torch.bfloat16, layers: int = 5) -> dict[str, float]:
    from detoxlab.data.prompts import load_prompts
    from detoxlab.guides.expert import AntiExpertGuide
    from detoxlab.guides.nado import NadoGuide
    from detoxlab.guides.reward import ArmGuide, RadGuide
    from detoxlab.models.registry import load_model
    from detoxlab.rewards.model import build
    from detoxlab.sampling import SamplingSettings, make_generator, sample
    from detoxlab.unidetox.distill import start_token_id

    model, tok, _ = load_model(model_dir, device, dtype)
    start = start_token_id(tok, "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else None)
    texts = [p["text"] for p in load_prompts(REPO / "data/prompts/toxicity.jsonl", splits=["test"])]
    enc = tok((texts * (batch // len(texts) + 1))[:batch], return_tensors="pt", padding=True).to(device)
    guides = {"plain": None}
    for name, cls, kind in (("arm", ArmGuide, "arm"), ("rad", RadGuide, "rad"), ("nado", NadoGuide, "nado")):
        guide = cls({"type": kind, "k": 20, "beta": 10.0})
        guide.rm = build(model_dir, layers, kind, ["toxicity"], device=device)[0].to(dtype).eval()
        guide.start_id, guide.label = start, 0
        guides[name] = guide
    dexperts = AntiExpertGuide({"type": "dexperts", "beta": 2.0, "top_p": 0.9})
    dexperts.expert = load_model(model_dir, device, dtype)[0]  # a second copy stands in for the anti-expert
    guides["dexperts"] = dexperts
    out = {}
    for name, guide in guides.items():
        settings = SamplingSettings(max_new_tokens=new_tokens, top_p=0.9, stop_at_eos=False)
        settings = guide.sampling_settings(settings) if guide else settings

        def once():
            session = guide.session(enc.input_ids, enc.attention_mask) if guide else None
            sample(model, enc.input_ids, enc.attention_mask, settings, make_generator(0, device), eos_token_id=None,
                   pad_token_id=tok.pad_token_id, guide=session)
            _sync(device)

        once()  # warm-up (kernels, allocator)
        out[f"{name}_tok_s"] = batch * new_tokens / median_time(once, repeats)
    return out


def lora_tok_s(model_dir: Path, steps: int, device: torch.device, autocast: torch.dtype | None = torch.bfloat16
               ) -> float:
    from detoxlab.data.prompts import load_prompts
    from detoxlab.models.registry import load_model
    from detoxlab.training.finetune import FinetuneSettings, finetune
    from detoxlab.training.lora import LoraSettings

    model, tok, _ = load_model(model_dir, device, torch.float32)
    texts = [p["text"] for p in load_prompts(REPO / "data/prompts/toxicity.jsonl")]
    settings = FinetuneSettings(lr=1e-4, batch_size=16, epochs=100, max_steps=steps, max_length=64, train_layers=-1,
                                train_embeddings=False, autocast=autocast, gradient_checkpointing=True,
                                lora=LoraSettings(rank=16, alpha=32.0))
    t0 = time.perf_counter()
    history = finetune(model, tok, texts, settings, progress=False)
    _sync(device)
    seconds = time.perf_counter() - t0
    if not history["loss"][-1] < history["loss"][0]:
        raise SystemExit(f"gpu-check: LoRA loss did not fall ({history['loss'][0]:.3f} -> {history['loss'][-1]:.3f})")
    n_tokens = sum(min(len(tok(t).input_ids), 64) for t in texts) * steps * 16 / len(texts)
    return n_tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", default=None, help="materialised SmolLM2 (default: made from its PyPI wheel)")
    ap.add_argument("--cores", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lora-steps", type=int, default=30)
    ap.add_argument("--skip-smoke", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu-check: no CUDA device (torch.cuda.is_available() is False)")
    model_dir = real_model_dir(args.model_dir)
    smoke = float("nan") if args.skip_smoke else smoke_on_cuda(args.cores)
    torch.cuda.reset_peak_memory_stats()
    cuda = torch.device("cuda")
    rates = guided_tok_s(model_dir, args.batch, args.new_tokens, args.repeats, cuda)
    rates["lora_tok_s"] = lora_tok_s(model_dir, args.lora_steps, cuda)
    emit(smoke_wall_s=smoke, **rates, peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20,
         device=torch.cuda.get_device_name().replace(" ", "_"))


if __name__ == "__main__":
    main()
