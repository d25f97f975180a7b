"""Names and dependencies of every NADO/ACF artifact, derived from the config alone.

Per run (``acf.runs``: a schedule and a regulariser) and iteration ``i``: samples ``S_i`` (oracle-labelled
continuations of the training prompts from ``M_i``), a NADO model ``N_i`` and a fine-tuned model ``M_i``
(``M_0`` is the base). The schedules differ only in their edges:

- sequential: ``N_i <- S_{i-1}``; ``M_i <- (M_{i-1}, N_i)``; ``S_i <- M_i``  (a chain of 3n jobs);
- parallel:   ``N_i <- S_{i-2}``; ``M_i <- (M_{i-1}, N_{i-1})``; ``S_{i-1} <- M_{i-1}``: an iteration's three
  jobs read only the previous iteration's outputs, so they run concurrently (critical path n + 2 jobs).

Indices below 0 are the base: every ``S_j`` with ``j <= 0`` is the base samples, and a NADO whose samples and
target model are both the base is the base NADO -- one shared artifact, not several identical ones. A parallel
NADO may estimate R under a newer model than the one that sampled its data (``importance_weights``): ``N_i``
then reads ``S_{i-2}`` (from ``M_{i-2}``) reweighted to ``M_{i-1}``, the newest model of the previous iteration.

Which NADO regularises which model (``regularisation``), parallel with importance weights: ``M_1 <- N_0`` and
``M_2 <- N_1`` are the base NADO; ``M_3 <- N_2``, trained on the stale ``S_0`` reweighted to ``M_1``; in general
``M_i <- N_{i-1}``, trained on ``S_{i-3}`` reweighted to ``M_{i-2}``. At n = 2 both parallel models are regularised
by the base NADO (sequential: ``M_2 <- N_2``, on ``S_1`` from ``M_1``), so n >= 3 is the first run in which the
parallel schedule's staleness and importance weights act. Without importance weights the first NADO that is not
the base one is ``N_3`` (``S_1`` under ``M_1``), which regularises ``M_4``. Only what the final models and the
report read is built (``run_artifacts``): the parallel ``N_n`` would regularise ``M_{n+1}`` and is not.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_DIR = "results/models/{}"
ACF_DIR = "results/acf"
BASE = "base"  # the pseudo-run of the shared base artifacts: S_0 and the NADO of the base model
BASE_SAMPLES = f"{ACF_DIR}/{BASE}/samples0.jsonl"
BASE_NADO = f"{ACF_DIR}/{BASE}/nado0"
GENERAL = f"{ACF_DIR}/general.jsonl"
CLASSIFICATION = f"{ACF_DIR}/classification.jsonl"
NADO_GUIDE = "acf.nado"
SCHEDULES = ("sequential", "parallel")
REGULARISERS = ("qstar", "adaptive")
#: baselines and the classification experiment: model suffix -> display name
BASELINES = {"filtering": "Filtering", "rl": "RL (policy gradient)"}
CLASSIFIERS = {"cls": "Classification FT", "cls_reg": "Classification FT + regulariser"}


@dataclass(frozen=True)
class Run:
    name: str
    schedule: str
    regulariser: str
    importance_weights: bool


def section(cfg: dict) -> dict:
    return cfg["acf"]


def enabled(cfg: dict) -> bool:
    return bool(cfg.get("acf"))


def base_model(cfg: dict) -> str:
    return cfg["acf"]["base"]


def iterations(cfg: dict) -> int:
    return int(cfg["acf"]["iterations"])


def runs(cfg: dict) -> list[Run]:
    return [Run(name, r["schedule"], r["regulariser"], bool(r["importance_weights"]))
            for name, r in cfg["acf"]["runs"].items()]


def find_run(cfg: dict, name: str) -> Run:
    for r in runs(cfg):
        if r.name == name:
            return r
    raise KeyError(f"acf.runs: no run named '{name}'")


def model_name(cfg: dict, run: str, i: int) -> str:
    return base_model(cfg) if i <= 0 else f"{base_model(cfg)}.acf.{run}.it{i}"


def model_dir(cfg: dict, run: str, i: int) -> str:
    return MODEL_DIR.format(model_name(cfg, run, i))


def samples_path(cfg: dict, run: str, i: int) -> str:
    return BASE_SAMPLES if i <= 0 else f"{ACF_DIR}/{run}/samples{i}.jsonl"


@dataclass(frozen=True)
class NadoJob:
    samples: str  # S_j
    proposal: str  # the model (name) that sampled S_j
    target: str  # the model (name) whose R is estimated (not the proposal: importance weights)
    previous: str | None  # warm start


def _nado_source(cfg: dict, run: str, i: int) -> tuple[int, int]:
    """(j, t): N_i learns R under M_t from the samples S_j of M_j."""
    r = find_run(cfg, run)
    if r.schedule == "sequential":
        return i - 1, i - 1
    return i - 2, i - 1 if r.importance_weights else i - 2


def _is_base_nado(cfg: dict, run: str, i: int) -> bool:
    return run == BASE or max(_nado_source(cfg, run, i)) <= 0


def nado_job(cfg: dict, run: str, i: int) -> NadoJob:
    if _is_base_nado(cfg, run, i):
        return NadoJob(BASE_SAMPLES, model_name(cfg, BASE, 0), model_name(cfg, BASE, 0), None)
    j, t = _nado_source(cfg, run, i)
    return NadoJob(samples_path(cfg, run, j), model_name(cfg, run, j), model_name(cfg, run, t),
                   nado_path(cfg, run, i - 1) if cfg["acf"]["nado"]["warm_start"] else None)


def nado_path(cfg: dict, run: str, i: int) -> str:
    return BASE_NADO if _is_base_nado(cfg, run, i) else f"{ACF_DIR}/{run}/nado{i}"


def _finetune_nado_index(cfg: dict, run: str, i: int) -> int:
    """j: ``N_j`` regularises ``M_i``."""
    return i if find_run(cfg, run).schedule == "sequential" else i - 1


def finetune_nado(cfg: dict, run: str, i: int) -> str:
    """The NADO that regularises ``M_i``."""
    return nado_path(cfg, run, _finetune_nado_index(cfg, run, i))


@dataclass(frozen=True)
class Regularisation:
    model: int  # i: M_i
    nado: int  # j: M_i is regularised by N_j
    path: str  # N_j's directory (the base NADO's for every N_j that is the base NADO)
    job: NadoJob  # what N_j was trained on


def regularisation(cfg: dict, run: str, i: int) -> Regularisation:
    """The NADO that regularises ``M_i`` and the samples and model it was trained on and under."""
    j = _finetune_nado_index(cfg, run, i)
    return Regularisation(i, j, nado_path(cfg, run, j), nado_job(cfg, run, j))


def report_samples(cfg: dict, run: str) -> list[str]:
    """``S_0..S_{n-1}``: the report's per-iteration sample toxicity."""
    return list(dict.fromkeys(samples_path(cfg, run, i) for i in range(iterations(cfg))))


