"""NADO and ACF trainers on a tiny random LM: what each one changes, that its loss falls, the distribution NADO
decoding samples from, the RL and classification helpers, and the schedules' DAGs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detoxlab.acf import classify as cl
from detoxlab.acf import nado as nd
from detoxlab.acf import plan
from detoxlab.acf.data import GENERAL, Sequence, from_samples, mc_prompt_r, prediction_index
from detoxlab.acf.report import regulariser_table, regularisers
from detoxlab.acf.regularised import ANCHOR, TASK, Regulariser, batch_loss, mean_objective, regularised_finetune
from detoxlab.acf.rl import leave_one_out, policy_gradient, sequence_log_probs
from detoxlab.guides.nado import NadoSession
from detoxlab.models.registry import load_model
from detoxlab.rewards.model import build, load, save
from detoxlab.training.finetune import FinetuneSettings

START = 1  # the tiny tokenizer's <bos>
PROMPTS = ["You are such an", "The weather today is", "Those people never", "She walked into the"]


@pytest.fixture(scope="module")
def samples(tiny_llama):
    """Labelled samples whose label depends on the continuation's first token (something NADO can learn)."""
    model, tok = tiny_llama
    g = torch.Generator().manual_seed(0)
    rows = []
    for i, prompt in enumerate(PROMPTS):
        for s in range(6):
            toks = torch.randint(3, 60, (6,), generator=g).tolist()
            rows.append({"prompt_id": f"p{i}", "sample": s, "prompt": prompt, "tokens": toks,
                         "label": float(toks[0] % 2 == 0)})
    return from_samples(rows, tok, max_length=32)


def _settings(**kw):
    defaults = dict(lr=1e-2, batch_size=8, epochs=3, max_length=32, train_layers=1, train_embeddings=False, seed=0)
    return FinetuneSettings(**{**defaults, **kw})


def test_sequences_keep_the_sampled_tokens_and_index_the_continuation(tiny_llama, samples):
    _, tok = tiny_llama
    s = samples[0]
    assert s.ids[:s.prompt_len] == tuple(tok(PROMPTS[0]).input_ids)
    rows, pos = prediction_index(samples[:2])
    assert rows.tolist() == [0] * samples[0].n_predicted + [1] * samples[1].n_predicted
    assert pos[0] == samples[0].prompt_len - 1 and pos[samples[0].n_predicted - 1] == len(samples[0].ids) - 2
    mc = mc_prompt_r(samples)
    assert mc["p0"] == pytest.approx(np.mean([x.label for x in samples if x.prompt_id == "p0"]))


@pytest.mark.parametrize("cache,autocast", [(True, None), (False, None), (True, torch.bfloat16)])
def test_nado_training_lowers_bce_and_changes_only_the_head(tiny_llama_dir, tiny_llama, samples, cache, autocast):
    model, tok = tiny_llama
    nado, _ = build(tiny_llama_dir, 1, "nado", ["oracle"])
    assert torch.count_nonzero(nado.head.weight) == 0  # zero init: R = 1/2, q = p
    backbone = {k: v.clone() for k, v in nado.lm.state_dict().items()}
    features = nd.SampleFeatures(nado, model, samples, START, tok.pad_token_id, cache=cache)
    feats, log_probs = features.get(range(len(samples)))
    assert [len(x) for x in log_probs] == [s.n_predicted for s in samples]
    assert [len(f) for f in feats] == [len(s.ids) + 1 for s in samples]
    before = nd.evaluate(nado, features, 1.0)
    assert before["bce"] == pytest.approx(math.log(2), rel=1e-4)
    history = nd.train_nado(nado, features, _settings(epochs=20, lr=5e-2, autocast=autocast), 1.0, progress=False)
    assert nado.head.weight.dtype == torch.float32  # bf16 is compute only: the weights stay float32
    after = nd.evaluate(nado, features, 1.0)
    assert after["bce"] < before["bce"] - 0.05
    assert np.mean(history["loss"][-3:]) < np.mean(history["loss"][:3])
    assert torch.count_nonzero(nado.head.weight) > 0
    assert all(torch.equal(v, nado.lm.state_dict()[k]) for k, v in backbone.items())
    r = nd.prompt_r(nado, features)
    assert set(r["head"]) == set(r["monte_carlo"]) == {"p0", "p1", "p2", "p3"}
    assert all(0 < v < 1 for v in r["head"].values())


