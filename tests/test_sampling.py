import math

import pytest
import torch

from detoxlab.models.registry import load_model
from detoxlab.sampling import (
    SamplingSettings,
    make_generator,
    sample,
    sample_next,
    sampling_distribution,
    top_k_filter,
    top_p_filter,
)

NEG = float("-inf")


def test_top_k_keeps_k_largest():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert top_k_filter(logits, 2).tolist() == [[NEG, 3.0, 2.0, NEG]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_keeps_smallest_nucleus():
    # probs 0.5, 0.3, 0.15, 0.05: p=0.8 keeps {0.5, 0.3}; p=0.81 also needs 0.15; p=0.3 keeps the top token only
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    kept = lambda p: (top_p_filter(logits, p) > NEG).squeeze(0).tolist()  # noqa: E731
    assert kept(0.8) == [False, True, False, True]
    assert kept(0.81) == [True, True, False, True]
    assert kept(0.3) == [False, True, False, False]
    assert kept(1.0) == [True, True, True, True]


def test_sampling_distribution_by_hand():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    dist = sampling_distribution(logits, SamplingSettings(top_p=0.8))
    torch.testing.assert_close(dist, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    dist = sampling_distribution(logits, SamplingSettings(temperature=0.5, top_k=3))
    w = torch.tensor([0.25, 0.09, 0.0225])
    torch.testing.assert_close(dist[0, :3], w / w.sum())
    assert dist[0, 3] == 0


def test_sampler_draws_from_its_distribution():
    """Empirical frequencies over many one-step draws match softmax(filtered logits)."""

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.log(torch.tensor([0.15, 0.5, 0.05, 0.3]))

        def forward(self, input_ids, **kw):
            b, t = input_ids.shape
            return type("O", (), {"logits": self.logits.expand(b, 1, 4), "past_key_values": None})

    n = 40000
    ids = torch.arange(n)[:, None]  # distinct rows: no shared prefill for this cache-less model
    toks, _ = sample(Fixed(), ids, torch.ones_like(ids), SamplingSettings(max_new_tokens=1, top_p=0.81),
                     make_generator(0, torch.device("cpu")), eos_token_id=None, pad_token_id=0)
    freq = torch.bincount(toks[:, 0], minlength=4).float() / n
    torch.testing.assert_close(freq, torch.tensor([0.15, 0.5, 0.0, 0.3]) / 0.95, atol=0.01, rtol=0)


def _batch(tok, texts):
    return tok(texts, return_tensors="pt", padding=True)


def test_generation_is_deterministic_for_a_seed(tiny_llama):
    model, tok = tiny_llama
    enc = _batch(tok, ["I can't stand", "The recipe calls for two cups of"])
    s = SamplingSettings(max_new_tokens=12, top_p=0.9)
    run = lambda seed: sample(model, enc.input_ids, enc.attention_mask, s, make_generator(seed, torch.device("cpu")),  # noqa: E731
                              tok.eos_token_id, tok.pad_token_id)[0]
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gemma_dir"])
def test_greedy_matches_transformers_generate(fixture, request):
    """top_k=1 makes sampling greedy: the KV cache, positions and left padding must reproduce generate()."""
    model, tok, _ = load_model(request.getfixturevalue(fixture))
    enc = _batch(tok, ["hello there, you", "The weather today is lovely and the people"])
    ours, _ = sample(model, enc.input_ids, enc.attention_mask, SamplingSettings(max_new_tokens=10, top_k=1),
                     make_generator(0, torch.device("cpu")), eos_token_id=None, pad_token_id=tok.pad_token_id)
    ref = model.generate(**enc, do_sample=False, max_new_tokens=10, min_new_tokens=10, pad_token_id=tok.pad_token_id,
                         eos_token_id=None)
    assert torch.equal(ours, ref[:, enc.input_ids.shape[1]:])


def test_left_padding_does_not_change_next_token_distribution(tiny_llama):
    model, tok = tiny_llama
    alone = _batch(tok, ["short"])
    padded = _batch(tok, ["short", "a much longer prompt that forces left padding"])
    from detoxlab.sampling import position_ids_from_mask

    with torch.no_grad():
        a = model(**alone, position_ids=position_ids_from_mask(alone.attention_mask)).logits[0, -1]
        b = model(**padded, position_ids=position_ids_from_mask(padded.attention_mask)).logits[0, -1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rows_stop_at_eos_and_pad_afterwards(tiny_llama):
    model, tok = tiny_llama

    class EosGuide:
        """Forces EOS for row 0 at the first step."""

        def adjust(self, logits):
            logits = logits.clone()
            logits[0] = float("-inf")
            logits[0, tok.eos_token_id] = 0.0
            return logits

        def update(self, nxt):
            pass

    enc = _batch(tok, ["one", "two"])
    toks, n = sample(model, enc.input_ids, enc.attention_mask, SamplingSettings(max_new_tokens=5),
                     make_generator(0, torch.device("cpu")), tok.eos_token_id, tok.pad_token_id, guide=EosGuide())
    assert n[0] == 1 and toks[0, 0] == tok.eos_token_id
    assert (toks[0, 1:] == tok.pad_token_id).all()


def test_shared_prefill_equals_separate_prefill(tiny_gemma_dir):
    """Repeated prompts share one prefill; the continuation distribution must not change."""
    model, tok, _ = load_model(tiny_gemma_dir)
    enc = _batch(tok, ["same prompt here", "other", "same prompt here", "other"])
    greedy = SamplingSettings(max_new_tokens=8, top_k=1)
    ours, _ = sample(model, enc.input_ids, enc.attention_mask, greedy, make_generator(0, torch.device("cpu")),
                     eos_token_id=None, pad_token_id=tok.pad_token_id)
    ref = model.generate(**enc, do_sample=False, max_new_tokens=8, min_new_tokens=8, pad_token_id=tok.pad_token_id)
    assert torch.equal(ours, ref[:, enc.input_ids.shape[1]:])
    assert torch.equal(ours[0], ours[2]) and torch.equal(ours[1], ours[3])


LOGITS6 = torch.tensor([2.0, 1.0, 0.5, 0.5, -1.0, -3.0])


@pytest.mark.parametrize("settings, candidates", [
    (SamplingSettings(top_p=0.5), 3),                       # nucleus inside the candidates: fast path
    (SamplingSettings(top_p=0.95), 3),                      # nucleus larger than the candidates: fallback
    (SamplingSettings(temperature=2.0, top_p=0.8), 3),      # temperature applied exactly once
    (SamplingSettings(temperature=0.7), 3),                 # pure sampling
    (SamplingSettings(top_k=3, top_p=0.9), 3),              # top-k then top-p; the k-th logit is tied: fallback
    (SamplingSettings(top_k=2, top_p=0.9), 3),              # top-k fast path
    (SamplingSettings(top_k=10, top_p=0.6), 3),             # top-k >= vocabulary: top-k off
])
def test_fast_sampler_matches_reference_distribution(settings, candidates, monkeypatch):
    import detoxlab.sampling as sampling

    monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", candidates)
    n = 60000
    draws = sampling.sample_next(LOGITS6.expand(n, 6), settings, make_generator(1, torch.device("cpu")))
    freq = torch.bincount(draws, minlength=6).float() / n
    expected = sampling_distribution(LOGITS6[None], settings)[0]
    torch.testing.assert_close(freq, expected, atol=0.008, rtol=0)
    assert (freq[expected == 0] == 0).all()


def test_sampling_from_no_mass_is_an_error():
    with pytest.raises(ValueError, match="no mass"):
        sample_next(torch.full((2, 5), float("-inf")), SamplingSettings(), make_generator(0, torch.device("cpu")))
