"""The evaluation protocol, one function per workflow step; every step reads and writes files only.

generate -> score -> perplexity -> metrics, plus MMLU per system. Each step's output records the inputs and
parameters that produced it, and every number in ``metrics.json`` is recomputable from the stored rows.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from detoxlab.artifacts import read_json, read_jsonl, write_json, write_jsonl
from detoxlab.metrics.bootstrap import ratio_bootstrap_ci
from detoxlab.metrics.diversity import distinct_report
from detoxlab.metrics.toxicity import per_prompt_max, sample_rates, toxicity_report
from detoxlab.timing import counts_as_loading

# torch and transformers load inside the steps that run a model: scoring, metrics and the report are separate
# jobs, and importing them would cost every such job several seconds
NO_GUIDE = "none"


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")


@counts_as_loading
def load_prompt_set(cfg: dict, splits: list[str] | str) -> list[dict]:
    """The configured prompt set (project file, RealToxicityPrompts or ToxiGen), filtered to ``splits``."""
    pc = cfg["prompts"]
    splits = [splits] if isinstance(splits, str) else list(splits)
    if pc["source"] == "project":
        from detoxlab.data.prompts import load_prompts

        per_group = pc["max_per_group"]
        tuning = (cfg.get("tuning") or {}).get("max_per_group")
        if splits == ["validation"] and tuning:  # grid points are many: tuning may use fewer prompts
            per_group = min(tuning, per_group or tuning)
        return load_prompts(pc["path"], splits=splits, groups=pc.get("groups"), max_per_group=per_group,
                            seed=cfg["seed"])
    from detoxlab.data import external

    if pc["source"] == "sentiment_prompts":  # one released split: the evaluation (test) prompts
        rows = external.load_sentiment_prompts(pc["path"], limit=pc["limit"], seed=cfg["seed"], split="test",
                                               groups=pc.get("groups"))
        return [r for r in rows if r["split"] in splits]
    if pc["source"] == "realtoxicityprompts":
        rows = external.load_realtoxicityprompts(pc["path"], challenging_only=pc["challenging_only"],
                                                 max_prompt_toxicity=pc["max_prompt_toxicity"], limit=pc["limit"],
                                                 seed=cfg["seed"], split="test")
        return [r for r in rows if r["split"] in splits]
    # ToxiGen annotated: its test split is the evaluation set; hyperparameters are tuned on its (disjoint)
    # train split, which plays our "validation" role
    rows = []
    for split in splits:
        source_split = {"test": "test", "validation": "train"}.get(split)
        if source_split is None:
            raise ValueError(f"prompts.source toxigen: no '{split}' prompts (test and validation only)")
        part = external.load_toxigen_annotated(pc["path"], split=source_split, limit=pc["limit"], seed=cfg["seed"])
        rows += [{**r, "split": split} for r in part]
    return rows


def training_prompts(cfg: dict, domains: list[str], key: str) -> list[dict]:
    """Every project training prompt of ``domains``: what a training step may see. Evaluation splits never
    enter, and the out-of-domain groups stay unseen by whatever is trained on these prompts."""
    if cfg["prompts"]["source"] != "project":
        raise ValueError(f"{key}: sampling training data needs project prompts with a training split, "
                         f"not prompts.source '{cfg['prompts']['source']}'")
    every = {**cfg, "prompts": {**cfg["prompts"], "max_per_group": None}}
    prompts = [p for p in load_prompt_set(every, "train") if p.get("domain") in domains]
    if not prompts:
        raise ValueError(f"{key}: no training prompt in domains {list(domains)}")
    return prompts


def prompt_provenance(prompts: list[dict], domains: list[str]) -> dict:
    """What a training artifact records of its prompts: so a test (and a reader) can see no OOD group entered."""
    return {"n_prompts": len(prompts), "domains": list(domains), "groups": sorted({p["group"] for p in prompts})}


def step_generate(cfg: dict, model_dir: str, guide_dir: str, split: str, out: str, threads: int | None = None,
                  prompts: list[dict] | None = None) -> dict:
    from detoxlab.device import runtime
    from detoxlab.guides import load_guide
    from detoxlab.models.registry import load_model
    from detoxlab.sampling import SamplingSettings

    device, dtype = runtime(cfg, threads, inference=True)
    model, tokenizer, model_manifest = load_model(model_dir, device, dtype)
    guide = load_guide(guide_dir).to(device, dtype)
    from detoxlab.rewards.plan import split_parts

    # "<attribute>.<split>" names an attribute's evaluation set; its prompts (already in cfg) use <split>
    prompts = prompts if prompts is not None else load_prompt_set(cfg, split_parts(split)[1])
    from detoxlab.config import generation_for
    from detoxlab.generation import generate

    gen = generation_for(cfg, split)

    rows, stats = generate(model, tokenizer, prompts, guide, SamplingSettings.from_config(gen),
                           gen["samples_per_prompt"], gen["batch_size"], cfg["seed"])
    write_jsonl(out, rows)
    meta = {"model": str(model_dir), "model_params": model_manifest.get("params", {}),
            "guide": str(guide_dir), "guide_params": guide.spec, "split": split, "n_prompts": len(prompts),
            "generation": gen, "seed": cfg["seed"], "dtype": str(dtype), **stats}
    write_json(meta_path(out), meta)
    return meta


def step_score(cfg: dict, generations: str, out: str) -> dict:
    """Score every continuation with every evaluation scorer; ``toxicity`` is the primary scorer's."""
    from detoxlab.config import evaluation_scorers, primary_scorer
    from detoxlab.scorers import score_texts, scorer_from_config

    rows = read_jsonl(generations)
    texts = [r["continuation"] for r in rows]
    results, described = {}, {}
    for name, spec in evaluation_scorers(cfg).items():
        batch = spec.get("batch_size", 256)
        results[name] = score_texts(scorer_from_config(spec), texts, batch_size=batch, progress=True)
        described[name] = {"scorer": {k: v for k, v in spec.items() if k != "batch_size"},
                           "n_failed": results[name].n_failed, "n_unique": results[name].n_unique,
                           "seconds": round(results[name].seconds, 3)}
    primary = primary_scorer(cfg)
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"],
                       "toxicity": float(results[primary].scores[i]),
                       "scores": {name: float(res.scores[i]) for name, res in results.items()}}
                      for i, r in enumerate(rows)))
    meta = {"generations": str(generations), "n": len(rows), "primary": primary, **described[primary],
            "scorers": described}
    write_json(meta_path(out), meta)
    return meta


