"""Offline held-out scorer: ToxBlock's bidirectional LSTM, trained on the Jigsaw toxic comments, run in numpy.

The tox-block wheel ships a Keras 2.2.4 model (HDF5) and a pickled Keras tokenizer and runs them with TensorFlow.
This module reads the same two files without TensorFlow: the weights through h5py, the tokenizer through an
unpickler that can build nothing but plain containers, and recomputes the forward pass (word ids -> embedding ->
BiLSTM -> max over time -> dense relu -> six sigmoids). It reproduces the outputs published in the package's
README to 1e-7.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import pickle
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .base import Scorer, ScorerError, register_scorer

PACKAGE, VERSION = "tox-block", "0.1.2"
# sha256 of the files of the tox-block 0.1.2 wheel the port was checked against (they match the wheel's RECORD).
MODEL_SHA256 = "587d40726f1250341a3661fac099e46582cf34cdd5136eb88a726bf6d62ec24e"  # lstm_model_0.1.2.h5
ENCODER_SHA256 = "f73db76ce4138c0a566cf91a84077ab66db1f5da40d795d2f751b5a157d91ce7"  # encoder_0.1.2.pkl
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")  # the model's output order


class _Fields:
    """Stands in for the pickled TokenSequencer and Keras Tokenizer: unpickling only fills ``__dict__``."""


class _TokenizerUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "int"): int,  # the defaultdicts' factory
        ("tox_block.data_processing.preprocessors", "TokenSequencer"): _Fields,
        ("keras_preprocessing.text", "Tokenizer"): _Fields,
    }

    def find_class(self, module: str, name: str) -> type:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the tox-block tokenizer") from None


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    # Keras 2's hard_sigmoid (the LSTM's recurrent activation at training time); Keras 3 changed the slope to 1/6.
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_dir() -> Path:
    try:
        found = version(PACKAGE)
        # find_spec locates the package without importing it (its prediction module imports TensorFlow).
        spec = importlib.util.find_spec("tox_block")
    except (PackageNotFoundError, ImportError) as exc:
        raise ScorerError(f"scorer.type: 'tox_block' needs the {PACKAGE}=={VERSION} package, installed with "
                          f"--no-deps (TensorFlow is not used) ({exc})") from exc
    if spec is None or not spec.submodule_search_locations:
        raise ScorerError(f"scorer.type: 'tox_block' needs the {PACKAGE}=={VERSION} package (tox_block not found)")
    if found != VERSION:
        raise ScorerError(f"scorer.type: 'tox_block' is checked against {PACKAGE}=={VERSION}, found {found}")
    return Path(next(iter(spec.submodule_search_locations))) / "trained_models"


@register_scorer("tox_block")
class ToxBlockScorer(Scorer):
    """Sigmoid probability of one ToxBlock label (default ``toxic``, Jigsaw's broad label; the other five are its
    subtypes and are annotated almost only on comments also labelled toxic)."""

    def __init__(self, *, label: str = "toxic") -> None:
        if label not in LABELS:
            raise ScorerError(f"scorer.label: {label!r} is not a tox_block label; labels: {', '.join(LABELS)}")
        self.label, self._label_index = label, LABELS.index(label)
        try:
            import h5py
        except ImportError as exc:
            raise ScorerError(f"scorer.type: 'tox_block' needs the h5py package ({exc})") from exc

        files = _package_dir()
        model_path, encoder_path = files / f"lstm_model_{VERSION}.h5", files / f"encoder_{VERSION}.pkl"
        for path, expected in ((model_path, MODEL_SHA256), (encoder_path, ENCODER_SHA256)):
            if not path.is_file() or _sha256(path) != expected:
                raise ScorerError(f"scorer.type: {path} is missing or differs from the {PACKAGE}=={VERSION} wheel")

        with encoder_path.open("rb") as f:
            sequencer = _TokenizerUnpickler(f).load()
        tokenizer = sequencer.tokenizer
        if tokenizer.char_level or tokenizer.oov_token is not None or tokenizer.split != " ":
            raise ScorerError(f"scorer.type: {encoder_path} has a tokenizer configuration this port does not handle")
        self._max_length = int(sequencer.max_sequence_length)  # 100
        # Keras drops words whose rank is >= num_words (20000); keeping only the others shrinks 300k entries to 20k.
        self._vocab = {w: i for w, i in tokenizer.word_index.items() if i < tokenizer.num_words}
        self._filters = str.maketrans(dict.fromkeys(tokenizer.filters, " "))

        with h5py.File(model_path, "r") as f:
            w = f["model_weights"]
            lstm = "bidirectional/bidirectional/{}_lstm/{}:0"
            self._embedding = w["embedding/embedding/embeddings:0"][()]
            # Forward and backward directions stacked on a leading axis, so one matmul per step serves both.
            self._kernel, self._recurrent, self._bias = (
                np.stack([w[lstm.format(d, name)][()] for d in ("forward", "backward")])
                for name in ("kernel", "recurrent_kernel", "bias")
            )
            self._dense = (w["dense/dense/kernel:0"][()], w["dense/dense/bias:0"][()])
            self._out = (w["dense_1/dense_1/kernel:0"][()], w["dense_1/dense_1/bias:0"][()])

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Keras ``texts_to_sequences`` + ``pad_sequences``: lower-case, filter characters become spaces, split on
        spaces, unknown words dropped; zeros padded and overlong texts truncated at the front."""
        ids = np.zeros((len(texts), self._max_length), dtype=np.int64)
        for row, text in enumerate(texts):
            seq = [self._vocab[w] for w in text.lower().translate(self._filters).split(" ") if w in self._vocab]
            seq = seq[-self._max_length:]
            if seq:
                ids[row, self._max_length - len(seq):] = seq
        return ids

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        x = self._embedding[self._encode(texts)]  # (batch, time, 50)
        # Every step runs, padding included, as in Keras (the embedding has no mask); the backward LSTM reads the
        # sequence reversed. Max pooling over time makes the backward outputs' order irrelevant.
        inputs = (x[None] @ self._kernel[:, None] + self._bias[:, None, None]).transpose(2, 0, 1, 3)
        inputs[:, 1] = inputs[::-1, 1].copy()  # (time, direction, batch, 4 * units)
        units = self._recurrent.shape[1]
        h = np.zeros((2, len(texts), units), dtype=np.float32)
        c = np.zeros_like(h)
        pooled = np.full_like(h, -np.inf)
        for z_in in inputs:  # z_in: (direction, batch, 4 * units), gates in Keras order i, f, c, o
            z = z_in + h @ self._recurrent
            i, f, o = (_hard_sigmoid(z[..., k * units:(k + 1) * units]) for k in (0, 1, 3))
            c = f * c + i * np.tanh(z[..., 2 * units:3 * units])
            h = o * np.tanh(c)
            np.maximum(pooled, h, out=pooled)
        hidden = np.maximum(np.concatenate([pooled[0], pooled[1]], axis=-1) @ self._dense[0] + self._dense[1], 0.0)
        logits = hidden @ self._out[0] + self._out[1]
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def score_batch(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        return self._probabilities(list(texts))[:, self._label_index].tolist()

    def __repr__(self) -> str:
        return f"<ToxBlockScorer label={self.label!r}>"
