"""UniDetox workflow steps: each reads files, writes one artifact (atomically) and records its inputs."""

from __future__ import annotations

import time
from pathlib import Path

from detoxlab.artifacts import atomic_dir, read_jsonl, write_json, write_jsonl, write_manifest
from detoxlab.evaluation import meta_path, prompt_provenance, training_prompts

# Model code (torch, transformers) is imported by the steps that run a model only; selection, the DExperts
# guide and the analysis are light jobs.


def _texts(path: str | Path) -> list[str]:
    texts = [r["text"] for r in read_jsonl(path) if r["text"].strip()]
    if not texts:
        raise ValueError(f"{path}: no text to train on")
    return texts


def toxic_corpus(cfg: dict, model_dir: str, out: str, threads: int | None = None) -> dict:
    from detoxlab.unidetox import corpus

    section = cfg["unidetox"]["toxic_corpus"]
    if section["source"] == "dghs":
        rows, provenance = corpus.dghs_corpus(section, cfg["seed"])
    else:
        from detoxlab.device import runtime
        from detoxlab.models.registry import load_model

        device, dtype = runtime(cfg, threads, inference=True)
        model, tokenizer, _ = load_model(model_dir, device, dtype)
        prompts = training_prompts(cfg, section["domains"], "unidetox.toxic_corpus.domains")
        rows, provenance = corpus.sampled_corpus(model, tokenizer, prompts, section, cfg["scorer"], cfg["seed"])
        provenance.update(model=str(model_dir), **prompt_provenance(prompts, section["domains"]))
    if not rows:
        raise ValueError("unidetox.toxic_corpus: no toxic text found (nothing scored above the threshold); sample "
                         "more (samples_per_prompt, max_new_tokens) or lower the threshold")
    write_jsonl(out, rows)
    meta = {"provenance": provenance, **corpus.describe(rows), "params": section, "seed": cfg["seed"]}
    write_json(meta_path(out), meta)
    return meta


def _finetuned(cfg: dict, base_dir: str, texts: list[str], section: dict, lr: float, out: str, root: str,
               threads: int | None, inputs: dict, **extra) -> dict:
    import torch

    from detoxlab.device import runtime
    from detoxlab.models.derived import save_derived, trained_weights
    from detoxlab.models.registry import load_model
    from detoxlab.training.finetune import FinetuneSettings, finetune, mean_loss

    device, dtype = runtime(cfg, threads)
    # float32 master weights (a bf16 AdamW update at lr 1e-5 rounds away); bf16/fp16 only as autocast
    model, tokenizer, _ = load_model(base_dir, device, torch.float32)
    settings = FinetuneSettings.from_config(section, lr=lr, seed=cfg["seed"], dtype=dtype)
    before = mean_loss(model, tokenizer, texts, settings.max_length)
    t0 = time.perf_counter()
    history = finetune(model, tokenizer, texts, settings)
    seconds = time.perf_counter() - t0
    after = mean_loss(model, tokenizer, texts, settings.max_length)
    return save_derived(out, base_dir, root=root, **trained_weights(model, history["trainable"]),
                        inputs=inputs, params={**section, "lr": lr, "seed": cfg["seed"]},
                        training={"loss": history["loss"], "steps": history["steps"], "n_texts": history["n_texts"],
                                  "n_trainable": history["n_trainable"], "train_nll_before": before,
                                  "train_nll_after": after, "seconds": round(seconds, 2)}, **extra)


def toxic_model(cfg: dict, base_dir: str, corpus_file: str, out: str, root: str, threads: int | None = None) -> dict:
    section = cfg["unidetox"]["toxic_model"]
    return _finetuned(cfg, base_dir, _texts(corpus_file), section, section["lr"], out, root, threads,
                      inputs={"base": str(base_dir), "corpus": str(corpus_file)})


