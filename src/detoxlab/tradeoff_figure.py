"""The report's main figure: toxicity against fluency for every test system, readable at a glance.

One panel per base model (its systems share a judge, so their perplexities are comparable; across judges they
are not). Method families have their own colour and marker, points are numbered with a key beside the panel
(no labels piled on one cluster), perplexity is on a log axis, and the Pareto front (no other system is both less
toxic and more fluent) is drawn as a step line.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from detoxlab.plotting import pyplot, save_png

#: family -> (colour, marker)
FAMILIES = {
    "base model": ("black", "*"),
    "prompting": ("tab:gray", "P"),
    "UniDetox and its baselines": ("tab:blue", "o"),
    "reward-guided decoding": ("tab:orange", "s"),
    "NADO / ACF": ("tab:green", "D"),
}
#: name part -> short label (first match wins)
SHORT = [("preprompt_long", "long preprompt"), ("preprompt_short", "short preprompt"), (".unidetox", "UniDetox"),
         (".basesamples", "base samples FT"), ("dexperts", "DExperts"), (".taskarith", "Task Arithmetic"),
         (".lmsteer", "LM-Steer"), ("toxicity.rad", "RAD"), ("toxicity.arm_distilled", "ARM (distilled)"),
         ("toxicity.arm_labels", "ARM (labels)"), ("toxicity.arm_noreg", "ARM (no reg.)"),
         ("toxicity.arm_nobaseline", "ARM (no reg., no baseline)"), (".acf.sequential", "ACF sequential"),
         (".acf.parallel", "ACF parallel"), (".acf.adaptive", "ACF adaptive"), (".acf.filtering", "filtering FT"),
         (".acf.rl", "RL"), (".acf.cls_reg", "classification FT + reg."), (".acf.cls", "classification FT"),
         ("acf.nado", "NADO decoding")]


def family(model: str, guide: str) -> str:
    if guide.startswith("preprompt"):
        return "prompting"
    if guide.startswith("toxicity."):
        return "reward-guided decoding"
    if ".acf." in model or guide.startswith("acf."):
        return "NADO / ACF"
    if "." in model or guide.startswith("dexperts"):
        return "UniDetox and its baselines"
    return "base model"


def short_label(model: str, guide: str) -> str:
    name = f"{model}--{guide}"
    return next((label for part, label in SHORT if part in name), "base model" if guide == "none" else guide)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower-or-equal on both axes, lower on one), by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(u <= x and v <= y and (u < x or v < y) for j, (u, v) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def _finite(*vals: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals)


def plot(rows: list[dict], path: str | Path) -> None:
    plt = pyplot()
    panels: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if _finite(r["tp"], r["ppl"]) and r["ppl"] > 0:
            panels[r["model"].split(".", 1)[0]].append(r)
    names = sorted(panels, key=lambda m: -len(panels[m])) or ["(no systems)"]
    fig, axes = plt.subplots(1, len(names), figsize=(8.5 * len(names), 6.2), squeeze=False)
    for ax, base in zip(axes[0], names):
        rs = sorted(panels.get(base, []), key=lambda r: (list(FAMILIES).index(family(r["model"], r["guide"])),
                                                         r["tp"]))
        key = []
        for n, r in enumerate(rs, 1):
            colour, marker = FAMILIES[family(r["model"], r["guide"])]
            xerr = [[max(r["ppl"] - r["ppl_lo"], 0)], [max(r["ppl_hi"] - r["ppl"], 0)]] if _finite(
                r["ppl_lo"], r["ppl_hi"]) else None
            yerr = [[max(r["tp"] - r["tp_lo"], 0)], [max(r["tp_hi"] - r["tp"], 0)]] if _finite(
                r["tp_lo"], r["tp_hi"]) else None
            ax.errorbar([r["ppl"]], [r["tp"]], xerr=xerr, yerr=yerr, fmt=marker, color=colour, ecolor=colour,
                        elinewidth=0.8, alpha=0.85, capsize=2, markersize=11 if marker == "*" else 7, zorder=3)
            ax.annotate(str(n), (r["ppl"], r["tp"]), textcoords="offset points", xytext=(5, 5), fontsize=9,
                        fontweight="bold", color=colour, zorder=4)
            key.append(f"{n:>2}  {short_label(r['model'], r['guide'])}  ({r['tp']:.2f}, {r['ppl']:.0f})")
        front = pareto_front([(r["ppl"], r["tp"]) for r in rs])
        if front:
            xs = [rs[i]["ppl"] for i in front]
            ys = [rs[i]["tp"] for i in front]
            ax.step(xs, ys, where="post", color="crimson", linestyle="--", linewidth=1.2, zorder=2,
                    label="Pareto front")
        ax.set_xscale("log")
        judge = rs[0]["judge"] if rs else "?"
        ax.set_xlabel(f"judge perplexity, log scale (judge: {judge}; lower is more fluent)")
        ax.set_ylabel("toxicity probability (lower is safer)")
        ax.set_title(f"{base} systems: toxicity vs fluency (test prompts, 95% CIs)")
        ax.grid(alpha=0.3, which="both")
        handles = [plt.Line2D([], [], color=c, marker=m, linestyle="", markersize=8, label=f)
                   for f, (c, m) in FAMILIES.items() if any(family(r["model"], r["guide"]) == f for r in rs)]
        handles += [plt.Line2D([], [], color="crimson", linestyle="--", label="Pareto front")] if front else []
        ax.legend(handles=handles, fontsize=8, loc="upper left")
        ax.text(1.02, 1.0, "\n".join(["#  system  (TP, PPL)", *key]), transform=ax.transAxes, va="top",
                fontsize=8, family="monospace")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
