"""Names of every UniDetox artifact and system, derived from the config alone (the workflow and the report
read the same plan, so they cannot disagree).

Derived models are named ``<target>.<method>.<param><value>`` (a grid point) and ``<target>.<method>`` (the
grid point chosen on the validation split); ``<distiller>.toxic`` is the toxic model. DExperts is a guide:
``dexperts.beta<value>`` and the chosen ``dexperts``.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_DIR = "results/models/{}"
GUIDE_DIR = "results/guides/{}"
NO_GUIDE = "none"

#: method -> (display name, grid parameter, name prefix of a grid value, config key of the grid)
METHODS = {
    "unidetox": ("UniDetox", "lr", "lr", "unidetox.lr"),
    "basesamples": ("Base samples FT", "lr", "lr", "unidetox.base_samples.lr"),
    "taskarith": ("Task Arithmetic", "lambda", "lam", "unidetox.task_arithmetic.lambda"),
    "lmsteer": ("LM-Steer", "epsilon", "eps", "unidetox.lm_steer.epsilon"),
    "dexperts": ("DExperts (anti-only)", "beta", "beta", "unidetox.dexperts.beta"),
}
GUIDE_METHODS = {"dexperts"}
#: the jobs every method shares (benchmark files results/benchmarks/unidetox/<name>.tsv)
SHARED_JOBS = ("toxic_corpus", "toxic_model", "distilled", "base_samples", "analysis")


def tag(value: float) -> str:
    """A grid value as it appears in a name: ``5e-05``, ``0.5``, ``2``."""
    return f"{float(value):g}"


@dataclass(frozen=True)
class Candidate:
    method: str
    target: str
    value: float

    @property
    def label(self) -> str:
        return f"{METHODS[self.method][2]}{tag(self.value)}"

    @property
    def model(self) -> str:
        return self.target if self.method in GUIDE_METHODS else f"{self.target}.{self.method}.{self.label}"

    @property
    def guide(self) -> str:
        return f"{self.method}.{self.label}" if self.method in GUIDE_METHODS else NO_GUIDE

    @property
    def system(self) -> str:
        return f"{self.model}--{self.guide}"

    @property
    def build_job(self) -> tuple[str, str]:
        """(benchmark folder, job name) of the job that builds this grid point."""
        if self.method in ("unidetox", "basesamples"):
            return "finetune", self.model
        return "derive", self.guide if self.method in GUIDE_METHODS else self.model


@dataclass(frozen=True)
class Selected:
    method: str
    target: str
    candidates: tuple[Candidate, ...]

    @property
    def model(self) -> str:
        return self.target if self.method in GUIDE_METHODS else f"{self.target}.{self.method}"

    @property
    def guide(self) -> str:
        return self.method if self.method in GUIDE_METHODS else NO_GUIDE

    @property
    def system(self) -> str:
        return f"{self.model}--{self.guide}"

    @property
    def directory(self) -> str:
        """The alias directory whose manifest records the selection."""
        return GUIDE_DIR.format(self.guide) if self.method in GUIDE_METHODS else MODEL_DIR.format(self.model)

    def build_jobs(self) -> list[tuple[str, str]]:
        """Benchmark (folder, job) of every job that builds this method's grid for this target."""
        jobs = [c.build_job for c in self.candidates]
        return jobs + ([("lm_steer", self.target)] if self.method == "lmsteer" else [])


def toxic_model(cfg: dict) -> str:
    return f"{cfg['unidetox']['distiller']}.toxic"


def _grid(cfg: dict) -> list[tuple[str, list[str], list[float]]]:
    ud = cfg["unidetox"]
    out = [("unidetox", ud["targets"], ud["lr"])]
    if ud["base_samples"]["enabled"]:
        out.append(("basesamples", ud["base_samples"]["targets"] or ud["targets"], ud["base_samples"]["lr"]))
    if ud["dexperts"]["enabled"]:  # the anti-expert must share the tokenizer: the distiller only
        out.append(("dexperts", [ud["distiller"]], ud["dexperts"]["beta"]))
    if ud["task_arithmetic"]["enabled"]:
        ta = ud["task_arithmetic"]
        out.append(("taskarith", ta["targets"] or [ud["distiller"]], ta["lambda"]))
    if ud["lm_steer"]["enabled"]:
        out.append(("lmsteer", ud["lm_steer"]["targets"] or ud["targets"], ud["lm_steer"]["epsilon"]))
    return out


def selections(cfg: dict) -> list[Selected]:
    if not cfg.get("unidetox"):
        return []
    return [Selected(method, t, tuple(Candidate(method, t, float(v)) for v in values))
            for method, targets, values in _grid(cfg) for t in targets]


def candidates(cfg: dict) -> list[Candidate]:
    return [c for s in selections(cfg) for c in s.candidates]


def find_selection(cfg: dict, method: str, target: str) -> Selected:
    for s in selections(cfg):
        if s.method == method and s.target == target:
            return s
    raise KeyError(f"no UniDetox selection for method '{method}' and target '{target}' in this config")


def method_of(name: str) -> str | None:
    """The method of a derived model name (``gemma3.unidetox.lr5e-05`` -> ``unidetox``), else None."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def model_dependencies(cfg: dict, model: str) -> list[str]:
    """Every directory loading ``model`` reads: itself, its base, and what an alias or a delta points at."""
    deps = [MODEL_DIR.format(model)]
    root = model.split(".", 1)[0]
    if root != model:
        deps.append(MODEL_DIR.format(root))
    parts = model.split(".")
    if len(parts) == 2 and parts[1] in METHODS:  # a chosen grid point stands for one of its candidates
        deps += [MODEL_DIR.format(c.model) for c in find_selection(cfg, parts[1], root).candidates]
    return deps


def guide_dependencies(cfg: dict, guide: str) -> list[str]:
    if guide == NO_GUIDE:
        return []
    deps = [GUIDE_DIR.format(guide)]
    if guide.split(".", 1)[0] in GUIDE_METHODS:
        deps.append(MODEL_DIR.format(toxic_model(cfg)))
        if guide in GUIDE_METHODS:
            sel = [s for s in selections(cfg) if s.method == guide]
            deps += [GUIDE_DIR.format(c.guide) for s in sel for c in s.candidates]
    return deps
