"""Guides: anything that changes how a model decodes (a prompt prefix, a logit rule with models of its own).

A guide is an artifact directory with ``guide.json`` (its type and parameters, plus any files it needs) and a
manifest. A *system* is a (model, guide) pair; ``none`` is the unguided reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from detoxlab.artifacts import atomic_dir, read_json, read_manifest, write_json, write_manifest
from detoxlab.sampling import GuideSession, SamplingSettings
from detoxlab.timing import counts_as_loading

GUIDE_KIND = "guide"
NO_GUIDE = "none"


class Guide:
    """No-op base: subclasses override the hooks they need."""

    type: str = "none"
    #: reward/expert model backbone calls per decoding step (a cost the report shows)
    backbone_calls_per_step: int = 0
    #: rows each generated sequence adds to those calls (RAD: its k candidates; ARM, DExperts: 1)
    backbone_rows_per_step: int = 0
    #: whether ``session`` returns a logit hook (a prompt-only guide never does)
    adjusts_logits: bool = False

    def __init__(self, spec: dict, directory: Path | None = None):
        self.spec = spec
        self.directory = directory

    def wrap_prompt(self, text: str) -> str:
        """Text the model actually sees for a prompt (the prompt itself is what gets scored and judged)."""
        return text

    def sampling_settings(self, settings: SamplingSettings) -> SamplingSettings:
        """The filters the sampler applies after ``adjust`` (a guide that filters itself turns them off)."""
        return settings

    def session(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> GuideSession | None:
        """Per-batch decoding state, or ``None`` for guides that do not touch logits."""
        return None

    def scoring_session(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> GuideSession | None:
        """The logit rule for scoring given text (MMLU, held-out perplexity): the decoding rule without the
        sampling filters it applies itself, which would give most observed tokens probability 0.

        Raises ``NotImplementedError`` (with the reason) for a rule that defines no likelihood outside its
        filter."""
        return self.session(input_ids, attention_mask)

    def to(self, device: torch.device, dtype: torch.dtype) -> Guide:
        return self


_GUIDES: dict[str, type[Guide]] = {NO_GUIDE: Guide}
_BUILDERS: dict[str, Callable[[str, dict, Path], dict]] = {}


def register_guide(name: str, builder: Callable[[str, dict, Path], dict] | None = None):
    """Register a guide class; ``builder(name, spec, dir)`` writes any files the guide needs into its artifact."""

    def deco(cls: type[Guide]) -> type[Guide]:
        cls.type = name
        _GUIDES[name] = cls
        if builder is not None:
            _BUILDERS[name] = builder
        return cls

    return deco


def build_guide(name: str, spec: dict, out_dir: str | Path) -> dict:
    """Write a guide artifact from its config spec (guides trained by a method write their own)."""
    if spec["type"] not in _GUIDES:
        raise ValueError(f"guides.{name}.type: unknown guide type '{spec['type']}'; known: {sorted(_GUIDES)}")
    with atomic_dir(out_dir) as tmp:
        extra = _BUILDERS[spec["type"]](name, spec, tmp) if spec["type"] in _BUILDERS else {}
        write_json(tmp / "guide.json", {"name": name, **spec})
        return write_manifest(tmp, GUIDE_KIND, params={"name": name, **spec}, **extra)


@counts_as_loading
def load_guide(guide_dir: str | Path | None) -> Guide:
    if guide_dir is None or str(guide_dir) == NO_GUIDE:
        return Guide({"type": NO_GUIDE, "name": NO_GUIDE})
    guide_dir = Path(guide_dir)
    read_manifest(guide_dir, GUIDE_KIND)
    spec = read_json(guide_dir / "guide.json")
    if spec.get("type") not in _GUIDES:
        raise ValueError(f"{guide_dir}: unknown guide type '{spec.get('type')}'")
    return _GUIDES[spec["type"]](spec, guide_dir)
