"""Names of every UniDetox artifact and system, derived from the config alone (the workflow and the report
read the same plan, so they cannot disagree).

Derived models are named ``<target>.<method>.<param><value>`` (a grid point) and ``<target>.<method>`` (the
grid point chosen on the validation split); ``<distiller>.toxic`` is the toxic model. DExperts is a guide:
``dexperts.beta<value>`` and the chosen ``dexperts``.

Tuning follows UniDetox section 3.4: UniDetox and base-samples fine-tuning are tuned on the distillation model
alone and every other target reuses that grid point unchanged (the transfer claim), while DExperts, Task
Arithmetic and LM-Steer are tuned per target, under a fluency budget (``tuning.ppl_reference``).
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
#: tuned on the distiller only; every other target reuses the distiller's chosen grid point
TRANSFERRED = ("unidetox", "basesamples")
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
    """A method on one target: the grid it chooses among on validation, or (``source`` set) the target whose
    choice it reuses unchanged. A transferred target whose own grid is not built fine-tunes at the reused value
    itself (``trains``); otherwise it is an alias of its grid point at that value."""

    method: str
    target: str
    candidates: tuple[Candidate, ...]
    source: str | None = None
    trains: bool = False

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
        """The directory (alias or model) whose manifest records the selection."""
        return GUIDE_DIR.format(self.guide) if self.method in GUIDE_METHODS else MODEL_DIR.format(self.model)

    @property
    def built(self) -> tuple[Candidate, ...]:
        """The grid points the workflow builds for this selection."""
        return () if self.trains else self.candidates

    def build_jobs(self) -> list[tuple[str, str]]:
        """Benchmark (folder, job) of every job that builds this method on this target."""
        jobs = [("finetune", self.model)] if self.trains else [c.build_job for c in self.candidates]
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


def _ppl_reference(cfg: dict, method: str, target: str, transferred: bool) -> list[str]:
    if transferred or cfg["tuning"]["max_ppl_ratio"] is None:
        return []
    if cfg["tuning"]["ppl_reference"] == "base":
        return [f"{target}--{NO_GUIDE}"]
    if method in TRANSFERRED:
        return []
    return [Candidate("unidetox", target, float(v)).system for v in cfg["unidetox"]["lr"]]


def selections(cfg: dict) -> list[Selected]:
    if not cfg.get("unidetox"):
        return []
    distiller = cfg["unidetox"]["distiller"]
    grid = [(method, t, values, method in TRANSFERRED and t != distiller)
            for method, targets, values in _grid(cfg) for t in targets]
    references = {s for method, t, _, transferred in grid for s in _ppl_reference(cfg, method, t, transferred)}
    out = []
    for method, t, values, transferred in grid:
        cands = tuple(Candidate(method, t, float(v)) for v in values)
        out.append(Selected(method, t, cands, distiller if transferred else None,
                            transferred and not any(c.system in references for c in cands)))
    return out


def ppl_reference(cfg: dict, sel: Selected) -> list[str]:
    """The validation systems whose perplexity bounds ``sel``'s choice: ``tuning.max_ppl_ratio`` times their
    highest PPL. Empty: no fluency budget, the lowest validation TP wins.

    ``tuning.ppl_reference: base``: every method within the ratio of the bare target's PPL. ``unidetox`` (the
    paper's rule, section 3.3): UniDetox and base samples by TP alone; the other methods within the ratio of the
    highest PPL of UniDetox over its learning-rate grid on the same target.
    """
    return _ppl_reference(cfg, sel.method, sel.target, bool(sel.source))


def source_selection(cfg: dict, sel: Selected) -> Selected | None:
    """The selection whose choice ``sel`` reuses (the same method on the distiller), or None."""
    return find_selection(cfg, sel.method, sel.source) if sel.source else None


def tuning_candidates(cfg: dict) -> list[Candidate]:
    """Grid points evaluated on the validation split: those a selection chooses among and those whose PPL
    bounds one (a transferred target's grid only in the second case)."""
    sels = selections(cfg)
    references = {system for s in sels for system in ppl_reference(cfg, s)}
    return [c for s in sels for c in s.candidates if not s.source or c.system in references]


def candidates(cfg: dict) -> list[Candidate]:
    """Every grid point the workflow builds."""
    return [c for s in selections(cfg) for c in s.built]


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
        deps += [MODEL_DIR.format(c.model) for c in find_selection(cfg, parts[1], root).built]
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
