"""NADO and ACF objectives against brute-force enumeration on a tiny LM with a 3-token vocabulary.

Every continuation of length T is enumerated, so R(x, y_<i), the I-projection q* and its token conditionals
are computed exactly and compared with the closed forms the trainers use.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from detoxlab.acf.objectives import (
    bernoulli_kl,
    effective_sample_size,
    importance_weights,
    kl_to_target,
    nado_loss,
    oracle_labels,
    qstar_log_probs,
)

V, T, PROMPT = 3, 3, (1,)
BAD = 2  # the oracle rejects any continuation containing this token


@pytest.fixture(scope="module")
def lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen the random model so that prefixes differ clearly
        model.lm_head.weight.mul_(20.0)
    return model


def oracle(y) -> float:
    return float(BAD not in y)


@pytest.fixture(scope="module")
def exact(lm):
    """Next-token log-probs after every prefix, p(y), and R(prefix) for every prefix of every continuation."""

    @torch.no_grad()
    def log_p(prefix):
        return torch.log_softmax(lm(input_ids=torch.tensor([list(PROMPT) + list(prefix)])).logits[0, -1].double(), -1)

    prefixes = [p for n in range(T + 1) for p in itertools.product(range(V), repeat=n)]
    lp = {p: log_p(p) for p in prefixes if len(p) < T}
    seq_p = {y: math.exp(sum(float(lp[y[:t]][y[t]]) for t in range(T))) for y in itertools.product(range(V), repeat=T)}
    r = {}
    for p in prefixes:
        mass = sum(pr for y, pr in seq_p.items() if y[:len(p)] == p)
        r[p] = sum(pr * oracle(y) for y, pr in seq_p.items() if y[:len(p)] == p) / mass
    return lp, seq_p, r


def test_recursion_holds_for_the_exact_r(exact):
    lp, _, r = exact
    for prefix, logp in lp.items():
        rhs = sum(math.exp(float(logp[v])) * r[prefix + (v,)] for v in range(V))
        assert r[prefix] == pytest.approx(rhs, abs=1e-12)
    assert 0.05 < r[()] < 0.95  # the oracle is informative: neither always nor never satisfied


def _rows_of(y, r, lp, bump: float = 0.0):
    """NADO rows of one sequence: row 0 scores the prompt (R(x) realised), row k >= 1 the prefix y_<k."""
    logit = lambda p: math.log(p / (1 - p)) if 0 < p < 1 else (30.0 if p >= 1 else -30.0)  # noqa: E731
    rows = [[logit(r[()]) if v == PROMPT[-1] else 0.0 for v in range(V)]]
    rows += [[logit(r[y[:k] + (v,)]) for v in range(V)] for k in range(T)]
    logits = torch.tensor(rows, dtype=torch.float64)
    logits[1, 0] += bump
    tokens = torch.tensor([PROMPT[-1], *y])
    log_p = torch.stack([lp[y[:k]] for k in range(T)])
    return logits, tokens, log_p


def test_nado_consistency_term_vanishes_exactly_at_the_true_r(exact):
    lp, _, r = exact
    y = (0, 1, 0)
    cons, prev = torch.arange(1, T + 1), torch.arange(0, T)
    label = torch.full((T + 1,), oracle(y), dtype=torch.float64)
    logits, tokens, log_p = _rows_of(y, r, lp)
    _, parts = nado_loss(logits, tokens, label, log_p, cons, prev, consistency=1.0)
    assert parts["consistency"] < 1e-9
    logits, tokens, log_p = _rows_of(y, r, lp, bump=1.5)  # one wrong R(prefix + v) breaks the recursion
    _, parts = nado_loss(logits, tokens, label, log_p, cons, prev, consistency=1.0)
    assert parts["consistency"] > 1e-3


def test_nado_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    loss, parts = nado_loss(logits, torch.tensor([1, 0]), torch.tensor([1.0, 0.0]), torch.zeros(0, 2),
                            torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                            weights=torch.tensor([1.0, 3.0]))
    by_hand = (1 * math.log(1 + math.exp(-2.0)) + 3 * math.log(1 + math.exp(1.0))) / 4
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)
    assert parts["consistency"] == 0.0


def _iprojection_conditionals(seq_p, r, delta):
    """Brute force: q*(y) = p(y) delta/R or p(y) (1-delta)/(1-R), then its token conditionals by marginalising."""
    big_r = r[()]
    q = {y: p * (delta / big_r if oracle(y) else (1 - delta) / (1 - big_r)) for y, p in seq_p.items()}
    assert sum(q.values()) == pytest.approx(1.0)
    assert sum(v * oracle(y) for y, v in q.items()) == pytest.approx(delta)  # on the constraint's boundary

    def marg(prefix):
        return sum(v for y, v in q.items() if y[:len(prefix)] == prefix)

    return {p: [marg(p + (v,)) / marg(p) for v in range(V)] for n in range(T) for p in
            itertools.product(range(V), repeat=n) if marg(p) > 0}


@pytest.mark.parametrize("delta", [0.6, 0.85, 1.0])
def test_closed_form_qstar_equals_the_brute_force_iprojection(exact, delta):
    lp, seq_p, r = exact
    assert r[()] < delta
    brute = _iprojection_conditionals(seq_p, r, delta)
    for prefix, want in brute.items():
        log_r_next = torch.tensor([[math.log(max(r[prefix + (v,)], 1e-300)) for v in range(V)]], dtype=torch.float64)
        got = qstar_log_probs(lp[prefix][None], log_r_next, torch.tensor([r[()]], dtype=torch.float64), delta).exp()
        assert got[0].tolist() == pytest.approx(want, abs=1e-9)


def test_qstar_is_p_when_the_prompt_already_satisfies_the_constraint(exact):
    lp, _, r = exact
    log_p = lp[(0,)][None]
    log_r_next = torch.log(torch.tensor([[r[(0, v)] for v in range(V)]], dtype=torch.float64))
    for delta in (r[()], r[()] * 0.5):
        got = qstar_log_probs(log_p, log_r_next, torch.tensor([r[()]], dtype=torch.float64), delta)
        assert torch.allclose(got, log_p)
    below = qstar_log_probs(log_p, log_r_next, torch.tensor([r[()]], dtype=torch.float64), min(1.0, r[()] + 0.2))
    assert not torch.allclose(below, log_p)


def test_qstar_rejects_an_invalid_delta():
    with pytest.raises(ValueError, match="delta"):
        qstar_log_probs(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), 1.5)


def test_acf_loss_gradient_equals_the_naive_kl_gradient():
    torch.manual_seed(1)
    n, v, delta = 5, 7, 0.8
    log_p = torch.log_softmax(torch.randn(n, v, dtype=torch.float64), -1)
    r_next = torch.rand(n, v, dtype=torch.float64) * 0.98 + 0.01
    r_x = torch.tensor([0.3, 0.5, 0.95, 0.1, 0.7], dtype=torch.float64)  # one prompt above delta: q* = p there
    z = torch.randn(n, v, dtype=torch.float64, requires_grad=True)

    ours = kl_to_target(qstar_log_probs(log_p, r_next.log(), r_x, delta), z, torch.ones(n))
    g_ours, = torch.autograd.grad(ours, z)

    z2 = z.detach().clone().requires_grad_(True)
    p = log_p.exp()
    tilt = (delta - r_x)[:, None] * r_next + (1 - delta) * r_x[:, None]
    q = torch.where((r_x >= delta)[:, None], p, p * tilt / (p * tilt).sum(-1, keepdim=True))
    p_theta = torch.softmax(z2, -1)
    naive = sum((q[i, j] * (q[i, j].log() - p_theta[i, j].log())) for i in range(n) for j in range(v)) / n
    g_naive, = torch.autograd.grad(naive, z2)
    assert float(ours.detach()) == pytest.approx(float(naive.detach()), rel=1e-9)
    assert torch.allclose(g_ours, g_naive, atol=1e-12)


def test_oracle_labels_hard_and_soft():
    tox = [0.1, 0.5, 0.9]
    assert oracle_labels(tox, "hard", 0.5).tolist() == [1.0, 1.0, 0.0]
    assert oracle_labels(tox, "soft", 0.5).tolist() == pytest.approx([0.9, 0.5, 0.1])
    with pytest.raises(ValueError, match="acf.oracle.kind"):
        oracle_labels(tox, "fuzzy", 0.5)


def test_importance_weights_are_self_normalised_per_prompt():
    lt = torch.tensor([0.0, math.log(3.0), 0.0, 0.0])
    lp = torch.zeros(4)
    w = importance_weights(lt, lp, ["a", "a", "b", "b"])
    assert w.tolist() == pytest.approx([0.5, 1.5, 1.0, 1.0])  # p/pi = 1:3 within prompt a, mean 1 per prompt
    assert effective_sample_size(w) == pytest.approx(16 / (0.25 + 2.25 + 1 + 1))


def test_bernoulli_kl_by_hand():
    got = bernoulli_kl(torch.tensor([0.2]), torch.tensor([0.0]))
    assert float(got) == pytest.approx(0.2 * math.log(0.4) + 0.8 * math.log(1.6), rel=1e-5)