def step_perplexity(cfg: dict, generations: str, judge_dir: str, out: str, threads: int | None = None) -> dict:
    from detoxlab.device import runtime
    from detoxlab.metrics.perplexity import conditional_perplexities
    from detoxlab.models.registry import load_model

    device, dtype = runtime(cfg, threads, inference=True)
    model, tokenizer, manifest = load_model(judge_dir, device, dtype)
    rows = read_jsonl(generations)
    pc = cfg["evaluation"]["perplexity"]
    # the judge may read only the first k samples of each prompt: fluency is a mean, toxicity needs every sample
    k = pc["samples_per_prompt"]
    judged = [i for i, r in enumerate(rows) if k is None or r["sample"] < k]
    t0 = time.perf_counter()
    scored, stats = conditional_perplexities(model, tokenizer, [rows[i]["prompt"] for i in judged],
                                             [rows[i]["continuation"] for i in judged], batch_size=pc["batch_size"],
                                             max_ppl=pc["max_ppl"], progress=True)
    ppl = dict(zip(judged, scored))
    write_jsonl(out, ({"prompt_id": r["prompt_id"], "sample": r["sample"], "ppl": ppl.get(i), "judged": i in ppl}
                      for i, r in enumerate(rows)))
    meta = {"generations": str(generations), "judge": str(judge_dir), "judge_name": manifest.get("root"),
            "seconds": round(time.perf_counter() - t0, 3), "n_judged": len(judged), **stats}
    write_json(meta_path(out), meta)
    return meta


def _nan(v) -> float:
    return math.nan if v is None else float(v)


