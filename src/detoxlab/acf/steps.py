"""NADO/ACF workflow steps: each reads files, writes one artifact (atomically) and records its inputs."""

from __future__ import annotations

import os
import time

import numpy as np

from detoxlab.artifacts import atomic_dir, read_jsonl, read_manifest, relative_path, write_json, write_jsonl
from detoxlab.evaluation import load_prompt_set, meta_path, prompt_provenance, training_prompts


def _training_prompts(cfg: dict) -> list[dict]:
    """The prompts S is sampled on: the project's training split, or ToxiGen's train split (whose test split is
    the evaluation set); never an evaluation prompt."""
    pc = cfg["acf"]["prompts"] or cfg["prompts"]
    if pc["source"] == "toxigen":
        from detoxlab.data.external import load_toxigen_annotated

        return load_toxigen_annotated(pc["path"], split="train", limit=pc["limit"], seed=cfg["seed"])
    return training_prompts({**cfg, "prompts": pc}, cfg["acf"]["domains"], "acf.domains")


def _labels(cfg: dict, toxicity, kind: str | None = None) -> list[float]:
    """The oracle's C for scorer toxicities (a failed score counts as toxic); ``kind`` overrides the oracle's."""
    from detoxlab.acf.objectives import oracle_labels

    oracle = cfg["acf"]["oracle"]
    return oracle_labels(np.nan_to_num(np.asarray(toxicity, dtype=float), nan=1.0), kind or oracle["kind"],
                         oracle["threshold"]).tolist()


def rl_rewards(cfg: dict, toxicity) -> list[float]:
    """RL's reward: the oracle's C (``reward: oracle``, the objective NADO decomposes) or ``soft``: 1 - toxicity."""
    reward = cfg["acf"]["baselines"]["rl"]["reward"]
    return _labels(cfg, toxicity, kind=None if reward == "oracle" else "soft")


def samples(cfg: dict, model_dir: str, out: str, threads: int | None = None) -> dict:
    """S: continuations of the training prompts by pure sampling (R is defined under p itself), labelled."""
    from detoxlab.device import runtime
    from detoxlab.generation import generate
    from detoxlab.guides import load_guide
    from detoxlab.models.registry import load_model
    from detoxlab.sampling import SamplingSettings
    from detoxlab.scorers import score_texts, scorer_from_config

    section = cfg["acf"]["samples"]
    device, dtype = runtime(cfg, threads, inference=True)
    model, tokenizer, _ = load_model(model_dir, device, dtype)
    pure = SamplingSettings(max_new_tokens=section["max_new_tokens"], temperature=1.0, top_k=0, top_p=1.0)
    prompts = _training_prompts(cfg)
    rows, stats = generate(model, tokenizer, prompts, load_guide(None), pure,
                           section["samples_per_prompt"], section["batch_size"], cfg["seed"], keep_tokens=True)
    result = score_texts(scorer_from_config(cfg["scorer"]), [r["continuation"] for r in rows],
                         batch_size=cfg["scorer"]["batch_size"])
    labels = _labels(cfg, result.scores)  # a failed score counts as toxic: the oracle must not be optimistic
    rows = [{**r, "toxicity": float(s), "label": c} for r, s, c in zip(rows, result.scores, labels)]
    write_jsonl(out, rows)
    meta = {"model": str(model_dir), "n": len(rows), "n_failed_scores": result.n_failed,
            "satisfied": float(np.mean(labels)) if labels else None,
            "toxic_fraction": float(np.mean([r["toxicity"] > cfg["acf"]["oracle"]["threshold"] for r in rows])),
            "sampling": {"top_k": 0, "top_p": 1.0, "temperature": 1.0, **section}, "oracle": cfg["acf"]["oracle"],
            "scorer": cfg["scorer"]["type"], "generation": stats, "seed": cfg["seed"],
            "prompts": prompt_provenance(prompts, cfg["acf"]["domains"])}
    write_json(meta_path(out), meta)
    return meta


