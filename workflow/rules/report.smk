# One table, one plot and one cost table for every declared system.

REPORT_SPLITS = config["evaluation"]["splits"]
METRICS = [
    f for s in REPORT_SPLITS for f in expand_systems("results/eval/{split}/{model}--{guide}/metrics.json", split=s)
]
# every test continuation's scores under each evaluation scorer: their agreement
SCORES = expand_systems("results/eval/test/{model}--{guide}/scores.jsonl") if "test" in REPORT_SPLITS else []
MMLU_ENABLED = config["evaluation"]["mmlu"]["enabled"]
MMLU = [MMLU_JSON.format(model=m, guide=g) for m, g in mmlu_systems()] if MMLU_ENABLED else []
# Cost of every job that contributes a system's numbers, from Snakemake's benchmark files.
BENCHMARKS = [
    f
    for s in REPORT_SPLITS
    for step in ("generate", "score", "perplexity")
    for f in expand_systems(f"results/benchmarks/{step}/{{model}}--{{guide}}@{{split}}.tsv", split=s)
] + ([f"results/benchmarks/mmlu/{m}--{g}.tsv" for m, g in mmlu_systems()] if MMLU_ENABLED else [])
BENCHMARKS += [f"results/benchmarks/materialize/{m}.tsv" for m in used_models()]
# UniDetox: every grid point on the validation split, the analysis, and the cost of each training job.
VALIDATION = [f"results/eval/validation/{m}--{g}/metrics.json" for m, g in tuning_systems()]
UD_ANALYSIS = ["results/unidetox/analysis.md"] if config.get("unidetox") else []
SELECTIONS = [s.directory for s in ud_plan.selections(config)]
if config.get("unidetox"):
    BENCHMARKS += [f"results/benchmarks/unidetox/{job}.tsv" for job in ud_plan.SHARED_JOBS]
    BENCHMARKS += [
        f"results/benchmarks/{folder}/{job}.tsv" for s in ud_plan.selections(config) for folder, job in s.build_jobs()
    ]
    BENCHMARKS += [
        f"results/benchmarks/{step}/{c.system}@validation.tsv"
        for c in ud_plan.tuning_candidates(config)
        for step in ("generate", "score", "perplexity")
    ]
# RAD/ARM: the reward models and the cost of building them.
REWARDS = [f"results/rewards/{a}.{v}" for a, v in rw_plan.reward_models(config)]
BENCHMARKS += [f"results/benchmarks/guided/{a}.{v}.tsv" for a, v in rw_plan.reward_models(config)]
BENCHMARKS += [f"results/benchmarks/guided/{a}.reward_data.tsv" for a in rw_plan.attributes(config)]
# Every other attribute (sentiment...): the base and each grid point on the attribute's own evaluation set.
CURVE_SETS = [
    (rw_plan.eval_set(config, a), m, g)
    for a in rw_plan.curve_attributes(config)
    for m, g in rw_plan.curve_systems(config, a)
]
CURVES = [f"results/eval/{s}/{m}--{g}/metrics.json" for s, m, g in CURVE_SETS]
BENCHMARKS += [
    f"results/benchmarks/{step}/{m}--{g}@{s}.tsv"
    for s, m, g in CURVE_SETS
    for step in ("generate", "score", "perplexity")
]
# NADO/ACF: what every run's final model and the report read (acf/plan.py: run_artifacts), the baselines, their
# job costs.
ACF_SAMPLES, ACF_NADO, ACF_MODELS, ACF_GENERAL = [], [], [], []
if config.get("acf"):
    for _r in acf_plan.runs(config):
        _art = acf_plan.run_artifacts(config, _r.name)
        _metas = [p.replace(".jsonl", ".meta.json") for p in _art["samples"]]
        ACF_SAMPLES += [p for p in _metas if p not in ACF_SAMPLES]
        ACF_NADO += [p for p in _art["nado"] if p not in ACF_NADO]
        ACF_MODELS += _art["models"]
        BENCHMARKS += [b for b in acf_plan.benchmark_files(config, _r.name).values() if b not in BENCHMARKS]
    ACF_MODELS += [MODEL_DIR.format(model=m) for m in acf_plan.baseline_models(config)]
    BENCHMARKS += [f"results/benchmarks/acf/{m.split('.acf.', 1)[1]}.tsv" for m in acf_plan.baseline_models(config)]
    if config["acf"]["classification"]["enabled"]:
        BENCHMARKS.append("results/benchmarks/acf/classification_data.tsv")
    if any(r.regulariser == "adaptive" for r in acf_plan.runs(config)):
        ACF_GENERAL = [acf_plan.GENERAL.replace(".jsonl", ".meta.json")]
