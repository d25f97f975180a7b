"""Scorer interface, registry and spec handling."""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from detoxlab.timing import counts_as_loading

DEFAULT_SCORER_TYPE = "profanity_check"


class ScorerError(RuntimeError):
    """A scorer cannot be built from its config; the message starts with the offending config key."""


class Scorer(ABC):
    """Maps texts to toxicity probabilities in [0, 1]."""

    name: str = "scorer"

    @abstractmethod
    def score_batch(self, texts: list[str]) -> list[float]:
        """Score ``texts`` in order. May raise, and may return NaN for items it could not score."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Scorer:
        """Build from a ``scorer`` config mapping whose keys (besides ``type``) are ``__init__`` keywords."""
        params = inspect.signature(cls.__init__).parameters
        known = [p for p in params if p != "self" and params[p].kind is inspect.Parameter.KEYWORD_ONLY]
        options = {k: v for k, v in spec.items() if k != "type"}
        for key in options:
            if key not in known:
                raise ScorerError(
                    f"scorer.{key}: unknown option for type {cls.name!r}; known options: {', '.join(known) or 'none'}"
                )
        return cls(**options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


SCORERS: dict[str, type[Scorer]] = {}

S = TypeVar("S", bound=type[Scorer])


def register_scorer(name: str) -> Callable[[S], S]:
    """Class decorator adding a :class:`Scorer` subclass to :data:`SCORERS` under ``name``."""

    def decorator(cls: S) -> S:
        existing = SCORERS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"scorer type {name!r} is already registered to {existing.__qualname__}")
        cls.name = name
        SCORERS[name] = cls
        return cls

    return decorator


def available_scorers() -> list[str]:
    return sorted(SCORERS)


def build_scorer(spec: Mapping[str, Any] | None) -> Scorer:
    """Instantiate the scorer described by the config's ``scorer`` mapping (``type`` defaults to profanity_check)."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ScorerError(f"scorer: expected a mapping, got {type(spec).__name__}")
    kind = spec.get("type", DEFAULT_SCORER_TYPE)
    cls = SCORERS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ScorerError(f"scorer.type: unknown scorer {kind!r}; known types: {', '.join(available_scorers())}")
    return cls.from_spec(spec)


@counts_as_loading
def scorer_from_config(section: Mapping[str, Any]) -> Scorer:
    """The scorer of the workflow config's ``scorer`` section (``batch_size`` belongs to the runner). A neural
    scorer asked for ``cuda`` or ``auto`` runs where the job's language model would: on the GPU the job was
    granted, or on the CPU."""
    spec = {k: v for k, v in section.items() if k != "batch_size"}
    if spec.get("device") in ("auto", "cuda"):
        from detoxlab.device import pick_device

        spec["device"] = str(pick_device(spec["device"]))
    return build_scorer(spec)


# Small validators shared by the scorers; each names the config key it checks.


def positive_float(key: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ScorerError(f"scorer.{key}: expected a positive number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise ScorerError(f"scorer.{key}: expected a positive number, got {value!r}")
    return out


def non_negative_float(key: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ScorerError(f"scorer.{key}: expected a number >= 0, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ScorerError(f"scorer.{key}: expected a number >= 0, got {value!r}")
    return out


def non_negative_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScorerError(f"scorer.{key}: expected an integer >= 0, got {value!r}")
    return value


def non_empty_str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ScorerError(f"scorer.{key}: expected a non-empty string, got {value!r}")
    return value