def nado(cfg: dict, samples_file: str, proposal_dir: str, target_dir: str, backbone_dir: str, out: str,
         previous: str | None = None, threads: int | None = None) -> dict:
    """N: NADO's head trained on S, with the recursion under ``target`` (importance weights if it is not the
    model that sampled S), warm-started from ``previous``."""
    import torch

    from detoxlab.acf import nado as nd
    from detoxlab.acf.data import from_samples
    from detoxlab.acf.objectives import effective_sample_size
    from detoxlab.device import runtime
    from detoxlab.models.registry import load_model
    from detoxlab.rewards import model as rm_model
    from detoxlab.training.finetune import FinetuneSettings
    from detoxlab.unidetox.distill import start_token_id

    section = cfg["acf"]["nado"]
    device, dtype = runtime(cfg, threads)
    target, tokenizer, _ = load_model(target_dir, device, dtype)
    seqs = from_samples(read_jsonl(samples_file), tokenizer, section["max_length"])
    if previous:
        model, _, _ = rm_model.load(previous, device, torch.float32)
    else:
        model, _ = rm_model.build(backbone_dir, section["layers"], "nado", ["oracle"], True, device)
    vocab = target.get_output_embeddings().weight.shape[0]
    if model.head.out_features != vocab:
        raise ValueError(f"acf.nado.backbone: its vocabulary ({model.head.out_features}) is not the model's ({vocab});"
                         " NADO must share the tokenizer of the model it guides")
    start_id = start_token_id(tokenizer, section["start_text"], key="acf.nado.start_text")
    features = nd.SampleFeatures(model, target, seqs, start_id, tokenizer.pad_token_id, section["batch_size"],
                                 cache=section["cache"])
    weighted = str(proposal_dir) != str(target_dir)
    if weighted:
        proposal = load_model(proposal_dir, device, dtype)[0]
        ll_proposal = nd.continuation_log_probs(proposal, seqs, tokenizer.pad_token_id, section["batch_size"],
                                                keep=False)[1]
        del proposal
        features.seqs = seqs = nd.reweight(seqs, features.loglik(), ll_proposal)
    settings = FinetuneSettings.from_config(section, seed=cfg["seed"], dtype=dtype)
    before = nd.evaluate(model, features, section["consistency"])
    t0 = time.perf_counter()
    history = nd.train_nado(model, features, settings, section["consistency"])
    seconds = time.perf_counter() - t0
    after = nd.evaluate(model, features, section["consistency"])
    weights = torch.tensor([s.weight for s in seqs])
    training = {**{k: history[k] for k in ("loss", "steps", "n_samples", "n_trainable")},
                "seconds": round(seconds, 2), "objective_before": before, "objective_after": after,
                "importance_weighted": weighted, "effective_sample_size": effective_sample_size(weights),
                "prompt_r": nd.prompt_r(model, features)}
    inputs = {"samples": str(samples_file), "proposal": str(proposal_dir), "target": str(target_dir),
              "backbone": str(backbone_dir), **({"previous": str(previous)} if previous else {})}
    return rm_model.save(model, out, backbone_dir, layers=section["layers"], start_text=section["start_text"],
                         trained_backbone=[], inputs=inputs, params={"nado": section, "seed": cfg["seed"]},
                         training=training)


