"""Every logit-adjusting guide inside ``transformers``' own ``generate()``: at every step of a seeded sampled
generation, the distribution ``generate`` drew from equals the one detoxlab's sampler draws from for the same
prefix (the guide's session driven by hand, the sampler's filters applied as detoxlab applies them)."""

from __future__ import annotations

import pytest
import torch

from detoxlab.artifacts import relative_path, write_json, write_manifest
from detoxlab.guides import load_guide, processor
from detoxlab.models.registry import load_model, materialize
from detoxlab.rewards.model import build, save
from detoxlab.sampling import SamplingSettings, position_ids_from_mask, sampling_distribution
from tests.conftest import TINY_LLAMA

PROMPTS = ["The quick brown fox", "People say all kinds of things online, some kind", "I"]
STEPS = 6


def _guide_dir(root, name: str, spec: dict):
    out = root / name
    out.mkdir()
    write_json(out / "guide.json", {"name": name, **spec})
    write_manifest(out, "guide", params=spec)
    return out


def _reward_dir(root, base_dir, kind: str, seed: int):
    rm, _ = build(base_dir, 1, kind, ["toxicity"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # heads that spread the scores, so the guide visibly reweights
        for p in rm.head_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out = root / f"rm_{kind}"
    save(rm, out, base_dir, layers=1, start_text="<bos>", trained_backbone=[], inputs={}, params={}, training={})
    return out


@pytest.fixture(scope="module")
def guides(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("guides")
    expert = root / "tiny_llama_toxic"
    materialize("tiny_llama_toxic", {**TINY_LLAMA, "seed": 7}, expert)
    rel = lambda path, name: relative_path(path, root / name)  # noqa: E731  (paths are relative to the guide)
    return {
        "dexperts": _guide_dir(root, "dexperts", {"type": "dexperts", "beta": 2.0, "top_p": 0.8,
                                                  "expert": rel(expert, "dexperts")}),
        "contrastive": _guide_dir(root, "contrastive", {"type": "contrastive", "alpha": 0.05,
                                                        "expert": rel(expert, "contrastive")}),
        "rad": _guide_dir(root, "rad", {"type": "rad", "beta": 5.0, "k": 12,
                                        "reward_model": rel(_reward_dir(root, tiny_llama_dir, "rad", 0), "rad")}),
        "arm": _guide_dir(root, "arm", {"type": "arm", "beta": 5.0, "k": 12,
                                        "reward_model": rel(_reward_dir(root, tiny_llama_dir, "arm", 1), "arm")}),
        "nado": _guide_dir(root, "nado", {"type": "nado",
                                          "reward_model": rel(_reward_dir(root, tiny_llama_dir, "nado", 2), "nado")}),
    }


@pytest.mark.parametrize("kind", ["dexperts", "contrastive", "rad", "arm", "nado"])
def test_generate_with_the_processor_samples_from_detoxlabs_distribution(tiny_llama_dir, guides, kind):
    model, tok, _ = load_model(tiny_llama_dir)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    proc = processor(guides[kind], model, top_p=0.9)
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, max_new_tokens=STEPS, logits_processor=[proc],
                         output_scores=True, return_dict_in_generate=True, pad_token_id=tok.pad_token_id,
                         **proc.generate_kwargs)
    tokens = out.sequences[:, enc.input_ids.shape[1]:]
    assert len(out.scores) == tokens.shape[1] >= 2

    # detoxlab's reference: the guide's session by hand, the base logits from a full forward of each prefix
    guide = load_guide(guides[kind]).to(torch.device("cpu"), torch.float32)
    settings = guide.sampling_settings(SamplingSettings(top_p=0.9))
    ids, mask = enc.input_ids, enc.attention_mask
    session = guide.session(ids, mask)
    moved = False
    for t, hf_scores in enumerate(out.scores):
        with torch.no_grad():
            base = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1]
        ours = sampling_distribution(session.adjust(base), settings)
        theirs = hf_scores.float().softmax(-1)
        assert torch.allclose(ours, theirs, atol=1e-5), f"{kind}: step {t}"
        moved |= not torch.allclose(ours, sampling_distribution(base, SamplingSettings(top_p=0.9)), atol=1e-3)
        session.update(tokens[:, t])
        ids = torch.cat([ids, tokens[:, t:t + 1]], 1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
    assert moved, f"{kind}: the guide never changed the distribution (the comparison would be vacuous)"


def test_a_second_generate_call_opens_a_new_session(tiny_llama_dir, guides):
    model, tok, _ = load_model(tiny_llama_dir)
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    proc = processor(guides["arm"], model)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(model.generate(**enc, do_sample=True, max_new_tokens=4, logits_processor=[proc],
                                   pad_token_id=tok.pad_token_id, **proc.generate_kwargs))
    assert torch.equal(runs[0], runs[1])  # state from the first call never leaks into the second


def test_a_prompt_guide_has_no_processor(tiny_llama_dir, tmp_path):
    model, _, _ = load_model(tiny_llama_dir)
    prompt_guide = _guide_dir(tmp_path, "pre", {"type": "preprompt", "text": "Be kind."})
    with pytest.raises(ValueError, match="does not adjust logits"):
        processor(prompt_guide, model)


def test_a_batch_without_a_pad_token_id_is_a_clear_error(tiny_llama_dir, guides):
    from detoxlab.guides.logits_processor import GuideLogitsProcessor

    model, tok, _ = load_model(tiny_llama_dir)
    guide = load_guide(guides["arm"]).to(torch.device("cpu"), torch.float32)
    proc = GuideLogitsProcessor(guide, pad_token_id=None)
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match="pad_token_id=tokenizer.pad_token_id"):
        proc(enc.input_ids, torch.zeros(2, len(tok)))
    proc.attention_mask = enc.attention_mask  # an explicit mask is used for the next call only
    proc(enc.input_ids, torch.zeros(2, len(tok)))
    assert proc.attention_mask is None
