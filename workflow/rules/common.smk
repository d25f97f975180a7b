# Config validation, system enumeration, paths and per-step resources. No rule logic lives here.
import json
import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from detoxlab import config as dl_config
from detoxlab.acf import plan as acf_plan
from detoxlab.rewards import plan as rw_plan
from detoxlab.unidetox import plan as ud_plan

min_version("9.0")

try:
    _validated = dl_config.validate(config)
except dl_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)

ENV = "../../envs/detoxlab.yaml"
NO_GUIDE = "none"
# the UniDetox chain (toxic corpus -> toxic model -> distilled text -> fine-tuned targets) is the DAG's longest:
# its jobs go first whenever they are ready
CHAIN_PRIORITY = 10

MODEL_DIR = "results/models/{model}"
GUIDE_DIR = "results/guides/{guide}"
MMLU_JSON = "results/eval/mmlu/{model}--{guide}.json"


# Derived models and guides are "<base>.<method>.<param><value>": dots and single dashes (5e-05), never "--",
# which separates model from guide in a system's name.
NAME = "[A-Za-z0-9_][A-Za-z0-9_.+]*(?:-[A-Za-z0-9_.+]+)*"
BASE_NAME = "[A-Za-z0-9_]+"
# guides declared in the config (built by build_guide); method guides such as DExperts have rules of their own
DECLARED_GUIDES = "|".join(config["guides"]) or "(?!)"


wildcard_constraints:
    model=NAME,
    guide=NAME,
    target=BASE_NAME,
    # "<attribute>.<split>" is a guided attribute's own evaluation set (its prompts and scorer)
    split="(?:[A-Za-z0-9_]+[.])?(?:train|validation|test)",


def systems():
    """(model, guide) pairs on the test split: every target alone and with every declared guide, then each
    method's chosen grid point."""
    guides = [NO_GUIDE] + list(config["systems"]["guides"])
    pairs = [(m, g) for m in config["systems"]["targets"] for g in guides]
    sels = ud_plan.selections(config)
    # every method target's bare model is the reference its section compares against
    pairs += [(t, NO_GUIDE) for t in dict.fromkeys(s.target for s in sels) if (t, NO_GUIDE) not in pairs]
    pairs += [(s.model, s.guide) for s in sels]
    guided = rw_plan.test_systems(config)
    if guided and (rw_plan.base_model(config), NO_GUIDE) not in pairs:
        pairs.append((rw_plan.base_model(config), NO_GUIDE))
    pairs += [p for p in guided if p not in pairs]
    return pairs + [p for p in acf_plan.test_systems(config) if p not in pairs]


def mmlu_systems():
    """Systems with an MMLU score: not the reward-guided ones (a top-k guide leaves letters outside its k
    candidates at -inf, and neither RAD nor ARM reports MMLU), nor the ACF classifiers (see acf.plan)."""
    skipped = set(rw_plan.test_systems(config)) | set(acf_plan.without_mmlu(config))
    return [s for s in systems() if s not in skipped]


def tuning_systems():
    """(model, guide) pairs evaluated on the validation split: the grid points selections read and the bare
    targets."""
    cands = ud_plan.tuning_candidates(config)
    bases = sorted({c.target for c in cands})
    pairs = [(t, NO_GUIDE) for t in bases] + [(c.model, c.guide) for c in cands]
    return pairs + [p for p in rw_plan.tuning_systems(config) if p not in pairs]


def used_models():
    """Every declared model the report needs: the targets and the judges they use."""
    targets = {dl_config.root_model(config, m) for m, _ in systems()}
    return sorted(targets | {dl_config.judge_for(config, m) for m in targets})


def expand_systems(pattern, **extra):
    return [pattern.format(model=m, guide=g, **extra) for m, g in systems()]


def step_params(step, view=None, **named):
    """JSON of exactly the config keys ``step`` reads (from ``view``, default the config), plus named entries."""
    keys = list(dl_config.STEP_KEYS[step]) + [f"{section}.{name}" for section, name in named.items()]
    return json.dumps(dl_config.select(view or config, keys), sort_keys=True)


def eval_params(step):
    """``step_params`` for an evaluation job: an attribute's set swaps in its prompts, scorer and samples."""

    def params(wc):
        name = "generate_validation" if step == "generate" and wc.split == "validation" else step
        return step_params(name, rw_plan.split_view(config, wc.split)[0])

    return params


def res(step):
    return dl_config.step_resources(config, step)


def job(command):
    """The shell command of a step's job: the config keys it reads, and the cores and GPUs the scheduler granted
    it (the step's code takes its device from that grant, so a job given no GPU stays on the CPU)."""
    return f"detoxlab --params {{params.cfg:q}} --threads {{threads}} --gpus {{resources.gpu}} {command}"


def job_models(wildcards, input):
    """The models a job loads: the directories of its input under results/models/, and the one it writes."""
    prefix = MODEL_DIR.format(model="")
    names = [str(p)[len(prefix) :].split("/", 1)[0] for p in input if str(p).startswith(prefix)]
    return names + ([wildcards.model] if "model" in wildcards.keys() else [])


