"""``detoxlab export``: a derived model (delta, LM-Steer, LoRA, alias) becomes a checkpoint that plain
``transformers`` loads, with nothing from detoxlab imported, and decodes exactly as detoxlab does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detoxlab.artifacts import ArtifactError, write_manifest
from detoxlab.export import export, resolve_model_dir
from detoxlab.models.derived import save_derived
from detoxlab.models.registry import load_model
from detoxlab.sampling import SamplingSettings, make_generator, sample

PROMPTS = ["The quick brown fox", "People say all kinds of things", "I can't believe"]
NEW_TOKENS = 6

# runs in a fresh interpreter: only transformers, and a check that detoxlab never got imported
STANDALONE = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompts, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path).eval()
enc = tok(prompts, return_tensors="pt", padding=True)
with torch.no_grad():
    out = model.generate(**enc, do_sample=False, max_new_tokens=n, min_new_tokens=n)
assert not any(m.startswith("detoxlab") for m in sys.modules), "detoxlab was imported"
print(json.dumps(out[:, enc["input_ids"].shape[1]:].tolist()))
"""


def standalone_greedy(path: Path) -> list[list[int]]:
    res = subprocess.run([sys.executable, "-c", STANDALONE, str(path), json.dumps(PROMPTS), str(NEW_TOKENS)],
                         capture_output=True, text=True, check=True, cwd=path.parent)
    return json.loads(res.stdout.strip().splitlines()[-1])


def detoxlab_greedy(model_dir: Path) -> list[list[int]]:
    """detoxlab's own sampler with top-k 1 (argmax) on the derived model as the DAG loads it (hooks and all)."""
    model, tok, _ = load_model(model_dir)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    settings = SamplingSettings(max_new_tokens=NEW_TOKENS, top_k=1, stop_at_eos=False)
    tokens, _ = sample(model, enc["input_ids"], enc["attention_mask"], settings, make_generator(0, "cpu"),
                       eos_token_id=None, pad_token_id=tok.pad_token_id)
    return tokens.tolist()


def _perturbed_delta(base_dir: Path, seed: int) -> dict[str, torch.Tensor]:
    model, _, _ = load_model(base_dir)
    g = torch.Generator().manual_seed(seed)
    names = [n for n, _ in model.named_parameters() if ".layers.1." in n]
    return {n: p.detach() + 0.5 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()
            if n in names}


@pytest.fixture(scope="module")
def derived(tiny_llama_dir, tmp_path_factory) -> dict[str, Path]:
    """A delta, an LM-Steer model (tied embeddings: the export must untie them) and an alias of the delta."""
    root = tmp_path_factory.mktemp("results") / "models"
    hidden = load_model(tiny_llama_dir)[0].config.hidden_size
    out = {"delta": root / "tiny_llama.unidetox.lr0.1", "steer": root / "tiny_llama.lmsteer.eps2"}
    save_derived(out["delta"], tiny_llama_dir, root="tiny_llama", delta=_perturbed_delta(tiny_llama_dir, 0))
    w = torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(1)) * 0.3
    save_derived(out["steer"], tiny_llama_dir, root="tiny_llama", steer=(w, 2.0))
    out["alias"] = root / "tiny_llama.unidetox"
    out["alias"].mkdir()
    write_manifest(out["alias"], "model", root="tiny_llama", derived={"alias_of": "../tiny_llama.unidetox.lr0.1"},
                   selection={"chosen": "lr0.1", "criterion": "lowest validation TP"})
    return out


@pytest.mark.parametrize("kind", ["delta", "steer", "alias"])
def test_export_loads_without_detoxlab_and_decodes_as_detoxlab_does(derived, tmp_path, kind):
    out = tmp_path / "export"
    export(str(derived[kind]), out)
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    assert standalone_greedy(out) == detoxlab_greedy(derived[kind])


def test_export_of_the_steered_model_changes_its_decoding(derived, tiny_llama_dir, tmp_path):
    # the equality above is not vacuous: the steer (and the delta) move the greedy path off the base's
    assert detoxlab_greedy(derived["steer"]) != detoxlab_greedy(tiny_llama_dir)
    assert detoxlab_greedy(derived["delta"]) != detoxlab_greedy(tiny_llama_dir)
    export(str(derived["steer"]), tmp_path / "steer")
    config = json.loads((tmp_path / "steer" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False  # the input embeddings keep E, the output layer has E'


def test_model_card_records_method_hyperparameters_data_and_metrics(derived, tmp_path):
    results = derived["delta"].parent.parent
    (results / "report").mkdir()
    cols = ["system", "split", "tp", "tp_lo", "tp_hi", "emt", "emt_lo", "emt_hi", "ppl", "ppl_lo", "ppl_hi",
            "judge", "dist2"]
    row = ["tiny_llama.unidetox--none", "test", "0.125", "0.05", "0.2", "0.3", "0.25", "0.35", "40.0", "38.0",
           "42.0", "tiny_gemma", "0.8"]
    (results / "report" / "table.csv").write_text(",".join(cols) + "\n" + ",".join(row) + "\n")
    export("tiny_llama.unidetox--none", tmp_path / "card", results=results)
    card = (tmp_path / "card" / "README.md").read_text()
    assert "**Method:** UniDetox" in card and "base_model: tiny_llama" in card
    assert "chose `lr0.1`" in card and "lowest validation TP" in card
    assert "| test | 0.125 [0.050, 0.200] | 0.300 [0.250, 0.350] | 40.0 [38.0, 42.0] (tiny_gemma) | 0.800 |" in card


def test_export_replaces_an_earlier_export_but_never_another_directory(derived, tmp_path):
    out = tmp_path / "export"
    export(str(derived["delta"]), out)
    export(str(derived["steer"]), out)  # an earlier export is replaced whole
    assert standalone_greedy(out) == detoxlab_greedy(derived["steer"])
    other = tmp_path / "my_models"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an earlier export"):
        export(str(derived["delta"]), other)
    assert (other / "keep.txt").read_text() == "mine" and len(list(other.iterdir())) == 1


def test_a_guided_system_or_a_missing_model_is_a_clear_error(derived, tmp_path):
    results = derived["delta"].parent.parent
    with pytest.raises(ValueError, match="acts while decoding.*guides.processor"):
        resolve_model_dir("tiny_llama--rad", results)
    with pytest.raises(ArtifactError, match="no finished model"):
        resolve_model_dir("tiny_llama.nothing--none", results)
    with pytest.raises(ArtifactError, match="no finished model"):
        export("tiny_llama.nothing", tmp_path / "x", results=results)
    assert not (tmp_path / "x").exists()
    res = subprocess.run([sys.executable, "-m", "detoxlab.cli", "export", "tiny_llama--rad", str(tmp_path / "y"),
                          "--results", str(results)], capture_output=True, text=True)
    assert res.returncode == 2 and "acts while decoding" in res.stderr and "Traceback" not in res.stderr
