import numpy as np
import pytest
import torch

import detoxlab.metrics.mmlu as mmlu_scoring
from detoxlab.data.mmlu import MMLUQuestion, format_prompt
from detoxlab.guides import load_guide
from detoxlab.metrics.mmlu import accuracy_report, letter_loglik


def test_accuracy_report_by_hand():
    # predictions A, C, C, D vs gold A, B, C, A: 2 of 4 correct; subject x: 1/2, subject y: 1/2
    rep = accuracy_report(np.array([0, 2, 2, 3]), np.array([0, 1, 2, 0]), ["x", "x", "y", "y"])
    assert rep["accuracy"] == 0.5 and rep["n_questions"] == 4
    assert rep["per_subject"] == {"x": 0.5, "y": 0.5}
    assert rep["predictions"] == ["A", "C", "C", "D"]


@pytest.mark.parametrize("one_pass", [True, False])
def test_letter_loglik_matches_naive_scoring(tiny_llama, monkeypatch, one_pass):
    """Both scoring paths equal log p(" X" | context) summed over the tokens of " X", from a full forward."""
    model, tok = tiny_llama
    if not one_pass:
        monkeypatch.setattr(mmlu_scoring, "_one_token_letters", lambda *a: False)
    q = MMLUQuestion(question="What is 2 + 2?", choices=("3", "4", "5", "22"), answer=1, subject="math")
    shot = MMLUQuestion(question="Sky colour?", choices=("blue", "red", "green", "pink"), answer=0, subject="math")
    contexts = [format_prompt(q, [shot]), format_prompt(shot, [])]
    got = letter_loglik(model, tok, contexts, load_guide(None), batch_size=2)
    for i, c in enumerate(contexts):
        for j, letter in enumerate("ABCD"):
            ctx = tok(c).input_ids
            ids = tok(c + " " + letter, return_tensors="pt").input_ids
            assert ids[0, :len(ctx)].tolist() == ctx
            with torch.no_grad():
                logp = model(ids).logits[0].log_softmax(-1)
            naive = sum(logp[t - 1, ids[0, t]].item() for t in range(len(ctx), ids.shape[1]))
            np.testing.assert_allclose(got[i, j], naive, atol=1e-4)


def test_question_records_make_accuracy_recomputable_and_count_masked_questions():
    from detoxlab.metrics.mmlu import question_records

    qs = [MMLUQuestion("2+2?", ("3", "4", "5", "6"), 1, "math"),
          MMLUQuestion("Sky?", ("red", "blue", "green", "grey"), 1, "physics"),
          MMLUQuestion("Sea?", ("wet", "dry", "hot", "cold"), 0, "physics")]
    inf = float("-inf")
    ll = np.array([[-2.0, -0.5, -3.0, -4.0], [-1.0, inf, -2.0, -3.0], [inf, inf, inf, inf]])
    rec = question_records(qs, ll)
    assert rec["n_all_letters_masked"] == 1  # a top-p filter masked every letter: argmax silently says "A"
    rows = rec["questions"]
    assert [r["gold"] for r in rows] == ["B", "B", "A"] and rows[1]["loglik"][1] is None
    assert len({r["id"] for r in rows}) == 3
    assert rows[0]["id"] == question_records(qs[:1], ll[:1])["questions"][0]["id"]  # stable: recomputable
    # accuracy from the stored numbers alone, as the report computes it from ll.argmax
    recomputed = np.mean([max(range(4), key=lambda j: -np.inf if r["loglik"][j] is None else r["loglik"][j])
                          == "ABCD".index(r["gold"]) for r in rows])
    assert recomputed == accuracy_report(ll.argmax(-1), np.array([1, 1, 0]), ["m", "p", "p"])["accuracy"]
