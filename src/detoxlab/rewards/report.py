"""The report's RAD/ARM section: reward models, the trade-off curves over beta (paper Fig. 2/3), whether the
distilled ARM matches its RAD teacher, time per token, and the reward-distribution plot (paper Fig. 5)."""

from __future__ import annotations

import io
from pathlib import Path

from detoxlab.plotting import pyplot, save_png
from detoxlab.rewards import plan
from detoxlab.unidetox.report import _ci, _f


def _base_system(cfg: dict) -> str:
    return f"{plan.base_model(cfg)}--none"


def reward_table(models: dict[str, dict]) -> str:
    out = io.StringIO()
    out.write("| reward model | kind | objective | regulariser | baseline | validation MSE | MSE to teacher | "
              "marginal spread | trained params | train s |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for name, m in models.items():
        v = plan.VARIANTS[name.split(".", 1)[1]]
        val, tr = m["training"]["validation"], m["training"]
        mse = ", ".join(f"{k} {_f(x, 4)}" for k, x in val.get("mse", {}).items())
        out.write(f"| {name} | {v.kind} | {v.objective} | {'yes' if v.regulariser else 'no'} | "
                  f"{'yes' if v.baseline else 'no'} | {mse} | {_f(val.get('teacher_mse'), 4)} | "
                  f"{_f(val.get('marginal_spread'), 4)} | {tr['n_trainable']} | {_f(tr['seconds'], 1)} |\n")
    return out.getvalue()


def lr_table(models: dict[str, dict]) -> str:
    """Per reward model: every learning rate of its grid with its validation loss, and the one kept."""
    out = io.StringIO()
    out.write("| reward model | chosen on | validation loss per lr | chosen lr |\n|---|---|---|---|\n")
    for name, m in models.items():
        sel = m["training"].get("lr_selection")
        if not sel:
            continue
        runs = ", ".join(f"{r['lr']:g}: " + ("diverged" if r.get("diverged") else _f(r["validation_loss"], 4))
                         for r in sel["runs"])
        out.write(f"| {name} | {sel['criterion']} | {runs} | {sel['chosen']:g} |\n")
    return out.getvalue()


def curve_table(cfg: dict, validation: dict[str, dict]) -> str:
    base = plan.base_model(cfg)
    out = io.StringIO()
    out.write("| variant | k | beta | TP [95% CI] | EMT [95% CI] | PPL [95% CI] | dist-2 | s/token | rows/step |\n"
              "|---|---|---|---|---|---|---|---|---|\n")
    ref = validation.get(_base_system(cfg))
    if ref:
        tox, flu = ref["toxicity"]["overall"], ref["fluency"]
        out.write(f"| base (nucleus) | – | – | {_ci(tox, 'tp')} | {_ci(tox, 'emt')} | {_f(flu['ppl'], 1)} "
                  f"[{_f(flu['ppl_lo'], 1)}, {_f(flu['ppl_hi'], 1)}] | {_f(ref['diversity']['dist2'])} | "
                  f"{_f(ref['cost']['seconds_per_token'], 4)} | 0 |\n")
    for p in plan.grid(cfg, plan.MAIN_ATTRIBUTE):
        m = validation.get(f"{base}--{p.guide}")
        if not m:
            continue
        tox, flu = m["toxicity"]["overall"], m["fluency"]
        out.write(f"| {plan.VARIANTS[p.variant].display} | {p.k} | {p.beta:g} | {_ci(tox, 'tp')} | "
                  f"{_ci(tox, 'emt')} | {_f(flu['ppl'], 1)} [{_f(flu['ppl_lo'], 1)}, {_f(flu['ppl_hi'], 1)}] | "
                  f"{_f(m['diversity']['dist2'])} | {_f(m['cost']['seconds_per_token'], 4)} | "
                  f"{m['cost'].get('backbone_rows_per_step', '–')} |\n")
    return out.getvalue()


def tracking(cfg: dict, validation: dict[str, dict], student: str = "arm_distilled") -> tuple[str, dict]:
    """At each (k, beta): does the student match its teacher? An equivalence decided by the paired TP
    difference's 95% interval against ``claims.tp_margin`` (docs/claims.md), prompt by prompt on validation."""
    from detoxlab import claims

    base, margin = plan.base_model(cfg), cfg["claims"]["tp_margin"]
    pts = {(p.k, p.beta): p for p in plan.grid(cfg, plan.MAIN_ATTRIBUTE) if p.variant == plan.TEACHER}
    rows = []
    for (k, beta), tp in sorted(pts.items()):
        t = validation.get(f"{base}--{tp.guide}")
        s = validation.get(f"{base}--{plan.GuidePoint(tp.attribute, student, k, beta).guide}")
        if not t or not s:
            continue
        claim = claims.Claim("RAD/ARM", "ARM matches RAD", "equivalent", "tp", "student", "teacher", margin)
        e = claims.effect(claim, s, t, cfg)
        rows.append({"k": k, "beta": beta, "teacher_tp": t["toxicity"]["overall"]["tp"],
                     "student_tp": s["toxicity"]["overall"]["tp"], "difference": e["effect"], "lo": e["lo"],
                     "hi": e["hi"], "verdict": claims.verdict("equivalent", e["lo"], e["hi"], margin)})
    out = io.StringIO()
    out.write(f"| k | beta | RAD TP | ARM distilled TP | TP(ARM) − TP(RAD) [95% paired CI] | matches (±{margin:g}) |\n"
              "|---|---|---|---|---|---|\n")
    for r in rows:
        out.write(f"| {r['k']} | {r['beta']:g} | {_f(r['teacher_tp'])} | {_f(r['student_tp'])} | "
                  f"{_f(r['difference'])} [{_f(r['lo'])}, {_f(r['hi'])}] | {r['verdict']} |\n")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (claims.SUPPORTED, claims.CONTRADICTED,
                                                                  claims.INCONCLUSIVE)}
    out.write(f"\nThe distilled ARM matches its RAD teacher within ±{margin:g} TP at {counts[claims.SUPPORTED]} of "
              f"{len(rows)} grid points; it differs at {counts[claims.CONTRADICTED]}, and "
              f"{counts[claims.INCONCLUSIVE]} are inconclusive at this sample size (validation prompts). The test "
              "split's verdict is in the claims scorecard.\n")
    return out.getvalue(), {"n": len(rows), "rows": rows, **counts}


