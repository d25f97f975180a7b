# Config validation, system enumeration, paths and per-step resources. No rule logic lives here.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from detoxlab import config as dl_config

min_version("9.0")

try:
    _validated = dl_config.validate(config)
except dl_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)

ENV = "../../envs/detoxlab.yaml"
NO_GUIDE = "none"

MODEL_DIR = "results/models/{model}"
GUIDE_DIR = "results/guides/{guide}"
MMLU_JSON = "results/eval/mmlu/{model}--{guide}.json"


wildcard_constraints:
    model="[A-Za-z0-9_]+",
    guide="[A-Za-z0-9_]+",
    split="train|validation|test",


def systems():
    """(model, guide) pairs: every target alone and with every declared guide."""
    guides = [NO_GUIDE] + list(config["systems"]["guides"])
    return [(m, g) for m in config["systems"]["targets"] for g in guides]


def used_models():
    """Every declared model the report needs: the targets and the judges they use."""
    targets = config["systems"]["targets"]
    return sorted(set(targets) | {dl_config.judge_for(config, m) for m in targets})


def expand_systems(pattern, **extra):
    return [pattern.format(model=m, guide=g, **extra) for m, g in systems()]


def step_params(step, **named):
    """JSON of exactly the config keys ``step`` reads, plus named entries (e.g. one model's spec)."""
    keys = list(dl_config.STEP_KEYS[step]) + [f"{section}.{name}" for section, name in named.items()]
    return json.dumps(dl_config.select(config, keys), sort_keys=True)


def res(step):
    return dl_config.step_resources(config, step)


def job_resources(step):
    """Scheduler resources of a step; ``gpu`` only where the config grants one."""
    r = res(step)
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r["gpu"] > 0:
        out["gpu"] = r["gpu"]
    return out


def guide_dir(wildcards):
    return [] if wildcards.guide == NO_GUIDE else [GUIDE_DIR.format(guide=wildcards.guide)]


def guide_arg(wildcards):
    return NO_GUIDE if wildcards.guide == NO_GUIDE else GUIDE_DIR.format(guide=wildcards.guide)


def prompt_files(wildcards):
    """The prompt file when it is local, so that editing it reruns generation (hub datasets are not files)."""
    path = config["prompts"]["path"]
    return [path] if os.path.isfile(path) else []


def judge_dir(wildcards):
    return MODEL_DIR.format(model=dl_config.judge_for(config, wildcards.model))