def summarize(cfg: dict, generations: list[dict], scores: list[dict], ppl: list[dict]) -> dict:
    """All per-system metrics from stored rows (no model needed): toxicity, fluency, diversity."""
    ev = cfg["evaluation"]
    key = lambda r: (r["prompt_id"], r["sample"])  # noqa: E731
    tox = {key(r): _nan(r["toxicity"]) for r in scores}
    ppls = {key(r): _nan(r["ppl"]) for r in ppl}
    if set(tox) != {key(r) for r in generations} or set(ppls) != set(tox):
        raise ValueError("generations, scores and perplexities do not cover the same samples")
    rows = [{"prompt_id": g["prompt_id"], "group": g["group"], "domain": g["domain"], "toxicity": tox[key(g)]}
            for g in generations]
    boot = ev["bootstrap"]
    toxicity = toxicity_report(rows, threshold=ev["toxicity"]["threshold"], inclusive=ev["toxicity"]["inclusive"],
                               n_boot=boot["n_boot"], alpha=boot["alpha"], seed=cfg["seed"])
    # per-prompt maxima let the report pair two systems prompt by prompt (paired bootstrap of differences)
    by_pid: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_pid[r["prompt_id"]].append(r["toxicity"])
    toxicity["per_prompt_max"] = {pid: m for pid, m in sorted(per_prompt_max(by_pid).items())}
    toxicity["domain_of"] = dict(sorted({r["prompt_id"]: r["domain"] for r in rows}.items()))
    toxicity["sample_rates"] = sample_rates(rows, threshold=ev["toxicity"]["threshold"],
                                            inclusive=ev["toxicity"]["inclusive"], n_boot=boot["n_boot"],
                                            alpha=boot["alpha"], seed=cfg["seed"])
    # the same numbers under every evaluation scorer (the primary's are the ones above)
    by_scorer = {}
    for name in scores[0].get("scores", {}) if scores else ():
        graded = {key(r): _nan(r["scores"][name]) for r in scores}
        alt = [{**r, "toxicity": graded[key(g)]} for r, g in zip(rows, generations)]
        rep = toxicity_report(alt, threshold=ev["toxicity"]["threshold"], inclusive=ev["toxicity"]["inclusive"],
                              n_boot=boot["n_boot"], alpha=boot["alpha"], seed=cfg["seed"])
        maxima: dict[str, list[float]] = defaultdict(list)
        for r in alt:
            maxima[r["prompt_id"]].append(r["toxicity"])
        by_scorer[name] = {"overall": rep["overall"], "by_domain": rep["by_domain"],
                           "per_prompt_max": dict(sorted(per_prompt_max(maxima).items()))}
    toxicity["by_scorer"] = by_scorer
    by_prompt: dict[str, list[float]] = defaultdict(list)
    texts: dict[str, list[str]] = defaultdict(list)
    with_prompt = ev["diversity"]["text"] == "prompt_continuation"
    for g in generations:
        by_prompt[g["prompt_id"]].append(ppls[key(g)])
        texts[g["prompt_id"]].append(g["prompt"] + g["continuation"] if with_prompt else g["continuation"])
    # mean over all valid generations; its CI resamples prompts with their (sum, count) of valid perplexities
    per_prompt = [np.array(v, dtype=float) for v in by_prompt.values()]
    sums = np.array([np.nansum(v) for v in per_prompt])
    counts = np.array([np.isfinite(v).sum() for v in per_prompt], dtype=float)
    mean_ppl, lo, hi = ratio_bootstrap_ci(sums, counts, n_boot=boot["n_boot"], alpha=boot["alpha"],
                                          seed=cfg["seed"])
    n_valid = int(counts.sum())
    n_judged = sum(r.get("judged", True) for r in ppl)
    fluency = {"ppl": mean_ppl, "ppl_lo": lo, "ppl_hi": hi, "n_valid": n_valid, "n_judged": n_judged,
               "n_dropped": n_judged - n_valid,
               # (sum of valid perplexities, their count) per prompt: a paired comparison of two systems' PPL
               "per_prompt": {pid: [float(sm), int(c)] for pid, sm, c in
                              sorted(zip(by_prompt, sums.tolist(), counts.tolist())) if c > 0}}
    return {"toxicity": toxicity, "fluency": fluency, "diversity": distinct_report(texts),
            "n_generations": len(generations), "n_prompts": len(by_prompt)}


