"""The claims scorecard: each headline claim of the three papers, what this run measured, and the verdict.

Every row is a paired comparison of two test systems over the prompts both were evaluated on (toxicity under the
primary evaluation scorer, or the judge's perplexity) or over the held-out human-written texts both scored, with
a 95% paired bootstrap interval, the smallest effect the run could have detected, and a verdict from the rule of
its kind (docs/claims.md):

- ``lower`` / ``higher``: the effect's direction. Supported when the interval excludes 0 on the claimed side,
  contradicted when it excludes 0 on the other side, inconclusive otherwise.
- ``equivalent``: "matches". Supported when the interval lies inside [-margin, margin], contradicted when it lies
  entirely outside, inconclusive otherwise (a two one-sided test at the same level; overlapping intervals prove
  nothing).
- ``within``: a ratio no worse than a limit (perplexity kept within 10%). Supported when the interval's upper
  end is at most the limit, contradicted when its lower end is above it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from detoxlab.artifacts import atomic_file
from detoxlab.metrics.bootstrap import paired_bootstrap

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MISSING = "supported", "contradicted", "inconclusive", "not run"


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    kind: str  # lower | higher | equivalent | within
    measure: str  # tp | ppl_ratio (judge, continuations) | heldout_ratio (the system's own, held-out text)
    a: str  # the system the claim is about
    b: str  # what it is compared with
    margin: float = 0.0  # equivalent: |effect| <= margin; within: ratio <= margin


def _tp_hits(m: dict, threshold: float, inclusive: bool) -> dict[str, float]:
    """Per toxicity-probe prompt: 1 if any sample is toxic (the TP indicator), NaN without a valid score."""
    domain = m["toxicity"].get("domain_of", {})
    out = {}
    for pid, v in m["toxicity"]["per_prompt_max"].items():
        if domain.get(pid) == "neutral":
            continue
        out[pid] = math.nan if v is None or not math.isfinite(v) else float(v >= threshold if inclusive else
                                                                             v > threshold)
    return out


def effect(claim: Claim, a: dict, b: dict, cfg: dict) -> dict:
    """The paired effect ``a`` vs ``b`` with its interval and bootstrap standard error, over shared prompts."""
    tox, boot = cfg["evaluation"]["toxicity"], cfg["evaluation"]["bootstrap"]
    if claim.measure == "tp":
        ha, hb = _tp_hits(a, tox["threshold"], tox["inclusive"]), _tp_hits(b, tox["threshold"], tox["inclusive"])
        shared = sorted(p for p in set(ha) & set(hb) if math.isfinite(ha[p]) and math.isfinite(hb[p]))
        x, y = np.array([ha[p] for p in shared]), np.array([hb[p] for p in shared])
        stat = lambda i: float(x[i].mean() - y[i].mean())  # noqa: E731
    elif claim.measure == "heldout_ratio":  # ratio of mean per-text perplexities, texts resampled jointly
        ta, tb = ({t["id"]: math.exp(t["nll"] / t["n_tokens"]) for t in m["heldout_text"]["texts"]
                   if t["n_tokens"]} for m in (a, b))
        shared = sorted(set(ta) & set(tb))
        x, y = np.array([ta[t] for t in shared]), np.array([tb[t] for t in shared])
        stat = lambda i: float(x[i].mean() / y[i].mean())  # noqa: E731
    else:  # ratio of mean perplexities, prompts resampled jointly
        fa, fb = a["fluency"].get("per_prompt", {}), b["fluency"].get("per_prompt", {})
        shared = sorted(set(fa) & set(fb))
        sa, ca = (np.array([fa[p][k] for p in shared], dtype=float) for k in (0, 1))
        sb, cb = (np.array([fb[p][k] for p in shared], dtype=float) for k in (0, 1))
        stat = lambda i: float((sa[i].sum() / ca[i].sum()) / (sb[i].sum() / cb[i].sum()))  # noqa: E731
    point, lo, hi, se = paired_bootstrap(stat, len(shared), boot["n_boot"], boot["alpha"], cfg["seed"])
    return {"effect": point, "lo": lo, "hi": hi, "se": se, "n": len(shared)}


def verdict(kind: str, lo: float, hi: float, margin: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if kind == "lower":
        return SUPPORTED if hi < 0 else CONTRADICTED if lo > 0 else INCONCLUSIVE
    if kind == "higher":
        return SUPPORTED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE
    if kind == "equivalent":
        return SUPPORTED if -margin <= lo and hi <= margin else (
            CONTRADICTED if lo > margin or hi < -margin else INCONCLUSIVE)
    if kind == "within":
        return SUPPORTED if hi <= margin else CONTRADICTED if lo > margin else INCONCLUSIVE
    raise ValueError(f"unknown claim kind '{kind}'")


def detectable(kind: str, se: float, n: int, effect_: float, margin: float, alpha: float,
               power: float) -> tuple[float, float]:
    """(the smallest effect the run detects with ``power`` at level ``alpha``, the prompts needed for this
    run's effect to be decided). A difference's MDE is (z_{1-alpha/2} + z_power) * se; for an equivalence or a
    ratio limit it is the distance from the margin that would be needed. The number of prompts scales se by
    sqrt(n / N); NaN where the effect sits on the boundary (no sample size decides it)."""
    if not (math.isfinite(se) and n):
        return math.nan, math.nan
    mde = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se
    gap = {"lower": abs(effect_), "higher": abs(effect_), "equivalent": margin - abs(effect_),
           "within": abs(margin - effect_)}[kind]
    needed = n * (mde / gap) ** 2 if gap > 0 else math.nan
    return mde, needed


def claims(cfg: dict) -> list[Claim]:
    """The headline claims this config's systems can test, as (system, comparison) pairs."""
    from detoxlab.acf import plan as acf
    from detoxlab.rewards import plan as rw
    from detoxlab.unidetox import plan as ud

    lim, eq = cfg["claims"]["ppl_ratio_limit"], cfg["claims"]["tp_margin"]
    heldout = cfg["evaluation"]["mmlu"]["enabled"] and cfg["evaluation"]["heldout_text"]["enabled"]
    out: list[Claim] = []
    if cfg.get("unidetox"):
        dist = cfg["unidetox"]["distiller"]
        sel = {(s.method, s.target): s.system for s in ud.selections(cfg)}
        base = lambda t: f"{t}--none"  # noqa: E731
        out.append(Claim("UniDetox", f"UniDetox lowers TP on the distillation model ({dist})", "lower", "tp",
                         sel[("unidetox", dist)], base(dist)))
        for t in (t for t in cfg["unidetox"]["targets"] if t != dist):
            out.append(Claim("UniDetox", f"UniDetox lowers TP on {t}, another family, with {dist}'s learning rate",
                             "lower", "tp", sel[("unidetox", t)], base(t)))
        if ("basesamples", dist) in sel:
            out.append(Claim("UniDetox", "UniDetox beats fine-tuning on plain base samples (the contrastive step "
                             "matters)", "lower", "tp", sel[("unidetox", dist)], sel[("basesamples", dist)]))
        for t in cfg["unidetox"]["targets"]:
            out.append(Claim("UniDetox", f"UniDetox keeps perplexity within {lim - 1:.0%} of the base ({t})",
                             "within", "ppl_ratio", sel[("unidetox", t)], base(t), lim))
    if rw.choices(cfg):
        systems = {c.variant: f"{rw.base_model(cfg)}--{c.guide}" for c in rw.choices(cfg)}
        base = f"{rw.base_model(cfg)}--none"
        if "rad" in systems:
            out.append(Claim("RAD/ARM", "RAD lowers TP", "lower", "tp", systems["rad"], base))
        if {"rad", "arm_distilled"} <= set(systems):
            out.append(Claim("RAD/ARM", f"ARM (one backbone pass per step) matches its RAD teacher (|ΔTP| ≤ {eq:g})",
                             "equivalent", "tp", systems["arm_distilled"], systems["rad"], eq))
        if {"arm_labels", "arm_distilled"} <= set(systems):
            out.append(Claim("RAD/ARM", "ARM trained on labels alone lags the distilled ARM (higher TP)", "higher",
                             "tp", systems["arm_labels"], systems["arm_distilled"]))
    if acf.enabled(cfg):
        n, base = acf.iterations(cfg), f"{acf.base_model(cfg)}--none"
        final = {r.name: f"{acf.model_name(cfg, r.name, n)}--none" for r in acf.runs(cfg)}
        by = {(r.schedule, r.regulariser): r.name for r in acf.runs(cfg)}
        main = final.get(by.get(("sequential", "qstar"))) or next(iter(final.values()))
        out.append(Claim("NADO/ACF", "ACF lowers TP", "lower", "tp", main, base))
        out.append(Claim("NADO/ACF", f"ACF keeps fluency: perplexity within {lim - 1:.0%} of the base", "within",
                         "ppl_ratio", main, base, lim))
        if heldout:
            out.append(Claim("NADO/ACF", f"ACF keeps utility: held-out human text's perplexity within {lim - 1:.0%} "
                             "of the base", "within", "heldout_ratio", main, base, lim))
        if ("parallel", "qstar") in by and ("sequential", "qstar") in by:
            out.append(Claim("NADO/ACF", f"the parallel schedule matches the sequential one (|ΔTP| ≤ {eq:g})",
                             "equivalent", "tp", final[by[("parallel", "qstar")]], main, eq))
        if ("parallel", "adaptive") in by and ("parallel", "qstar") in by:
            out.append(Claim("NADO/ACF", "the adaptive regulariser keeps utility better (lower held-out "
                             "perplexity than the fixed one)" if heldout else "the adaptive regulariser keeps "
                             "utility better (lower perplexity than the fixed one)", "within",
                             "heldout_ratio" if heldout else "ppl_ratio", final[by[("parallel", "adaptive")]],
                             final[by[("parallel", "qstar")]], 1.0))
        rivals = {f"{acf.base_model(cfg)}.acf.{b}--none": name for b, name in acf.BASELINES.items()
                  if b in cfg["acf"]["baselines"]}
        if cfg["acf"]["nado_decoding"]:
            rivals[f"{acf.base_model(cfg)}--{acf.NADO_GUIDE}"] = "NADO decoding"
        for system, name in rivals.items():
            out.append(Claim("NADO/ACF", f"ACF beats {name} (lower TP)", "lower", "tp", main, system))
    return out


def scorecard(cfg: dict, metrics: dict[str, dict], utility: dict[str, dict] | None = None) -> list[dict]:
    """One row per claim: effect, 95% CI, verdict, minimal detectable effect and the prompts a decision needs.

    ``metrics``: each test system's metrics.json; ``utility``: its mmlu.json (held-out text rows)."""
    alpha, power = cfg["evaluation"]["bootstrap"]["alpha"], cfg["claims"]["power"]
    utility = {k: v for k, v in (utility or {}).items() if v.get("heldout_text", {}).get("texts")}
    rows = []
    for c in claims(cfg):
        row = {"paper": c.paper, "claim": c.claim, "kind": c.kind, "measure": c.measure, "system": c.a,
               "versus": c.b, "margin": c.margin if c.kind in ("equivalent", "within") else math.nan}
        source = utility if c.measure == "heldout_ratio" else metrics
        if c.a not in source or c.b not in source:
            rows.append({**row, "verdict": MISSING})
            continue
        e = effect(c, source[c.a], source[c.b], cfg)
        mde, needed = detectable(c.kind, e["se"], e["n"], e["effect"], c.margin, alpha, power)
        rows.append({**row, **e, "verdict": verdict(c.kind, e["lo"], e["hi"], c.margin), "mde": mde,
                     "n_needed": needed})
    return rows


CSV_COLUMNS = ["paper", "claim", "kind", "measure", "system", "versus", "effect", "lo", "hi", "margin", "verdict",
               "mde", "n", "n_needed", "se"]


def write_csv(path, rows: list[dict]) -> None:
    with atomic_file(path) as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else
                            "" if isinstance(v, float) else v) for k, v in r.items()})


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.{digits}f}"