def finetune_on_text(cfg: dict, base_dir: str, text_file: str, lr: float | None, out: str, root: str,
                     threads: int | None = None, transfer_from: str | None = None, method: str = "unidetox") -> dict:
    """Fine-tune at ``lr``, or (``transfer_from``: the distiller's selection) at the learning rate chosen there."""
    inputs, extra = {"base": str(base_dir), "texts": str(text_file)}, {}
    if transfer_from is not None:
        extra["selection"] = transferred_choice(cfg, method, transfer_from)
        lr, inputs["hyperparameters_from"] = extra["selection"]["value"], str(transfer_from)
    return _finetuned(cfg, base_dir, _texts(text_file), cfg["unidetox"]["finetune"], lr, out, root, threads,
                      inputs=inputs, **extra)


def transferred_choice(cfg: dict, method: str, source_dir: str) -> dict:
    """The selection record of a target that reuses the grid point ``source_dir`` (the distiller's) chose."""
    from detoxlab.artifacts import read_manifest
    from detoxlab.unidetox import plan

    chosen = read_manifest(source_dir, "model")["selection"]["chosen"]
    key = plan.METHODS[method][3]
    node = cfg
    for k in key.split("."):
        node = node[k]
    grid = {plan.Candidate(method, "", float(v)).label: float(v) for v in node}
    if chosen not in grid:
        raise ValueError(f"{source_dir}: its chosen grid point '{chosen}' is not in {key} {list(grid)}; rebuild it")
    value = grid[chosen]
    return {"chosen": chosen, "value": value, "transferred_from": str(source_dir), "candidates": [],
            "criterion": f"reused unchanged from the distillation model's choice ({source_dir}); not tuned here"}


def distill(cfg: dict, base_dir: str, toxic_dir: str | None, out: str, threads: int | None = None) -> dict:
    from detoxlab.device import runtime
    from detoxlab.models.registry import load_model
    from detoxlab.unidetox.distill import distill_texts

    section = cfg["unidetox"]["distill"]
    device, dtype = runtime(cfg, threads, inference=True)
    base, tokenizer, _ = load_model(base_dir, device, dtype)
    toxic = load_model(toxic_dir, device, dtype)[0] if toxic_dir else None
    rows, stats = distill_texts(base, tokenizer, section, toxic=toxic)
    write_jsonl(out, rows)
    meta = {"base": str(base_dir), "toxic": str(toxic_dir) if toxic_dir else None,
            "method": "contrastive" if toxic_dir else "base_samples", "params": section, **stats,
            "n_texts": len(rows), "mean_tokens": sum(r["n_tokens"] for r in rows) / max(len(rows), 1)}
    write_json(meta_path(out), meta)
    return meta


def task_arithmetic(cfg: dict, base_dir: str, toxic_dir: str, lam: float, out: str, root: str) -> dict:
    from detoxlab.artifacts import read_manifest
    from detoxlab.models.derived import changed_weights, save_derived
    from detoxlab.models.registry import load_model
    from detoxlab.unidetox import task_arithmetic as ta

    toxic_manifest = read_manifest(toxic_dir, "model")
    derived = toxic_manifest.get("derived", {})
    if not (derived.get("delta") or derived.get("lora")):
        raise ValueError(f"{toxic_dir}: Task Arithmetic needs a fine-tuned toxic model (a delta over its base)")
    base, _, _ = load_model(base_dir)
    base_params = {k: v.detach() for k, v in base.named_parameters()}
    toxic_delta = changed_weights(toxic_dir, base_params)
    ta.check_same_architecture(base_params, toxic_delta, root, toxic_manifest.get("root", str(toxic_dir)))
    tau = ta.task_vector(base_params, toxic_delta)
    return save_derived(out, base_dir, root=root, delta=ta.negate(base_params, tau, lam),
                        inputs={"base": str(base_dir), "toxic": str(toxic_dir)}, params={"lambda": lam})


