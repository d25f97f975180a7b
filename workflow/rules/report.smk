# One table, one plot and one cost table for every declared system.

REPORT_SPLITS = config["evaluation"]["splits"]
METRICS = [f for s in REPORT_SPLITS for f in expand_systems(EVAL_DIR + "/metrics.json", split=s)]
MMLU = expand_systems(MMLU_JSON) if config["evaluation"]["mmlu"]["enabled"] else []
BENCHMARKS = (
    [f for s in REPORT_SPLITS for step in ("generate", "score", "perplexity")
     for f in expand_systems(RESULTS + "/benchmarks/" + step + "/{model}--{guide}@{split}.tsv", split=s)]
    + [RESULTS + "/benchmarks/mmlu/" + os.path.basename(f)[:-5] + ".tsv" for f in MMLU]
)
REPORT_OUTPUTS = [
    REPORT_DIR + "/table.md",
    REPORT_DIR + "/table.csv",
    REPORT_DIR + "/tox_vs_ppl.png",
    REPORT_DIR + "/cost.csv",
    REPORT_DIR + "/summary.json",
]


rule report:
    input:
        metrics=METRICS,
        mmlu=MMLU,
        benchmarks=BENCHMARKS,
    output:
        md=REPORT_DIR + "/table.md",
        csv=report(REPORT_DIR + "/table.csv", caption="../report/table.rst", category="Results"),
        plot=report(REPORT_DIR + "/tox_vs_ppl.png", caption="../report/tox_vs_ppl.rst", category="Results"),
        cost=report(REPORT_DIR + "/cost.csv", caption="../report/cost.rst", category="Cost"),
        summary=REPORT_DIR + "/summary.json",
    params:
        cfg=step_params("report"),
    log:
        RESULTS + "/logs/report.log",
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} report --metrics {input.metrics} --mmlu {input.mmlu}"
        " --benchmarks {input.benchmarks} --out-dir " + REPORT_DIR + " > {log} 2>&1"