def general(cfg: dict, model_dir: str, out: str, threads: int | None = None) -> dict:
    """General-domain text for the adaptive regulariser: the base model's own unconditional samples that the
    scorer finds non-toxic (offline), or Wikitext paragraphs."""
    section = cfg["acf"]["general"]
    if section["source"] == "wikitext":
        from detoxlab.data.external import load_wikitext

        rows = load_wikitext(section["path"], split="train", limit=section["n_texts"], seed=cfg["seed"])
        provenance = {"source": "wikitext", "path": section["path"]}
    else:
        from detoxlab.device import runtime
        from detoxlab.models.registry import load_model
        from detoxlab.scorers import score_texts, scorer_from_config
        from detoxlab.unidetox.distill import distill_texts

        device, dtype = runtime(cfg, threads, inference=True)
        model, tokenizer, _ = load_model(model_dir, device, dtype)
        spec = {"n_texts": section["n_texts"], "seeds": [cfg["seed"]], "max_new_tokens": section["max_new_tokens"],
                "alpha": 0.0, "top_k": 0, "top_p": 1.0, "batch_size": section["batch_size"],
                "start_text": section["start_text"], "temperature": 1.0}
        sampled, _ = distill_texts(model, tokenizer, spec)
        scores = score_texts(scorer_from_config(cfg["scorer"]), [r["text"] for r in sampled],
                             batch_size=cfg["scorer"]["batch_size"]).scores
        keep = [c == 1.0 for c in _labels(cfg, scores)]
        rows = [{"id": f"general/{i}", "text": r["text"]} for i, (r, k) in enumerate(zip(sampled, keep))
                if k and r["text"].strip()]
        provenance = {"source": "sampled", "model": str(model_dir), "n_sampled": len(sampled),
                      "n_dropped_toxic": int(len(sampled) - sum(keep))}
    if not rows:
        raise ValueError("acf.general: no general-domain text left")
    write_jsonl(out, rows)
    meta = {"n": len(rows), "provenance": provenance, "params": section, "seed": cfg["seed"]}
    write_json(meta_path(out), meta)
    return meta


def _domain_data(cfg: dict, data_file: str, tokenizer, max_length: int, iteration: int):
    """D, the fine-tuning data of the constraint's domain (the labelled base samples, or ToxiGen statements):
    all of it every iteration, or its ``iteration``-th of n seeded chunks (data streamed through the iterations)."""
    from detoxlab.acf.data import from_samples, from_texts

    section = cfg["acf"]["data"]
    if section["source"] == "samples":
        seqs = from_samples(read_jsonl(data_file), tokenizer, max_length)
    else:
        from detoxlab.data.external import load_toxigen_annotated

        rows = load_toxigen_annotated(section["path"], split="train", limit=section["limit"], seed=cfg["seed"])
        seqs = from_texts([r["text"] for r in rows], tokenizer, max_length)
    if section["per_iteration"] == "all":
        return seqs
    n = cfg["acf"]["iterations"]
    order = np.random.default_rng(cfg["seed"]).permutation(len(seqs))
    return [seqs[j] for j in np.array_split(order, n)[iteration - 1]]


def _save_model(model, history: dict, out: str, root_dir: str, root: str, inputs: dict, params: dict,
                seconds: float, before: dict, after: dict, start_dir: str | None = None) -> dict:
    """A delta over the root; a model trained from another start (iteration i > 1) stores its trained layers'
    full values, so a LoRA adapter on top of M_{i-1} does not lose M_{i-1}'s own changes."""
    from detoxlab.models.derived import save_derived, trained_weights

    training = {k: history[k] for k in history if k != "trainable"}
    training.update(seconds=round(seconds, 2), objective_before=before, objective_after=after)
    merge = start_dir is not None and os.path.realpath(start_dir) != os.path.realpath(root_dir)
    return save_derived(out, root_dir, root=root, **trained_weights(model, history["trainable"], merge=merge),
                        inputs=inputs, params=params, training=training)


