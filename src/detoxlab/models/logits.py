"""A causal LM split at its output layer: final hidden states, then logits only where they are needed.

``model(...).logits`` computes a vocabulary-sized row at every position; on Gemma's 262k vocabulary that row
costs more than the rest of the network. Code that needs a few positions runs the decoder, picks the positions
and applies :func:`output_logits`, which is what the model's forward does after its decoder (output layer and
its hooks, e.g. LM-Steer's, then Gemma's final logit soft-capping).
"""

from __future__ import annotations

import torch


def final_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The hidden states that feed the output layer, [B, T, d]."""
    out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False)
    return out.last_hidden_state


def output_logits(model, h: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(h)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits
