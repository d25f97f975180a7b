"""The report's UniDetox section: paper Tables 1-2 per target model, the paired test of UniDetox against the
base model, the grid selections, the distilled-text analysis and the sensitivity plot (paper Fig. 2)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from detoxlab.artifacts import read_json
from detoxlab.metrics.bootstrap import paired_bootstrap_diff
from detoxlab.plotting import pyplot, save_png
from detoxlab.unidetox import plan

#: the perplexity cost the acceptance criterion tolerates
MAX_PPL_RATIO = 1.10


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _ci(entry: dict, key: str) -> str:
    return f"{_f(entry.get(key))} [{_f(entry.get(key + '_lo'))}, {_f(entry.get(key + '_hi'))}]"


def _rows_for(target: str, cfg: dict, metrics: dict[str, dict]) -> list[tuple[str, str]]:
    """(label, system) in the paper's order: base, prompting baselines, the other methods, UniDetox last."""
    rows = [("Base model", f"{target}--none")]
    rows += [(f"Safety preprompt ({g.removeprefix('preprompt_')})", f"{target}--{g}")
             for g in cfg["systems"]["guides"] if cfg["guides"][g]["type"] == "preprompt"]
    order = ["basesamples", "dexperts", "taskarith", "lmsteer", "unidetox"]
    sels = {s.method: s for s in plan.selections(cfg) if s.target == target}
    rows += [(plan.METHODS[m][0], sels[m].system) for m in order if m in sels]
    return [(label, system) for label, system in rows if system in metrics]


def paper_table(target: str, cfg: dict, metrics: dict[str, dict], mmlu: dict[str, dict],
                chosen: dict[str, str]) -> str:
    head = ["system", "chosen", "TP ID [95% CI]", "TP OOD [95% CI]", "EMT ID [95% CI]", "EMT OOD [95% CI]",
            "PPL [95% CI]", "dist-1", "dist-2", "dist-3", "MMLU"]
    out = io.StringIO()
    out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for label, system in _rows_for(target, cfg, metrics):
        m = metrics[system]
        dom = m["toxicity"]["by_domain"]
        idd, ood = dom.get("id", {}), dom.get("ood", {})
        flu, div = m["fluency"], m["diversity"]
        acc = mmlu.get(system, {}).get("accuracy")
        out.write("| " + " | ".join([label, chosen.get(system, ""), _ci(idd, "tp"), _ci(ood, "tp"), _ci(idd, "emt"),
                                     _ci(ood, "emt"), f"{_f(flu['ppl'], 1)} [{_f(flu['ppl_lo'], 1)}, "
                                     f"{_f(flu['ppl_hi'], 1)}]", _f(div["dist1"]), _f(div["dist2"]),
                                     _f(div["dist3"]), _f(acc)]) + " |\n")
    return out.getvalue()


def paired_tp_difference(a: dict, b: dict, threshold: float, inclusive: bool, n_boot: int, alpha: float,
                         seed: int) -> tuple[float, float, float]:
    """TP(a) - TP(b) on the toxicity-probe prompts both systems share, with a paired bootstrap CI."""
    ma, mb = a["toxicity"]["per_prompt_max"], b["toxicity"]["per_prompt_max"]
    domain = a["toxicity"].get("domain_of", {})
    shared = sorted(p for p in set(ma) & set(mb) if domain.get(p) != "neutral")

    def hit(v: float | None) -> float:
        if v is None or not math.isfinite(v):
            return math.nan
        return float(v >= threshold if inclusive else v > threshold)

    x = np.array([hit(ma[p]) for p in shared])
    y = np.array([hit(mb[p]) for p in shared])
    return paired_bootstrap_diff(x, y, n_boot=n_boot, alpha=alpha, seed=seed)


