"""Reward-guided decoding workflow steps: reward data, reward models, guides. Each writes one artifact."""

from __future__ import annotations

import time

from detoxlab.artifacts import (
    atomic_dir,
    read_jsonl,
    read_manifest,
    relative_path,
    write_json,
    write_jsonl,
    write_manifest,
)
from detoxlab.evaluation import meta_path
from detoxlab.rewards import plan

#: what a learning rate is chosen on: the data term of the run's own objective on the validation split
SELECTION_CRITERION = {"labels": "validation cumulative MSE to the labels",
                       "distill": "validation MSE to the teacher's prefix scores"}


def _attribute_cfg(cfg: dict, name: str) -> tuple[dict, dict]:
    """(a config whose prompts/scorer are the attribute's, the resolved attribute)."""
    return plan.attribute_view(cfg, name), plan.resolved(cfg, name)


def reward_data(cfg: dict, name: str, model_dir: str, out: str, threads: int | None = None) -> dict:
    from detoxlab.evaluation import prompt_provenance, training_prompts
    from detoxlab.rewards import data

    sub, at = _attribute_cfg(cfg, name)
    section = at["data"]
    if section["source"] == "sampled":
        from detoxlab.device import runtime
        from detoxlab.models.registry import load_model

        key = f"guided.attributes.{name}.data.domains"
        prompts = training_prompts(sub, section["domains"], key)
        device, dtype = runtime(cfg, threads, inference=True)
        model, tokenizer, _ = load_model(model_dir, device, dtype)
        rows, provenance = data.sampled_data(model, tokenizer, prompts, section, sub["scorer"], at["labels"],
                                             cfg["seed"])
        provenance.update(model=str(model_dir), **prompt_provenance(prompts, section["domains"]))
    else:
        rows, provenance = data.external_data(section, at["labels"], cfg["seed"])
    if not any(r["split"] == "train" for r in rows):
        raise ValueError(f"guided.attributes.{name}.data: no training rows")
    write_jsonl(out, rows)
    meta = {"attribute": name, "provenance": provenance, **data.describe(rows, at["labels"]), "params": section,
            "seed": cfg["seed"]}
    write_json(meta_path(out), meta)
    return meta


def _examples(rows: list[dict], split: str, labels: list[str], tokenizer, start_id: int, max_length: int):
    from detoxlab.rewards.train import Example, encode

    part = [r for r in rows if r["split"] == split]
    ids = encode(tokenizer, start_id, [r["text"] for r in part], max_length)
    return [Example(i, [float(r["labels"][lab]) for lab in labels]) for i, r in zip(ids, part)]


def learning_rates(section: dict) -> list[float]:
    """``lr``: one learning rate, or a grid chosen on the reward data's validation split."""
    lr = section["lr"]
    return [float(x) for x in lr] if isinstance(lr, list) else [float(lr)]


def training_objective(variant: str, section: dict) -> dict:
    """How a variant trains: its loss (``labels`` or ``distill``) and the Delta-r regulariser's weight (zero for
    RAD and for the ablations without the regulariser)."""
    v = plan.VARIANTS[variant]
    return {"objective": v.objective, "reg_weight": float(section["reg_weight"]) if v.regulariser else 0.0}


def train_reward(cfg: dict, name: str, variant: str, backbone_dir: str, data_file: str, out: str,
                 teacher_dir: str | None = None, threads: int | None = None) -> dict:
    import torch

    from detoxlab.device import runtime
    from detoxlab.rewards import model as rm_model
    from detoxlab.rewards.train import train_lr_grid, validate
    from detoxlab.training.finetune import FinetuneSettings
    from detoxlab.unidetox.distill import start_token_id

    v = plan.VARIANTS[variant]
    g, at = cfg["guided"], plan.attribute(cfg, name)
    role = "teacher" if v.kind == "rad" else "student"
    section, rmc = g[role], g["reward_model"]
    if v.objective == "distill" and not teacher_dir:
        raise ValueError(f"guided variant '{variant}' is distilled from the RAD teacher: pass its directory")
    device, dtype = runtime(cfg, threads)
    torch.manual_seed(cfg["seed"])  # RAD's head starts from a random init: the same one in every run
    model, tokenizer = rm_model.build(backbone_dir, rmc["layers"], v.kind, at["labels"], v.baseline, device)
    start_id = start_token_id(tokenizer, rmc["start_text"], key="guided.reward_model.start_text")
    rows = read_jsonl(data_file)
    train_ex = _examples(rows, "train", at["labels"], tokenizer, start_id, section["max_length"])
    val_ex = _examples(rows, "validation", at["labels"], tokenizer, start_id, section["max_length"])
    lrs = learning_rates(section)
    if len(lrs) > 1 and not val_ex:
        raise ValueError(f"guided.{role}.lr: a grid is chosen on the validation split, and {data_file} has no "
                         f"validation rows (raise guided.attributes.{name}.data.validation_fraction)")
    teacher = rm_model.load(teacher_dir, device, torch.float32)[0] if teacher_dir else None
    settings = FinetuneSettings.from_config(section, lr=lrs[0], seed=cfg["seed"], dtype=dtype)
    before = validate(model, val_ex, tokenizer.pad_token_id, cfg["seed"], teacher)
    t0 = time.perf_counter()
    objective = training_objective(variant, section)
    history = train_lr_grid(model, train_ex, val_ex, settings, lrs, tokenizer.pad_token_id, teacher=teacher,
                            **objective)
    seconds = time.perf_counter() - t0
    after = validate(model, val_ex, tokenizer.pad_token_id, cfg["seed"], teacher)
    training = {k: history[k] for k in ("loss", "steps", "n_texts", "n_trainable", "lr")}
    training.update(seconds=round(seconds, 2), validation_before=before, validation=after,
                    lr_selection={"grid": lrs, "criterion": SELECTION_CRITERION[objective["objective"]],
                                  "runs": history["lr_selection"], "chosen": history["lr"]})
    inputs = {"backbone": str(backbone_dir), "data": str(data_file), **({"teacher": str(teacher_dir)}
                                                                         if teacher_dir else {})}
    params = {"attribute": name, "variant": variant, "reward_model": rmc, "training": section,
              "labels": at["labels"], "seed": cfg["seed"]}
    return rm_model.save(model, out, backbone_dir, layers=rmc["layers"], start_text=rmc["start_text"],
                         trained_backbone=history["trained_backbone"], inputs=inputs, params=params,
                         training=training)


def reward_guide(variant: str, reward_dir: str, k: int, beta: float, out: str) -> dict:
    read_manifest(reward_dir, "reward_model")
    spec = {"type": plan.VARIANTS[variant].kind, "reward_model": relative_path(reward_dir, out), "k": int(k),
            "beta": float(beta)}
    with atomic_dir(out) as tmp:
        write_json(tmp / "guide.json", spec)
        return write_manifest(tmp, "guide", inputs={"reward_model": str(reward_dir)}, params=spec)