def test_flat_rows_align_features_tokens_and_recursion(samples):
    """Row r of sample i is NADO position k = P-1+r: its feature, its realised token ids[k], and (for r >= 1) the
    base log-probs of LM position k-1 with the previous row as the prefix's own R."""
    seqs = samples[:2]
    feats = [torch.tensor([[100.0 * i + k] for k in range(len(s.ids) + 1)]) for i, s in enumerate(seqs)]
    lps = [torch.tensor([[1000.0 * i + j] for j in range(s.prompt_len - 1, len(s.ids) - 1)])
           for i, s in enumerate(seqs)]
    h, tok, lab, w, cons, prev, lp = nd._flat(seqs, feats, lps)
    want_h, want_tok, want_lp = [], [], []
    for i, s in enumerate(seqs):
        ks = range(s.prompt_len - 1, len(s.ids))
        want_h += [100.0 * i + k for k in ks]
        want_tok += [s.ids[k] for k in ks]
        want_lp += [1000.0 * i + (k - 1) for k in ks if k >= s.prompt_len]
    assert h[:, 0].tolist() == want_h and tok.tolist() == want_tok
    assert lp[:, 0].tolist() == want_lp and len(cons) == len(prev) == len(lp)
    assert all(h[c, 0] - h[p, 0] == 1 for c, p in zip(cons, prev))  # the previous row is the prefix one shorter
    assert lab.tolist() == [s.label for s in seqs for _ in range(s.n_predicted + 1)]


def test_nado_round_trip_and_warm_start(tiny_llama_dir, tiny_llama, samples, tmp_path):
    _, tok = tiny_llama
    nado, _ = build(tiny_llama_dir, 1, "nado", ["oracle"])
    with torch.no_grad():
        nado.head.weight.normal_(0, 0.1)
    save(nado, tmp_path / "n", tiny_llama_dir, layers=1, start_text="<bos>", trained_backbone=[], inputs={},
         params={}, training={})
    again, _, spec = load(tmp_path / "n")
    assert spec["kind"] == "nado" and torch.equal(again.head.weight, nado.head.weight)


def test_nado_session_samples_from_p_times_r(tiny_llama_dir, tiny_llama):
    model, tok = tiny_llama
    nado, _ = build(tiny_llama_dir, 1, "nado", ["oracle"])
    with torch.no_grad():
        nado.head.weight.normal_(0, 0.5)
        nado.head.bias.normal_(0, 1.0)
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    logits = model(**enc).logits[:, -1]
    session = NadoSession(nado.eval(), enc.input_ids, enc.attention_mask, START, beta=1.0, k=0, label=0)
    q = torch.softmax(session.adjust(logits), -1)
    # by hand: R of every next token from the NADO on [start] + prompt, unpadded, one prompt at a time
    for b, prompt in enumerate(PROMPTS[:2]):
        ids = torch.tensor([[START] + tok(prompt).input_ids])
        h, _ = nado.hidden(ids, torch.ones_like(ids))
        r = torch.sigmoid(nado.token_logits(h[0, -1]))
        want = torch.softmax(logits[b], -1) * r
        assert torch.allclose(q[b], want / want.sum(), atol=1e-5)