def job_resources(step):
    """Scheduler resources of a step's jobs, from the config's resources (see ``dl_config.job_resources``):
    memory and time are worked out per job from the size of the models it loads."""
    keys = dl_config.job_resources(config, step)
    sized = lambda key: lambda wc, input: dl_config.job_resources(config, step, job_models(wc, input))[key]
    return {key: sized(key) if key in ("mem_mb", "runtime") else value for key, value in keys.items()}


def model_deps(wildcards):
    """Every directory that loading the model reads (a derived model's base, an alias's candidates)."""
    return ud_plan.model_dependencies(config, wildcards.model)


def guide_dir(wildcards):
    for plan in (rw_plan, acf_plan):
        deps = plan.guide_dependencies(config, wildcards.guide)
        if deps is not None:
            return deps
    return ud_plan.guide_dependencies(config, wildcards.guide)


def guide_arg(wildcards):
    return NO_GUIDE if wildcards.guide == NO_GUIDE else GUIDE_DIR.format(guide=wildcards.guide)


def prompt_files(wildcards):
    """The prompt file when it is local, so that editing it reruns generation (hub datasets are not files)."""
    split = getattr(wildcards, "split", "train")
    path = rw_plan.split_view(config, split)[0]["prompts"]["path"]
    return [path] if os.path.isfile(path) else []


def judge_dir(wildcards):
    return MODEL_DIR.format(model=dl_config.judge_for(config, wildcards.model))


def selection_of(wildcards):
    """The grid a select job chooses from; a guide method (DExperts) applies to the distiller only."""
    target = getattr(wildcards, "target", None) or config["unidetox"]["distiller"]
    return ud_plan.find_selection(config, wildcards.method, target)


def selection_dirs(wildcards):
    sel = selection_of(wildcards)
    if sel.method in ud_plan.GUIDE_METHODS:
        return [GUIDE_DIR.format(guide=c.guide) for c in sel.candidates]
    return [MODEL_DIR.format(model=c.model) for c in sel.candidates]


def selection_reference(wildcards):
    """The validation metrics whose PPL bounds the choice (tuning.max_ppl_ratio, tuning.ppl_reference)."""
    refs = ud_plan.ppl_reference(config, selection_of(wildcards))
    return [f"results/eval/validation/{system}/metrics.json" for system in refs]


def selection_metrics(wildcards):
    sel = selection_of(wildcards)
    return [] if sel.source else [f"results/eval/validation/{c.system}/metrics.json" for c in sel.candidates]


def selection_source(wildcards):
    """A transferred target's selection reads the distiller's (UniDetox section 3.4)."""
    source = ud_plan.source_selection(config, selection_of(wildcards))
    return [source.directory] if source else []


# RAD/ARM (guided.smk): per-attribute step parameters and the inputs that depend on a variant.
REWARD_DIR = "results/rewards/{attribute}.{variant}"


def guided_params(step, attribute, *extra):
    keys = list(dl_config.STEP_KEYS[step]) + rw_plan.step_keys(config, step, attribute) + list(extra)
    return json.dumps(dl_config.select(config, keys), sort_keys=True)


def reward_training_params(wc):
    kind = rw_plan.VARIANTS[wc.variant].kind
    return guided_params("train_reward", wc.attribute, "guided.teacher" if kind == "rad" else "guided.student")


def teacher_dir(wc):
    if rw_plan.VARIANTS[wc.variant].objective != "distill":
        return []
    return [REWARD_DIR.format(attribute=wc.attribute, variant=rw_plan.TEACHER)]


def attribute_prompt_files(wc):
    path = rw_plan.resolved(config, wc.attribute)["prompts"]["path"]
    return [path] if os.path.isfile(path) else []


def reward_choice(wc):
    return rw_plan.find_choice(config, f"{wc.attribute}.{wc.variant}")


# NADO/ACF (acf.smk): the jobs' inputs follow the run's schedule (acf/plan.py).
def acf_model_deps(name):
    return ud_plan.model_dependencies(config, name)


def acf_params(step, *extra):
    keys = list(dl_config.STEP_KEYS[step]) + list(extra)
    return json.dumps(dl_config.select(config, keys), sort_keys=True)


def nado_job(wc):
    return acf_plan.nado_job(config, wc.run, int(wc.i))


def acf_start(wc):
    """The model an iteration starts from, M_{i-1}."""
    return acf_plan.model_name(config, wc.run, int(wc.i) - 1)


def acf_general_input(wc):
    return [acf_plan.GENERAL] if acf_plan.find_run(config, wc.run).regulariser == "adaptive" else []


# A local run imports the Python stack once, in a warm worker its jobs hand their steps to (detoxlab.worker).
from detoxlab.worker import launch as worker_launch


onstart:
    worker_launch.start(workflow)


onsuccess:
    worker_launch.stop()


onerror:
    worker_launch.stop()
