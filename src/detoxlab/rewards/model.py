"""A reward model: an autoregressive LM backbone (its final hidden states) with one reward head per label.

- ``rad`` (the teacher): ``r([x_<=t]) = Linear(h_t)`` -- the score of a whole prefix, so scoring k candidate
  next tokens takes k backbone rows;
- ``arm`` (the student): ``r([x_<=t, i]) = <h_t, w> + <W h_t, e_i>`` for EVERY next token i at once, with
  ``e_i`` the backbone's own (tied, frozen) output embeddings -- one backbone row per step;
- ``nado`` (NADO's token-level model, METHODS.md section 3): ``logit R([x_<=t, i]) = (U h_t + b)_i``, a full
  vocabulary-sized head, zero-initialised so that ``R = 1/2`` everywhere and NADO's ``q ~ p R`` starts at ``p``.

The backbone is the first ``layers`` blocks of a declared model (plus its final norm and tied embeddings), so
the reward model shares the guided model's tokenizer. Texts are fed as ``[start] + tokens``. An artifact
stores a relative path to the base model, the layer count, the heads, and any backbone tensors that trained.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from detoxlab.artifacts import (
    ArtifactError,
    atomic_dir,
    read_json,
    read_manifest,
    relative_path,
    write_json,
    write_manifest,
)
from detoxlab.timing import counts_as_loading

REWARD_KIND = "reward_model"
SPEC_FILE = "reward.json"
TENSORS_FILE = "reward.safetensors"
KINDS = ("rad", "arm", "nado")


def truncate(lm: torch.nn.Module, layers: int) -> torch.nn.Module:
    """Keep the first ``layers`` decoder blocks of a causal LM (in place)."""
    from detoxlab.training.finetune import decoder_layers

    blocks = decoder_layers(lm)
    if not 0 < layers <= len(blocks):
        raise ValueError(f"reward model backbone: layers must be in 1..{len(blocks)}, got {layers}")
    del blocks[layers:]
    lm.config.num_hidden_layers = layers
    if getattr(lm.config, "layer_types", None):
        lm.config.layer_types = lm.config.layer_types[:layers]
    return lm


class RewardModel(torch.nn.Module):
    def __init__(self, lm: torch.nn.Module, kind: str, labels: list[str], baseline: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"reward model kind must be one of {KINDS}, got '{kind}'")
        self.lm, self.kind, self.labels, self.baseline = lm, kind, list(labels), baseline
        d, n = lm.config.hidden_size, len(self.labels)
        if kind == "rad":
            self.head = torch.nn.Linear(d, n)
        elif kind == "nado":
            self.head = torch.nn.Linear(d, lm.get_output_embeddings().weight.shape[0])
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
        else:  # zero-initialised: the marginal term starts at Delta r = 0, where the regulariser pulls it
            self.w = torch.nn.Parameter(torch.zeros(n, d))
            self.W = torch.nn.Parameter(torch.zeros(n, d, d))

    @property
    def embeddings(self) -> torch.Tensor:
        """``e``: the backbone's output embeddings [V, d] (tied to its input embeddings; never trained)."""
        return self.lm.get_output_embeddings().weight

    def head_parameters(self) -> list[torch.nn.Parameter]:
        if self.kind in ("rad", "nado"):
            return list(self.head.parameters())
        return [self.w, self.W] if self.baseline else [self.W]

    def hidden(self, input_ids, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        """Final hidden states [B, T, d] (after the final norm) and the key/value cache."""
        out = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 past_key_values=past_key_values, use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    # --- RAD -------------------------------------------------------------------------------------------
    def prefix_scores(self, h: torch.Tensor) -> torch.Tensor:
        """RAD: the score of the prefix ending at each position, [..., L]."""
        return self.head(h)

    # --- NADO ------------------------------------------------------------------------------------------
    def token_logits(self, h: torch.Tensor) -> torch.Tensor:
        """NADO: ``logit R(prefix + v)`` for every vocabulary token ``v``, [..., V]."""
        return self.head(h)

    # --- ARM -------------------------------------------------------------------------------------------
    def baseline_scores(self, h: torch.Tensor) -> torch.Tensor:
        """ARM: ``<h, w_l>`` [..., L] (zero in the no-baseline ablation)."""
        if not self.baseline:
            return h.new_zeros(*h.shape[:-1], len(self.labels))
        return h @ self.w.T

    def marginal(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """ARM: ``<W_l h, e_i>`` for the tokens ``i`` in ``tokens`` [..., k] -> [..., k, L]."""
        proj = torch.einsum("...d,led->...le", h, self.W)  # W_l h, [..., L, d]
        return torch.einsum("...le,...ke->...kl", proj, self.embeddings[tokens])

    def next_scores(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """ARM: the reward of appending each token of ``tokens`` [..., k] -> [..., k, L] (one backbone row)."""
        return self.baseline_scores(h)[..., None, :] + self.marginal(h, tokens)

    def all_next_scores(self, h: torch.Tensor) -> torch.Tensor:
        """ARM: the reward of appending every vocabulary token, [..., V, L] (one d x V product)."""
        proj = torch.einsum("...d,led->...le", h, self.W)
        return self.baseline_scores(h)[..., None, :] + torch.einsum("...le,ve->...vl", proj, self.embeddings)

    def sequence_targets(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted score of every non-empty prefix ``x_1..x_t`` of ``[start, x_1..x_n]``: [B, n, L].

        RAD reads the prefix at its last token; ARM predicts it one position earlier, from ``h_{t-1}`` and the
        token ``x_t`` -- the two agree on what position t means, so one loss serves both.
        """
        h, _ = self.hidden(ids, mask)
        return self.scores_from_hidden(h, ids)

    def scores_from_hidden(self, h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.kind == "rad":
            return self.prefix_scores(h[:, 1:])
        return self.next_scores(h[:, :-1], ids[:, 1:, None]).squeeze(-2)


def build(base_dir: str | os.PathLike, layers: int, kind: str, labels: list[str], baseline: bool = True,
          device="cpu") -> tuple[RewardModel, object]:
    """A fresh reward model on the first ``layers`` blocks of the model in ``base_dir`` (float32)."""
    from detoxlab.models.registry import load_model

    lm, tokenizer, _ = load_model(base_dir, device, torch.float32)
    model = RewardModel(truncate(lm, layers), kind, labels, baseline).to(device)
    for p in model.lm.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def save(model: RewardModel, out_dir: str | os.PathLike, base_dir: str | os.PathLike, *, layers: int,
         start_text: str | None, trained_backbone: list[str], inputs: dict, params: dict, training: dict) -> dict:
    """Write the artifact: heads + the backbone tensors that trained (the rest is read from the base model)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    tensors = {f"head.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters()
               if not n.startswith("lm.")}
    state = dict(model.lm.named_parameters())
    tensors.update({f"backbone.{n}": state[n].detach().cpu().contiguous() for n in trained_backbone})
    with atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE))
        spec = {"kind": model.kind, "labels": model.labels, "baseline": model.baseline, "layers": layers,
                "start_text": start_text, "base": relative_path(base_dir, out_dir)}
        write_json(tmp / SPEC_FILE, spec)
        return write_manifest(tmp, REWARD_KIND, inputs=inputs, params=params, spec=spec, training=training)


@counts_as_loading
def load(reward_dir: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32):
    """``(RewardModel, tokenizer, spec)`` from an artifact written by :func:`save`."""
    from detoxlab.models.derived import apply_delta, read_tensors

    reward_dir = Path(reward_dir)
    read_manifest(reward_dir, REWARD_KIND)
    spec = read_json(reward_dir / SPEC_FILE)
    base = (reward_dir / spec["base"]).resolve()
    if not base.is_dir():
        raise ArtifactError(f"{reward_dir}: its backbone's base model {base} is missing; rebuild it")
    model, tokenizer = build(base, spec["layers"], spec["kind"], spec["labels"], spec["baseline"], device)
    tensors = read_tensors(reward_dir / TENSORS_FILE)
    heads = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    backbone = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    missing, unexpected = model.load_state_dict(heads, strict=False)
    if unexpected or any(not k.startswith("lm.") for k in missing):
        raise ArtifactError(f"{reward_dir / TENSORS_FILE}: heads do not match a '{spec['kind']}' model "
                            f"(missing {[k for k in missing if not k.startswith('lm.')]}, unexpected {unexpected})")
    if backbone:
        apply_delta(model.lm, backbone, str(reward_dir / TENSORS_FILE))
    model.to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, spec