def _regulariser(tiny_llama_dir, model, delta=0.9, prompt_r=None):
    nado, _ = build(tiny_llama_dir, 1, "nado", ["oracle"])
    with torch.no_grad():
        nado.head.weight.normal_(0, 0.3)
        nado.head.bias.normal_(0, 2.0)  # some tokens nearly always violate the oracle
    reference = load_model(tiny_llama_dir)[0]
    return Regulariser(reference=reference, nado=nado.eval(), start_id=START, delta=delta, prompt_r=prompt_r,
                       original=load_model(tiny_llama_dir)[0])


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_acf_finetuning_changes_parameters_and_lowers_the_loss(tiny_llama_dir, samples, autocast):
    model = load_model(tiny_llama_dir)[0]
    reg = _regulariser(tiny_llama_dir, model)
    params = {k: v.clone() for k, v in model.named_parameters()}
    history = regularised_finetune(model, samples, 0, _settings(epochs=8, autocast=autocast), reg, lam=5.0,
                                   progress=False)
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, params[k])]
    assert changed and set(changed) == set(history["trainable"])
    assert np.mean(history["loss"][-3:]) < np.mean(history["loss"][:3])
    assert len(history["kl"]) == len(history["nll"]) == history["steps"]


def test_the_regulariser_alone_pulls_the_model_to_qstar(tiny_llama_dir, samples):
    from dataclasses import replace

    model = load_model(tiny_llama_dir)[0]
    reg = _regulariser(tiny_llama_dir, model)
    anchors = [replace(s, domain=ANCHOR) for s in samples]  # q* only, no NLL
    before = mean_objective(model, anchors, 0, reg, lam=1.0)
    regularised_finetune(model, anchors, 0, _settings(epochs=10, lr=3e-2, train_layers=-1, train_embeddings=True), reg,
                         lam=1.0, progress=False)
    after = mean_objective(model, anchors, 0, reg, lam=1.0)
    assert before["kl"] > 1e-3 and after["kl"] < 0.6 * before["kl"]


def test_qstar_rows_are_padding_invariant(tiny_llama_dir, samples):
    """A right-padded batch of unequal lengths gives each sequence the rows it gets alone."""
    from detoxlab.acf.regularised import qstar_rows

    model = load_model(tiny_llama_dir)[0]
    reg = _regulariser(tiny_llama_dir, model)
    seqs = [samples[0], Sequence(samples[5].ids[:-3], samples[5].prompt_len, 1.0, "p0"), samples[9]]
    together = qstar_rows(reg, seqs, 0)
    alone = torch.cat([qstar_rows(reg, [s], 0) for s in seqs])
    assert torch.allclose(together, alone, atol=1e-5)


def test_monte_carlo_r_missing_prompt_is_a_clear_error(tiny_llama_dir, samples):
    model = load_model(tiny_llama_dir)[0]
    reg = _regulariser(tiny_llama_dir, model, prompt_r={"p0": 0.5})
    with pytest.raises(ValueError, match="no Monte-Carlo R"):
        batch_loss(model, samples[:12], 0, reg, lam=1.0)


def test_domains_choose_their_regulariser(tiny_llama_dir, samples):
    from dataclasses import replace

    model = load_model(tiny_llama_dir)[0]
    reg = _regulariser(tiny_llama_dir, model)
    _, toxic = batch_loss(model, samples[:4], 0, reg, lam=1.0)
    general = [replace(s, domain=GENERAL) for s in samples[:4]]
    _, gen = batch_loss(model, general, 0, reg, lam=1.0)
    assert toxic["kl"] > 1e-3 and "kl_toxic" in toxic
    assert gen["kl"] == pytest.approx(0.0, abs=1e-6)  # p_theta is still the original model
    task = [replace(s, domain=TASK) for s in samples[:4]]
    loss, parts = batch_loss(model, task, 0, reg, lam=1.0)
    assert parts.get("kl", 0.0) == 0.0 and float(loss.detach()) == pytest.approx(parts["nll"])
    anchor = [replace(s, domain=ANCHOR) for s in samples[:4]] + task
    _, parts = batch_loss(model, anchor, 0, reg, lam=1.0)
    assert parts["kl"] == pytest.approx(toxic["kl"], rel=1e-4) and parts["nll"] == pytest.approx(
        batch_loss(model, task, 0, reg, lam=0.0)[1]["nll"], rel=1e-5)


def test_leave_one_out_baseline_by_hand():
    adv = leave_one_out(torch.tensor([1.0, 0.0, 0.0, 2.0, 4.0]), ["a", "a", "a", "b", "b"])
    assert adv.tolist() == pytest.approx([1.0, -0.5, -0.5, -2.0, 2.0])


