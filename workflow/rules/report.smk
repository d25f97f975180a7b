# One table, one plot and one cost table for every declared system.

REPORT_SPLITS = config["evaluation"]["splits"]
METRICS = [
    f
    for s in REPORT_SPLITS
    for f in expand_systems("results/eval/{split}/{model}--{guide}/metrics.json", split=s)
]
MMLU_ENABLED = config["evaluation"]["mmlu"]["enabled"]
MMLU = expand_systems(MMLU_JSON) if MMLU_ENABLED else []
# Cost of every job that contributes a system's numbers, from Snakemake's benchmark files.
BENCHMARKS = [
    f
    for s in REPORT_SPLITS
    for step in ("generate", "score", "perplexity")
    for f in expand_systems(f"results/benchmarks/{step}/{{model}}--{{guide}}@{{split}}.tsv", split=s)
] + (expand_systems("results/benchmarks/mmlu/{model}--{guide}.tsv") if MMLU_ENABLED else [])
BENCHMARKS += [f"results/benchmarks/materialize/{m}.tsv" for m in used_models()]
REPORT_OUTPUTS = [
    "results/report/table.md",
    "results/report/table.csv",
    "results/report/tox_vs_ppl.png",
    "results/report/cost.csv",
    "results/report/summary.json",
]


rule report:
    input:
        metrics=METRICS,
        mmlu=MMLU,
        benchmarks=BENCHMARKS,
    output:
        md="results/report/table.md",
        csv=report("results/report/table.csv", caption="../report/table.rst", category="Results"),
        plot=report("results/report/tox_vs_ppl.png", caption="../report/tox_vs_ppl.rst", category="Results"),
        cost=report("results/report/cost.csv", caption="../report/cost.rst", category="Cost"),
        summary="results/report/summary.json",
    params:
        cfg=step_params("report"),
    threads: res("report")["threads"]
    resources:
        **job_resources("report"),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} report --metrics {input.metrics} --mmlu {input.mmlu}"
        " --benchmarks {input.benchmarks} --out-dir results/report > {log} 2>&1"
