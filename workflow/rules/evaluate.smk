# The evaluation protocol for every system: generate -> score -> judge perplexity -> metrics, and MMLU.


rule generate:
    input:
        model=MODEL_DIR,
        deps=model_deps,
        guide=guide_dir,
        prompts=prompt_files,
    output:
        rows="results/eval/{split}/{model}--{guide}/generations.jsonl",
        meta="results/eval/{split}/{model}--{guide}/generations.meta.json",
    log:
        "results/logs/generate/{model}--{guide}@{split}.log",
    benchmark:
        "results/benchmarks/generate/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    threads: res("generate")["threads"]
    resources:
        **job_resources("generate"),
    params:
        cfg=eval_params("generate"),
        guide=guide_arg,
    shell:
        job(
            "generate --model-dir {input.model}"
            " --guide-dir {params.guide} --split {wildcards.split} --out {output.rows} > {log} 2>&1"
        )


rule score:
    input:
        "results/eval/{split}/{model}--{guide}/generations.jsonl",
    output:
        rows="results/eval/{split}/{model}--{guide}/scores.jsonl",
        meta="results/eval/{split}/{model}--{guide}/scores.meta.json",
    log:
        "results/logs/score/{model}--{guide}@{split}.log",
    benchmark:
        "results/benchmarks/score/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    threads: res("score")["threads"]
    resources:
        **job_resources("score"),
    params:
        cfg=eval_params("score"),
    shell:
        job("score --generations {input} --out {output.rows} > {log} 2>&1")


rule perplexity:
    input:
        generations="results/eval/{split}/{model}--{guide}/generations.jsonl",
        judge=judge_dir,
    output:
        rows="results/eval/{split}/{model}--{guide}/ppl.jsonl",
        meta="results/eval/{split}/{model}--{guide}/ppl.meta.json",
    log:
        "results/logs/perplexity/{model}--{guide}@{split}.log",
    benchmark:
        "results/benchmarks/perplexity/{model}--{guide}@{split}.tsv"
    conda:
        ENV
    threads: res("perplexity")["threads"]
    resources:
        **job_resources("perplexity"),
    params:
        cfg=step_params("perplexity"),
    shell:
        job(
            "perplexity --generations {input.generations}"
            " --judge-dir {input.judge} --out {output.rows} > {log} 2>&1"
        )


rule metrics:
    input:
        generations="results/eval/{split}/{model}--{guide}/generations.jsonl",
        scores="results/eval/{split}/{model}--{guide}/scores.jsonl",
        ppl="results/eval/{split}/{model}--{guide}/ppl.jsonl",
        meta=[
            "results/eval/{split}/{model}--{guide}/generations.meta.json",
            "results/eval/{split}/{model}--{guide}/scores.meta.json",
            "results/eval/{split}/{model}--{guide}/ppl.meta.json",
        ],
    output:
        "results/eval/{split}/{model}--{guide}/metrics.json",
    log:
        "results/logs/metrics/{model}--{guide}@{split}.log",
    benchmark:
        "results/benchmarks/metrics/{model}--{guide}@{split}.tsv"
    localrule: True
    conda:
        ENV
    threads: res("metrics")["threads"]
    resources:
        **job_resources("metrics"),
    params:
        cfg=eval_params("metrics"),
    shell:
        "detoxlab --params {params.cfg:q} metrics --system {wildcards.model}--{wildcards.guide}"
        " --generations {input.generations} --scores {input.scores} --ppl {input.ppl} --out {output} > {log} 2>&1"


rule mmlu:
    input:
        model=MODEL_DIR,
        deps=model_deps,
        guide=guide_dir,
    output:
        MMLU_JSON,
    log:
        "results/logs/mmlu/{model}--{guide}.log",
    benchmark:
        "results/benchmarks/mmlu/{model}--{guide}.tsv"
    conda:
        ENV
    threads: res("mmlu")["threads"]
    resources:
        **job_resources("mmlu"),
    params:
        cfg=step_params("mmlu"),
        guide=guide_arg,
    shell:
        job("mmlu --model-dir {input.model}" " --guide-dir {params.guide} --out {output} > {log} 2>&1")
