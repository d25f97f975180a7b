"""Perspective API (Comments Analyzer) TOXICITY scores over HTTP, rate-limited and retried."""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from .base import (
    Scorer,
    ScorerError,
    non_empty_str,
    non_negative_float,
    non_negative_int,
    positive_float,
    register_scorer,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
MAX_BACKOFF_S = 60.0
#: refusals that no retry can fix: a bad or revoked key, and a service that is gone
REFUSED = (401, 403, 404, 410)
SUNSET = ("note: the Perspective API stops serving at the end of 2026; for the papers' protocol score with "
          "Detoxify (scorer type `detoxify`) or a local classifier (`hf_classifier`, `tox_block`), see "
          "docs/scorers.md")


class PerspectiveError(RuntimeError):
    """A request failed; the message never contains the API key."""


class _Retryable(Exception):
    """Internal marker: the request may succeed if repeated (429, 5xx, network)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _MinInterval:
    """Token bucket of capacity one: request starts are at least ``1/qps`` seconds apart."""

    def __init__(self, qps: float) -> None:
        self._interval = 1.0 / qps
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._next > now:
                time.sleep(self._next - now)
                now = self._next
            self._next = now + self._interval


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # HTTP-date form: fall back to our own backoff
        return None


@register_scorer("perspective")
class PerspectiveScorer(Scorer):
    """TOXICITY summary score from the Perspective API, one request per text.

    Items whose retries are exhausted (or that the API rejects, e.g. unsupported language) come back as NaN rather
    than raising, so that ``score_texts``' per-item fallback does not re-send texts that were already scored.
    A refusal (401/403: the key; 404/410: the service is gone) raises and disables the scorer: every further
    request would fail too. The service stops at the end of 2026, and its errors say so.
    """

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        api_key_env: str = "PERSPECTIVE_API_KEY",
        qps: float = 1.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = non_empty_str("url", url)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ScorerError(f"scorer.url: expected an http(s) URL, got {url!r}")
        self.api_key_env = non_empty_str("api_key_env", api_key_env)
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ScorerError(f"scorer.api_key_env: environment variable {api_key_env} is not set or empty")
        self._key = key
        self._secrets = {key, urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key)}
        self.qps = positive_float("qps", qps)
        self.max_retries = non_negative_int("max_retries", max_retries)
        self.backoff_s = non_negative_float("backoff_s", backoff_s)
        self.timeout_s = positive_float("timeout_s", timeout_s)
        self._limiter = _MinInterval(self.qps)
        self._fatal: str | None = None

    def __repr__(self) -> str:  # never show the key
        return f"<PerspectiveScorer url={self.url!r} qps={self.qps}>"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _request_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("key", self._key)])
        return urllib.parse.urlunsplit(parts._replace(query=query))

    def _post(self, text: str) -> float:
        """One attempt. Raises ``_Retryable`` or ``PerspectiveError`` with redacted messages."""
        body = json.dumps(
            {"comment": {"text": text}, "languages": ["en"], "requestedAttributes": {"TOXICITY": {}}}
        ).encode("utf-8")
        req = urllib.request.Request(
            self._request_url(), data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = self._redact(exc.read(500).decode("utf-8", "replace").strip())
            except Exception:  # the error body is only a diagnostic
                detail = ""
            msg = f"HTTP {exc.code} from Perspective API: {detail}"
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(msg, _retry_after(exc.headers.get("Retry-After"))) from None
            if exc.code in REFUSED:
                msg = f"{msg} ({SUNSET})"
                self._fatal = msg
            raise PerspectiveError(msg) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # includes timeouts
            raise _Retryable(self._redact(f"network error: {type(exc).__name__}: {exc}")) from None
        try:
            value = float(json.loads(payload)["attributeScores"]["TOXICITY"]["summaryScore"]["value"])
        except (ValueError, KeyError, TypeError):
            raise PerspectiveError(self._redact(f"unexpected response: {payload[:200]!r}")) from None
        return value

    def score_one(self, text: str) -> float:
        """Score one text with rate limiting and exponential backoff; raises ``PerspectiveError`` when it gives up."""
        for attempt in range(self.max_retries + 1):
            if self._fatal is not None:
                raise PerspectiveError(f"scorer disabled after an authentication failure: {self._fatal}")
            self._limiter.wait()
            try:
                return self._post(text)
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise PerspectiveError(f"gave up after {attempt + 1} attempts: {exc} ({SUNSET})") from None
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2**attempt)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, MAX_BACKOFF_S))
                log.info("perspective: %s; retrying in %.2fs", exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def score_batch(self, texts: list[str]) -> list[float]:
        scores: list[float] = []
        for text in texts:
            try:
                scores.append(self.score_one(text))
            except PerspectiveError as exc:
                if self._fatal is not None:
                    raise
                log.warning("perspective: item failed: %s", exc)
                scores.append(math.nan)
        return scores
