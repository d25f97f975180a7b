from detoxlab.generation import generate
from detoxlab.guides import build_guide, load_guide
from detoxlab.sampling import SamplingSettings

PROMPTS = [{"id": f"p{i}", "text": t, "group": "g", "domain": "id", "split": "test"}
           for i, t in enumerate(["You are such a", "The recipe calls for", "Those people are"])]


def _run(model, tok, guide, seed, batch_size=4):
    return generate(model, tok, PROMPTS, guide, SamplingSettings(max_new_tokens=6, top_p=0.9), 3, batch_size, seed,
                    progress=False)


def test_rows_are_deterministic_for_a_seed(tiny_llama):
    model, tok = tiny_llama
    rows_a, stats = _run(model, tok, load_guide(None), seed=7)
    rows_b, _ = _run(model, tok, load_guide(None), seed=7)
    rows_c, _ = _run(model, tok, load_guide(None), seed=8)
    assert rows_a == rows_b
    assert [r["continuation"] for r in rows_a] != [r["continuation"] for r in rows_c]
    assert len(rows_a) == 9 and {r["sample"] for r in rows_a} == {0, 1, 2}
    assert stats["generated_tokens"] == sum(r["n_tokens"] for r in rows_a)


def test_preprompt_guide_changes_model_input_not_stored_prompt(tiny_llama, tmp_path):
    model, tok = tiny_llama
    build_guide("short", {"type": "preprompt", "text": "Be kind.", "separator": "\n"}, tmp_path / "g")
    guide = load_guide(tmp_path / "g")
    assert guide.wrap_prompt("Hi") == "Be kind.\nHi"
    rows, _ = _run(model, tok, guide, seed=7)
    plain, _ = _run(model, tok, load_guide(None), seed=7)
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in plain]
    assert [r["continuation"] for r in rows] != [r["continuation"] for r in plain]
