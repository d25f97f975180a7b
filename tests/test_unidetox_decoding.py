"""Contrastive decoding (UniDetox distillation) and DExperts anti-only: the distributions they sample from."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from detoxlab.guides.expert import ExpertSession, anti_expert_logits, contrastive_scores, plausibility_mask
from detoxlab.models.registry import load_model, materialize
from detoxlab.sampling import SamplingSettings, make_generator, sample, sampling_distribution, top_p_filter
from tests.conftest import TINY_LLAMA


@pytest.fixture(scope="module")
def pair(tiny_llama_dir, tmp_path_factory):
    """A base and a second model with the same tokenizer (another seed) standing in for the toxic model."""
    other = tmp_path_factory.mktemp("models") / "tiny_llama_b"
    materialize("tiny_llama_b", {**TINY_LLAMA, "seed": 7}, other)
    base, tok, _ = load_model(tiny_llama_dir)
    toxic, _, _ = load_model(other)
    return base, toxic, tok


def test_plausibility_mask_keeps_exactly_tokens_above_alpha_max():
    probs = torch.tensor([[0.50, 0.30, 0.05, 0.049, 0.101]])
    logits = probs.log() + 3.0  # any shift: the mask depends on probabilities only
    mask = plausibility_mask(logits, alpha=0.1)  # threshold 0.1 * 0.5 = 0.05
    assert mask.tolist() == [[True, True, True, False, True]]
    assert plausibility_mask(logits, alpha=1.0).tolist() == [[True, False, False, False, False]]


def test_contrastive_scores_by_hand():
    base = torch.tensor([[2.0, 1.0, -3.0]])
    toxic = torch.tensor([[0.0, 2.0, 0.0]])
    s = contrastive_scores(base, toxic, alpha=0.1)
    lb, lt = base.log_softmax(-1), toxic.log_softmax(-1)
    assert torch.allclose(s[0, :2], (lb - lt)[0, :2])
    assert s[0, 2] == -math.inf  # p = e^-3 / Z is below 0.1 * max


def _brute_force_scores(base, toxic, prefix: torch.Tensor, alpha: float) -> torch.Tensor:
    """s' from full forwards of both models on the whole prefix (no cache shared or reused)."""
    with torch.no_grad():
        zb = base(input_ids=prefix).logits[:, -1]
        zt = toxic(input_ids=prefix).logits[:, -1]
    return contrastive_scores(zb, zt, alpha)


def test_contrastive_session_scores_equal_brute_force_at_every_step(pair):
    base, toxic, tok = pair
    alpha = 0.1
    start = torch.full((3, 1), tok.eos_token_id)
    mask = torch.ones_like(start)
    seen = []

    class Recorder(ExpertSession):
        def adjust(self, logits):
            out = super().adjust(logits)
            seen.append(out.clone())
            return out

    session = Recorder(toxic, start, mask, partial(contrastive_scores, alpha=alpha))
    settings = SamplingSettings(max_new_tokens=6, top_p=1.0, stop_at_eos=False)
    tokens, _ = sample(base, start, mask, settings, make_generator(0, torch.device("cpu")), None,
                       tok.pad_token_id, guide=session)
    assert len(seen) == 6
    for step, scores in enumerate(seen):
        prefix = torch.cat([start, tokens[:, :step]], dim=1)
        expected = _brute_force_scores(base, toxic, prefix, alpha)
        finite = torch.isfinite(expected)
        assert torch.equal(torch.isfinite(scores), finite)
        assert torch.allclose(scores[finite], expected[finite], atol=1e-4)


def test_contrastive_decoding_samples_from_softmax_of_scores(pair):
    """Empirical first-token frequencies over many draws match softmax(s') (and nothing outside its support)."""
    base, toxic, tok = pair
    n = 20000
    start = torch.full((n, 1), tok.eos_token_id)
    mask = torch.ones_like(start)
    session = ExpertSession(toxic, start, mask, partial(contrastive_scores, alpha=0.1))
    settings = SamplingSettings(max_new_tokens=1, top_p=1.0, stop_at_eos=False)
    tokens, _ = sample(base, start, mask, settings, make_generator(1, torch.device("cpu")), None,
                       tok.pad_token_id, guide=session)
    target = _brute_force_scores(base, toxic, start[:1], 0.1).softmax(-1)[0]
    freq = torch.bincount(tokens[:, 0], minlength=target.numel()).double() / n
    assert float(freq[target == 0].sum()) == 0.0
    tv = 0.5 * float((freq - target.double()).abs().sum())
    support = int((target > 0).sum())
    assert tv < 0.5 * math.sqrt(support / n) + 0.01, f"total variation {tv:.4f} over {support} tokens"


def test_anti_expert_logits_on_the_base_nucleus():
    base = torch.tensor([[3.0, 2.0, 0.0, -5.0]])
    toxic = torch.tensor([[1.0, 3.0, 0.0, 0.0]])
    out = anti_expert_logits(base, toxic, beta=2.0, top_p=0.9)
    kept = torch.isfinite(top_p_filter(base, 0.9))
    assert torch.equal(torch.isfinite(out), kept)
    assert torch.allclose(out[kept], (3.0 * base - 2.0 * toxic)[kept])
    # beta = 0: plain nucleus sampling of the base
    ref = sampling_distribution(base, SamplingSettings(top_p=0.9))
    assert torch.allclose(anti_expert_logits(base, toxic, 0.0, 0.9).softmax(-1), ref)


def test_expert_session_with_left_padding_matches_full_forwards(pair):
    """The DExperts/MMLU path: left-padded prompts of different lengths, the expert's cache and positions."""
    from detoxlab.sampling import position_ids_from_mask

    base, toxic, tok = pair
    tok.padding_side = "left"
    enc = tok(["the cat sat on the mat", "a bird"], return_tensors="pt", padding=True)
    session = ExpertSession(toxic, enc.input_ids, enc.attention_mask, lambda b, e: e)
    nxt = torch.tensor([5, 7])
    session.update(nxt)
    for row in range(2):
        real = enc.input_ids[row][enc.attention_mask[row].bool()]
        full = torch.cat([real, nxt[row:row + 1]])[None]
        with torch.no_grad():
            expected = toxic(input_ids=full).logits[0, -1]
        assert torch.allclose(session.adjust(None)[row], expected, atol=1e-4)
    # and the prefill logits are the same positions' logits without padding
    mask = enc.attention_mask
    with torch.no_grad():
        padded = toxic(input_ids=enc.input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    assert torch.allclose(padded[1, -1], toxic(input_ids=enc.input_ids[1][mask[1].bool()][None]).logits[0, -1],
                          atol=1e-4)


def test_dexperts_guide_turns_the_samplers_nucleus_off():
    from detoxlab.guides.expert import AntiExpertGuide

    guide = AntiExpertGuide({"type": "dexperts", "beta": 1.0, "top_p": 0.9, "expert": "x"})
    out = guide.sampling_settings(SamplingSettings(top_p=0.9, top_k=0))
    assert out.top_p == 1.0 and out.top_k == 0


def test_start_token_is_checked_against_the_vocabulary(pair):
    from detoxlab.unidetox.distill import start_token_id

    _, _, tok = pair
    eos = tok.convert_ids_to_tokens(tok.eos_token_id)
    assert start_token_id(tok, eos) == tok.eos_token_id
    with pytest.raises(ValueError, match="start_text"):
        start_token_id(tok, "<|no-such-token|>")