def test_sequence_log_probs_match_a_manual_sum(tiny_llama, samples):
    model, _ = tiny_llama
    with torch.no_grad():
        got = sequence_log_probs(model, samples[:3], 0)
    for s, g in zip(samples[:3], got):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([list(s.ids)])).logits[0].log_softmax(-1)
        want = sum(float(logits[j, s.ids[j + 1]]) for j in range(s.prompt_len - 1, len(s.ids) - 1))
        assert float(g) == pytest.approx(want, abs=1e-4)


def test_policy_gradient_raises_the_reward(tiny_llama_dir):
    model, tok, _ = load_model(tiny_llama_dir)
    reference = load_model(tiny_llama_dir)[0]
    prompts = [{"id": f"p{i}", "text": t, "group": "g", "domain": "id", "split": "train"}
               for i, t in enumerate(PROMPTS)]

    def reward(texts):  # a toy oracle that half of the base model's continuations satisfy
        return np.array([0.0 if "e" in t else 1.0 for t in texts], dtype=np.float32)

    section = {"steps": 30, "prompts_per_step": 4, "samples_per_prompt": 8, "max_new_tokens": 4, "kl": 0.01}
    params = {k: v.clone() for k, v in model.named_parameters()}
    settings = _settings(lr=1e-2, train_layers=-1, train_embeddings=True)
    history = policy_gradient(model, reference, tok, prompts, reward, section, settings, progress=False)
    assert any(not torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert 0.1 < np.mean(history["reward"][:5]) < 0.9
    assert np.mean(history["reward"][-5:]) > np.mean(history["reward"][:5]) + 0.1


def test_classification_helpers(tiny_llama):
    _, tok = tiny_llama
    with pytest.raises(ValueError, match="acf.classification.answers"):
        cl.answer_ids(tok, [" yes", " no"])  # two tokens each in the tiny vocabulary
    yes, no = cl.answer_ids(tok, [" A", " B"])
    seqs = cl.task_sequences([{"id": "a", "text": "You idiot", "toxic": 1}], tok, " Answer:", (yes, no), 64)
    assert seqs[0].ids[-1] == yes and seqs[0].n_predicted == 1
    acc = cl.accuracy(np.array([1.0, -1.0, 2.0, -3.0]), np.array([1, 1, 0, 0]))
    assert acc == {"n": 4, "n_toxic": 2, "accuracy": 0.5, "balanced_accuracy": 0.5}
    acc = cl.accuracy(np.array([1.0, -1.0, -2.0, -3.0, -1.0]), np.array([1, 0, 0, 0, 0]))
    assert acc["accuracy"] == 1.0 and acc["balanced_accuracy"] == 1.0


def _cfg(n: int, importance_weights: bool = True):
    return {"acf": {"base": "m", "iterations": n, "nado": {"warm_start": True},
                    "runs": {"seq": {"schedule": "sequential", "regulariser": "qstar", "importance_weights": False},
                             "par": {"schedule": "parallel", "regulariser": "qstar",
                                     "importance_weights": importance_weights}}}}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_schedule_dags_have_the_papers_critical_paths(n):
    cfg = _cfg(n)
    seq, par = plan.schedule_jobs(cfg, "seq"), plan.schedule_jobs(cfg, "par")
    unit = lambda jobs: {j: 1.0 for j in jobs}  # noqa: E731
    assert plan.critical_path(seq, unit(seq))[0] == 3 * n == len(seq)
    assert plan.critical_path(par, unit(par))[0] == n + 2
    for i in range(2, n + 1):  # iteration i: N_i, M_i, S_{i-1} read only iteration i-1's outputs
        trio = [plan.nado_path(cfg, "par", i), plan.model_dir(cfg, "par", i), plan.samples_path(cfg, "par", i - 1)]
        for a in trio:
            assert not set(par.get(a, [])) & set(trio)


def test_parallel_nado_reweights_to_the_newest_model():
    cfg = _cfg(4)
    job = plan.nado_job(cfg, "par", 3)
    assert (job.samples, job.proposal, job.target) == (plan.samples_path(cfg, "par", 1), "m.acf.par.it1",
                                                       "m.acf.par.it2")
    assert plan.nado_job(_cfg(4, False), "par", 3).target == "m.acf.par.it1"
    assert plan.nado_path(cfg, "par", 1) == plan.nado_path(cfg, "seq", 1) == plan.BASE_NADO
    assert plan.finetune_nado(cfg, "par", 3) == plan.nado_path(cfg, "par", 2)
    assert plan.finetune_nado(cfg, "seq", 3) == plan.nado_path(cfg, "seq", 3)


@pytest.mark.parametrize("importance_weights", [True, False])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_artifact_a_run_builds_is_read(n, importance_weights):
    """The requested set is closed and has no leaf but the final model and the samples the report plots."""
    cfg = _cfg(n, importance_weights)
    for run in ("seq", "par"):
        jobs, art = plan.schedule_jobs(cfg, run), plan.run_artifacts(cfg, run)
        assert set(jobs) == set(art["samples"] + art["nado"] + art["models"])
        read = {d for deps in jobs.values() for d in deps}
        assert set(jobs) - read <= {plan.model_dir(cfg, run, n), *plan.report_samples(cfg, run)}


def test_which_nado_regularises_which_model_at_three_iterations():
    def chain(cfg, run):  # (N_j, its samples S_k, the model R is estimated under, importance-weighted)
        return [(g["nado_path"], g["samples_path"], g["target"], g["importance_weighted"])
                for g in regularisers(cfg, run)]

    cfg, base = _cfg(3), (plan.BASE_NADO, plan.BASE_SAMPLES, 0, False)
    assert chain(cfg, "par") == [base, base, ("results/acf/par/nado2", plan.BASE_SAMPLES, 1, True)]
    assert chain(cfg, "seq") == [base, ("results/acf/seq/nado2", "results/acf/seq/samples1.jsonl", 1, False),
                                 ("results/acf/seq/nado3", "results/acf/seq/samples2.jsonl", 2, False)]
    assert chain(_cfg(3, False), "par") == [base] * 3  # N_2 on S_0 under M_0 is the base NADO
    assert "| M_3 | N_2 | S_0 from M_0 | M_1 | yes |" in regulariser_table(cfg, "par")
    assert "| M_2 | N_1 (the base NADO) | S_0 from M_0 | M_0 | no |" in regulariser_table(cfg, "par")


def test_sequence_dataclass_defaults():
    s = Sequence((1, 2, 3), 1)
    assert s.n_predicted == 2 and math.isnan(s.label) and s.domain == "toxic"


@pytest.mark.parametrize("cache", [True, False])
def test_importance_weights_use_exact_continuation_log_likelihoods(tiny_llama_dir, tiny_llama, samples, cache):
    """The log-likelihoods behind NADO's importance weights are the continuations' exact log-probabilities under
    each model (a sum over the continuation's tokens only, read one position before each token), so a sample
    the target likes more than the proposal gets a larger weight, exactly exp(log p - log pi) normalised."""
    target, tok = tiny_llama
    proposal = load_model(tiny_llama_dir)[0]
    with torch.no_grad():
        for p in proposal.parameters():
            p.add_(0.05 * torch.randn_like(p))  # another model with the same tokenizer

    def exact(model, s):
        with torch.no_grad():
            lp = model(input_ids=torch.tensor([list(s.ids)])).logits[0].float().log_softmax(-1)
        return sum(float(lp[j, s.ids[j + 1]]) for j in range(s.prompt_len - 1, len(s.ids) - 1))

    nado, _ = build(tiny_llama_dir, 1, "nado", ["oracle"])
    features = nd.SampleFeatures(nado, target, samples, START, tok.pad_token_id, cache=cache)
    ll_target = features.loglik()
    ll_proposal = nd.continuation_log_probs(proposal, samples, tok.pad_token_id, keep=False)[1]
    tol = 2e-2 if cache else 1e-4  # the cache keeps per-token log-probs in float16
    for s, t, q in zip(samples, ll_target, ll_proposal):
        assert float(t) == pytest.approx(exact(target, s), abs=tol)
        assert float(q) == pytest.approx(exact(proposal, s), abs=1e-4)
    weighted = nd.reweight(samples, ll_target, ll_proposal)
    assert max(abs(w.weight - 1) for w in weighted) > 0.05  # the two models really differ
    for pid in {s.prompt_id for s in samples}:
        rows = [i for i, s in enumerate(samples) if s.prompt_id == pid]
        log_w = torch.tensor([exact(target, samples[i]) - exact(proposal, samples[i]) for i in rows],
                             dtype=torch.float64)
        want = torch.softmax(log_w, 0) * len(rows)
        got = torch.tensor([weighted[i].weight for i in rows], dtype=torch.float64)
        assert torch.allclose(got, want, atol=3e-2 if cache else 1e-3)


def test_qstar_rows_equal_a_brute_force_qstar_per_prefix(tiny_llama_dir, samples):
    """Each row of ``qstar_rows`` is q* for one continuation prefix y = ids[:j+1], rebuilt here from scratch:
    p(. | y) from the reference run on y alone, R(y + v) from NADO run on [start] + y, R(x) from NADO's score of the
    prompt's last token, and q*(v) ~ p(v) [(delta - R(x)) R(y + v) + (1 - delta) R(x)] where R(x) < delta."""
    from detoxlab.acf.regularised import qstar_rows

    model = load_model(tiny_llama_dir)[0]
    delta = 0.9
    reg = _regulariser(tiny_llama_dir, model, delta=delta)
    seqs = [samples[0], samples[9]]
    got = qstar_rows(reg, seqs, 0)

    def nado_logits(ids):  # logit R(ids + v) for every v
        with torch.no_grad():
            h, _ = reg.nado.hidden(torch.tensor([[START, *ids]]), torch.ones(1, len(ids) + 1, dtype=torch.long))
            return reg.nado.token_logits(h[0, -1]).float()

    want, any_projected = [], False
    for s in seqs:
        p_len = s.prompt_len
        r_x = float(torch.sigmoid(nado_logits(list(s.ids[:p_len - 1]))[s.ids[p_len - 1]]))
        for j in range(p_len - 1, len(s.ids) - 1):
            y = list(s.ids[:j + 1])
            with torch.no_grad():
                log_p = reg.reference(input_ids=torch.tensor([y])).logits[0, -1].float().log_softmax(-1)
            if r_x >= delta:
                q = log_p.exp()
            else:
                any_projected = True
                r_next = torch.sigmoid(nado_logits(y))
                q = log_p.exp() * ((delta - r_x) * r_next + (1 - delta) * r_x)
            want.append((q / q.sum()).log())
    assert any_projected  # the case that projects, not only q* = p
    assert got.shape == (len(want), len(want[0]))
    assert torch.allclose(got, torch.stack(want), atol=1e-4)


def test_rl_reward_is_the_oracle_label_or_the_soft_score():
    from detoxlab.acf.steps import rl_rewards

    cfg = {"acf": {"oracle": {"kind": "hard", "threshold": 0.5}, "baselines": {"rl": {"reward": "oracle"}}}}
    tox = [0.1, 0.7, float("nan"), 0.5]
    assert rl_rewards(cfg, tox) == [1.0, 0.0, 0.0, 1.0]  # a failed score counts as toxic; 0.5 is not > 0.5
    cfg["acf"]["baselines"]["rl"]["reward"] = "soft"
    assert rl_rewards(cfg, tox) == pytest.approx([0.9, 0.3, 0.0, 0.5])


def test_samples_whose_prompt_fills_max_length_are_left_out_and_counted(tiny_llama, caplog):
    _, tok = tiny_llama
    rows = [{"prompt": PROMPTS[0], "tokens": [5, 6], "label": 1.0},
            {"prompt": PROMPTS[0] * 8, "tokens": [5, 6], "label": 1.0}]
    with caplog.at_level("WARNING"):
        seqs = from_samples(rows, tok, max_length=len(tok(PROMPTS[0]).input_ids) + 2)
    assert len(seqs) == 1 and seqs[0].n_predicted == 2
    assert "1 of 2 samples left out" in caplog.text
