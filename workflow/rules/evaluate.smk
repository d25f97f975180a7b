# The evaluation protocol for every system: generate -> score -> judge perplexity -> metrics, and MMLU.


rule generate:
    input:
        model=MODEL_DIR,
        guide=guide_dir,
    output:
        rows=EVAL_DIR + "/generations.jsonl",
        meta=EVAL_DIR + "/generations.meta.json",
    params:
        cfg=step_params("generate"),
        guide=guide_arg,
    threads: res("generate")["threads"]
    resources:
        **job_resources("generate"),
    log:
        RESULTS + "/logs/generate/{model}--{guide}@{split}.log",
    benchmark:
        RESULTS + "/benchmarks/generate/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} --threads {threads} generate --model-dir {input.model}"
        " --guide-dir {params.guide} --split {wildcards.split} --out {output.rows} > {log} 2>&1"


rule score:
    input:
        EVAL_DIR + "/generations.jsonl",
    output:
        rows=EVAL_DIR + "/scores.jsonl",
        meta=EVAL_DIR + "/scores.meta.json",
    params:
        cfg=step_params("score"),
    threads: res("score")["threads"]
    resources:
        **job_resources("score"),
    log:
        RESULTS + "/logs/score/{model}--{guide}@{split}.log",
    benchmark:
        RESULTS + "/benchmarks/score/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} score --generations {input} --out {output.rows} > {log} 2>&1"


rule perplexity:
    input:
        generations=EVAL_DIR + "/generations.jsonl",
        judge=judge_dir,
    output:
        rows=EVAL_DIR + "/ppl.jsonl",
        meta=EVAL_DIR + "/ppl.meta.json",
    params:
        cfg=step_params("perplexity"),
    threads: res("perplexity")["threads"]
    resources:
        **job_resources("perplexity"),
    log:
        RESULTS + "/logs/perplexity/{model}--{guide}@{split}.log",
    benchmark:
        RESULTS + "/benchmarks/perplexity/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} --threads {threads} perplexity --generations {input.generations}"
        " --judge-dir {input.judge} --out {output.rows} > {log} 2>&1"


rule metrics:
    input:
        generations=EVAL_DIR + "/generations.jsonl",
        scores=EVAL_DIR + "/scores.jsonl",
        ppl=EVAL_DIR + "/ppl.jsonl",
    output:
        EVAL_DIR + "/metrics.json",
    params:
        cfg=step_params("metrics"),
    log:
        RESULTS + "/logs/metrics/{model}--{guide}@{split}.log",
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} metrics --system {wildcards.model}--{wildcards.guide}"
        " --generations {input.generations} --scores {input.scores} --ppl {input.ppl} --out {output} > {log} 2>&1"


rule mmlu:
    input:
        model=MODEL_DIR,
        guide=guide_dir,
    output:
        MMLU_JSON,
    params:
        cfg=step_params("mmlu"),
        guide=guide_arg,
    threads: res("mmlu")["threads"]
    resources:
        **job_resources("mmlu"),
    log:
        RESULTS + "/logs/mmlu/{model}--{guide}.log",
    benchmark:
        RESULTS + "/benchmarks/mmlu/{model}--{guide}.tsv"
    conda:
        ENV
    shell:
        "detoxlab --params {params.cfg:q} --threads {threads} mmlu --model-dir {input.model}"
        " --guide-dir {params.guide} --out {output} > {log} 2>&1"