def lm_steer_train(cfg: dict, base_dir: str, corpus_file: str, out: str, threads: int | None = None) -> dict:
    import torch
    from safetensors.torch import save_file

    from detoxlab.device import runtime
    from detoxlab.models.derived import STEER_FILE
    from detoxlab.models.registry import load_model
    from detoxlab.unidetox.lm_steer import train_steer

    section = cfg["unidetox"]["lm_steer"]
    device, _ = runtime(cfg, threads)
    model, tokenizer, _ = load_model(base_dir, device, torch.float32)  # W is fitted in float32
    weight, history = train_steer(model, tokenizer, _texts(corpus_file), section, cfg["seed"])
    with atomic_dir(out) as tmp:
        save_file({"W": weight.cpu().contiguous()}, str(tmp / STEER_FILE))
        return write_manifest(tmp, "steer", inputs={"base": str(base_dir), "corpus": str(corpus_file)},
                              params=section, training=history)


def lm_steer_model(base_dir: str, steer_dir: str, epsilon: float, out: str, root: str) -> dict:
    from detoxlab.artifacts import read_manifest
    from detoxlab.models.derived import STEER_FILE, read_tensors, save_derived

    read_manifest(steer_dir, "steer")
    weight = read_tensors(Path(steer_dir) / STEER_FILE)["W"]
    return save_derived(out, base_dir, root=root, steer=(weight, epsilon),
                        inputs={"base": str(base_dir), "steer": str(steer_dir)}, params={"epsilon": epsilon})


def dexperts_guide(cfg: dict, toxic_dir: str, beta: float, out: str) -> dict:
    from detoxlab.artifacts import read_manifest, relative_path

    read_manifest(toxic_dir, "model")
    spec = {"type": "dexperts", "beta": beta, "top_p": cfg["unidetox"]["dexperts"]["top_p"],
            "expert": relative_path(toxic_dir, out)}
    with atomic_dir(out) as tmp:
        write_json(tmp / "guide.json", spec)
        return write_manifest(tmp, "guide", inputs={"expert": str(toxic_dir)}, params=spec,
                              backbone_calls_per_step=1)


def select(cfg: dict, names: list[str], dirs: list[str], metrics: list[str], out: str, kind: str, root: str | None,
           reference: list[str] = (), transfer_from: str | None = None, method: str | None = None) -> dict:
    """Alias the grid point chosen on validation, or (``transfer_from``) the one the distiller chose."""
    from detoxlab.models.alias import save_alias
    from detoxlab.unidetox.select import choose, write_guide_alias

    if transfer_from is not None:
        record = transferred_choice(cfg, method, transfer_from)
        best = names.index(record["chosen"])
    else:
        if not (len(names) == len(dirs) == len(metrics)):
            raise ValueError("select: names, directories and metrics files must correspond one to one")
        best, table, criterion = choose(list(zip(names, metrics)), list(reference), cfg["tuning"]["max_ppl_ratio"],
                                        cfg["tuning"]["ppl_reference"])
        record = {"chosen": names[best], "criterion": criterion, "reference": list(reference), "candidates": table}
    if kind == "model":
        save_alias(out, dirs[best], root=root, selection=record)
    else:
        write_guide_alias(out, dirs[best], record)
    return record


def analysis(cfg: dict, distilled: str, base_samples: str, corpus_file: str, out: str) -> dict:
    from detoxlab.scorers import score_texts, scorer_from_config
    from detoxlab.unidetox.analysis import analyse, markdown

    scorer = scorer_from_config(cfg["scorer"])
    sets = {}
    for name, path in (("distilled", distilled), ("base_samples", base_samples)):
        rows = read_jsonl(path)
        scores = score_texts(scorer, [r["text"] for r in rows], batch_size=cfg["scorer"]["batch_size"]).scores
        sets[name] = [{**r, "toxicity": float(s)} for r, s in zip(rows, scores)]
    result = analyse(sets["distilled"], sets["base_samples"], [r["text"] for r in read_jsonl(corpus_file)])
    result["inputs"] = {"distilled": str(distilled), "base_samples": str(base_samples), "toxic": str(corpus_file)}
    result["scorer"] = cfg["scorer"]["type"]
    write_json(out, result)
    from detoxlab.artifacts import atomic_file

    with atomic_file(Path(out).with_suffix(".md")) as fh:
        fh.write(markdown(result))
    return result
