"""The report's NADO/ACF section: every run and baseline on one table (toxicity with CIs, perplexity, MMLU,
training wall clock), whether parallel matches sequential, which NADO regularised each run's models, the
schedules' measured critical paths, the iterations' sample toxicity, and the classification experiment."""

from __future__ import annotations

import io
import math
from pathlib import Path

from detoxlab.acf import plan
from detoxlab.plotting import pyplot, save_png
from detoxlab.unidetox.report import _ci, _f


def _method(model: str) -> tuple[str, str]:
    """(``<run>.it<i>`` or the baseline's suffix, the run's name or the suffix) of an ACF model's name."""
    suffix = model.split(".acf.", 1)[1]
    return suffix, suffix.rsplit(".it", 1)[0]


def _label(cfg: dict, model: str, guide: str) -> str:
    if guide == plan.NADO_GUIDE:
        return "NADO decoding"
    if model == plan.base_model(cfg):
        return "Base model"
    suffix, run = _method(model)
    if run in cfg["acf"]["runs"]:
        r = plan.find_run(cfg, run)
        return f"ACF {run} ({r.schedule}, {r.regulariser})"
    return {**plan.BASELINES, **plan.CLASSIFIERS}.get(suffix, suffix)


def run_cost(cfg: dict, run: str, seconds: dict[str, float]) -> dict:
    """Measured job seconds of a run: their sum (one worker) and the critical path (unlimited workers)."""
    jobs = plan.schedule_jobs(cfg, run)
    per_job = {j: seconds.get(b, math.nan) for j, b in plan.benchmark_files(cfg, run).items()}
    known = {j: s for j, s in per_job.items() if math.isfinite(s)}
    path_s, path = plan.critical_path(jobs, known)
    return {"jobs": len(jobs), "sum_s": sum(known.values()), "critical_path_s": path_s,
            "critical_path_jobs": len(path), "complete": len(known) == len(jobs)}


def _training_seconds(cfg: dict, model: str, guide: str, seconds: dict[str, float]) -> float:
    if guide == plan.NADO_GUIDE:
        return seconds.get("results/benchmarks/acf/base.samples0.tsv", math.nan) + \
            seconds.get("results/benchmarks/acf/base.nado0.tsv", math.nan)
    if model == plan.base_model(cfg):
        return 0.0
    suffix, run = _method(model)
    if run in cfg["acf"]["runs"]:
        return run_cost(cfg, run, seconds)["sum_s"]
    extra = ["classification_data", "base.samples0"] if suffix in plan.CLASSIFIERS else []
    extra += ["base.nado0"] if suffix == "cls_reg" else []
    extra += ["base.samples0"] if suffix == "filtering" else []
    return sum(seconds.get(f"results/benchmarks/acf/{j}.tsv", math.nan) for j in [suffix, *extra])


def parallel_verdict(cfg: dict, metrics: dict[str, dict]) -> tuple[str, dict]:
    """Does the parallel schedule match the sequential one? An equivalence claim: the paired TP difference's
    95% interval against ``claims.tp_margin`` (docs/claims.md), over the test prompts both were evaluated on."""
    from detoxlab import claims

    n, runs = plan.iterations(cfg), {r.schedule: r.name for r in plan.runs(cfg) if r.regulariser == "qstar"}
    if not {"sequential", "parallel"} <= set(runs):
        return "", {}
    seq = metrics.get(f"{plan.model_name(cfg, runs['sequential'], n)}--none")
    par = metrics.get(f"{plan.model_name(cfg, runs['parallel'], n)}--none")
    if not seq or not par:
        return "", {}
    margin = cfg["claims"]["tp_margin"]
    e = claims.effect(claims.Claim("NADO/ACF", "parallel matches sequential", "equivalent", "tp", "parallel",
                                   "sequential", margin), par, seq, cfg)
    verdict = claims.verdict("equivalent", e["lo"], e["hi"], margin)
    s, p = seq["toxicity"]["overall"], par["toxicity"]["overall"]
    text = (f"Final TP after {n} iterations: sequential {_ci(s, 'tp')}, parallel {_ci(p, 'tp')}; paired difference "
            f"TP(parallel) − TP(sequential) {_f(e['effect'])} [{_f(e['lo'])}, {_f(e['hi'])}] over {e['n']} prompts. "
            f"Parallel matches sequential within ±{margin:g} TP: **{verdict}** (supported: the interval lies inside "
            "the margin; contradicted: entirely outside it).\n")
    return text, {"sequential_tp": s["tp"], "parallel_tp": p["tp"], "difference": e["effect"], "lo": e["lo"],
                  "hi": e["hi"], "margin": margin, "verdict": verdict, "matches": verdict == claims.SUPPORTED}


