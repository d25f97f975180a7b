"""Scorer registry, robust batch scoring, and the three built-in scorers (all offline)."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere in this module

from detoxlab.scorers import (  # noqa: E402
    SCORERS,
    Scorer,
    ScorerError,
    ScoreResult,
    build_scorer,
    register_scorer,
    score_texts,
)

NEUTRAL = "The weather is lovely today and I enjoyed a walk in the park."
INSULT = "You are a fucking idiot and a worthless piece of shit."


# ---------------------------------------------------------------- helpers


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Scorer names registered by a test; removed afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        SCORERS.pop(name, None)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection or DNS lookup that is not to the loopback interface."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    local = {"127.0.0.1", "::1", "localhost"}

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in local:
            raise OSError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in local and host is not None:
            raise OSError(f"DNS lookup attempted: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------- registry and score_texts


def test_unknown_type_names_config_key() -> None:
    with pytest.raises(ScorerError) as err:
        build_scorer({"type": "no_such_scorer"})
    msg = str(err.value)
    assert msg.startswith("scorer.type")
    assert "profanity_check" in msg and "detoxify" in msg and "perspective" in msg


def test_unknown_option_names_config_key() -> None:
    with pytest.raises(ScorerError, match=r"^scorer\.colour"):
        build_scorer({"type": "profanity_check", "colour": "red"})


def test_dedupe_scores_each_unique_text_once_and_maps_back(registered: list[str]) -> None:
    seen: list[str] = []

    @register_scorer("test_counting")
    class Counting(Scorer):
        def __init__(self, *, scale: float = 0.1) -> None:
            self.scale = scale

        def score_batch(self, texts: list[str]) -> list[float]:
            seen.extend(texts)
            return [min(1.0, self.scale * len(t)) for t in texts]

    registered.append("test_counting")
    scorer = build_scorer({"type": "test_counting", "scale": 0.1})
    texts = ["aa", "b", "aa", "", "ccc", "b", "aa"]
    res = score_texts(scorer, texts, batch_size=2)

    assert sorted(seen) == sorted(set(texts)) and len(seen) == 4
    np.testing.assert_allclose(res.scores, [0.2, 0.1, 0.2, 0.0, 0.3, 0.1, 0.2])
    assert res.scores.dtype == np.float64
    assert (res.n_unique, res.n_failed) == (4, 0)
    assert res.seconds >= 0


def test_empty_input_never_calls_scorer(registered: list[str]) -> None:
    @register_scorer("test_explodes")
    class Explodes(Scorer):
        def score_batch(self, texts: list[str]) -> list[float]:
            raise AssertionError("must not be called")

    registered.append("test_explodes")
    res = score_texts(build_scorer({"type": "test_explodes"}), [])
    assert res.scores.shape == (0,) and res.n_failed == 0 and res.n_unique == 0


def test_failing_batch_falls_back_per_item(registered: list[str]) -> None:
    calls: list[list[str]] = []

    @register_scorer("test_flaky")
    class Flaky(Scorer):
        def score_batch(self, texts: list[str]) -> list[float]:
            calls.append(list(texts))
            if "BAD" in texts:
                raise RuntimeError("cannot score BAD")
            return [0.5] * len(texts)

    registered.append("test_flaky")
    texts = ["a", "b", "BAD", "c", "d", "BAD"]
    res = score_texts(build_scorer({"type": "test_flaky"}), texts, batch_size=4)

    assert np.isnan(res.scores[2]) and np.isnan(res.scores[5])
    assert np.array_equal(np.isnan(res.scores), [False, False, True, False, False, True])
    np.testing.assert_allclose(res.scores[[0, 1, 3, 4]], 0.5)
    assert res.n_failed == 2 and res.n_unique == 5
    # First batch (a, b, BAD, c) failed and was retried item by item; the second (d) went through whole.
    assert calls == [["a", "b", "BAD", "c"], ["a"], ["b"], ["BAD"], ["c"], ["d"]]


def test_invalid_outputs_become_nan(registered: list[str]) -> None:
    outputs = {"neg": -0.1, "big": 1.5, "nan": math.nan, "inf": math.inf, "ok0": 0.0, "ok1": 1.0}

    @register_scorer("test_out_of_range")
    class OutOfRange(Scorer):
        def score_batch(self, texts: list[str]) -> list[float]:
            return [outputs[t] for t in texts]

    @register_scorer("test_wrong_length")
    class WrongLength(Scorer):
        def score_batch(self, texts: list[str]) -> list[float]:
            return [0.5]  # misaligned for batches > 1: the batch must be redone item by item

    registered.extend(["test_out_of_range", "test_wrong_length"])
    res = score_texts(build_scorer({"type": "test_out_of_range"}), list(outputs))
    assert np.array_equal(np.isnan(res.scores), [True, True, True, True, False, False])
    assert res.n_failed == 4

    res = score_texts(build_scorer({"type": "test_wrong_length"}), ["x", "y", "z"])
    np.testing.assert_allclose(res.scores, [0.5, 0.5, 0.5])


def test_progress_bar_runs(registered: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    @register_scorer("test_const")
    class Const(Scorer):
        def score_batch(self, texts: list[str]) -> list[float]:
            return [0.25] * len(texts)

    registered.append("test_const")
    res = score_texts(build_scorer({"type": "test_const"}), ["a", "b", "c"], batch_size=1, progress=True)
    assert res.n_failed == 0
    assert "scoring (test_const)" in capsys.readouterr().err


# ---------------------------------------------------------------- profanity_check


def test_profanity_check_orders_insult_above_neutral() -> None:
    scorer = build_scorer({"type": "profanity_check"})
    assert scorer.score_batch([]) == []
    res = score_texts(scorer, [NEUTRAL, INSULT, "", NEUTRAL])
    assert res.n_failed == 0 and res.n_unique == 3
    assert np.all((res.scores >= 0) & (res.scores <= 1))
    assert res.scores[1] > res.scores[0] + 0.5
    assert build_scorer({}).name == "profanity_check"  # offline default


# ---------------------------------------------------------------- detoxify (tiny local fixture)

JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "you", "are", "an", "idiot", "hello", "world",
         "the", "a", "nice", "day", "stupid", "what", "lovely", "is", "!", ".", ","]


@pytest.fixture(scope="module")
def tiny_detoxify(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A random 2-layer BERT saved as a Detoxify 'original' checkpoint plus a local config/tokenizer dir."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    root = tmp_path_factory.mktemp("detoxify")
    config_dir = root / "bert-config"
    config_dir.mkdir()
    (config_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(str(config_dir / "vocab.txt")).save_pretrained(str(config_dir))
    # Saved with the default 2 labels, as a downloaded base config would be: the checkpoint's num_classes must win.
    base = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=37, max_position_embeddings=64)
    BertConfig(**base).save_pretrained(str(config_dir))

    torch.manual_seed(0)
    # A wide init spreads the logits, so the sigmoid check is not trivially ~0.5 everywhere.
    model = BertForSequenceClassification(BertConfig(**base, num_labels=6, initializer_range=0.5)).eval()
    state_dict = model.state_dict()
    # Checkpoints written by older transformers also carry this (now non-persistent) buffer.
    state_dict["bert.embeddings.position_ids"] = torch.arange(base["max_position_embeddings"]).expand((1, -1))
    checkpoint = {
        "config": {
            "name": "Jigsaw_BERT",
            "n_gpu": 1,
            "batch_size": 10,
            "arch": {"type": "BERT", "args": {"num_classes": 6, "model_type": "bert-base-uncased",
                                             "model_name": "BertForSequenceClassification",
                                             "tokenizer_name": "BertTokenizer"}},
            "dataset": {"type": "JigsawDataOriginal", "args": {"classes": JIGSAW_CLASSES}},
        },
        "state_dict": state_dict,
    }
    ckpt = root / "toxic_original-tiny.ckpt"
    torch.save(checkpoint, ckpt)
    tokenizer = BertTokenizer.from_pretrained(str(config_dir), local_files_only=True)
    return {"checkpoint": str(ckpt), "config_dir": str(config_dir), "model": model, "tokenizer": tokenizer}


def test_detoxify_scores_match_manual_sigmoid(tiny_detoxify: dict[str, Any], no_network: None) -> None:
    import torch

    spec = {"type": "detoxify", "checkpoint": tiny_detoxify["checkpoint"], "config_dir": tiny_detoxify["config_dir"]}
    scorer = build_scorer(spec)
    assert scorer.class_names == ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    texts = ["you are an idiot !", "hello world", "what a lovely day", "", "you are an idiot !", "zzz unknown"]

    res = score_texts(scorer, texts, batch_size=2)
    assert res.n_failed == 0 and res.n_unique == 5
    assert np.all((res.scores >= 0) & (res.scores <= 1))
    again = score_texts(build_scorer(spec), texts, batch_size=5)
    np.testing.assert_allclose(again.scores, res.scores, rtol=0, atol=1e-6)  # deterministic across loads/batching

    tok, model = tiny_detoxify["tokenizer"], tiny_detoxify["model"]
    with torch.no_grad():
        logits = model(**tok(texts, return_tensors="pt", padding=True, truncation=True)).logits
    expected = torch.sigmoid(logits[:, 0]).double().numpy()
    np.testing.assert_allclose(res.scores, expected, rtol=0, atol=1e-5)
    assert np.ptp(res.scores) > 0.1  # the fixture really discriminates between inputs

    insult = build_scorer({**spec, "label": "insult"}).score_batch(texts[:2])
    np.testing.assert_allclose(insult, torch.sigmoid(logits[:2, 4]).numpy(), atol=1e-5)


def test_detoxify_config_errors_name_keys(tiny_detoxify: dict[str, Any], tmp_path: Path) -> None:
    ok = {"type": "detoxify", "checkpoint": tiny_detoxify["checkpoint"], "config_dir": tiny_detoxify["config_dir"]}
    cases = {
        "scorer.checkpoint": {**ok, "checkpoint": str(tmp_path / "missing.ckpt")},
        "scorer.config_dir": {**ok, "config_dir": str(tmp_path)},
        "scorer.label": {**ok, "label": "sarcasm"},
        "scorer.device": {**ok, "device": "no-such-device"},
    }
    for key, spec in cases.items():
        with pytest.raises(ScorerError, match=rf"^{key}"):
            build_scorer(spec)
    with pytest.raises(ScorerError, match=r"^scorer\.checkpoint: required"):
        build_scorer({"type": "detoxify", "config_dir": tiny_detoxify["config_dir"]})
    with pytest.raises(ScorerError, match=r"^scorer\.config_dir: required"):
        build_scorer({"type": "detoxify", "checkpoint": tiny_detoxify["checkpoint"]})
    with pytest.raises(ScorerError, match=r"not found: .*missing\.ckpt"):
        build_scorer(cases["scorer.checkpoint"])

    not_ckpt = tmp_path / "weights.ckpt"
    import torch

    torch.save({"weights": torch.zeros(2)}, not_ckpt)
    with pytest.raises(ScorerError, match=r"^scorer\.checkpoint: .*not a Detoxify checkpoint"):
        build_scorer({**ok, "checkpoint": str(not_ckpt)})


def test_detoxify_checkpoint_variants(tiny_detoxify: dict[str, Any], tmp_path: Path) -> None:
    """Raw Lightning checkpoints ('model.' prefixes, pickled hparams) load too, the latter only when trusted."""
    import argparse

    import torch

    loaded = torch.load(tiny_detoxify["checkpoint"], weights_only=True)
    spec = {"type": "detoxify", "config_dir": tiny_detoxify["config_dir"]}
    reference = build_scorer({**spec, "checkpoint": tiny_detoxify["checkpoint"]}).score_batch(["hello world"])

    lightning = tmp_path / "lightning.ckpt"
    torch.save({**loaded, "state_dict": {f"model.{k}": v for k, v in loaded["state_dict"].items()},
                "hyper_parameters": argparse.Namespace(lr=3e-5)}, lightning)
    with pytest.raises(ScorerError, match=r"^scorer\.checkpoint: .*trust_checkpoint"):
        build_scorer({**spec, "checkpoint": str(lightning)})
    trusted = build_scorer({**spec, "checkpoint": str(lightning), "trust_checkpoint": True})
    np.testing.assert_allclose(trusted.score_batch(["hello world"]), reference, atol=1e-6)

    truncated = {k: v for k, v in loaded["state_dict"].items() if not k.startswith("classifier.")}
    partial = tmp_path / "partial.ckpt"
    torch.save({**loaded, "state_dict": truncated}, partial)
    with pytest.raises(ScorerError, match=r"^scorer\.checkpoint: .*missing: \['classifier"):  # never re-initialised
        build_scorer({**spec, "checkpoint": str(partial)})


# ---------------------------------------------------------------- perspective (local HTTP server)

API_KEY = "sk-test-Zq9+/secret&key=1"


class _PerspectiveStub:
    """Local Comments Analyzer look-alike whose behaviour per request is chosen by ``respond(n, text)``."""

    def __init__(self, respond: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                status, payload = respond(len(stub.requests), body["comment"]["text"], self.path)
                data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1alpha1/comments:analyze"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _PerspectiveStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _toxicity(value: float) -> dict[str, Any]:
    return {"attributeScores": {"TOXICITY": {"summaryScore": {"value": value, "type": "PROBABILITY"}}},
            "languages": ["en"]}


def _assert_no_key(*things: Any) -> None:
    for thing in things:
        assert API_KEY not in repr(thing) and "secret" not in repr(thing)


def _spec(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "perspective", "url": url, "qps": 1000.0, "backoff_s": 0.001, "timeout_s": 5.0, **extra}


def test_perspective_missing_key_names_env_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_PERSPECTIVE_KEY", raising=False)
    with pytest.raises(ScorerError, match=r"^scorer\.api_key_env: .*MY_PERSPECTIVE_KEY"):
        build_scorer({"type": "perspective", "api_key_env": "MY_PERSPECTIVE_KEY"})
    monkeypatch.setenv("MY_PERSPECTIVE_KEY", API_KEY)
    with pytest.raises(ScorerError, match=r"^scorer\.qps"):
        build_scorer({"type": "perspective", "api_key_env": "MY_PERSPECTIVE_KEY", "qps": 0})


def test_perspective_retries_429_then_scores(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_network: None
) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)

    def respond(n: int, text: str, path: str) -> tuple[int, Any]:
        if n == 1:
            return 429, {"error": {"code": 429, "message": f"quota exceeded for {path}"}}
        return 200, _toxicity(0.9 if "idiot" in text else 0.1)

    caplog.set_level(logging.DEBUG)
    with _PerspectiveStub(respond) as stub:
        scorer = build_scorer(_spec(stub.url))
        res = score_texts(scorer, ["you idiot", "nice day", "you idiot"])

    np.testing.assert_allclose(res.scores, [0.9, 0.1, 0.9])
    assert (res.n_failed, res.n_unique) == (0, 2)
    assert len(stub.requests) == 3  # one 429, then one request per unique text
    assert stub.requests[0]["body"] == {
        "comment": {"text": "you idiot"}, "languages": ["en"], "requestedAttributes": {"TOXICITY": {}}
    }
    from urllib.parse import parse_qs, urlsplit

    assert parse_qs(urlsplit(stub.requests[0]["path"]).query)["key"] == [API_KEY]  # sent, correctly encoded
    assert "HTTP 429" in caplog.text  # the retry is visible ...
    _assert_no_key(res, scorer, caplog.text)  # ... but the key (echoed back by the server) is not


def test_perspective_always_500_gives_nan(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_network: None
) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)
    with _PerspectiveStub(lambda n, text, path: (500, {"error": f"backend down at {path}"})) as stub:
        res = score_texts(build_scorer(_spec(stub.url, max_retries=2)), ["a", "b", "a"])
        assert np.isnan(res.scores).all()
        assert res.n_failed == 3 and res.n_unique == 2
        assert len(stub.requests) == 2 * 3  # (1 + max_retries) attempts per unique text, no re-sends

        scorer = build_scorer(_spec(stub.url, max_retries=1))
        with pytest.raises(RuntimeError) as err:
            scorer.score_one("a")
    assert "gave up after 2 attempts" in str(err.value) and "HTTP 500" in str(err.value)
    _assert_no_key(res, str(err.value), caplog.text)


def test_perspective_auth_failure_stops_requests(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)
    with _PerspectiveStub(lambda n, text, path: (403, {"error": f"API key not valid: {path}"})) as stub:
        scorer = build_scorer(_spec(stub.url))
        res = score_texts(scorer, ["a", "b", "c"])
        assert len(stub.requests) == 1  # 403 is not retried, and later texts are not sent at all
    assert res.n_failed == 3
    with pytest.raises(RuntimeError) as err:
        scorer.score_batch(["d"])
    assert "403" in str(err.value) and "end of 2026" in str(err.value) and "detoxify" in str(err.value)
    _assert_no_key(res, str(err.value), caplog.text)


def test_a_discontinued_perspective_service_says_what_to_use_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)
    with _PerspectiveStub(lambda n, text, path: (410, {"error": "this API has been shut down"})) as stub:
        scorer = build_scorer(_spec(stub.url))
        res = score_texts(scorer, ["a", "b"])
        assert len(stub.requests) == 1  # gone is gone: no retry, no further text sent
    assert res.n_failed == 2
    with pytest.raises(RuntimeError, match="HTTP 410.*stops serving at the end of 2026.*Detoxify"):
        scorer.score_one("c")


def test_perspective_unreachable_server_gives_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = score_texts(build_scorer(_spec(f"http://127.0.0.1:{port}/x", max_retries=1)), ["a"])
    assert res.n_failed == 1 and isinstance(res, ScoreResult)


def test_perspective_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("PERSPECTIVE_API_KEY", API_KEY)
    with _PerspectiveStub(lambda n, text, path: (200, _toxicity(0.5))) as stub:
        scorer = build_scorer(_spec(stub.url, qps=20.0))
        start = time.monotonic()
        assert scorer.score_batch(["a", "b", "c", "d"]) == [0.5] * 4
        elapsed = time.monotonic() - start
    assert elapsed >= 3 / 20.0 - 0.01  # four request starts at least 1/qps apart
