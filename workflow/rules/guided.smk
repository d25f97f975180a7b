# RAD and ARM (METHODS.md section 2): reward data -> RAD teacher -> ARM students -> one guide per (k, beta).
# Every toxicity grid point is evaluated on the validation split (the trade-off curves); the test split gets
# each test variant at the beta chosen there. Rules exist only when the config has a `guided` section.

if config.get("guided"):

    GUIDED = config["guided"]

    wildcard_constraints:
        attribute="|".join(rw_plan.attributes(config)),
        variant="|".join(rw_plan.VARIANTS),

    rule reward_data:
        input:
            model=MODEL_DIR.format(model=GUIDED["base"]),
            prompts=attribute_prompt_files,
        output:
            rows="results/guided/{attribute}/reward_data.jsonl",
            meta="results/guided/{attribute}/reward_data.meta.json",
        log:
            "results/logs/guided/{attribute}.reward_data.log",
        benchmark:
            "results/benchmarks/guided/{attribute}.reward_data.tsv"
        conda:
            ENV
        threads: res("reward_data")["threads"]
        resources:
            **job_resources("reward_data"),
        params:
            cfg=lambda wc: guided_params("reward_data", wc.attribute),
        shell:
            job(
                "reward-data --attribute {wildcards.attribute}"
                " --model-dir {input.model} --out {output.rows} > {log} 2>&1"
            )

    # one job per reward model: a learning-rate grid is trained and chosen on validation inside it
    rule train_reward:
        input:
            backbone=MODEL_DIR.format(model=GUIDED["reward_model"]["backbone"]),
            data="results/guided/{attribute}/reward_data.jsonl",
            teacher=teacher_dir,
        output:
            directory(REWARD_DIR),
        log:
            "results/logs/guided/{attribute}.{variant}.log",
        benchmark:
            "results/benchmarks/guided/{attribute}.{variant}.tsv"
        conda:
            ENV
        threads: res("train_reward")["threads"]
        resources:
            **job_resources("train_reward"),
        params:
            cfg=reward_training_params,
            teacher=lambda wc, input: f"--teacher-dir {input.teacher}" if input.teacher else "",
        shell:
            job(
                "train-reward --attribute {wildcards.attribute}"
                " --variant {wildcards.variant} --backbone-dir {input.backbone} --data {input.data} {params.teacher}"
                " --out {output} > {log} 2>&1"
            )

    rule reward_guide:
        input:
            REWARD_DIR,
        output:
            directory("results/guides/{attribute}.{variant}.k{k}.beta{beta}"),
        log:
            "results/logs/derive/{attribute}.{variant}.k{k}.beta{beta}.log",
        benchmark:
            "results/benchmarks/derive/{attribute}.{variant}.k{k}.beta{beta}.tsv"
        wildcard_constraints:
            k="[0-9]+",
            beta="-?[0-9.e+-]+",
        localrule: True
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        shell:
            "detoxlab reward-guide --variant {wildcards.variant} --reward-dir {input} --k {wildcards.k}"
            " --beta={wildcards.beta} --out {output} > {log} 2>&1"

    rule select_reward_guide:
        input:
            dirs=lambda wc: [GUIDE_DIR.format(guide=p.guide) for p in reward_choice(wc).candidates],
            metrics=lambda wc: [
                f"results/eval/validation/{GUIDED['base']}--{p.guide}/metrics.json"
                for p in reward_choice(wc).candidates
            ],
            reference=f"results/eval/validation/{GUIDED['base']}--none/metrics.json",
        output:
            directory("results/guides/{attribute}.{variant}"),
        log:
            "results/logs/select/{attribute}.{variant}.log",
        benchmark:
            "results/benchmarks/select/{attribute}.{variant}.tsv"
        localrule: True
        conda:
            ENV
        threads: res("select")["threads"]
        resources:
            **job_resources("select"),
        params:
            cfg=step_params("select"),
            names=lambda wc: " ".join(p.label for p in reward_choice(wc).candidates),
        shell:
            "detoxlab --params {params.cfg:q} select --kind guide --names {params.names}"
            " --reference {input.reference} --dirs {input.dirs} --metrics {input.metrics} --out {output} > {log} 2>&1"
