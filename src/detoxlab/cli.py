"""Command line: one subcommand per workflow step (rules call these), plus ``evaluate`` and ``check-config``.

Steps read either a config file (``--config``, validated here) or ``--params``: the JSON of exactly the
already-validated config keys the step uses (``config.STEP_KEYS``), which is how rules call them — Snakemake
then reruns a job exactly when a parameter it uses changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from detoxlab import config as config_mod
from detoxlab import timing
from detoxlab.unidetox.plan import TRANSFERRED


def _cfg(args) -> dict:
    if args.params is not None:
        return json.loads(args.params)
    cfg = config_mod.load(args.config)
    if getattr(args, "set", None):
        for item in args.set:
            key, _, value = item.partition("=")
            node = cfg
            *parents, leaf = key.split(".")
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = _parse_value(value)
        cfg = config_mod.validate(cfg)
    return cfg


def _parse_value(text: str):
    """A --set value: JSON where it parses (numbers, booleans, lists), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


#: commands that are not workflow steps: no timing record
NOT_STEPS = ("check-config", "config-docs", "dvc-sync", "dvc-touch", "export")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_threads(args.threads)
    timing.begin()
    try:
        status = _run(args)
    except config_mod.ConfigError as exc:
        print(f"detoxlab: {exc}", file=sys.stderr)
        return 2
    target = getattr(args, "out", None) or getattr(args, "out_dir", None)
    if status == 0 and target is not None and args.cmd not in NOT_STEPS:  # its output's metadata gets the record
        rec = timing.attach(target)
        print("timing: " + " ".join(f"{k}={v}" for k, v in rec.items()), file=sys.stderr)
    return status


