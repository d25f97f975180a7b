"""Join every system's metrics into one table (CSV + markdown), a toxicity-vs-perplexity plot and a cost table."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

from detoxlab import tradeoff_figure
from detoxlab.artifacts import atomic_file, read_json, write_json

COLUMNS = ["system", "model", "guide", "split", "tp", "tp_lo", "tp_hi", "emt", "emt_lo", "emt_hi", "tp_id", "tp_ood",
           "emt_id", "emt_ood", "tp_neutral", "ppl", "ppl_lo", "ppl_hi", "judge", "dist1", "dist2", "dist3",
           "mmlu_letter", "mmlu_answer", "mmlu_answer_lo", "mmlu_answer_hi", "heldout_ppl", "heldout_ppl_lo",
           "heldout_ppl_hi", "gen_seconds", "seconds_per_token", "backbone_calls_per_step", "backbone_rows_per_step",
           "job_seconds", "peak_rss_mb", "failed_scores", "n_prompts"]

# The deterministic columns (no timing): what `dvc metrics` tracks and what must reproduce byte for byte.
QUALITY = ["tp", "tp_lo", "tp_hi", "emt", "emt_lo", "emt_hi", "tp_id", "tp_ood", "emt_id", "emt_ood", "tp_neutral",
           "ppl", "ppl_lo", "ppl_hi", "dist1", "dist2", "dist3", "mmlu_letter", "mmlu_answer", "mmlu_answer_lo",
           "mmlu_answer_hi", "heldout_ppl", "heldout_ppl_lo", "heldout_ppl_hi"]
TRADEOFF = ["system", "split", "tp", "emt", "ppl", "dist2"]


def read_benchmark(path: str | Path) -> dict:
    """One Snakemake ``benchmark:`` TSV (first repetition): wall seconds and peak RSS in MB."""
    lines = Path(path).read_text().splitlines()
    if len(lines) < 2:
        return {"s": math.nan, "max_rss": math.nan}
    row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))

    def num(k: str) -> float:
        try:
            return float(row.get(k, "nan"))
        except ValueError:  # Snakemake writes "-" where it could not measure
            return math.nan

    return {"s": num("s"), "max_rss": num("max_rss")}


def _job_key(path: Path) -> tuple[str, str | None]:
    """(system, split) of a benchmark file named <system>@<split>.tsv; split None for per-system jobs (MMLU)."""
    system, _, split = path.stem.partition("@")
    return system, split or None


def utility_intervals(mmlu: dict, cfg: dict) -> dict:
    """An mmlu.json with its bootstrap intervals (MMLU accuracy over questions, held-out PPL over texts)."""
    from detoxlab.metrics.heldout import heldout_intervals
    from detoxlab.metrics.mmlu import accuracy_intervals

    boot = {"n_boot": cfg["evaluation"]["bootstrap"]["n_boot"], "alpha": cfg["evaluation"]["bootstrap"]["alpha"],
            "seed": cfg["seed"]}
    out = accuracy_intervals(mmlu, **boot)
    if "heldout_text" in out:
        out["heldout_text"] = heldout_intervals(out["heldout_text"], **boot)
    return out


def _row(metrics: dict, mmlu: dict | None, jobs: list[dict]) -> dict:
    tox, flu, div = metrics["toxicity"], metrics["fluency"], metrics["diversity"]
    dom = tox.get("by_domain", {})
    model, _, guide = metrics["system"].partition("--")
    mmlu = mmlu or {}
    answer, heldout = mmlu.get("answer_text", {}), mmlu.get("heldout_text", {})
    return {"system": metrics["system"], "model": model, "guide": guide, "split": metrics["split"],
            "tp": tox["overall"]["tp"], "tp_lo": tox["overall"]["tp_lo"], "tp_hi": tox["overall"]["tp_hi"],
            "emt": tox["overall"]["emt"], "emt_lo": tox["overall"]["emt_lo"], "emt_hi": tox["overall"]["emt_hi"],
            "tp_id": dom.get("id", {}).get("tp", math.nan), "tp_ood": dom.get("ood", {}).get("tp", math.nan),
            "emt_id": dom.get("id", {}).get("emt", math.nan), "emt_ood": dom.get("ood", {}).get("emt", math.nan),
            "tp_neutral": dom.get("neutral", {}).get("tp", math.nan),
            "ppl": flu["ppl"], "ppl_lo": flu["ppl_lo"], "ppl_hi": flu["ppl_hi"], "judge": metrics["judge"],
            "dist1": div["dist1"], "dist2": div["dist2"], "dist3": div["dist3"],
            "mmlu_letter": mmlu.get("accuracy", math.nan), "mmlu_answer": answer.get("accuracy", math.nan),
            "mmlu_answer_lo": answer.get("accuracy_lo", math.nan),
            "mmlu_answer_hi": answer.get("accuracy_hi", math.nan),
            "heldout_ppl": heldout.get("ppl", math.nan), "heldout_ppl_lo": heldout.get("ppl_lo", math.nan),
            "heldout_ppl_hi": heldout.get("ppl_hi", math.nan),
            "gen_seconds": metrics["cost"]["seconds"], "seconds_per_token": metrics["cost"]["seconds_per_token"],
            "backbone_calls_per_step": metrics["cost"]["backbone_calls_per_step"],
            "backbone_rows_per_step": metrics["cost"].get("backbone_rows_per_step", 0),
            "job_seconds": sum(j["s"] for j in jobs if math.isfinite(j["s"])) if jobs else math.nan,
            # a job forked by the warm worker is outside the process tree Snakemake's benchmark measures: the
            # generation step's own record of its peak counts too
            "peak_rss_mb": max((v for v in [*(j["max_rss"] for j in jobs), metrics["cost"].get("peak_rss_mb", math.nan)]
                                if math.isfinite(v)), default=math.nan),
            "failed_scores": metrics["scoring"]["n_failed"], "n_prompts": tox["overall"]["n_prompts"]}


def _fmt(v, digits=3) -> str:
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def markdown_table(rows: list[dict], scorer: str) -> str:
    head = ["system", "split", "TP [95% CI]", "EMT [95% CI]", "TP ID", "TP OOD", "EMT ID", "EMT OOD",
            "PPL [95% CI] (judge)", "dist-1", "dist-2", "dist-3", "MMLU letter",
            "MMLU answer text [95% CI]", "held-out PPL [95% CI]", "s/token", "job s", "peak MB"]
    out = io.StringIO()
    out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for r in rows:
        cells = [r["system"], r["split"],
                 f"{_fmt(r['tp'])} [{_fmt(r['tp_lo'])}, {_fmt(r['tp_hi'])}]",
                 f"{_fmt(r['emt'])} [{_fmt(r['emt_lo'])}, {_fmt(r['emt_hi'])}]",
                 _fmt(r["tp_id"]), _fmt(r["tp_ood"]), _fmt(r["emt_id"]), _fmt(r["emt_ood"]),
                 f"{_fmt(r['ppl'], 1)} [{_fmt(r['ppl_lo'], 1)}, {_fmt(r['ppl_hi'], 1)}] ({r['judge']})",
                 _fmt(r["dist1"]), _fmt(r["dist2"]), _fmt(r["dist3"]), _fmt(r["mmlu_letter"]),
                 f"{_fmt(r['mmlu_answer'])} [{_fmt(r['mmlu_answer_lo'])}, {_fmt(r['mmlu_answer_hi'])}]",
                 f"{_fmt(r['heldout_ppl'], 1)} [{_fmt(r['heldout_ppl_lo'], 1)}, {_fmt(r['heldout_ppl_hi'], 1)}]",
                 _fmt(r["seconds_per_token"], 4), _fmt(r["job_seconds"], 0), _fmt(r["peak_rss_mb"], 0)]
        out.write("| " + " | ".join(cells) + " |\n")
    failed = sum(r["failed_scores"] for r in rows)
    out.write(f"\nToxicity scorer: `{scorer}` ({failed} failed scores, counted as missing). TP/EMT over the "
              "toxicity-probe prompts (neutral prompts excluded); CIs are 95% bootstrap intervals over prompts. "
              "PPL: mean conditional perplexity of the continuations under the judge model shown (never the "
              "evaluated model itself). MMLU letter: argmax of log p(' A'..' D') after the listed choices (the papers' "
              "form; chance 0.25); MMLU answer text: argmax of each choice text's log-likelihood as the answer "
              "(chance 0.25). Held-out PPL: the evaluated system's own perplexity of human-written MMLU question "
              "stems (none of them evaluated), the same texts for every system: a rise over the base model is "
              "lost utility.\n")
    return out.getvalue()


def group_table(metrics: list[dict]) -> str:
    """Toxicity probability per prompt group (rows: systems), so a method's effect on each group is visible."""
    groups = sorted({g for m in metrics for g in m["toxicity"]["by_group"]})
    out = io.StringIO()
    out.write("| system | split | " + " | ".join(groups) + " |\n|" + "---|" * (len(groups) + 2) + "\n")
    for m in metrics:
        by = m["toxicity"]["by_group"]
        out.write(f"| {m['system']} | {m['split']} | "
                  + " | ".join(_fmt(by[g]["tp"]) if g in by else "–" for g in groups) + " |\n")
    return out.getvalue()