def run_artifacts(cfg: dict, run: str) -> dict[str, list[str]]:
    """What the run's final model ``M_n`` and the report read: ``M_1..M_n`` (each the start of the next), the
    NADO of each, and ``S_0..S_{n-1}``. Nothing else: the parallel ``N_n`` would only regularise ``M_{n+1}``.

    The set is closed: every NADO's samples, proposal, target and warm start are among these (``N_j`` reads
    ``S_{j-1}`` or ``S_{j-2}``, ``j <= n``, and warm-starts from ``N_{j-1}``, the NADO of the model before).
    """
    n = iterations(cfg)
    return {"samples": report_samples(cfg, run),
            "nado": list(dict.fromkeys(finetune_nado(cfg, run, i) for i in range(1, n + 1))),
            "models": [model_dir(cfg, run, i) for i in range(1, n + 1)]}


def parse_model(cfg: dict, name: str) -> tuple[str, int] | None:
    """``<base>.acf.<run>.it<i>`` -> (run, i); None for any other name."""
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == base_model(cfg) and parts[1] == "acf" and parts[3].startswith("it"):
        return parts[2], int(parts[3][2:])
    return None


def final_models(cfg: dict) -> list[str]:
    return [model_name(cfg, r.name, iterations(cfg)) for r in runs(cfg)]


