"""RAD and ARM: reward-model scores, the training losses, and the distributions guided decoding samples from."""

from __future__ import annotations

import pytest
import torch

from detoxlab.guides.reward import ArmSession, RadSession
from detoxlab.models.registry import load_model
from detoxlab.rewards.model import RewardModel, build, load, save, truncate
from detoxlab.rewards.train import Example, cumulative_loss, distillation_loss, pad_right, regulariser, train
from detoxlab.sampling import SamplingSettings, make_generator, sample
from detoxlab.training.finetune import FinetuneSettings

START = 1  # the tiny tokenizer's <bos>


def _randomise(rm: RewardModel, seed: int = 0) -> RewardModel:
    """Heads with scores spread over (0, 1), so clamping never hides a difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if rm.kind == "rad":
            rm.head.weight.copy_(torch.randn(rm.head.weight.shape, generator=g) * 0.05)
            rm.head.bias.fill_(0.5)
        else:
            rm.w.copy_(torch.randn(rm.w.shape, generator=g) * 0.05)
            rm.W.copy_(torch.randn(rm.W.shape, generator=g) * 0.05)
    return rm.eval()


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    return model, tok


@pytest.fixture(scope="module")
def rms(tiny_llama_dir):
    rad, _ = build(tiny_llama_dir, 1, "rad", ["toxicity", "insult"])
    arm, _ = build(tiny_llama_dir, 1, "arm", ["toxicity", "insult"])
    return _randomise(rad), _randomise(arm, 1)


def _batch(tok, texts):
    enc = tok(texts, return_tensors="pt", padding=True)
    return enc.input_ids, enc.attention_mask


def _prefix(tok, text: str) -> list[int]:
    return [START] + tok(text).input_ids


def test_rad_batched_cached_scores_equal_scoring_each_candidate_from_scratch(base, rms):
    _, tok = base
    rad = rms[0]
    texts = ["I can't believe", "The quick brown fox jumps over"]  # different lengths: left padding
    ids, mask = _batch(tok, texts)
    k = 5
    session = RadSession(rad, ids, mask, START, beta=1.0, k=k, label=0)
    history = [[], []]
    logits = torch.randn(2, len(tok), generator=torch.Generator().manual_seed(0))
    for step in range(3):
        session.adjust(logits)
        cand = session.cand
        for b in range(2):
            for j in range(k):
                seq = torch.tensor(_prefix(tok, texts[b]) + history[b] + [int(cand[b, j])])
                h, _ = rad.hidden(seq[None], torch.ones_like(seq)[None])
                naive = rad.prefix_scores(h[0, -1])
                assert torch.allclose(session.scores[b, j], naive, atol=1e-5)
        chosen = cand[:, step % k]
        for b in range(2):
            history[b].append(int(chosen[b]))
        session.update(chosen)


def test_arm_one_pass_scores_equal_the_naive_formula(base, rms):
    _, tok = base
    arm = rms[1]
    seq = torch.tensor([_prefix(tok, "You are such an idiot")])
    h, _ = arm.hidden(seq, torch.ones_like(seq))
    h_t = h[0, -1]
    all_scores = arm.all_next_scores(h_t)  # [V, L]
    e = arm.embeddings
    for i in (0, 5, 17, len(tok) - 1):
        for lab in range(2):
            naive = torch.dot(h_t, arm.w[lab]) + torch.dot(arm.W[lab] @ h_t, e[i])
            assert torch.allclose(all_scores[i, lab], naive, atol=1e-5)
    cand = torch.tensor([3, 9, 40])
    assert torch.allclose(arm.next_scores(h_t, cand), all_scores[cand], atol=1e-6)


def test_arm_session_scores_follow_the_prefix(base, rms):
    _, tok = base
    arm = rms[1]
    texts = ["Honestly", "They are always complaining about"]
    ids, mask = _batch(tok, texts)
    session = ArmSession(arm, ids, mask, START, beta=2.0, k=4, label=1)
    logits = torch.randn(2, len(tok), generator=torch.Generator().manual_seed(3))
    history = [[], []]
    for _ in range(3):
        out = session.adjust(logits)
        for b in range(2):
            seq = torch.tensor([_prefix(tok, texts[b]) + history[b]])
            h, _ = arm.hidden(seq, torch.ones_like(seq))
            naive = arm.next_scores(h[0, -1], session.cand[b])[:, 1]
            want = logits[b, session.cand[b]] + 2.0 * (1 - naive.clamp(0, 1))
            assert torch.allclose(out[b, session.cand[b]], want, atol=1e-5)
            assert torch.isinf(out[b]).sum() == len(tok) - 4  # only the k candidates survive
        nxt = session.cand[:, 0]
        for b in range(2):
            history[b].append(int(nxt[b]))
        session.update(nxt)


@pytest.mark.parametrize("kind", ["rad", "arm"])
def test_padding_does_not_change_any_score(base, rms, kind):
    _, tok = base
    rm = rms[0] if kind == "rad" else rms[1]
    short, long = "Honestly", "People say all kinds of things online"
    ids, mask = _batch(tok, [short, long])
    session = (RadSession if kind == "rad" else ArmSession)(rm, ids, mask, START, 1.0, 6, 0)
    alone = (RadSession if kind == "rad" else ArmSession)(rm, *_batch(tok, [short]), START, 1.0, 6, 0)
    logits = torch.randn(1, len(tok), generator=torch.Generator().manual_seed(5))
    for _ in range(3):
        padded = session.adjust(logits.expand(2, -1).clone())[0]
        single = alone.adjust(logits)[0]
        assert torch.allclose(padded, single, atol=1e-5)
        nxt = session.cand[:, 2]
        session.update(nxt)
        alone.update(nxt[:1])


@pytest.mark.parametrize("kind", ["rad", "arm"])
def test_beta_zero_reproduces_plain_top_k_sampling_token_for_token(base, rms, kind, tmp_path):
    from detoxlab.guides.reward import ArmGuide, RadGuide

    model, tok = base
    rm = rms[0] if kind == "rad" else rms[1]
    guide = (RadGuide if kind == "rad" else ArmGuide)({"type": kind, "k": 7, "beta": 0.0}, tmp_path)
    guide.rm, guide.start_id, guide.label = rm, START, 0
    ids, mask = _batch(tok, ["I can't believe what he said", "The recipe calls for"] * 3)
    plain = SamplingSettings(max_new_tokens=12, top_k=7, top_p=1.0, stop_at_eos=False)
    want, _ = sample(model, ids, mask, plain, make_generator(11, ids.device), None, tok.pad_token_id)
    settings = guide.sampling_settings(SamplingSettings(max_new_tokens=12, top_p=0.9, stop_at_eos=False))
    got, _ = sample(model, ids, mask, settings, make_generator(11, ids.device), None, tok.pad_token_id,
                    guide=guide.session(ids, mask))
    assert torch.equal(got, want)
    guide.spec["beta"] = 50.0  # a strong reward does change what is sampled
    steered, _ = sample(model, ids, mask, settings, make_generator(11, ids.device), None, tok.pad_token_id,
                        guide=guide.session(ids, mask))
    assert not torch.equal(steered, want)


def test_guided_distribution_is_softmax_of_logits_plus_beta_reward(base, rms):
    """The sampler draws from softmax(z + beta (1 - clamp(r))) over the top-k: frequencies match it."""
    _, tok = base
    rad = rms[0]
    ids, mask = _batch(tok, ["Honestly"])
    session = RadSession(rad, ids, mask, START, beta=3.0, k=5, label=0)
    logits = torch.randn(1, len(tok), generator=torch.Generator().manual_seed(2))
    adjusted = session.adjust(logits)
    target = adjusted.softmax(-1)[0]
    from detoxlab.sampling import sample_next

    settings = SamplingSettings(top_k=5, top_p=1.0)
    gen = make_generator(0, ids.device)
    draws = torch.stack([sample_next(adjusted.expand(4000, -1), settings, gen) for _ in range(5)]).flatten()
    freq = torch.bincount(draws, minlength=len(tok)).float() / draws.numel()
    assert set(draws.tolist()) <= set(session.cand[0].tolist())
    assert torch.allclose(freq, target, atol=0.01)


def test_cumulative_loss_by_hand():
    pred = torch.tensor([[[0.2], [0.4], [0.9]], [[0.0], [1.0], [0.0]]])  # [B=2, n=3, L=1]
    target = torch.tensor([[1.0], [0.5]])
    valid = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the second sequence is one token shorter
    first = (1 * 0.64 + 2 * 0.36 + 3 * 0.01) / 6
    second = (1 * 0.25 + 2 * 0.25) / 3
    assert cumulative_loss(pred, target, valid).item() == pytest.approx((first + second) / 2)
    two_heads = torch.cat([pred, pred], -1)
    assert cumulative_loss(two_heads, torch.cat([target, target], -1), valid).item() == pytest.approx(first + second)


def test_distillation_loss_by_hand():
    pred = torch.tensor([[[0.1, 0.0], [0.5, 0.5]]])
    teacher = torch.tensor([[[0.3, 0.0], [0.2, 0.1]]])
    valid = torch.tensor([[1.0, 1.0]])
    want = ((0.2 ** 2 + 0) + (0.3 ** 2 + 0.4 ** 2)) / 2
    assert distillation_loss(pred, teacher, valid).item() == pytest.approx(want)
    assert distillation_loss(pred, teacher, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.04)


def _examples(tok, n=24):
    texts = ["You are such an idiot, shut up", "The recipe calls for two cups of flour",
             "What a stupid thing to do", "The weather today is lovely"]
    labels = [1.0, 0.0, 0.9, 0.1]
    return [Example(_prefix(tok, texts[i % 4])[:12], [labels[i % 4]]) for i in range(n)]


def test_regulariser_pulls_the_marginal_term_toward_zero(tiny_llama_dir, base):
    _, tok = base
    arm, _ = build(tiny_llama_dir, 1, "arm", ["toxicity"])
    _randomise(arm, 4)
    with torch.no_grad():
        arm.W.mul_(20)  # a large Delta r to start from
    seqs = [e.ids for e in _examples(tok, 8)]
    ids, mask = pad_right(seqs, tok.pad_token_id)
    h, _ = arm.hidden(ids, mask)
    valid = mask[:, 1:].float()
    gen = torch.Generator().manual_seed(0)
    before = regulariser(arm, h[:, :-1], valid, gen).item()
    opt = torch.optim.Adam([arm.W], lr=5e-2)
    arm.W.requires_grad_(True)
    for _ in range(200):
        loss = regulariser(arm, h.detach()[:, :-1], valid, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = regulariser(arm, h[:, :-1], valid, torch.Generator().manual_seed(0)).item()
    assert after < 0.1 * before


@pytest.mark.parametrize("variant", ["rad", "arm_labels", "arm_distilled"])
def test_reward_training_changes_the_heads_and_lowers_the_loss(tiny_llama_dir, base, rms, variant):
    _, tok = base
    kind = "rad" if variant == "rad" else "arm"
    rm, _ = build(tiny_llama_dir, 1, kind, ["toxicity"])
    teacher = None
    if variant == "arm_distilled":
        teacher, _ = build(tiny_llama_dir, 1, "rad", ["toxicity"])
        _randomise(teacher)
    before = {n: p.detach().clone() for n, p in rm.named_parameters() if not n.startswith("lm.")}
    settings = FinetuneSettings(lr=1e-2, batch_size=8, epochs=8, train_layers=0, grad_clip=1.0)
    hist = train(rm, _examples(tok), settings, tok.pad_token_id, objective="distill" if teacher else "labels",
                 reg_weight=1.0 if kind == "arm" else 0.0, teacher=teacher, progress=False)
    after = dict(rm.named_parameters())
    changed = [n for n, p in before.items() if not torch.equal(p, after[n])]
    assert changed == list(before) if kind == "rad" else set(changed) == {"w", "W"}
    first, last = sum(hist["loss"][:3]) / 3, sum(hist["loss"][-3:]) / 3
    assert last < first


def test_top_layers_train_when_asked(tiny_llama_dir, base):
    _, tok = base
    rm, _ = build(tiny_llama_dir, 2, "rad", ["toxicity"])
    emb = rm.embeddings.detach().clone()
    lower = rm.lm.model.layers[0].mlp.up_proj.weight.detach().clone()
    top = rm.lm.model.layers[1].mlp.up_proj.weight.detach().clone()
    hist = train(rm, _examples(tok), FinetuneSettings(lr=1e-2, batch_size=8, epochs=2, train_layers=1),
                 tok.pad_token_id, progress=False)
    assert hist["trained_backbone"] and all("layers.1." in n or "norm" in n for n in hist["trained_backbone"])
    assert not torch.equal(top, rm.lm.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(lower, rm.lm.model.layers[0].mlp.up_proj.weight)
    assert torch.equal(emb, rm.embeddings)  # ARM's e_i and the tied input embeddings never train


def test_reward_model_round_trip_and_corrupt_file(tiny_llama_dir, base, rms, tmp_path):
    from detoxlab.artifacts import ArtifactError

    _, tok = base
    arm = rms[1]
    out = tmp_path / "rm"
    save(arm, out, tiny_llama_dir, layers=1, start_text="<bos>", trained_backbone=["model.norm.weight"],
         inputs={}, params={}, training={})
    loaded, _, spec = load(out)
    seq = torch.tensor([_prefix(tok, "What a stupid thing")])
    h1, _ = arm.hidden(seq, torch.ones_like(seq))
    h2, _ = loaded.hidden(seq, torch.ones_like(seq))
    assert spec["kind"] == "arm" and spec["start_text"] == "<bos>"
    assert torch.allclose(arm.all_next_scores(h1[0, -1]), loaded.all_next_scores(h2[0, -1]), atol=1e-6)
    (out / "reward.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ArtifactError, match="corrupt"):
        load(out)


def test_truncate_keeps_the_first_blocks(tiny_llama_dir):
    lm, _, _ = load_model(tiny_llama_dir)
    first = lm.model.layers[0].self_attn.q_proj.weight.detach().clone()
    truncate(lm, 1)
    assert len(lm.model.layers) == 1 and lm.config.num_hidden_layers == 1
    assert torch.equal(lm.model.layers[0].self_attn.q_proj.weight, first)
    with pytest.raises(ValueError, match="layers must be in 1..1"):
        truncate(lm, 2)


@pytest.mark.parametrize("kind", ["rad", "arm"])
def test_teacher_and_training_scores_equal_scoring_each_prefix_alone(base, rms, kind):
    """``teacher_scores`` / ``scores_from_hidden`` (one padded pass over whole sequences) give prefix t's score at
    row t-1: RAD's head on the hidden state at x_t, ARM's baseline on the state at x_{t-1} plus the marginal of x_t,
    each prefix forwarded on its own. A one-position shift would pair a prefix with its neighbour's score."""
    from detoxlab.rewards.train import teacher_scores

    _, tok = base
    rm = rms[0] if kind == "rad" else rms[1]
    seqs = [_prefix(tok, "People say all kinds of things"), _prefix(tok, "Honestly no")]  # unequal: padding too
    got = teacher_scores(rm, seqs, pad_id=0)
    for seq, scores in zip(seqs, got):
        assert scores.shape == (len(seq) - 1, len(rm.labels))
        for t in range(1, len(seq)):
            with torch.no_grad():
                if kind == "rad":
                    h, _ = rm.hidden(torch.tensor([seq[:t + 1]]), torch.ones(1, t + 1, dtype=torch.long))
                    want = rm.prefix_scores(h[0, -1])
                else:
                    h, _ = rm.hidden(torch.tensor([seq[:t]]), torch.ones(1, t, dtype=torch.long))
                    want = rm.next_scores(h[0, -1], torch.tensor([seq[t]]))[0]
            assert torch.allclose(scores[t - 1], want.float(), atol=1e-5), (kind, t)