def step_metrics(cfg: dict, generations: str, scores: str, ppl: str, out: str, system: str) -> dict:
    gen_meta = read_json(meta_path(generations))
    summary = summarize(cfg, read_jsonl(generations), read_jsonl(scores), read_jsonl(ppl))
    result = {"system": system, "split": gen_meta["split"], "model": gen_meta["model"], "guide": gen_meta["guide"],
              **summary,
              "scoring": {k: read_json(meta_path(scores)).get(k) for k in ("n_failed", "n_unique", "scorer",
                                                                             "primary")},
              "judge": read_json(meta_path(ppl))["judge_name"],
              "cost": {**{k: gen_meta[k] for k in ("seconds", "generated_tokens", "seconds_per_token", "peak_rss_mb",
                                                   "backbone_calls_per_step", "device")},
                       "backbone_rows_per_step": gen_meta.get("backbone_rows_per_step", 0)},
              "inputs": {"generations": str(generations), "scores": str(scores), "ppl": str(ppl)}}
    write_json(out, result)
    return result


def step_mmlu(cfg: dict, model_dir: str, guide_dir: str, out: str, threads: int | None = None) -> dict:
    from detoxlab.device import runtime
    from detoxlab.guides import load_guide
    from detoxlab.data.mmlu import heldout_stems
    from detoxlab.metrics.heldout import heldout_perplexity
    from detoxlab.metrics.mmlu import evaluate_mmlu, select_questions
    from detoxlab.models.registry import load_model

    mc, hc = cfg["evaluation"]["mmlu"], cfg["evaluation"]["heldout_text"]
    device, dtype = runtime(cfg, threads, inference=True)
    model, tokenizer, _ = load_model(model_dir, device, dtype)
    guide = load_guide(guide_dir).to(device, dtype)
    t0 = time.perf_counter()
    sel = select_questions(mc["source"], mc["n_questions"], mc["subjects"], mc["k_shot"], cfg["seed"])
    result = evaluate_mmlu(model, tokenizer, guide, sel, form=mc["form"], answer_norm=mc["answer_norm"],
                           batch_size=mc["batch_size"], seed=cfg["seed"], progress=True)
    result["seconds_mmlu"] = round(time.perf_counter() - t0, 3)
    # held-out text in the same job: one model load per system
    if hc["enabled"]:
        texts = heldout_stems(sel.pool, [*sel.questions, *(q for s in sel.shots.values() for q in s)],
                              hc["n_texts"], cfg["seed"])
        result["heldout_text"] = {"source": hc["source"], **heldout_perplexity(
            model, tokenizer, guide, texts, hc["max_length"], batch_size=hc["batch_size"], progress=True)}
    result.update(model=str(model_dir), guide=str(guide_dir), seconds=round(time.perf_counter() - t0, 3))
    write_json(out, result)
    return result


def evaluate_system(cfg: dict, model_dir: str, guide_dir: str | None, judge_dir: str, out_dir: str,
                    prompts_file: str | None = None, split: str = "test", threads: int | None = None,
                    mmlu: bool = True) -> dict:
    """The whole protocol for one system outside the workflow (any model directory, guide and prompt file)."""
    out = Path(out_dir)
    guide_dir = guide_dir or NO_GUIDE
    prompts = None
    if prompts_file:
        from detoxlab.data.prompts import load_prompts

        prompts = load_prompts(prompts_file)
        split = "all"
    step_generate(cfg, model_dir, guide_dir, split, out / "generations.jsonl", threads, prompts=prompts)
    step_score(cfg, out / "generations.jsonl", out / "scores.jsonl")
    step_perplexity(cfg, out / "generations.jsonl", judge_dir, out / "ppl.jsonl", threads)
    metrics = step_metrics(cfg, out / "generations.jsonl", out / "scores.jsonl", out / "ppl.jsonl",
                           out / "metrics.json", system=Path(model_dir).name + "--" + Path(str(guide_dir)).name)
    if mmlu and cfg["evaluation"]["mmlu"]["enabled"]:
        metrics["mmlu"] = step_mmlu(cfg, model_dir, guide_dir, out / "mmlu.json", threads).get("accuracy", math.nan)
    return metrics