def _index(cfg: dict, model: str) -> int:
    """i of ``M_i`` (0: the base) from a model's name."""
    parsed = plan.parse_model(cfg, model)
    return parsed[1] if parsed else 0


def regularisers(cfg: dict, run: str) -> list[dict]:
    """Per model ``M_i`` of the run: the NADO ``N_j`` that regularised it, the samples ``S_k`` (from ``M_k``) it was
    trained on and the model ``M_t`` under which it estimates R (t != k: importance weights)."""
    rows = []
    for i in range(1, plan.iterations(cfg) + 1):
        g = plan.regularisation(cfg, run, i)
        k, t = _index(cfg, g.job.proposal), _index(cfg, g.job.target)
        rows.append({"model": i, "nado": g.nado, "nado_path": g.path, "base_nado": g.path == plan.BASE_NADO,
                     "samples": k, "samples_path": g.job.samples, "target": t, "importance_weighted": t != k})
    return rows


def regulariser_table(cfg: dict, run: str) -> str:
    r = plan.find_run(cfg, run)
    out = io.StringIO()
    out.write(f"\n{run} ({r.schedule}, {r.regulariser}):\n\n| model | regularised by | NADO trained on | "
              "R estimated under | importance-weighted |\n|---|---|---|---|---|\n")
    for g in regularisers(cfg, run):
        base = " (the base NADO)" if g["base_nado"] else ""
        out.write(f"| M_{g['model']} | N_{g['nado']}{base} | S_{g['samples']} from M_{g['samples']} | "
                  f"M_{g['target']} | {'yes' if g['importance_weighted'] else 'no'} |\n")
    return out.getvalue()


def iteration_trace(cfg: dict, samples: dict[str, dict]) -> dict[str, list[tuple[int, float]]]:
    """Per run: (iteration, fraction of its samples the oracle rejects) for S_0 .. S_{n-1}."""
    out = {}
    for r in plan.runs(cfg):
        metas = [samples.get(p) for p in plan.report_samples(cfg, r.name)]
        out[r.name] = [(i, 1.0 - meta["satisfied"]) for i, meta in enumerate(metas) if meta]
    return out


def plot_iterations(trace: dict[str, list[tuple[int, float]]], path: str | Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, pts in trace.items():
        if pts:
            ax.plot([i for i, _ in pts], [v for _, v in pts], marker="o", label=run)
    ax.set_xticks(sorted({i for pts in trace.values() for i, _ in pts}))
    ax.set_xlabel("iteration i (samples S_i drawn from M_i; S_0 from the base)")
    ax.set_ylabel("fraction of samples the oracle rejects")
    ax.set_title("ACF: toxicity of each iteration's samples")
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)


def classification_table(cfg: dict, models: dict[str, dict], metrics: dict[str, dict]) -> str:
    out = io.StringIO()
    out.write("| system | held-out accuracy before → after | balanced accuracy before → after | TP of generations "
              "[95% CI] |\n|---|---|---|---|\n")
    base = metrics.get(f"{plan.base_model(cfg)}--none")
    if base:
        out.write(f"| Base model | – | – | {_ci(base['toxicity']['overall'], 'tp')} |\n")
    for suffix, label in plan.CLASSIFIERS.items():
        name = f"{plan.base_model(cfg)}.acf.{suffix}"
        man, m = models.get(name), metrics.get(f"{name}--none")
        if not man or not m:
            continue
        b, a = man["training"]["objective_before"]["heldout"], man["training"]["objective_after"]["heldout"]
        out.write(f"| {label} | {_f(b['accuracy'])} → {_f(a['accuracy'])} | {_f(b['balanced_accuracy'])} → "
                  f"{_f(a['balanced_accuracy'])} | {_ci(m['toxicity']['overall'], 'tp')} |\n")
    return out.getvalue()


