# Base models and config-declared guides, materialised once as artifact directories.


rule materialize_model:
    output:
        directory(MODEL_DIR),
    wildcard_constraints:
        model=BASE_NAME,
    params:
        cfg=lambda wc: step_params("materialize", models=wc.model),
    threads: res("materialize")["threads"]
    resources:
        **job_resources("materialize"),
    log:
        "results/logs/materialize/{model}.log",
    benchmark:
        "results/benchmarks/materialize/{model}.tsv"
    conda:
        ENV
    shell:
        job("materialize --model {wildcards.model} --out {output} > {log} 2>&1")


rule build_guide:
    localrule: True
    output:
        directory(GUIDE_DIR),
    wildcard_constraints:
        guide=DECLARED_GUIDES,
    params:
        cfg=lambda wc: step_params("build_guide", guides=wc.guide),
    threads: res("build_guide")["threads"]
    resources:
        **job_resources("build_guide"),
    log:
        "results/logs/build_guide/{guide}.log",
    benchmark:
        "results/benchmarks/build_guide/{guide}.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} build-guide --guide {wildcards.guide} --out {output} > {log} 2>&1"
