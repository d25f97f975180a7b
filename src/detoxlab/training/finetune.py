"""Causal-LM fine-tuning on a list of texts: the toxic model, UniDetox and the base-samples baseline.

Only part of the network trains (the top decoder layers and the final norm, optionally the embeddings), which
is what makes CPU fine-tuning feasible and what the derived-model delta stores. Padding never enters the loss
(the official UniDetox code trains on its pad tokens; we mask them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from detoxlab.training.lora import LoraSettings
from detoxlab.training.loop import train_in_place


@dataclass(frozen=True)
class FinetuneSettings:
    lr: float
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None  # stops early when reached
    max_length: int = 64
    train_layers: int = 4  # top decoder layers that train; -1: all of them
    train_embeddings: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    seed: int = 0
    autocast: torch.dtype | None = None  # bf16/fp16 compute over float32 weights
    lora: LoraSettings | None = None  # an adapter on the trained blocks instead of the blocks themselves
    gradient_checkpointing: bool = False  # recompute block activations in the backward pass (memory for time)

    @classmethod
    def from_config(cls, section: dict, lr: float | None = None, seed: int = 0,
                    dtype: torch.dtype = torch.float32) -> FinetuneSettings:
        """``lr`` comes from a grid where there is one, else from ``section['lr']``; a step's ``dtype`` other than
        float32 becomes autocast over the float32 weights."""
        autocast = None if dtype == torch.float32 else dtype
        return cls(lr=float(section["lr"] if lr is None else lr), batch_size=section["batch_size"],
                   epochs=section["epochs"], max_steps=section.get("max_steps"), max_length=section["max_length"],
                   train_layers=section["train_layers"], train_embeddings=section["train_embeddings"],
                   weight_decay=section["weight_decay"], betas=tuple(section["betas"]),
                   eps=section.get("eps", 1e-8), warmup_steps=section.get("warmup_steps", 0),
                   grad_clip=section.get("grad_clip"), seed=seed, autocast=autocast,
                   lora=LoraSettings.from_config(section.get("lora")),
                   gradient_checkpointing=bool(section.get("gradient_checkpointing", False)))

    def precision(self, device_type: str):
        """The context a training step's forward pass runs in: autocast where set, else a no-op."""
        return torch.autocast(device_type, dtype=self.autocast, enabled=self.autocast is not None)

    def optimiser_args(self) -> dict:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                "grad_clip": self.grad_clip, "warmup_steps": self.warmup_steps}


def total_steps(n_items: int, settings: FinetuneSettings) -> int:
    total = math.ceil(n_items / settings.batch_size) * settings.epochs
    return min(total, settings.max_steps) if settings.max_steps else total


#: module names of the norm after the last block (Llama/Gemma, Falcon/GPT-2, OPT) and of learned positions
FINAL_NORMS = ("model.norm", "final_layernorm", "final_layer_norm", "ln_f", "final_norm")
POSITION_EMBEDDINGS = ("wpe", "embed_positions")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of decoder blocks (the longest ModuleList), whatever the architecture calls it."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__}: no decoder layer list found")
    return max(lists, key=len)


def top_blocks(model: torch.nn.Module, train_layers: int) -> list[torch.nn.Module]:
    """The top ``train_layers`` decoder blocks (-1: all)."""
    layers = list(decoder_layers(model))
    n = len(layers) if train_layers < 0 else min(train_layers, len(layers))
    return layers[len(layers) - n:]