def _train_regularised(cfg: dict, seqs_of, start_dir: str, root_dir: str, root: str, out: str, inputs: dict,
                       params: dict, lam: float, nado_dir: str | None = None, original: bool = False,
                       threads: int | None = None, evaluate=None) -> dict:
    """Fine-tune the model in ``start_dir`` on ``seqs_of(tokenizer)`` with the regularisers their domains call
    for; the result is stored as a delta over the root model (iterations compound, the chain does not grow)."""
    import torch

    from detoxlab.acf.regularised import Regulariser, regularised_finetune
    from detoxlab.device import runtime
    from detoxlab.models.registry import load_model
    from detoxlab.rewards import model as rm_model
    from detoxlab.training.finetune import FinetuneSettings
    from detoxlab.unidetox.distill import start_token_id

    ac = cfg["acf"]
    device, dtype = runtime(cfg, threads)
    model, tokenizer, _ = load_model(start_dir, device, torch.float32)
    seqs = seqs_of(tokenizer)
    reg = Regulariser()
    frozen: dict[str, torch.nn.Module] = {}

    def load_frozen(path) -> torch.nn.Module:
        """The regulariser's fixed models, one copy per directory (at iteration 1, M_0 is the original)."""
        key = os.path.realpath(path)
        if key not in frozen:
            frozen[key] = load_model(path, device, dtype)[0]
        return frozen[key]

    if nado_dir:
        reg.delta = ac["regulariser"]["delta"]
        reg.reference = load_frozen(start_dir)
        reg.nado, _, spec = rm_model.load(nado_dir, device, dtype)
        reg.start_id = start_token_id(tokenizer, spec["start_text"], key="acf.nado.start_text")
        if ac["regulariser"]["prompt_r"] == "monte_carlo":
            reg.prompt_r = read_manifest(nado_dir, "reward_model")["training"]["prompt_r"]["monte_carlo"]
    if original:
        reg.original = load_frozen(root_dir)
    settings = FinetuneSettings.from_config(ac["finetune"], seed=cfg["seed"], dtype=dtype)
    pad = tokenizer.pad_token_id
    # the objective before/after is read off the loss history (a separate pass would cost as much as training)
    before = {"heldout": evaluate(model)} if evaluate is not None else {}
    t0 = time.perf_counter()
    history = regularised_finetune(model, seqs, pad, settings, reg, lam)
    seconds = time.perf_counter() - t0
    after = {"heldout": evaluate(model)} if evaluate is not None else {}
    k = max(1, min(3, len(history["loss"]) // 2))
    for part in ("loss", "nll", "kl"):
        before[part], after[part] = float(np.mean(history[part][:k])), float(np.mean(history[part][-k:]))
    return _save_model(model, history, out, root_dir, root, inputs,
                       {**params, "finetune": ac["finetune"], "lambda": lam, "seed": cfg["seed"]}, seconds, before,
                       after, start_dir=start_dir)


def finetune(cfg: dict, run: str, iteration: int, data_file: str, start_dir: str, nado_dir: str, root_dir: str,
             root: str, out: str, general_file: str | None = None, threads: int | None = None) -> dict:
    """M_i: ACF fine-tuning of M_{i-1} on D with q* from N; the adaptive regulariser adds general rows that are
    held to the original model instead."""
    from detoxlab.acf import plan
    from detoxlab.acf.data import GENERAL, from_texts

    ac, r = cfg["acf"], plan.find_run(cfg, run)
    if r.regulariser == "adaptive" and not general_file:
        raise ValueError(f"acf.runs.{run}: the adaptive regulariser needs the general-domain text")

    def seqs_of(tokenizer):
        seqs = _domain_data(cfg, data_file, tokenizer, ac["finetune"]["max_length"], iteration)
        if r.regulariser == "adaptive":
            texts = [row["text"] for row in read_jsonl(general_file)]
            seqs = seqs + from_texts(texts, tokenizer, ac["finetune"]["max_length"], GENERAL)
        return seqs

    inputs = {"start": str(start_dir), "nado": str(nado_dir), "data": str(data_file), "root": str(root_dir),
              **({"general": str(general_file)} if general_file else {})}
    params = {"run": run, "iteration": iteration, "data": ac["data"], "schedule": r.schedule,
              "regulariser": r.regulariser, "delta": ac["regulariser"]["delta"],
              "prompt_r": ac["regulariser"]["prompt_r"]}
    return _train_regularised(cfg, seqs_of, start_dir, root_dir, root, out, inputs, params,
                              ac["regulariser"]["lambda"], nado_dir=nado_dir,
                              original=r.regulariser == "adaptive", threads=threads)


def filtering(cfg: dict, data_file: str, root_dir: str, root: str, out: str, threads: int | None = None) -> dict:
    """Baseline: plain fine-tuning on the rows of D the scorer accepts (ToxiGen: its human-benign rows)."""
    from dataclasses import replace

    from detoxlab.acf.data import from_samples, from_texts
    from detoxlab.acf.regularised import TASK

    ac, threshold = cfg["acf"], cfg["acf"]["baselines"]["filtering"]["threshold"]
    if ac["data"]["source"] == "samples":
        rows = read_jsonl(data_file)  # a failed score is stored as null: never kept
        kept = [r for r in rows if r["toxicity"] is not None and r["toxicity"] <= threshold]
    else:
        from detoxlab.data.external import TOXIGEN_TOXIC_THRESHOLD, load_toxigen_annotated

        rows = load_toxigen_annotated(ac["data"]["path"], split="train", limit=ac["data"]["limit"], seed=cfg["seed"])
        kept = [r for r in rows if r["source_toxicity"] is not None and r["source_toxicity"] < TOXIGEN_TOXIC_THRESHOLD]

    def seqs_of(tokenizer):
        n = ac["finetune"]["max_length"]
        seqs = from_samples(kept, tokenizer, n) if ac["data"]["source"] == "samples" else \
            from_texts([r["text"] for r in kept], tokenizer, n)
        return [replace(s, domain=TASK) for s in seqs]

    return _train_regularised(cfg, seqs_of, root_dir, root_dir, root, out, {"data": str(data_file), "root": root_dir},
                              {"baseline": "filtering", "n_kept": len(kept), "n_rows": len(rows),
                               **ac["baselines"]["filtering"]}, lam=0.0, threads=threads)


def rl(cfg: dict, root_dir: str, root: str, out: str, threads: int | None = None) -> dict:
    """Baseline: policy gradient on the oracle's label (or the soft score), KL-penalised towards the base model."""
    import torch

    from detoxlab.acf.rl import policy_gradient
    from detoxlab.device import runtime
    from detoxlab.models.registry import load_model
    from detoxlab.scorers import score_texts, scorer_from_config
    from detoxlab.training.finetune import FinetuneSettings

    section = cfg["acf"]["baselines"]["rl"]
    device, dtype = runtime(cfg, threads)
    model, tokenizer, _ = load_model(root_dir, device, torch.float32)
    reference = load_model(root_dir, device, dtype)[0]
    scorer = scorer_from_config(cfg["scorer"])

    def reward(texts: list[str]) -> np.ndarray:
        scores = score_texts(scorer, texts, batch_size=cfg["scorer"]["batch_size"]).scores
        return np.asarray(rl_rewards(cfg, scores), dtype=np.float32)

    settings = FinetuneSettings.from_config({**cfg["acf"]["finetune"], "lr": section["lr"]}, seed=cfg["seed"],
                                            dtype=dtype)
    t0 = time.perf_counter()
    history = policy_gradient(model, reference, tokenizer, _training_prompts(cfg), reward, section, settings)
    seconds = time.perf_counter() - t0
    first, last = history["reward"][:3], history["reward"][-3:]
    return _save_model(model, history, out, root_dir, root, {"root": str(root_dir)},
                       {"baseline": "rl", **section, "seed": cfg["seed"]}, seconds,
                       {"reward": float(np.mean(first))}, {"reward": float(np.mean(last))})


def nado_guide(nado_dir: str, out: str) -> dict:
    """NADO decoding as a guide: ``q ~ p R`` with the base NADO."""
    from detoxlab.artifacts import write_manifest

    read_manifest(nado_dir, "reward_model")
    spec = {"type": "nado", "reward_model": relative_path(nado_dir, out)}
    with atomic_dir(out) as tmp:
        write_json(tmp / "guide.json", spec)
        return write_manifest(tmp, "guide", inputs={"nado": str(nado_dir)}, params=spec, backbone_calls_per_step=1)


def classification_data(cfg: dict, samples_file: str, out: str) -> dict:
    """Labelled texts for the classification task, split by prompt (or comment) into train and held-out rows;
    the training rows are class-balanced (toxic text is the minority)."""
    from detoxlab.rewards.data import split_by_key

    section = cfg["acf"]["classification"]
    threshold = cfg["acf"]["oracle"]["threshold"]
    if section["source"] == "samples":
        rows = [{"id": f"{r['prompt_id']}/{r['sample']}", "key": r["prompt_id"],
                 "text": r["prompt"] + r["continuation"], "toxic": int(r["toxicity"] > threshold)}
                for r in read_jsonl(samples_file) if r["toxicity"] is not None]  # null: a failed score
    else:
        from detoxlab.data.external import load_jigsaw

        rows = [{"id": r["id"], "key": r["id"], "text": r["text"], "toxic": int(r["labels"]["toxicity"] >= 0.5)}
                for r in load_jigsaw(section["path"], labels=["toxicity"], split="train", limit=section["limit"],
                                     seed=cfg["seed"])]
    split = split_by_key([r["key"] for r in rows], section["heldout_fraction"], cfg["seed"])
    rows = [{**r, "split": "heldout" if split[r["key"]] == "validation" else "train"} for r in rows]
    train = [r for r in rows if r["split"] == "train"]
    pos, neg = [r for r in train if r["toxic"]], [r for r in train if not r["toxic"]]
    if not pos or not neg:
        raise ValueError("acf.classification: the training rows need both toxic and non-toxic texts")
    if section["balance"]:
        rng = np.random.default_rng(cfg["seed"])
        n = min(len(pos), len(neg))
        keep = {id(r) for group in (pos, neg) for r in (group[i] for i in rng.permutation(len(group))[:n])}
        rows = [r for r in rows if r["split"] == "heldout" or id(r) in keep]
    write_jsonl(out, rows)
    meta = {"n": len(rows), "n_train": sum(r["split"] == "train" for r in rows),
            "n_heldout": sum(r["split"] == "heldout" for r in rows), "n_toxic": sum(r["toxic"] for r in rows),
            "params": section, "source": section["source"], "samples": str(samples_file), "seed": cfg["seed"]}
    write_json(meta_path(out), meta)
    return meta


def classify(cfg: dict, data_file: str, root_dir: str, root: str, out: str, nado_dir: str | None = None,
             anchors_file: str | None = None, threads: int | None = None) -> dict:
    """Fine-tune the model on the classification task; with ``nado_dir``, also hold it to q* on the generation
    contexts of ``anchors_file``. Records held-out accuracy before and after."""
    from dataclasses import replace

    from detoxlab.acf import classify as cl
    from detoxlab.acf.data import from_samples
    from detoxlab.acf.regularised import ANCHOR

    section, ac = cfg["acf"]["classification"], cfg["acf"]
    rows = read_jsonl(data_file)
    held = [r for r in rows if r["split"] == "heldout"]
    scores: dict[str, dict] = {}

    def seqs_of(tokenizer):
        answers = cl.answer_ids(tokenizer, section["answers"])
        seqs = cl.task_sequences([r for r in rows if r["split"] == "train"], tokenizer, section["question"], answers,
                                 ac["finetune"]["max_length"])
        if nado_dir:  # as many generation contexts as task rows (seeded): the two terms see equal data
            anchors = from_samples(read_jsonl(anchors_file), tokenizer, ac["finetune"]["max_length"])
            keep = np.random.default_rng(cfg["seed"]).permutation(len(anchors))[:len(seqs)]
            seqs = seqs + [replace(anchors[i], domain=ANCHOR) for i in sorted(keep)]
        scores["held"] = {"seqs": cl.task_sequences(held, tokenizer, section["question"], answers,
                                                    ac["finetune"]["max_length"]), "answers": answers,
                          "pad": tokenizer.pad_token_id}
        return seqs

    def held_accuracy(model) -> dict:
        h = scores["held"]
        return cl.accuracy(cl.answer_margins(model, h["seqs"], h["answers"], h["pad"]),
                           np.array([r["toxic"] for r in held]))

    inputs = {"data": str(data_file), "root": str(root_dir),
              **({"nado": str(nado_dir), "anchors": str(anchors_file)} if nado_dir else {})}
    params = {"experiment": "classification", "regularised": bool(nado_dir), **section,
              "delta": ac["regulariser"]["delta"]}
    return _train_regularised(cfg, seqs_of, root_dir, root_dir, root, out, inputs, params,
                              ac["regulariser"]["lambda"] if nado_dir else 0.0, nado_dir=nado_dir, threads=threads,
                              evaluate=held_accuracy)
