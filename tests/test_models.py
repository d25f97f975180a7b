import shutil

import pytest
import torch

from detoxlab.artifacts import ArtifactError, read_manifest
from detoxlab.models.registry import ModelSourceError, load_model, materialize


def test_materialized_directory_is_a_plain_hf_model_with_manifest(tiny_llama_dir):
    manifest = read_manifest(tiny_llama_dir, "model")
    assert manifest["params"]["source"] == "tiny_random"
    assert manifest["n_parameters"] > 0
    assert (tiny_llama_dir / "model.safetensors").is_file()
    model, tok, _ = load_model(tiny_llama_dir)
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training


def test_materialize_is_deterministic(tmp_path):
    spec = {"source": "tiny_random", "arch": "llama", "seed": 3}
    a, b = tmp_path / "a", tmp_path / "b"
    materialize("x", spec, a)
    materialize("x", spec, b)
    ma, _, _ = load_model(a)
    mb, _, _ = load_model(b)
    for (na, pa), (_, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(pa, pb), na


def test_corrupt_checkpoint_is_reported(tiny_llama_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="corrupt model directory"):
        load_model(broken)


def test_directory_without_manifest_is_incomplete(tiny_llama_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_llama_dir, partial)
    (partial / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="incomplete artifact"):
        load_model(partial)


def test_missing_model_package_names_the_key_and_leaves_nothing(tmp_path):
    out = tmp_path / "m"
    with pytest.raises(ModelSourceError, match=r"models\.m\.package"):
        materialize("m", {"source": "gguf_pypi", "package": "no_such_pkg_x", "file": "x.gguf"}, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