def limit_threads(threads: int | None) -> None:
    """Every thread pool of the job (torch's, BLAS's, the tokenizers') gets the cores the scheduler granted: two
    jobs on two cores must not each start a pool per core."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(threads)  # read when a pool starts: pools this process has not started yet
    if "numpy" in sys.modules:  # pools already started (a job forked by the worker): resize them
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detoxlab", description=__doc__)
    parser.add_argument("--config", default="config/config.yaml", help="workflow config (YAML)")
    parser.add_argument("--params", default=None, help="JSON of the validated config keys a step reads")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. generation.samples_per_prompt=5")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs the scheduler granted this job (rules pass their `gpu` resource); 0 means CPU")
    sub = parser.add_subparsers(dest="cmd", required=True)

    sub.add_parser("check-config", help="validate the config and print it with defaults filled in")
    p = sub.add_parser("materialize", help="write a declared model as a plain HF directory")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("build-guide", help="write a declared guide artifact")
    p.add_argument("--guide", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--guide-dir", default="none")
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("score")
    p.add_argument("--generations", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("perplexity")
    p.add_argument("--generations", required=True)
    p.add_argument("--judge-dir", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("metrics")
    p.add_argument("--system", required=True)
    p.add_argument("--generations", required=True)
    p.add_argument("--scores", required=True)
    p.add_argument("--ppl", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("mmlu")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--guide-dir", default="none")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--mmlu", nargs="*", default=[])
    p.add_argument("--benchmarks", nargs="*", default=[])
    p.add_argument("--validation", nargs="*", default=[], help="validation metrics of every grid point")
    p.add_argument("--analysis", default=None, help="markdown of the distilled-text analysis")
    p.add_argument("--rewards", nargs="*", default=[], help="every reward-model directory")
    p.add_argument("--curves", nargs="*", default=[], help="metrics of guided attributes' own evaluation sets")
    p.add_argument("--acf-samples", nargs="*", default=[], help="meta files of every ACF sample set")
    p.add_argument("--acf-models", nargs="*", default=[], help="every ACF model directory (runs and baselines)")
    p.add_argument("--acf-general", nargs="*", default=[], help="meta file of the adaptive regulariser's text")
    p.add_argument("--scores", nargs="*", default=[], help="every test system's scores (scorer agreement)")
    p.add_argument("--out-dir", required=True)
    _add_unidetox_commands(sub)
    _add_guided_commands(sub)
    _add_acf_commands(sub)
    p = sub.add_parser("evaluate", help="run the whole evaluation on any model directory, guide and prompt file")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--guide-dir", default="none", help="a guide artifact directory, or 'none'")
    p.add_argument("--judge-dir", required=True, help="a materialised judge model (not the evaluated model)")
    p.add_argument("--prompts", default=None, help="prompt file in the data/prompts schema (default: config's)")
    p.add_argument("--split", default="test")
    p.add_argument("--no-mmlu", action="store_true")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("export", help="write a model the DAG produced as a standard Hugging Face checkpoint "
                                      "(full safetensors, tokenizer, generation config, model card)")
    p.add_argument("target", help="a model directory, a model name, or an unguided system (<model>--none)")
    p.add_argument("out", help="the checkpoint directory to write")
    p.add_argument("--results", default="results", help="the results tree the report and model names refer to")
    p = sub.add_parser("config-docs", help="write config/README.md from the config schema's descriptions")
    p.add_argument("--out", default="config/README.md")
    p.add_argument("--check", action="store_true", help="fail if --out differs from the generated file")
    p = sub.add_parser("dvc-sync", help="write dvc.yaml from the Snakemake DAG of the given configs")
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"],
                   help="the configs, as passed to snakemake --configfile")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="fail if --out differs from the generated file")
    p = sub.add_parser("dvc-touch", help="after dvc pull/checkout: restore output mtimes in DAG order for "
                                         "every stage DVC reports up to date, so Snakemake reruns nothing")
    p.add_argument("--dvc-yaml", default="dvc.yaml")
    return parser


def _add_unidetox_commands(sub) -> None:
    """UniDetox steps: ``(name, help, [(flag, kwargs)...])``; every step writes its ``--out``."""
    model, out = ("--model-dir", {"required": True}), ("--out", {"required": True})
    root = ("--root", {"required": True, "help": "the declared base model this model derives from"})
    lr, lam = ("--lr", {"type": float, "default": None}), ("--lam", {"type": float, "required": True})
    eps, beta = ("--epsilon", {"type": float, "required": True}), ("--beta", {"type": float, "required": True})
    corpus, texts = ("--corpus", {"required": True}), ("--texts", {"required": True})
    toxic_opt, toxic = ("--toxic-dir", {"default": None}), ("--toxic-dir", {"required": True})
    many = {"nargs": "+", "required": True}
    transfer = ("--transfer-from", {"default": None, "help": "the distiller's selection: reuse its choice"})
    method = ("--method", {"choices": list(TRANSFERRED), "default": "unidetox"})
    select = [("--names", many), ("--dirs", many), ("--metrics", {"nargs": "*", "default": []}),
              ("--kind", {"choices": ["model", "guide"], "required": True}), ("--root", {"default": None}),
              ("--reference", {"nargs": "*", "default": [], "help": "validation metrics bounding the PPL"}),
              transfer, method, out]
    specs = [
        ("toxic-corpus", "sample + score the toxic corpus (or read DGHS)", [model, out]),
        ("toxic-model", "fine-tune the distillation model on the toxic corpus", [model, corpus, root, out]),
        ("distill", "contrastive decoding (or plain base samples without --toxic-dir)", [model, toxic_opt, out]),
        ("finetune", "fine-tune a target model on distilled text (at --lr, or the distiller's choice)",
         [model, texts, lr, transfer, method, root, out]),
        ("task-arithmetic", "negate the toxic task vector", [model, toxic, lam, root, out]),
        ("lm-steer-train", "learn the LM-Steer matrix on the toxic corpus", [model, corpus, out]),
        ("lm-steer-model", "a steered model at one epsilon",
         [model, ("--steer-dir", {"required": True}), eps, root, out]),
        ("dexperts-guide", "an anti-expert guide at one beta", [toxic, beta, out]),
        ("select", "choose a grid point by validation toxicity", select),
        ("unidetox-analysis", "toxicity, Jaccard and TF-IDF of the distilled text",
         [("--distilled", {"required": True}), ("--base-samples", {"required": True}), corpus, out]),
    ]
    for name, help_text, flags in specs:
        p = sub.add_parser(name, help=help_text)
        for flag, kwargs in flags:
            p.add_argument(flag, **kwargs)


def _add_guided_commands(sub) -> None:
    """RAD/ARM steps: reward data, reward-model training, a guide at one (k, beta)."""
    attr = ("--attribute", {"required": True})
    p = sub.add_parser("reward-data", help="sample and label reward-model training data (or read Jigsaw/SST-2)")
    for flag, kw in (attr, ("--model-dir", {"required": True}), ("--out", {"required": True})):
        p.add_argument(flag, **kw)
    p = sub.add_parser("train-reward", help="train a RAD teacher or an ARM student")
    for flag, kw in (attr, ("--variant", {"required": True}), ("--backbone-dir", {"required": True}),
                     ("--data", {"required": True}), ("--teacher-dir", {"default": None}),
                     ("--out", {"required": True})):
        p.add_argument(flag, **kw)
    p = sub.add_parser("reward-guide", help="a RAD/ARM guide at one k and beta")
    for flag, kw in (("--variant", {"required": True}), ("--reward-dir", {"required": True}),
                     ("--k", {"type": int, "required": True}), ("--beta", {"type": float, "required": True}),
                     ("--out", {"required": True})):
        p.add_argument(flag, **kw)


def _add_acf_commands(sub) -> None:
    """NADO/ACF steps: samples, NADO, fine-tuning (ACF runs, filtering, RL, classification), the NADO guide."""
    req, opt = {"required": True}, {"default": None}
    model, out, root = ("--model-dir", req), ("--out", req), ("--root", req)
    specs = [
        ("acf-samples", "sample the training prompts purely and label each continuation", [model, out]),
        ("nado", "train NADO on labelled samples", [("--samples", req), ("--proposal-dir", req), ("--target-dir", req),
                                                    ("--backbone-dir", req), ("--previous", opt), out]),
        ("acf-general", "general-domain text for the adaptive regulariser", [model, out]),
        ("acf-finetune", "one ACF iteration: fine-tune with q* from NADO",
         [("--run", req), ("--iteration", {"type": int, "required": True}), ("--data", req), ("--start-dir", req),
          ("--nado-dir", req), ("--root-dir", req), root,
          ("--general", opt), out]),
        ("acf-filtering", "baseline: fine-tune on the rows the scorer accepts", [("--data", req), model, root, out]),
        ("acf-rl", "baseline: policy gradient with a KL penalty", [model, root, out]),
        ("acf-classification-data", "labelled texts for the classification experiment", [("--samples", req), out]),
        ("acf-classify", "fine-tune on toxicity classification (with --nado-dir: regularised)",
         [("--data", req), model, root, ("--nado-dir", opt), ("--anchors", opt), out]),
        ("nado-guide", "NADO decoding as a guide", [("--nado-dir", req), out]),
    ]
    for name, help_text, flags in specs:
        p = sub.add_parser(name, help=help_text)
        for flag, kwargs in flags:
            p.add_argument(flag, **kwargs)


def _run_acf(args, cfg: dict) -> bool:
    from detoxlab.acf import steps

    cmd, t = args.cmd, args.threads
    if cmd == "acf-samples":
        steps.samples(cfg, args.model_dir, args.out, t)
    elif cmd == "nado":
        steps.nado(cfg, args.samples, args.proposal_dir, args.target_dir, args.backbone_dir, args.out, args.previous,
                   t)
    elif cmd == "acf-general":
        steps.general(cfg, args.model_dir, args.out, t)
    elif cmd == "acf-finetune":
        steps.finetune(cfg, args.run, args.iteration, args.data, args.start_dir, args.nado_dir, args.root_dir,
                       args.root, args.out, args.general, t)
    elif cmd == "acf-filtering":
        steps.filtering(cfg, args.data, args.model_dir, args.root, args.out, t)
    elif cmd == "acf-rl":
        steps.rl(cfg, args.model_dir, args.root, args.out, t)
    elif cmd == "acf-classification-data":
        steps.classification_data(cfg, args.samples, args.out)
    elif cmd == "acf-classify":
        steps.classify(cfg, args.data, args.model_dir, args.root, args.out, args.nado_dir, args.anchors, t)
    elif cmd == "nado-guide":
        steps.nado_guide(args.nado_dir, args.out)
    else:
        return False
    return True


def _run_guided(args, cfg: dict) -> bool:
    if args.cmd not in ("reward-data", "train-reward", "reward-guide"):
        return False
    from detoxlab.rewards import steps

    if args.cmd == "reward-data":
        steps.reward_data(cfg, args.attribute, args.model_dir, args.out, args.threads)
    elif args.cmd == "train-reward":
        steps.train_reward(cfg, args.attribute, args.variant, args.backbone_dir, args.data, args.out,
                           args.teacher_dir, args.threads)
    else:
        steps.reward_guide(args.variant, args.reward_dir, args.k, args.beta, args.out)
    return True


def _run_unidetox(args, cfg: dict) -> bool:
    from detoxlab.unidetox import steps

    cmd, t = args.cmd, args.threads
    if cmd == "toxic-corpus":
        steps.toxic_corpus(cfg, args.model_dir, args.out, t)
    elif cmd == "toxic-model":
        steps.toxic_model(cfg, args.model_dir, args.corpus, args.out, args.root, t)
    elif cmd == "distill":
        steps.distill(cfg, args.model_dir, args.toxic_dir, args.out, t)
    elif cmd == "finetune":
        if (args.lr is None) == (args.transfer_from is None):
            raise SystemExit("finetune: give exactly one of --lr and --transfer-from")
        steps.finetune_on_text(cfg, args.model_dir, args.texts, args.lr, args.out, args.root, t, args.transfer_from,
                               args.method)
    elif cmd == "task-arithmetic":
        steps.task_arithmetic(cfg, args.model_dir, args.toxic_dir, args.lam, args.out, args.root)
    elif cmd == "lm-steer-train":
        steps.lm_steer_train(cfg, args.model_dir, args.corpus, args.out, t)
    elif cmd == "lm-steer-model":
        steps.lm_steer_model(args.model_dir, args.steer_dir, args.epsilon, args.out, args.root)
    elif cmd == "dexperts-guide":
        steps.dexperts_guide(cfg, args.toxic_dir, args.beta, args.out)
    elif cmd == "select":
        steps.select(cfg, args.names, args.dirs, args.metrics, args.out, args.kind, args.root, args.reference,
                     args.transfer_from, args.method)
    elif cmd == "unidetox-analysis":
        steps.analysis(cfg, args.distilled, args.base_samples, args.corpus, args.out)
    else:
        return False
    return True


def _run_dvc(args) -> int:
    from detoxlab.dvcsync import stages, timestamps

    if args.cmd == "dvc-sync":
        return stages.sync(args.configfile, args.out, check=args.check)
    touched, left = timestamps.restore(args.dvc_yaml)
    print(f"dvc-touch: restored the mtimes of {touched} up-to-date stage(s)")
    if left:
        print(f"dvc-touch: {len(left)} stage(s) differ from dvc.lock or are missing, left for Snakemake or "
              f"`dvc repro` to rebuild: {' '.join(left)}")
    return 0


def _run(args) -> int:
    if args.cmd in ("dvc-sync", "dvc-touch"):
        return _run_dvc(args)
    if args.cmd == "config-docs":
        from detoxlab.config_docs import write

        return write(args.out, check=args.check)
    if args.cmd == "export":  # needs no config: everything it writes comes from the artifacts
        from detoxlab.artifacts import ArtifactError
        from detoxlab.export import export

        try:
            info = export(args.target, args.out, args.results)
        except (ArtifactError, ValueError) as exc:  # a wrong target: say so, no traceback
            print(f"detoxlab export: {exc}", file=sys.stderr)
            return 2
        print(f"exported {info['inputs']['model']} -> {args.out} ({info['n_parameters']} parameters)")
        return 0
    from detoxlab import evaluation as ev
    from detoxlab.grant import grant_gpus

    grant_gpus(args.gpus)
    cfg = _cfg(args)
    if _run_unidetox(args, cfg) or _run_guided(args, cfg) or _run_acf(args, cfg):
        return 0
    if args.cmd == "check-config":
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False))
    elif args.cmd == "materialize":
        from detoxlab.device import set_threads
        from detoxlab.models.registry import materialize

        set_threads(args.threads)
        if args.model not in cfg.get("models", {}):
            raise config_mod.ConfigError("models", f"model '{args.model}' is not declared")
        materialize(args.model, cfg["models"][args.model], args.out)
    elif args.cmd == "build-guide":
        from detoxlab.guides import build_guide

        if args.guide not in cfg.get("guides", {}):
            raise config_mod.ConfigError("guides", f"guide '{args.guide}' is not declared")
        build_guide(args.guide, cfg["guides"][args.guide], args.out)
    elif args.cmd == "generate":
        ev.step_generate(cfg, args.model_dir, args.guide_dir, args.split, args.out, args.threads)
    elif args.cmd == "score":
        ev.step_score(cfg, args.generations, args.out)
    elif args.cmd == "perplexity":
        ev.step_perplexity(cfg, args.generations, args.judge_dir, args.out, args.threads)
    elif args.cmd == "metrics":
        ev.step_metrics(cfg, args.generations, args.scores, args.ppl, args.out, args.system)
    elif args.cmd == "mmlu":
        ev.step_mmlu(cfg, args.model_dir, args.guide_dir, args.out, args.threads)
    elif args.cmd == "report":
        from detoxlab.report import build_report

        build_report(args.metrics, args.mmlu, args.benchmarks, args.out_dir,
                     scorer=config_mod.primary_scorer(cfg), cfg=cfg,
                     validation_files=args.validation, analysis_md=args.analysis, reward_manifests=args.rewards,
                     curve_files=args.curves, acf_samples=args.acf_samples, acf_models=args.acf_models,
                     acf_general=args.acf_general, score_files=args.scores)
    elif args.cmd == "evaluate":
        metrics = ev.evaluate_system(cfg, args.model_dir, args.guide_dir, args.judge_dir, args.out_dir,
                                     prompts_file=args.prompts, split=args.split, threads=args.threads,
                                     mmlu=not args.no_mmlu)
        tox = metrics["toxicity"]["overall"]
        print(f"TP={tox['tp']:.3f} [{tox['tp_lo']:.3f}, {tox['tp_hi']:.3f}] EMT={tox['emt']:.3f} "
              f"PPL={metrics['fluency']['ppl']:.1f} dist-2={metrics['diversity']['dist2']:.3f} "
              f"MMLU={metrics.get('mmlu', float('nan')):.3f} -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