ACF_PLOTS = ["results/report/acf_iterations.png"] if config.get("acf") else []
GUIDED_PLOTS = (
    ["results/report/guided_tradeoff.png", "results/report/reward_distribution.png"]
    + [f"results/report/{a}_curve.png" for a in rw_plan.curve_attributes(config)]
    if config.get("guided")
    else []
)
REPORT_OUTPUTS = (
    GUIDED_PLOTS
    + [
        "results/report/table.md",
        "results/report/table.csv",
        "results/report/tox_vs_ppl.png",
        "results/report/cost.csv",
        "results/report/summary.json",
        "results/report/claims.csv",
        "results/report/metrics.json",
        "results/report/tradeoff.csv",
    ]
    + (["results/report/unidetox_sensitivity.png"] if config.get("unidetox") else [])
    + ACF_PLOTS
)

# What `dvc metrics` and `dvc plots` show (detoxlab dvc-sync writes these into dvc.yaml): the quality metrics of
# every system, the test trade-off as a scatter, and the report's figures.
DVC_METRICS = ["results/report/metrics.json"]
DVC_PLOTS = {
    "results/report/tradeoff.csv": {"x": "ppl", "y": "tp", "template": "scatter", "title": "TP vs perplexity"},
    **{p: {} for p in REPORT_OUTPUTS if p.endswith(".png")},
}


rule report:
    input:
        metrics=METRICS,
        scores=SCORES,
        mmlu=MMLU,
        benchmarks=BENCHMARKS,
        validation=VALIDATION,
        analysis=UD_ANALYSIS,
        selections=SELECTIONS,
        rewards=REWARDS,
        curves=CURVES,
        acf_samples=ACF_SAMPLES,
        acf_nado=ACF_NADO,
        acf_models=ACF_MODELS,
        acf_general=ACF_GENERAL,
    output:
        md="results/report/table.md",
        csv=report("results/report/table.csv", caption="../report/table.rst", category="Results"),
        plot=report("results/report/tox_vs_ppl.png", caption="../report/tox_vs_ppl.rst", category="Results"),
        sensitivity=(
            report(
                "results/report/unidetox_sensitivity.png",
                caption="../report/sensitivity.rst",
                category="UniDetox",
            )
            if config.get("unidetox")
            else []
        ),
        guided=[report(p, caption="../report/guided.rst", category="RAD and ARM") for p in GUIDED_PLOTS],
        acf=[report(p, caption="../report/acf.rst", category="NADO and ACF") for p in ACF_PLOTS],
        cost=report("results/report/cost.csv", caption="../report/cost.rst", category="Cost"),
        summary="results/report/summary.json",
        claims=report("results/report/claims.csv", caption="../report/claims.rst", category="Results"),
        metrics="results/report/metrics.json",
        tradeoff="results/report/tradeoff.csv",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    localrule: True
    conda:
        ENV
    threads: res("report")["threads"]
    resources:
        **job_resources("report"),
    params:
        cfg=step_params("report"),
        analysis=lambda wc, input: f"--analysis {input.analysis}" if input.analysis else "",
    shell:
        "detoxlab --params {params.cfg:q} report --metrics {input.metrics} --mmlu {input.mmlu}"
        " --benchmarks {input.benchmarks} --validation {input.validation} {params.analysis}"
        " --rewards {input.rewards} --curves {input.curves} --acf-samples {input.acf_samples}"
        " --acf-models {input.acf_models} --acf-general {input.acf_general} --scores {input.scores}"
        " --out-dir results/report > {log} 2>&1"
