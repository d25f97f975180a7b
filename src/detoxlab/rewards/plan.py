"""Names of every reward-guided artifact and system, derived from the config alone.

Per attribute (``toxicity``, ``sentiment``...): reward data ``results/guided/<attribute>/reward_data.jsonl``,
reward models ``results/rewards/<attribute>.<variant>``, guides ``<attribute>.<variant>.k<k>.beta<beta>``
(one per grid point, evaluated on the validation split: the trade-off curves) and, for the toxicity
attribute's ``test_variants``, the guide chosen on validation, ``<attribute>.<variant>``, evaluated on test.
"""

from __future__ import annotations

from dataclasses import dataclass

from detoxlab.unidetox.plan import tag

REWARD_DIR = "results/rewards/{}"
GUIDE_DIR = "results/guides/{}"
NO_GUIDE = "none"
#: the attribute whose systems join the main (toxicity) table
MAIN_ATTRIBUTE = "toxicity"


@dataclass(frozen=True)
class Variant:
    display: str
    kind: str  # rad | arm
    objective: str  # labels | distill
    regulariser: bool
    baseline: bool


VARIANTS = {
    "rad": Variant("RAD (teacher)", "rad", "labels", False, True),
    "arm_distilled": Variant("ARM distilled from RAD", "arm", "distill", True, True),
    "arm_labels": Variant("ARM trained on labels", "arm", "labels", True, True),
    "arm_noreg": Variant("ARM distilled, no regulariser", "arm", "distill", False, True),
    "arm_nobaseline": Variant("ARM distilled, no baseline", "arm", "distill", True, False),
}
TEACHER = "rad"


@dataclass(frozen=True)
class GuidePoint:
    attribute: str
    variant: str
    k: int
    beta: float

    @property
    def label(self) -> str:
        return f"k{self.k}.beta{tag(self.beta)}"

    @property
    def guide(self) -> str:
        return f"{self.attribute}.{self.variant}.{self.label}"

    @property
    def reward_model(self) -> str:
        return f"{self.attribute}.{self.variant}"


def attributes(cfg: dict) -> list[str]:
    return list((cfg.get("guided") or {}).get("attributes", {}))


def attribute(cfg: dict, name: str) -> dict:
    return cfg["guided"]["attributes"][name]


def variants(cfg: dict, name: str) -> list[str]:
    """The attribute's variants; distilled students bring their teacher along."""
    chosen = attribute(cfg, name).get("variants") or cfg["guided"]["variants"]
    if any(VARIANTS[v].objective == "distill" for v in chosen) and TEACHER not in chosen:
        chosen = [TEACHER, *chosen]
    return list(chosen)


def grid(cfg: dict, name: str) -> list[GuidePoint]:
    at, g = attribute(cfg, name), cfg["guided"]
    ks, betas = at.get("k") or g["k"], at.get("beta") or g["beta"]
    return [GuidePoint(name, v, int(k), float(b)) for v in variants(cfg, name) for k in ks for b in betas]


def all_points(cfg: dict) -> list[GuidePoint]:
    return [p for a in attributes(cfg) for p in grid(cfg, a)]


def reward_models(cfg: dict) -> list[tuple[str, str]]:
    return [(a, v) for a in attributes(cfg) for v in variants(cfg, a)]


def find_point(cfg: dict, guide: str) -> GuidePoint | None:
    return next((p for p in all_points(cfg) if p.guide == guide), None)


@dataclass(frozen=True)
class Choice:
    """The grid point of one variant chosen on the validation split, evaluated on test."""

    attribute: str
    variant: str
    candidates: tuple[GuidePoint, ...]

    @property
    def guide(self) -> str:
        return f"{self.attribute}.{self.variant}"


def choices(cfg: dict) -> list[Choice]:
    if MAIN_ATTRIBUTE not in attributes(cfg):
        return []
    pts = grid(cfg, MAIN_ATTRIBUTE)
    return [Choice(MAIN_ATTRIBUTE, v, tuple(p for p in pts if p.variant == v))
            for v in cfg["guided"]["test_variants"] if v in variants(cfg, MAIN_ATTRIBUTE)]


def find_choice(cfg: dict, guide: str) -> Choice | None:
    return next((c for c in choices(cfg) if c.guide == guide), None)


def base_model(cfg: dict) -> str:
    return cfg["guided"]["base"]


def guide_dependencies(cfg: dict, guide: str) -> list[str] | None:
    """What loading a reward guide reads (None when ``guide`` is not a reward guide)."""
    point, choice = find_point(cfg, guide), find_choice(cfg, guide)
    if point is None and choice is None:
        return None
    deps = [GUIDE_DIR.format(guide), "results/models/" + cfg["guided"]["reward_model"]["backbone"]]
    for p in ([point] if point else list(choice.candidates)):
        deps += [REWARD_DIR.format(p.reward_model)] + ([GUIDE_DIR.format(p.guide)] if choice else [])
    return list(dict.fromkeys(deps))


def tuning_systems(cfg: dict) -> list[tuple[str, str]]:
    """(model, guide) pairs of the toxicity curves, evaluated on the validation split with the plain base."""
    if MAIN_ATTRIBUTE not in attributes(cfg):
        return []
    base = base_model(cfg)
    return [(base, NO_GUIDE)] + [(base, p.guide) for p in grid(cfg, MAIN_ATTRIBUTE)]


def test_systems(cfg: dict) -> list[tuple[str, str]]:
    return [(base_model(cfg), c.guide) for c in choices(cfg)]


def resolved(cfg: dict, name: str) -> dict:
    """The attribute's prompts and scorer: its own, or the project's (the toxicity attribute by default)."""
    at = attribute(cfg, name)
    return {"prompts": at.get("prompts") or cfg["prompts"], "scorer": at.get("scorer") or cfg["scorer"],
            "labels": at["labels"], "data": at["data"]}


def step_keys(cfg: dict, step: str, name: str) -> list[str]:
    """Config keys a per-attribute step reads (the project's prompts/scorer only where the attribute uses them)."""
    at = attribute(cfg, name)
    keys = [f"guided.attributes.{name}"]
    if step == "reward_data":
        keys += ["seed", "device", "dtype"] + [k for k in ("prompts", "scorer") if not at.get(k)]
    return keys