def baseline_models(cfg: dict) -> list[str]:
    names = [f"{base_model(cfg)}.acf.{b}" for b in cfg["acf"]["baselines"]]
    if cfg["acf"]["classification"]["enabled"]:
        names += [f"{base_model(cfg)}.acf.{c}" for c in CLASSIFIERS]
    return names


def test_systems(cfg: dict) -> list[tuple[str, str]]:
    """What the report's ACF section compares: every run's final model, the baselines, NADO decoding."""
    if not enabled(cfg):
        return []
    pairs = [(base_model(cfg), "none")] + [(m, "none") for m in final_models(cfg) + baseline_models(cfg)]
    if cfg["acf"]["nado_decoding"]:
        pairs.append((base_model(cfg), NADO_GUIDE))
    return pairs


def without_mmlu(cfg: dict) -> list[tuple[str, str]]:
    """The classification experiment's systems: its question is classification accuracy and the toxicity of
    the generations, not utility."""
    if not enabled(cfg) or not cfg["acf"]["classification"]["enabled"]:
        return []
    return [(f"{base_model(cfg)}.acf.{c}", "none") for c in CLASSIFIERS]


def guide_dependencies(cfg: dict, guide: str) -> list[str] | None:
    if not enabled(cfg) or guide != NADO_GUIDE:
        return None
    return [f"results/guides/{guide}", BASE_NADO, MODEL_DIR.format(cfg["acf"]["nado"]["backbone"])]


def _benchmark(path: str) -> str:
    """The Snakemake benchmark file of the job that writes an ACF artifact."""
    if path.startswith(MODEL_DIR.format("")):
        run, i = path.rsplit(".acf.", 1)[1].rsplit(".it", 1)
        return f"results/benchmarks/acf/{run}.it{i}.tsv"
    if path == GENERAL:
        return "results/benchmarks/acf/general.tsv"
    run, name = path[len(ACF_DIR) + 1:].split("/")
    return f"results/benchmarks/acf/{run}.{name.removesuffix('.jsonl')}.tsv"


def schedule_jobs(cfg: dict, run: str) -> dict[str, list[str]]:
    """The run's jobs (by the artifact each writes) and the jobs each one waits for: the schedule's DAG."""
    r, art = find_run(cfg, run), run_artifacts(cfg, run)
    jobs: dict[str, list[str]] = {}

    def made(path: str) -> list[str]:  # the base model is an input, not a job of the run
        return [path] if path != model_dir(cfg, run, 0) else []

    def add_nado(path: str, i: int) -> None:
        job = nado_job(cfg, BASE if path == BASE_NADO else run, i)
        deps = [job.samples] + made(MODEL_DIR.format(job.proposal)) + made(MODEL_DIR.format(job.target))
        deps += [job.previous] if job.previous else []
        jobs[path] = list(dict.fromkeys(deps))
        for d in deps:
            if d.startswith(f"{ACF_DIR}/") and "/nado" in d and d not in jobs:
                add_nado(d, int(d.rsplit("nado", 1)[1]))

    for i, path in enumerate(art["samples"]):
        jobs[path] = made(model_dir(cfg, run, i))
    for i in range(1, iterations(cfg) + 1):
        add_nado(finetune_nado(cfg, run, i), _finetune_nado_index(cfg, run, i))
        jobs[model_dir(cfg, run, i)] = made(model_dir(cfg, run, i - 1)) + [finetune_nado(cfg, run, i)]
        if r.regulariser == "adaptive":
            jobs[model_dir(cfg, run, i)].append(GENERAL)
            jobs.setdefault(GENERAL, [])
    jobs.setdefault(BASE_SAMPLES, [])
    return jobs


def benchmark_files(cfg: dict, run: str) -> dict[str, str]:
    return {job: _benchmark(job) for job in schedule_jobs(cfg, run)}


def critical_path(jobs: dict[str, list[str]], seconds: dict[str, float]) -> tuple[float, list[str]]:
    """The longest chain of dependent jobs, weighted by ``seconds``: the wall time with unlimited workers."""
    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(job: str) -> tuple[float, list[str]]:
        if job not in memo:
            best = max((longest(d) for d in jobs.get(job, []) if d in jobs), default=(0.0, []), key=lambda t: t[0])
            memo[job] = (best[0] + seconds.get(job, 0.0), best[1] + [job])
        return memo[job]

    return max((longest(j) for j in jobs), key=lambda t: t[0])