def _beta_curve(ax, betas: list[float], xs: list[float], ys: list[tuple[float, float, float]], label: str) -> None:
    """One variant's points across beta: (value, lo, hi) against perplexity, each point labelled by its beta."""
    vals = [y[0] for y in ys]
    ax.errorbar(xs, vals, yerr=[[max(v - lo, 0) for v, lo, _ in ys], [max(hi - v, 0) for v, _, hi in ys]],
                marker="o", capsize=2, label=label)
    for beta, x, v in zip(betas, xs, vals):
        ax.annotate(f"β={beta:g}", (x, v), textcoords="offset points", xytext=(4, 3), fontsize=7)


def plot_tradeoff(cfg: dict, validation: dict[str, dict], path: str | Path) -> None:
    plt = pyplot()

    base = plan.base_model(cfg)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ref = validation.get(_base_system(cfg))
    for ax, metric in zip(axes, ("tp", "emt")):
        for variant in plan.variants(cfg, plan.MAIN_ATTRIBUTE):
            for k in sorted({p.k for p in plan.grid(cfg, plan.MAIN_ATTRIBUTE)}):
                pts = [p for p in plan.grid(cfg, plan.MAIN_ATTRIBUTE) if p.variant == variant and p.k == k]
                ms = [(p, validation.get(f"{base}--{p.guide}")) for p in pts]
                ms = [(p, m) for p, m in ms if m]
                if not ms:
                    continue
                tox = [m["toxicity"]["overall"] for _, m in ms]
                _beta_curve(ax, [p.beta for p, _ in ms], [m["fluency"]["ppl"] for _, m in ms],
                            [(t[metric], t[metric + "_lo"], t[metric + "_hi"]) for t in tox],
                            f"{plan.VARIANTS[variant].display}, k={k}")
        if ref:
            ax.scatter([ref["fluency"]["ppl"]], [ref["toxicity"]["overall"][metric]], marker="*", s=160,
                       color="black", label="base (nucleus sampling)", zorder=5)
        ax.set_xlabel("conditional perplexity under the judge")
        ax.set_ylabel({"tp": "toxicity probability", "emt": "expected maximum toxicity"}[metric])
        ax.grid(alpha=0.3)
    axes[0].set_title("RAD / ARM trade-off across beta (validation prompts, 95% CIs)")
    axes[1].legend(fontsize=7)
    save_png(fig, path, dpi=120)