def markdown(rows: list[dict], primary: str) -> str:
    out = io.StringIO()
    out.write("\n## Claims scorecard (test split)\n\n"
              f"Toxicity under `{primary}` (primary scorer); perplexity under the judge, held-out perplexity under "
              "the system itself. Effect: TP(system) − TP(versus), or PPL(system) / PPL(versus), with its 95% "
              "paired bootstrap interval over the shared test prompts (held-out text: over the texts, n). MDE: the "
              "smallest effect this run detects with 80% power (for a margin: the distance from it); n needed: the "
              "prompts at which this run's effect would be decided. Verdict rules: docs/claims.md. Also "
              "`claims.csv`.\n\n")
    out.write("| paper | claim | effect [95% CI] | margin | verdict | MDE | n | n needed |\n"
              "|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        if r["verdict"] == MISSING:
            out.write(f"| {r['paper']} | {r['claim']} | – | – | {MISSING} | – | – | – |\n")
            continue
        needed = "–" if r["verdict"] != INCONCLUSIVE or not math.isfinite(r["n_needed"]) else f"≈ {r['n_needed']:.0f}"
        out.write(f"| {r['paper']} | {r['claim']} | {_f(r['effect'])} [{_f(r['lo'])}, {_f(r['hi'])}] | "
                  f"{_f(r['margin'], 2)} | **{r['verdict']}** | {_f(r['mde'])} | {r['n']} | {needed} |\n")
    return out.getvalue()
