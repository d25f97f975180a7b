"""Shared fixtures: tiny random models materialised once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


TINY_LLAMA = {"source": "tiny_random", "arch": "llama", "vocab_size": 384, "hidden_size": 32, "layers": 2,
              "heads": 2, "seed": 0}
TINY_GEMMA = {"source": "tiny_random", "arch": "gemma3", "vocab_size": 512, "hidden_size": 32, "layers": 2,
              "heads": 2, "seed": 1}


def _materialize(factory, name: str, spec: dict) -> Path:
    from detoxlab.models.registry import materialize

    out = factory.mktemp("models") / name
    materialize(name, spec, out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return _materialize(tmp_path_factory, "tiny_llama", TINY_LLAMA)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    return _materialize(tmp_path_factory, "tiny_gemma", TINY_GEMMA)


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from detoxlab.models.registry import load_model

    model, tok, _ = load_model(tiny_llama_dir)
    return model, tok
