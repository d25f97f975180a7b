"""Reward-model training data: texts with continuous label columns, split train/validation.

Offline: continuations of the TRAINING prompts sampled from the guided model, each labelled by the attribute's
scorer; the text is prompt + continuation (what the reward model sees while decoding) and the label is the
continuation's score (what evaluation scores). Split by prompt, so no prompt is in both parts.
Paper configs: Jigsaw Unintended Bias (7 labels) or the sentiment sets (SST-2, Amazon Polarity).
"""

from __future__ import annotations

import numpy as np

from detoxlab.sampling import SamplingSettings


def split_by_key(keys: list[str], validation_fraction: float, seed: int) -> dict[str, str]:
    """``key -> train|validation``: a seeded ``validation_fraction`` of the distinct keys is held out."""
    distinct = sorted(set(keys))
    rng = np.random.default_rng(seed)
    n_val = int(round(validation_fraction * len(distinct)))
    held = {distinct[i] for i in rng.permutation(len(distinct))[:n_val]}
    return {k: "validation" if k in held else "train" for k in distinct}


def sampled_data(model, tokenizer, prompts: list[dict], section: dict, scorer_cfg: dict, labels: list[str],
                 seed: int) -> tuple[list[dict], dict]:
    from detoxlab.generation import generate
    from detoxlab.guides import load_guide
    from detoxlab.scorers import score_texts, scorer_from_config

    if len(labels) != 1:
        raise ValueError(f"guided.attributes: a scorer gives one label column, got labels {labels}")
    rows, stats = generate(model, tokenizer, prompts, load_guide(None), SamplingSettings.from_config(section),
                           section["samples_per_prompt"], section["batch_size"], seed)
    result = score_texts(scorer_from_config(scorer_cfg), [r["continuation"] for r in rows],
                         batch_size=scorer_cfg["batch_size"])
    split = split_by_key([r["prompt_id"] for r in rows], section["validation_fraction"], seed)
    out = [{"id": f"{r['prompt_id']}/{r['sample']}", "text": r["prompt"] + r["continuation"],
            "labels": {labels[0]: float(s)}, "split": split[r["prompt_id"]], "prompt_id": r["prompt_id"]}
           for r, s in zip(rows, result.scores) if np.isfinite(s) and r["continuation"].strip()]
    provenance = {"source": "sampled", "prompt_split": "train", "n_prompts": len(prompts), "n_sampled": len(rows),
                  "n_failed_scores": result.n_failed, "scorer": scorer_cfg["type"],
                  "generation_seconds": stats["seconds"]}
    return out, provenance


def external_data(section: dict, labels: list[str], seed: int) -> tuple[list[dict], dict]:
    from detoxlab.data import external

    if section["source"] == "jigsaw":
        train = external.load_jigsaw(section["path"], labels=labels, split="train", limit=section["limit"], seed=seed)
    else:  # RAD/ARM train the sentiment reward model on SST-2 and Amazon Polarity together: one path or several
        paths = section["path"] if isinstance(section["path"], list) else [section["path"]]
        train = [r for path in paths
                 for r in external.load_sentiment_texts(path, split="train", limit=section["limit"], seed=seed)]
    split = split_by_key([r["id"] for r in train], section["validation_fraction"], seed)
    rows = [{**r, "labels": {k: r["labels"][k] for k in labels}, "split": split[r["id"]]} for r in train]
    return rows, {"source": section["source"], "path": section["path"], "limit": section["limit"]}


def describe(rows: list[dict], labels: list[str]) -> dict:
    out = {"n": len(rows), "n_train": sum(r["split"] == "train" for r in rows),
           "n_validation": sum(r["split"] == "validation" for r in rows), "labels": {}}
    for lab in labels:
        v = np.array([r["labels"][lab] for r in rows], dtype=float)
        hist, edges = np.histogram(v, bins=10, range=(0.0, 1.0))
        out["labels"][lab] = {"mean": float(v.mean()) if len(v) else None,
                              "frac_over_0.5": float((v > 0.5).mean()) if len(v) else None,
                              "histogram": {"counts": hist.tolist(), "edges": edges.tolist()}}
    return out
