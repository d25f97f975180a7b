"""The sequence-classifier scorer (paper configs' DistilBERT SST-2 sentiment oracle) on a tiny local DistilBERT
saved in the real format: config with id2label, safetensors weights, WordPiece tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detoxlab.scorers import ScorerError, build_scorer, score_texts

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "awful", "boring", "fun",
         "a", "!", "."]


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizer

    root = tmp_path_factory.mktemp("sst2")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    DistilBertTokenizer(str(root / "vocab.txt")).save_pretrained(str(root))
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                           max_position_embeddings=64, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                           label2id={"NEGATIVE": 0, "POSITIVE": 1}, initializer_range=0.5)
    DistilBertForSequenceClassification(cfg).eval().save_pretrained(str(root))  # model.safetensors
    return root


def test_scores_are_the_softmax_probability_of_the_label(sst2_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["the movie was great !", "the movie was awful .", "boring", "a fun movie"]
    scorer = build_scorer({"type": "hf_classifier", "path": str(sst2_dir)})
    res = score_texts(scorer, texts, batch_size=3)
    tok = AutoTokenizer.from_pretrained(str(sst2_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(sst2_dir)).eval()
    with torch.no_grad():
        probs = model(**tok(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    np.testing.assert_allclose(res.scores, probs[:, 0].numpy(), atol=1e-5)
    assert np.ptp(res.scores) > 0.01  # the fixture discriminates between inputs
    positive = build_scorer({"type": "hf_classifier", "path": str(sst2_dir), "label": "POSITIVE"})
    np.testing.assert_allclose(positive.score_batch(texts), 1 - res.scores, atol=1e-5)


def test_errors_name_the_config_key(sst2_dir, tmp_path):
    with pytest.raises(ScorerError, match=r"scorer\.label: 'NEG'"):
        build_scorer({"type": "hf_classifier", "path": str(sst2_dir), "label": "NEG"})
    with pytest.raises(ScorerError, match=r"scorer\.path: no classifier directory"):
        build_scorer({"type": "hf_classifier", "path": str(tmp_path / "missing")})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ScorerError, match=r"scorer\.path: cannot load"):
        build_scorer({"type": "hf_classifier", "path": str(tmp_path / "broken")})
