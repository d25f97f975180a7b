"""Names of every reward-guided artifact and system, derived from the config alone.

Per attribute (``toxicity``, ``sentiment``...): reward data ``results/guided/<attribute>/reward_data.jsonl``,
reward models ``results/rewards/<attribute>.<variant>``, guides ``<attribute>.<variant>.k<k>.beta<beta>``
(one per grid point). The toxicity attribute's grid is evaluated on the validation split (the trade-off curves)
and its ``test_variants`` at the beta chosen there, ``<attribute>.<variant>``, on test. Every other attribute
(sentiment...) is a curve on its own evaluation set: the base model and each grid point on the attribute's
prompts and scorer, under ``results/eval/<attribute>.<split>/`` (its "split" wildcard names the set).
"""

from __future__ import annotations

import copy
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


#: The ablations follow the ARM paper's section 4.4 (Fig. 4, distillation, k = 20): "turning off regularization,
#: or further removing baseline from head parameterization" -- ``arm_noreg`` drops the Delta-r regulariser,
#: ``arm_nobaseline`` drops it AND the baseline <h, w> (a regulariser towards a baseline that is absent would pull
#: every reward to 0).
VARIANTS = {
    "rad": Variant("RAD (teacher)", "rad", "labels", False, True),
    "arm_distilled": Variant("ARM distilled from RAD", "arm", "distill", True, True),
    "arm_labels": Variant("ARM trained on labels", "arm", "labels", True, True),
    "arm_noreg": Variant("ARM distilled, no regulariser", "arm", "distill", False, True),
    "arm_nobaseline": Variant("ARM distilled, no regulariser, no baseline", "arm", "distill", False, False),
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
    return curve_systems(cfg, MAIN_ATTRIBUTE) if MAIN_ATTRIBUTE in attributes(cfg) else []


def test_systems(cfg: dict) -> list[tuple[str, str]]:
    return [(base_model(cfg), c.guide) for c in choices(cfg)]


def resolved(cfg: dict, name: str) -> dict:
    """The attribute's prompts and scorer: its own, or the project's (the toxicity attribute by default)."""
    at = attribute(cfg, name)
    return {"prompts": at.get("prompts") or cfg["prompts"], "scorer": at.get("scorer") or cfg["scorer"],
            "labels": at["labels"], "data": at["data"]}


def curve_attributes(cfg: dict) -> list[str]:
    """Attributes evaluated as a curve on their own prompts and scorer (every one but the main attribute)."""
    return [a for a in attributes(cfg) if a != MAIN_ATTRIBUTE]


def eval_set(cfg: dict, name: str) -> str:
    """The split-wildcard value of an attribute's evaluation set, e.g. ``sentiment.test``."""
    return f"{name}.{attribute(cfg, name)['evaluation']['split']}"


def curve_systems(cfg: dict, name: str) -> list[tuple[str, str]]:
    """The plain base and the base with every grid point's guide."""
    base = base_model(cfg)
    return [(base, NO_GUIDE)] + [(base, p.guide) for p in grid(cfg, name)]


def split_parts(split: str) -> tuple[str, str]:
    """``sentiment.test`` -> (``sentiment``, ``test``); a project split has no attribute: ``test`` -> ("", "test")."""
    name, _, plain = split.rpartition(".")
    return name, plain


def split_view(cfg: dict, split: str) -> tuple[dict, str]:
    """(the config an evaluation step sees, the prompt split) for a split-wildcard value.

    ``test`` / ``validation`` are the project's sets; ``<attribute>.<split>`` swaps in the attribute's prompts
    (restricted to its evaluation groups), scorer and samples per prompt, so the same steps evaluate it.
    """
    name, plain = split_parts(split)
    if not name:
        return cfg, split
    if name not in curve_attributes(cfg):
        raise ValueError(f"evaluation set '{split}': '{name}' is not a guided attribute with its own prompts")
    view, ev = attribute_view(cfg, name), attribute(cfg, name)["evaluation"]
    if ev["groups"]:
        view["prompts"]["groups"] = list(ev["groups"])
    if ev["samples_per_prompt"]:
        view["generation"]["samples_per_prompt"] = ev["samples_per_prompt"]
    view["evaluation"]["toxicity"]["threshold"] = threshold(cfg, name)
    return view, plain


def split_view_sources(cfg: dict, split: str) -> dict[str, list[str]]:
    """For every key ``split_view`` replaces, the config keys its value is read from (none for project splits)."""
    name, _ = split_parts(split)
    if not name:
        return {}
    at, own = attribute(cfg, name), f"guided.attributes.{name}"
    ev = f"{own}.evaluation"
    return {"prompts": [f"{own}.prompts" if at.get("prompts") else "prompts", ev],
            "scorer": [f"{own}.scorer" if at.get("scorer") else "scorer"],
            "evaluation.scorers": [f"{own}.scorer" if at.get("scorer") else "scorer"],
            "evaluation.primary": [f"{own}.scorer" if at.get("scorer") else "scorer"],
            "generation.samples_per_prompt": ["generation.samples_per_prompt", ev],
            "evaluation.toxicity.threshold": ["evaluation.toxicity.threshold", ev]}


def attribute_view(cfg: dict, name: str) -> dict:
    """A copy of ``cfg`` whose prompts and scorer are the attribute's (its own, or the project's)."""
    at = resolved(cfg, name)
    view = copy.deepcopy(cfg)
    view["prompts"], view["scorer"] = copy.deepcopy(at["prompts"]), copy.deepcopy(at["scorer"])
    if "evaluation" in view:  # graded by the attribute's scorer alone
        view["evaluation"]["scorers"] = view["evaluation"]["primary"] = None
    return view


def threshold(cfg: dict, name: str) -> float:
    """The score below which an attribute's continuation counts as desired (e.g. positive)."""
    own = attribute(cfg, name)["evaluation"]["threshold"]
    return cfg["evaluation"]["toxicity"]["threshold"] if own is None else own


def step_keys(cfg: dict, step: str, name: str) -> list[str]:
    """Config keys a per-attribute step reads (the project's prompts/scorer only where the attribute uses them)."""
    at, own = attribute(cfg, name), f"guided.attributes.{name}"
    keys = [f"{own}.labels"]  # how the attribute is evaluated or decoded (grid, evaluation) is not read here
    if step == "reward_data":
        keys += [f"{own}.{k}" for k in ("data", "prompts", "scorer")]
        keys += ["seed", "device", "inference_dtype"] + [k for k in ("prompts", "scorer") if not at.get(k)]
    return keys
