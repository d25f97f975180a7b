# Export: chosen models as standard Hugging Face checkpoints (off unless `export.models` names some). Each
# export waits for the report, whose metrics go into its model card.

EVALUATED_MODELS = sorted({m for m, g in systems() if g == "none"})
for _i, _name in enumerate(config["export"]["models"]):
    if _name not in EVALUATED_MODELS:
        raise WorkflowError(
            str(
                dl_config.ConfigError(
                    f"export.models[{_i}]",
                    f"'{_name}' is not a model the report evaluates (one of: {', '.join(EVALUATED_MODELS)})",
                )
            )
        )
EXPORTS = [f"results/export/{m}" for m in config["export"]["models"]]


rule export_model:
    input:
        model=MODEL_DIR,
        deps=model_deps,
        table="results/report/table.csv",
    output:
        directory("results/export/{model}"),
    log:
        "results/logs/export/{model}.log",
    benchmark:
        "results/benchmarks/export/{model}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in config["export"]["models"]) or "(?!)",
    conda:
        ENV
    threads: res("export")["threads"]
    resources:
        **job_resources("export"),
    shell:
        "detoxlab --threads {threads} export {wildcards.model} {output} --results results > {log} 2>&1"