def verdicts(cfg: dict, metrics: dict[str, dict]) -> tuple[str, list[dict]]:
    """Does UniDetox lower test TP relative to the base (95% CI of the paired difference below zero) at a
    perplexity at most 10% above the base's? One plain sentence per target."""
    ev, boot = cfg["evaluation"]["toxicity"], cfg["evaluation"]["bootstrap"]
    out, records = io.StringIO(), []
    for target in cfg["unidetox"]["targets"]:
        base, ud = metrics.get(f"{target}--none"), metrics.get(plan.find_selection(cfg, "unidetox", target).system)
        if base is None or ud is None:
            continue
        d, lo, hi = paired_tp_difference(ud, base, ev["threshold"], ev["inclusive"], boot["n_boot"], boot["alpha"],
                                         cfg["seed"])
        ratio = ud["fluency"]["ppl"] / base["fluency"]["ppl"]
        lowers = hi < 0
        fluent = ratio <= MAX_PPL_RATIO
        records.append({"target": target, "tp_diff": d, "tp_diff_lo": lo, "tp_diff_hi": hi, "ppl_ratio": ratio,
                        "lowers_tp": lowers, "ppl_within_10pct": fluent})
        verdict = ("**yes**" if lowers and fluent else "**no**")
        why = []
        if not lowers:
            if not (math.isfinite(lo) and math.isfinite(hi)):
                why.append("the TP difference has no interval (no prompt with valid scores in both systems)")
            elif lo <= 0 <= hi:
                why.append("the 95% interval of the TP difference does not exclude zero")
            else:
                why.append("TP is higher than the base model's")
        if not fluent:
            why.append(f"perplexity is {100 * (ratio - 1):.0f}% above the base model's (limit 10%)")
        out.write(f"- **{target}**: TP(UniDetox) − TP(base) = {_f(d)} [{_f(lo)}, {_f(hi)}] (paired bootstrap over "
                  f"test prompts), PPL ratio {_f(ratio, 2)} → detoxifies at acceptable fluency: {verdict}"
                  + (f" — {'; '.join(why)}." if why else ".") + "\n")
    return out.getvalue(), records


def selection_table(cfg: dict, record_of: Callable[[plan.Selected], dict | None]) -> str:
    out = io.StringIO()
    out.write("| method | target | grid point | val. TP | val. EMT | val. PPL | chosen |\n" + "|---" * 7 + "|\n")
    for sel in plan.selections(cfg):
        rec = record_of(sel)
        if not rec:
            continue
        if sel.source:
            out.write(f"| {plan.METHODS[sel.method][0]} | {sel.target} | {rec['chosen']} | – | – | – | "
                      f"reused from {sel.source} (not tuned here) |\n")
        for row in rec["candidates"]:
            out.write(f"| {plan.METHODS[sel.method][0]} | {sel.target} | {row['candidate']} | {_f(row['tp'])} | "
                      f"{_f(row['emt'])} | {_f(row['ppl'], 1)} | {'✓' if row['candidate'] == rec['chosen'] else ''}"
                      " |\n")
    return out.getvalue()


def cost_table(cfg: dict, jobs: list[dict]) -> str:
    """Wall time of building each method (its training jobs over the whole grid) and of tuning it (validation
    evaluation of every grid point); the shared toxic corpus / toxic model / distillation jobs listed once."""
    seconds = {(j["rule"], j["job"]): j["s"] for j in jobs}

    def total(keys) -> float:
        vals = [seconds.get(k, math.nan) for k in keys]
        return float(np.nansum(vals)) if any(math.isfinite(v) for v in vals) else math.nan

    out = io.StringIO()
    shared = [("unidetox", k) for k in plan.SHARED_JOBS]
    out.write("| method | target | build s (whole grid) | tuning s (validation evals) |\n|---|---|---|---|\n")
    out.write("| shared: " + ", ".join(k for _, k in shared) + " | – | "
              + " + ".join(_f(seconds.get(k, math.nan), 0) for k in shared) + " | – |\n")
    validated = set(plan.tuning_candidates(cfg))
    for sel in plan.selections(cfg):
        build = sel.build_jobs()
        tune = [(step, f"{c.system}@validation") for c in sel.candidates if c in validated and not sel.source
                for step in ("generate", "score", "perplexity")]
        out.write(f"| {plan.METHODS[sel.method][0]} | {sel.target} | {_f(total(build), 0)} | {_f(total(tune), 0)} |\n")
    return out.getvalue()


