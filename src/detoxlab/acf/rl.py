"""The RL baseline: policy gradient on the oracle's reward with a KL penalty to the base model.

Per step: sample ``samples_per_prompt`` continuations of a batch of training prompts from the current policy,
reward each with ``C(x, y) - kl * log(pi(y|x) / p_base(y|x))`` (the per-sequence KL estimate of the penalty),
and ascend ``(reward - mean reward of the prompt's other samples) * grad log pi(y|x)`` (REINFORCE with a
leave-one-out baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq

import numpy as np
import torch

from detoxlab.acf.data import Sequence, prediction_index, prediction_logits, sample_sequence
from detoxlab.sampling import SamplingSettings
from detoxlab.training.finetune import FinetuneSettings, prepare_trainable
from detoxlab.training.loop import train_in_place


def sequence_log_probs(model, seqs: Seq[Sequence], pad_id: int) -> torch.Tensor:
    """``log pi(y | x)`` of each sequence's continuation [len(seqs)] (differentiable)."""
    logits, targets = prediction_logits(model, seqs, pad_id)
    tok = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    rows = prediction_index(seqs)[0].to(tok.device)
    return torch.zeros(len(seqs), device=tok.device, dtype=tok.dtype).index_add(0, rows, tok)


def leave_one_out(rewards: torch.Tensor, groups: Seq[str]) -> torch.Tensor:
    """``r_i - mean(r_j, j != i)`` within each prompt's samples (0 for a prompt with one sample)."""
    out = torch.zeros_like(rewards)
    for g in dict.fromkeys(groups):
        idx = torch.tensor([i for i, x in enumerate(groups) if x == g])
        r = rewards[idx]
        out[idx] = (r - (r.sum() - r) / (len(r) - 1)) if len(r) > 1 else 0.0
    return out


def policy_gradient(model, reference, tokenizer, prompts: Seq[dict], reward_fn: Callable[[list[str]], np.ndarray],
                    section: dict, settings: FinetuneSettings, progress: bool = True) -> dict:
    """Train ``model`` in place for ``section['steps']`` steps; ``reward_fn`` maps continuations to C in [0, 1]."""
    from detoxlab.generation import generate
    from detoxlab.guides import load_guide

    torch.manual_seed(settings.seed)
    names = prepare_trainable(model, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    sampling = SamplingSettings(max_new_tokens=section["max_new_tokens"], temperature=1.0, top_k=0, top_p=1.0)
    rng = np.random.default_rng(settings.seed)
    n = section["prompts_per_step"]
    history: dict[str, list[float]] = {"reward": [], "kl": []}

    def steps():
        for step in range(section["steps"]):
            yield step, [prompts[i] for i in rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)]

    def loss_of(item):
        step, batch = item
        model.eval()  # rollouts as the policy decodes: with a KV cache (gradient checkpointing drops it in train mode)
        rows, _ = generate(model, tokenizer, batch, load_guide(None), sampling, section["samples_per_prompt"],
                           len(batch) * section["samples_per_prompt"], settings.seed + step, progress=False,
                           keep_tokens=True)
        model.train()
        # an immediate EOS leaves nothing to reinforce: rewards and log-probabilities keep the same rows
        pairs = [(r, s) for r in rows if (s := sample_sequence(r, tokenizer, max_length=1 << 30)) is not None]
        texts, seqs = [r["continuation"] for r, _ in pairs], [s for _, s in pairs]
        reward = torch.tensor(reward_fn(texts), dtype=torch.float32)
        logp = sequence_log_probs(model, seqs, tokenizer.pad_token_id)
        with torch.no_grad():
            ref = sequence_log_probs(reference, seqs, tokenizer.pad_token_id)
            kl = (logp.detach() - ref).cpu()
            total = reward - section["kl"] * kl
            adv = leave_one_out(total, [s.prompt_id for s in seqs]).to(logp.device)
        history["reward"].append(float(reward.mean()))
        history["kl"].append(float(kl.mean()))
        return -(adv * logp).mean()

    losses = train_in_place(model, params, steps(), loss_of, section["steps"], settings.optimiser_args(), "rl",
                            progress)
    return {"loss": losses, **history, "steps": len(losses), "trainable": names,
            "n_trainable": sum(p.numel() for p in params)}
