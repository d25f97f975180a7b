"""Shared fixtures: tiny random models materialised once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from detoxlab.models.registry import materialize

    out = tmp_path_factory.mktemp("models") / "tiny_llama"
    materialize("tiny_llama", {"source": "tiny_random", "arch": "llama", "vocab_size": 384, "hidden_size": 32,
                               "layers": 2, "heads": 2, "seed": 0}, out)
    return out


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    from detoxlab.models.registry import materialize

    out = tmp_path_factory.mktemp("models") / "tiny_gemma"
    materialize("tiny_gemma", {"source": "tiny_random", "arch": "gemma3", "vocab_size": 512, "hidden_size": 32,
                               "layers": 2, "heads": 2, "seed": 1}, out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from detoxlab.models.registry import load_model

    model, tok, _ = load_model(tiny_llama_dir)
    return model, tok