def select_trainable(model: torch.nn.Module, train_layers: int, train_embeddings: bool) -> list[str]:
    """Freeze everything, then unfreeze the top ``train_layers`` blocks, the final norm and (optionally) the
    embeddings. Returns the names of the trainable parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = top_blocks(model, train_layers)
    n = len(blocks)
    chosen = {id(p) for block in blocks for p in block.parameters()}
    if n > 0:  # the norm after the last block sits between the trained blocks and the output layer
        for name, module in model.named_modules():
            if name.endswith(FINAL_NORMS):
                chosen |= {id(p) for p in module.parameters()}
    if train_embeddings:
        chosen |= {id(p) for p in model.get_input_embeddings().parameters()}
        chosen |= {id(p) for p in model.get_output_embeddings().parameters()}
        for name, module in model.named_modules():  # learned positions (GPT-2, OPT) are embeddings too
            if name.endswith(POSITION_EMBEDDINGS):
                chosen |= {id(p) for p in module.parameters()}
    names = []
    for name, p in model.named_parameters():  # tied weights appear once here
        if id(p) in chosen:
            p.requires_grad_(True)
            names.append(name)
    if not names:
        raise ValueError("nothing to train: train_layers is 0 and train_embeddings is false")
    return names


def prepare_trainable(model: torch.nn.Module, settings: FinetuneSettings) -> list[str]:
    """What a causal-LM fine-tune trains: the selected blocks in full, or a LoRA adapter on them (then nothing
    else trains: ``train_embeddings`` must be off); gradient checkpointing where switched on."""
    if settings.lora is None:
        names = select_trainable(model, settings.train_layers, settings.train_embeddings)
    else:
        from detoxlab.training import lora

        if settings.train_embeddings:
            raise ValueError("lora: an adapter trains only its own matrices; set train_embeddings: false")
        if settings.train_layers == 0:
            raise ValueError("lora: train_layers is 0, so there is no block to adapt")
        names = lora.inject(model, settings.lora, top_blocks(model, settings.train_layers))
    if settings.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it")
        kwargs = {"use_reentrant": False}  # frozen inputs to a block: the reentrant variant would drop grads
        if hasattr(model, "activation_checkpointing_enable"):  # the newer transformers name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return names


def tokenize_for_training(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text in the model's own convention (BOS where the tokenizer adds one), truncated."""
    ids = [tokenizer(t, add_special_tokens=True).input_ids[:max_length] for t in texts]
    return [x for x in ids if len(x) >= 2]


def pad_right(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def collate(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)``; padded positions get label -100 (no loss)."""
    ids, mask = pad_right(seqs, pad_id)
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def batches(seqs: Sequence[list[int]], batch_size: int, epochs: int, seed: int) -> Iterator[list[list[int]]]:
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(seqs))
        for start in range(0, len(order), batch_size):
            yield [seqs[i] for i in order[start:start + batch_size]]


def lm_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over non-pad target positions."""
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def finetune(model, tokenizer, texts: Sequence[str], settings: FinetuneSettings, progress: bool = True) -> dict:
    """Train ``model`` in place on ``texts``; returns the loss history and the trainable parameter names."""
    torch.manual_seed(settings.seed)
    device = next(model.parameters()).device
    names = prepare_trainable(model, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    seqs = tokenize_for_training(tokenizer, texts, settings.max_length)
    if not seqs:
        raise ValueError("no training text left after tokenisation (every text shorter than 2 tokens)")
    total = total_steps(len(seqs), settings)

    def loss_of(batch):
        ids, mask, labels = (t.to(device) for t in collate(batch, tokenizer.pad_token_id))
        with settings.precision(device.type):
            return lm_loss(model, ids, mask, labels)

    losses = train_in_place(model, params, batches(seqs, settings.batch_size, settings.epochs, settings.seed),
                            loss_of, total, settings.optimiser_args(), "fine-tune", progress)
    return {"loss": losses, "steps": len(losses), "n_texts": len(seqs), "trainable": names,
            "n_trainable": sum(p.numel() for p in params)}


@torch.no_grad()
def mean_loss(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 8) -> float:
    """Token-weighted mean NLL of ``texts`` (the fine-tuning objective, evaluated without updates)."""
    device = next(model.parameters()).device
    seqs = tokenize_for_training(tokenizer, texts, max_length)
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        ids, mask, labels = (t.to(device) for t in collate(seqs[start:start + batch_size], tokenizer.pad_token_id))
        n = int((labels[:, 1:] != -100).sum())
        total += float(lm_loss(model, ids, mask, labels)) * n
        count += n
    return total / max(count, 1)