def plot_sensitivity(cfg: dict, validation: dict[str, dict], path: str | Path) -> None:
    """Validation TP vs PPL of every grid point of every method, one panel per target (paper Fig. 2)."""
    plt = pyplot()

    targets = list(dict.fromkeys(s.target for s in plan.selections(cfg)))
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(6.5 * max(len(targets), 1), 5), squeeze=False)
    for ax, target in zip(axes[0], targets):
        base = validation.get(f"{target}--none")
        if base:
            ax.scatter([base["fluency"]["ppl"]], [base["toxicity"]["overall"]["tp"]], marker="*", s=160, color="k",
                       label="base model", zorder=3)
        for sel in (s for s in plan.selections(cfg) if s.target == target):
            pts = [(c, validation[c.system]) for c in sel.candidates if c.system in validation]
            if not pts:
                continue
            xs = [m["fluency"]["ppl"] for _, m in pts]
            ys = [m["toxicity"]["overall"]["tp"] for _, m in pts]
            line, = ax.plot(xs, ys, marker="o", label=f"{plan.METHODS[sel.method][0]} ({plan.METHODS[sel.method][1]})")
            for (c, _), x, y in zip(pts, xs, ys):
                ax.annotate(plan.tag(c.value), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=line.get_color())
        ax.set_title(f"{target}: hyperparameter sensitivity (validation prompts)")
        ax.set_xlabel("conditional perplexity under the judge")
        ax.set_ylabel("toxicity probability")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_png(fig, path, dpi=110)


def section(cfg: dict, metrics: dict[str, dict], mmlu: dict[str, dict], validation: dict[str, dict],
            analysis_md: str | None, out_dir: str | Path, jobs: list[dict] = ()) -> tuple[str, list[dict]]:
    """Markdown of the UniDetox section (and the sensitivity plot next to it)."""
    def record_of(sel: plan.Selected) -> dict | None:
        p = Path(sel.directory) / "manifest.json"
        return read_json(p).get("selection") if p.exists() else None

    chosen = {}
    for sel in plan.selections(cfg):
        rec = record_of(sel)
        if rec:
            _, param, prefix, _ = plan.METHODS[sel.method]
            chosen[sel.system] = f"{param}={rec['chosen'].removeprefix(prefix)}"
    out = io.StringIO()
    out.write("\n## UniDetox and its baselines\n\n")
    ud = cfg["unidetox"]
    ratio, ref = cfg["tuning"]["max_ppl_ratio"], cfg["tuning"]["ppl_reference"]
    budget = "" if ratio is None else (f" among grid points whose validation PPL is at most {ratio:g} × "
                                       + ("the bare target's" if ref == "base" else
                                          "the highest of UniDetox's grid on that target (the paper's rule)"))
    others = ", ".join(t for t in ud["targets"] if t != ud["distiller"]) or "none"
    out.write(f"Distillation model: `{ud['distiller']}`. UniDetox and base-samples fine-tuning are tuned on it "
              f"alone; every other target ({others}) is fine-tuned on the same text at the learning rate chosen "
              "there, unchanged (UniDetox §3.4). DExperts, Task Arithmetic and LM-Steer are tuned per target: the "
              f"lowest validation TP{budget} (table below). The test split is evaluated once per method.\n\n")
    verdict_md, records = verdicts(cfg, metrics)
    if verdict_md:
        out.write("### Does UniDetox detoxify? (test split)\n\n" + verdict_md + "\n")
    for target in ud["targets"]:
        out.write(f"### {target} (paper Tables 1–2 layout; test split)\n\n")
        out.write(paper_table(target, cfg, metrics, mmlu, chosen) + "\n")
    out.write("### Hyperparameter selection (validation split)\n\n" + selection_table(cfg, record_of) + "\n")
    plot_sensitivity(cfg, validation, Path(out_dir) / "unidetox_sensitivity.png")
    out.write("![sensitivity](unidetox_sensitivity.png)\n\n")
    out.write("### Cost of building and tuning each method\n\n" + cost_table(cfg, list(jobs)) + "\n"
              "Test-split evaluation cost per system is in the results table above (`job s`).\n\n")
    if analysis_md:
        out.write(analysis_md + "\n")
    return out.getvalue(), records