def plot_reward_distribution(models: dict[str, dict], path: str | Path) -> None:
    """Predicted scores of every validation prefix per reward model (the shape ARM's regulariser changes)."""
    plt = pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, m in models.items():
        h = m["training"]["validation"].get("prefix_score_histogram")
        if not h:
            continue
        edges, counts = np.array(h["edges"]), np.array(h["counts"], dtype=float)
        ax.step(edges[:-1], counts / max(counts.sum(), 1), where="post", label=name)
    ax.set_xlabel("predicted attribute score of a prefix (clamped to [0, 1] when decoding)")
    ax.set_ylabel("fraction of validation prefixes")
    ax.set_title("Reward distribution per reward model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, path, dpi=120)


def section(cfg: dict, metrics: dict[str, dict], validation: dict[str, dict], models: dict[str, dict],
            out_dir: str | Path, curves: dict[str, dict[str, dict]] | None = None) -> tuple[str, dict]:
    """The RAD/ARM section; ``curves`` maps every other attribute to its evaluation set's metrics by system."""
    out = io.StringIO()
    out.write("\n## RAD and ARM: reward-guided decoding\n\n")
    out.write(f"Guided model: `{plan.base_model(cfg)}`; reward models on the first "
              f"{cfg['guided']['reward_model']['layers']} blocks of `{cfg['guided']['reward_model']['backbone']}`"
              " (same tokenizer). Decoding: top-k of the base logits, then `z + beta (1 - clamp(r))` on the k "
              "survivors. RAD runs ONE reward-model call per step on B x k rows (rows/step = k); ARM one call on "
              "B rows.\n\n### Reward models\n\n")
    out.write(reward_table(models))
    out.write("\nLearning rates: one model per lr of the grid (same data, batches and schedule), the one with the "
              "lowest validation loss of its own objective kept; the losses are those objectives' data terms "
              "on the reward data's validation split (comparable within a row, not across objectives).\n\n")
    out.write(lr_table(models))
    out.write("\n### Trade-off across beta (validation split)\n\n")
    out.write(curve_table(cfg, validation))
    text, verdict = tracking(cfg, validation)
    out.write("\n### Does the distilled ARM match its RAD teacher?\n\n" + text)
    base = _base_system(cfg)
    chosen = [(c, metrics.get(f"{plan.base_model(cfg)}--{c.guide}")) for c in plan.choices(cfg)]
    if metrics.get(base) and any(m for _, m in chosen):
        out.write("\n### Test split (beta chosen on validation)\n\n| system | TP [95% CI] | EMT [95% CI] | PPL | "
                  "s/token |\n|---|---|---|---|---|\n")
        for label, m in [("base", metrics[base])] + [(plan.VARIANTS[c.variant].display, m) for c, m in chosen if m]:
            tox = m["toxicity"]["overall"]
            out.write(f"| {label} | {_ci(tox, 'tp')} | {_ci(tox, 'emt')} | {_f(m['fluency']['ppl'], 1)} | "
                      f"{_f(m['cost']['seconds_per_token'], 4)} |\n")
    plot_tradeoff(cfg, validation, Path(out_dir) / "guided_tradeoff.png")
    plot_reward_distribution(models, Path(out_dir) / "reward_distribution.png")
    out.write("\n![trade-off](guided_tradeoff.png)\n\n![reward distribution](reward_distribution.png)\n")
    verdict = {**verdict, "curves": {}}
    for name in plan.curve_attributes(cfg):
        text, verdict["curves"][name] = curve_section(cfg, name, (curves or {}).get(name, {}), out_dir)
        out.write(text)
    return out.getvalue(), verdict


def _rate(m: dict, group: str) -> tuple[float, float, float] | None:
    r = m["toxicity"].get("sample_rates", {}).get(group)
    return (r["below"], r["below_lo"], r["below_hi"]) if r else None


def _curve_rows(cfg: dict, name: str, metrics: dict[str, dict]) -> list[tuple[str, plan.GuidePoint | None, dict]]:
    base = plan.base_model(cfg)
    rows = [("base (nucleus)", None, metrics.get(f"{base}--{plan.NO_GUIDE}"))]
    rows += [(plan.VARIANTS[p.variant].display, p, metrics.get(f"{base}--{p.guide}")) for p in plan.grid(cfg, name)]
    return [(label, p, m) for label, p, m in rows if m]


def _groups(cfg: dict, name: str, rows) -> list[str]:
    return plan.attribute(cfg, name)["evaluation"]["groups"] or sorted(
        {g for _, _, m in rows for g in m["toxicity"].get("sample_rates", {})})


def curve_section(cfg: dict, name: str, metrics: dict[str, dict], out_dir: str | Path) -> tuple[str, dict]:
    """An attribute evaluated as a curve over beta on its own prompts (the ARM paper's sentiment task)."""
    at, ev = plan.resolved(cfg, name), plan.attribute(cfg, name)["evaluation"]
    desired = ev["desired"]
    rows = _curve_rows(cfg, name, metrics)
    groups = _groups(cfg, name, rows)
    out = io.StringIO()
    out.write(f"\n### Attribute `{name}`: {desired} rate vs perplexity across beta\n\n"
              f"Scorer `{at['scorer']['type']}` (a continuation is {desired} when its score is strictly below "
              f"{plan.threshold(cfg, name):g}); prompts `{at['prompts'].get('path')}`, "
              f"{ev['split']} split, groups {', '.join(groups)}; reward models trained on this attribute's labels. "
              "Rates are the fraction of a prompt's continuations, averaged over prompts, with 95% bootstrap "
              "intervals over prompts.\n\n")
    out.write("| system | k | beta | " + " | ".join(f"{desired} rate, {g} prompts [95% CI]" for g in groups)
              + " | PPL [95% CI] | dist-2 | s/token |\n|" + "---|" * (len(groups) + 6) + "\n")
    summary = []
    for label, p, m in rows:
        rates = {g: _rate(m, g) for g in groups}
        flu = m["fluency"]
        cells = [f"{_f(r[0])} [{_f(r[1])}, {_f(r[2])}]" if r else "–" for r in rates.values()]
        out.write(f"| {label} | {p.k if p else '–'} | {f'{p.beta:g}' if p else '–'} | " + " | ".join(cells)
                  + f" | {_f(flu['ppl'], 1)} [{_f(flu['ppl_lo'], 1)}, {_f(flu['ppl_hi'], 1)}] | "
                  f"{_f(m['diversity']['dist2'])} | {_f(m['cost']['seconds_per_token'], 4)} |\n")
        summary.append({"system": m["system"], "variant": p.variant if p else None, "k": p.k if p else None,
                        "beta": p.beta if p else None, "ppl": flu["ppl"],
                        "rates": {g: r[0] if r else None for g, r in rates.items()}})
    plot_curve(cfg, name, rows, groups, Path(out_dir) / f"{name}_curve.png")
    out.write(f"\n![{name} curve]({name}_curve.png)\n")
    return out.getvalue(), {"attribute": name, "rows": summary}


def plot_curve(cfg: dict, name: str, rows, groups: list[str], path: str | Path) -> None:
    plt = pyplot()

    desired = plan.attribute(cfg, name)["evaluation"]["desired"]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.8), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for label in dict.fromkeys(label for label, p, _ in rows if p):
            for k in sorted({p.k for lab, p, _ in rows if p and lab == label}):
                pts = [(p, m) for lab, p, m in rows if p and lab == label and p.k == k and _rate(m, group)]
                if not pts:
                    continue
                _beta_curve(ax, [p.beta for p, _ in pts], [m["fluency"]["ppl"] for _, m in pts],
                            [_rate(m, group) for _, m in pts], f"{label}, k={k}")
        for label, p, m in rows:
            if p is None and _rate(m, group):
                ax.scatter([m["fluency"]["ppl"]], [_rate(m, group)[0]], marker="*", s=160, color="black",
                           label=label, zorder=5)
        ax.set_title(f"{group} prompts")
        ax.set_xlabel("conditional perplexity under the judge")
        ax.set_ylabel(f"{desired} rate of continuations")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Attribute '{name}': {desired} rate vs fluency across beta (95% CIs)")
    save_png(fig, path, dpi=120)