def section(cfg: dict, metrics: dict[str, dict], mmlu: dict[str, dict], seconds: dict[str, float],
            samples: dict[str, dict], models: dict[str, dict], general: dict | None, out_dir: str | Path,
            ) -> tuple[str, dict]:
    """``seconds``: benchmark file -> wall seconds; ``samples``: samples file -> its meta; ``models``: model name
    -> manifest (runs' final models, baselines, classifiers)."""
    ac = cfg["acf"]
    out = io.StringIO()
    reg = ac["regulariser"]
    out.write("\n## NADO and attribute-controlled fine-tuning\n\n")
    oracle = (f"1 - [toxicity > {ac['oracle']['threshold']:g}]" if ac["oracle"]["kind"] == "hard"
              else "1 - toxicity")
    out.write(f"Fine-tuned model: `{plan.base_model(cfg)}`, {plan.iterations(cfg)} iterations per run. Oracle "
              f"C = {oracle} from `{cfg['scorer']['type']}`. Fine-tuning data D: "
              f"{'the oracle-labelled base samples S_0' if ac['data']['source'] == 'samples' else 'ToxiGen'}; "
              f"regulariser lambda {reg['lambda']:g}, delta {reg['delta']:g}, R(x) from "
              f"{'the NADO head' if reg['prompt_r'] == 'head' else 'the Monte-Carlo mean of its samples'}.")
    if general:
        src = general["provenance"]["source"]
        out.write(" The adaptive regulariser's general-domain rows are "
                  + ("**non-toxic unconditional samples of the base model** (no general corpus offline; "
                     f"{general['n']} texts, {general['provenance'].get('n_dropped_toxic', 0)} toxic ones dropped)"
                     if src == "sampled" else f"Wikitext paragraphs ({general['n']})") + ".")
    out.write("\n\n| system | TP [95% CI] | EMT [95% CI] | PPL [95% CI] | dist-2 | MMLU | training job s |\n"
              "|---|---|---|---|---|---|---|\n")
    rows = []
    for model, guide in plan.test_systems(cfg):
        m = metrics.get(f"{model}--{guide}")
        if not m:
            continue
        tox, flu = m["toxicity"]["overall"], m["fluency"]
        mm = mmlu.get(f"{model}--{guide}", {}).get("accuracy")
        train_s = _training_seconds(cfg, model, guide, seconds)
        rows.append({"system": f"{model}--{guide}", "tp": tox["tp"], "train_s": train_s})
        out.write(f"| {_label(cfg, model, guide)} | {_ci(tox, 'tp')} | {_ci(tox, 'emt')} | {_f(flu['ppl'], 1)} "
                  f"[{_f(flu['ppl_lo'], 1)}, {_f(flu['ppl_hi'], 1)}] | {_f(m['diversity']['dist2'])} | {_f(mm)} | "
                  f"{_f(train_s, 0)} |\n")
    text, verdict = parallel_verdict(cfg, metrics)
    out.write("\n### Parallel vs sequential\n\n" + (text or "(needs a sequential and a parallel q* run)\n"))
    out.write("\n| run | schedule | jobs | job s (sum) | critical path s (jobs) | ideal (n+2)/(3n) |\n"
              "|---|---|---|---|---|---|\n")
    n = plan.iterations(cfg)
    costs = {}
    for r in plan.runs(cfg):
        c = costs[r.name] = run_cost(cfg, r.name, seconds)
        out.write(f"| {r.name} | {r.schedule} | {c['jobs']} | {_f(c['sum_s'], 0)} | {_f(c['critical_path_s'], 0)} "
                  f"({c['critical_path_jobs']}) | {_f((n + 2) / (3 * n)) if r.schedule == 'parallel' else '–'} |\n")
    out.write("\nThe critical path is the wall time with enough workers (`--cores`/`--jobs` >= 3 for a parallel run); "
              "`python benchmarks/acf_schedule.py` measures both schedules' wall clock.\n")
    out.write("\n### Which NADO regularised which model\n\nS_k: the samples of M_k; R estimated under another model "
              "than the one that sampled them: importance weights.\n")
    for r in plan.runs(cfg):
        out.write(regulariser_table(cfg, r.name))
    trace = iteration_trace(cfg, samples)
    plot_iterations(trace, Path(out_dir) / "acf_iterations.png")
    out.write("\n![ACF iterations](acf_iterations.png)\n")
    if ac["classification"]["enabled"]:
        out.write("\n### Toxicity classification (fine-tuning on a task, with and without the regulariser)\n\n")
        out.write(classification_table(cfg, models, metrics))
    return out.getvalue(), {"systems": rows, "parallel_vs_sequential": verdict, "runs": costs,
                            "iterations": {k: v for k, v in trace.items()},
                            "regularisers": {r.name: regularisers(cfg, r.name) for r in plan.runs(cfg)}}
