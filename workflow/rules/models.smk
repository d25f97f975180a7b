# Base models and config-declared guides, materialised once as artifact directories.


rule materialize_model:
    output:
        directory(MODEL_DIR),
    log:
        "results/logs/materialize/{model}.log",
    benchmark:
        "results/benchmarks/materialize/{model}.tsv"
    wildcard_constraints:
        model=BASE_NAME,
    conda:
        ENV
    threads: res("materialize")["threads"]
    resources:
        **job_resources("materialize"),
    params:
        cfg=lambda wc: step_params("materialize", models=wc.model),
    shell:
        job("materialize --model {wildcards.model} --out {output} > {log} 2>&1")


rule build_guide:
    output:
        directory(GUIDE_DIR),
    log:
        "results/logs/build_guide/{guide}.log",
    benchmark:
        "results/benchmarks/build_guide/{guide}.tsv"
    wildcard_constraints:
        guide=DECLARED_GUIDES,
    localrule: True
    conda:
        ENV
    threads: res("build_guide")["threads"]
    resources:
        **job_resources("build_guide"),
    params:
        cfg=lambda wc: step_params("build_guide", guides=wc.guide),
    shell:
        "detoxlab --params {params.cfg:q} build-guide --guide {wildcards.guide} --out {output} > {log} 2>&1"
