import math

import torch

from detoxlab.metrics.perplexity import conditional_perplexities


def test_uniform_judge_has_perplexity_equal_to_vocabulary(tiny_llama):
    model, tok = tiny_llama
    uniform = type(model)(model.config)
    for p in uniform.parameters():
        torch.nn.init.zeros_(p)  # all logits 0: every token has probability 1/V
    uniform.eval()
    ppl, stats = conditional_perplexities(uniform, tok, ["You are", "hello"], [" a fool", " world and more"])
    for v in ppl:
        assert abs(v - model.config.vocab_size) < 1e-3 * model.config.vocab_size
    assert stats["n_dropped_over_max"] == 0


def test_matches_two_mean_formula(tiny_llama):
    """exp((L(full)(n_full-1) - L(prompt)(n_p-1)) / (n_full - n_p)) with L from the model's own mean loss."""
    model, tok = tiny_llama
    # the last two pairs merge across the boundary ("qui"+"ck"): the two-forward form of the formula is used
    prompts = ["The reason I can't stand them is", "hello", "She said", "The qui", "The weath"]
    conts = [" that they never listen", " there friend", "!!", "ck brown fox", "er today is lovely"]
    ppl, stats = conditional_perplexities(model, tok, prompts, conts, batch_size=2)
    assert stats["n_boundary_merged"] == 2
    for p, c, got in zip(prompts, conts, ppl):
        full = tok(p + c, return_tensors="pt").input_ids
        pr = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            lf = model(full, labels=full).loss.item()
            lp = model(pr, labels=pr).loss.item()
        nf, np_ = full.shape[1], pr.shape[1]
        expected = math.exp((lf * (nf - 1) - lp * (np_ - 1)) / (nf - np_))
        assert abs(got - expected) < 1e-3 * expected


def test_empty_and_over_threshold_generations_are_dropped(tiny_llama):
    model, tok = tiny_llama
    ppl, stats = conditional_perplexities(model, tok, ["hi there", "hi there"], ["", " you"], max_ppl=1.0)
    assert math.isnan(ppl[0]) and math.isnan(ppl[1])
    assert stats["n_empty"] == 1 and stats["n_dropped_over_max"] == 1


def test_suffix_nll_with_no_suffix_tokens(tiny_llama):
    from detoxlab.metrics.perplexity import suffix_nll

    model, tok = tiny_llama
    assert suffix_nll(model, [tok("a b").input_ids, tok("c").input_ids], [0, 0], tok.pad_token_id) == [0.0, 0.0]


def test_judge_reads_only_the_first_samples_of_each_prompt(tiny_llama_dir, tmp_path):
    """``evaluation.perplexity.samples_per_prompt``: later samples are not judged, and fluency says how many were."""
    from detoxlab.artifacts import read_jsonl, write_jsonl
    from detoxlab.evaluation import step_perplexity, summarize

    gens = [{"prompt_id": p, "sample": s, "prompt": "You are", "continuation": f" a fool {s}", "group": "g",
             "domain": "id"} for p in ("a", "b") for s in range(3)]
    write_jsonl(tmp_path / "g.jsonl", gens)
    cfg = {"device": "cpu", "dtype": {}, "seed": 0,
           "evaluation": {"perplexity": {"max_ppl": 1e9, "batch_size": 4, "samples_per_prompt": 1},
                          "toxicity": {"threshold": 0.5, "inclusive": False}, "bootstrap": {"n_boot": 20, "alpha": 0.1},
                          "diversity": {"text": "continuation"}}}
    meta = step_perplexity(cfg, tmp_path / "g.jsonl", tiny_llama_dir, tmp_path / "p.jsonl")
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert meta["n_judged"] == 2
    assert [r["judged"] for r in rows] == [s == 0 for _ in "ab" for s in range(3)]
    assert all((r["ppl"] is None) != r["judged"] for r in rows)
    scores = [{"prompt_id": g["prompt_id"], "sample": g["sample"], "toxicity": 0.1} for g in gens]
    fluency = summarize(cfg, gens, scores, rows)["fluency"]
    assert fluency["n_judged"] == fluency["n_valid"] == 2 and fluency["n_dropped"] == 0
    assert math.isfinite(fluency["ppl"])


def test_a_bf16_judge_agrees_with_the_fp32_judge(tiny_llama_dir):
    """The default judges in bfloat16 (inference_dtype): per-continuation perplexities stay within 2% of float32's
    and the model really runs in bf16 (a float32 model would agree exactly)."""
    from detoxlab.models.registry import load_model

    prompts = ["The reason I can't stand them is", "hello", "She said"]
    conts = [" that they never listen", " there friend and more", " nothing at all today"]
    got = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, tok, _ = load_model(tiny_llama_dir, "cpu", dtype)
        assert next(model.parameters()).dtype == dtype
        got[dtype], _ = conditional_perplexities(model, tok, prompts, conts)
    for a, b in zip(got[torch.float32], got[torch.bfloat16]):
        assert a != b and abs(a - b) < 0.02 * a