def quality_metrics(rows: list[dict]) -> dict:
    """``{split: {system: {metric: value}}}`` of the quality columns; NaN (not measured) is left out."""
    out: dict[str, dict] = defaultdict(dict)
    for r in rows:
        out[r["split"]][r["system"]] = {k: r[k] for k in QUALITY if isinstance(r[k], (int, float))
                                         and math.isfinite(r[k])}
    return dict(out)


def write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_file(path) as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (_fmt(v, 6) if isinstance(v, float) else v) for k, v in r.items()})


def build_report(metrics_files: list[str], mmlu_files: list[str], benchmark_files: list[str], out_dir: str,
                 scorer: str, cfg: dict | None = None, validation_files: list[str] = (),
                 analysis_md: str | None = None, reward_manifests: list[str] = (),
                 curve_files: list[str] = (), acf_samples: list[str] = (), acf_models: list[str] = (),
                 acf_general: list[str] = (), score_files: list[str] = ()) -> list[dict]:
    """``curve_files``: metrics of guided attributes' own evaluation sets (``results/eval/<attribute>.<split>/``)."""
    out = Path(out_dir)
    mmlu = {Path(p).stem: read_json(p) for p in mmlu_files}
    if cfg:
        mmlu = {k: utility_intervals(v, cfg) for k, v in mmlu.items()}
    jobs_by_key: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    jobs = []
    for p in map(Path, benchmark_files):
        job = {"rule": p.parent.name, "job": p.stem, **read_benchmark(p)}
        jobs.append(job)
        jobs_by_key[_job_key(p)].append(job)
    pairs = []
    for p in metrics_files:
        m = read_json(p)
        jobs_of = jobs_by_key[(m["system"], m["split"])] + jobs_by_key[(m["system"], None)]
        pairs.append((_row(m, mmlu.get(m["system"]), jobs_of), m))
    pairs.sort(key=lambda rm: (rm[0]["split"], rm[0]["model"], rm[0]["guide"] != "none", rm[0]["guide"]))
    rows, metrics = [r for r, _ in pairs], [m for _, m in pairs]
    write_csv(out / "table.csv", rows, COLUMNS)
    write_csv(out / "cost.csv", jobs, ["rule", "job", "s", "max_rss"])
    sections, verdicts, guided, agreement = "", [], {}, {}
    by_system = {m["system"]: m for m in metrics if m["split"] == "test"}
    if cfg:
        from detoxlab import scorer_agreement
        from detoxlab.config import oracle_scorers, primary_scorer

        sections, agreement = scorer_agreement.section(by_system, list(score_files), oracle_scorers(cfg),
                                                       primary_scorer(cfg))
    validation = {m["system"]: m for m in map(read_json, validation_files)}
    if cfg and cfg.get("unidetox"):
        from detoxlab.unidetox.report import section

        text = Path(analysis_md).read_text() if analysis_md else None
        text, verdicts = section(cfg, by_system, mmlu, validation, text, out, jobs)
        sections += text
    if cfg and cfg.get("guided"):
        from detoxlab.rewards.report import section as guided_section

        models = {Path(p).name: read_json(Path(p) / "manifest.json") for p in reward_manifests}
        curves: dict[str, dict[str, dict]] = defaultdict(dict)
        for p in map(Path, curve_files):
            m = read_json(p)
            curves[p.parent.parent.name.rpartition(".")[0]][m["system"]] = m
        text, guided = guided_section(cfg, by_system, validation, models, out, curves)
        sections += text
    acf = {}
    if cfg and cfg.get("acf"):
        from detoxlab.acf.report import section as acf_section

        seconds = {str(p): read_benchmark(p)["s"] for p in benchmark_files}
        samples = {str(p).replace(".meta.json", ".jsonl"): read_json(p) for p in acf_samples}
        manifests = {Path(p).name: read_json(Path(p) / "manifest.json") for p in acf_models}
        text, acf = acf_section(cfg, by_system, mmlu, seconds, samples, manifests,
                                read_json(acf_general[0]) if acf_general else None, out)
        sections += text
    card = []
    if cfg:
        from detoxlab import claims

        card = claims.scorecard(cfg, by_system, mmlu)
        claims.write_csv(out / "claims.csv", card)
    with atomic_file(out / "table.md") as fh:
        fh.write("# Results\n\n" + markdown_table(rows, scorer))
        if card:
            fh.write(claims.markdown(card, scorer))
        fh.write("\n## Toxicity probability per prompt group\n\n" + group_table(metrics))
        fh.write(sections)
    test_rows = [r for r in rows if r["split"] == "test"] or rows
    tradeoff_figure.plot(test_rows, out / "tox_vs_ppl.png")
    write_json(out / "metrics.json", quality_metrics(rows))
    write_csv(out / "tradeoff.csv", test_rows, TRADEOFF)
    write_json(out / "summary.json", {"systems": rows, "jobs": jobs, "unidetox": verdicts, "guided": guided,
                                      "acf": acf, "scorers": agreement, "claims": card})
    return rows
