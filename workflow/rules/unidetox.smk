# UniDetox (METHODS.md section 1): toxic corpus -> toxic model -> distilled text -> fine-tuned targets, and the
# baselines (base-samples fine-tuning, DExperts anti-only, Task Arithmetic, LM-Steer). Every grid point is a
# model or guide evaluated on the validation split; the chosen one is an alias evaluated on the test split.
# The rules only exist when the config has a `unidetox` section.

if config.get("unidetox"):

    UD = config["unidetox"]
    DISTILLER = UD["distiller"]
    TOXIC = ud_plan.toxic_model(config)

    rule toxic_corpus:
        input:
            model=MODEL_DIR.format(model=DISTILLER),
            prompts=prompt_files,
        output:
            rows="results/unidetox/toxic_corpus.jsonl",
            meta="results/unidetox/toxic_corpus.meta.json",
        log:
            "results/logs/unidetox/toxic_corpus.log",
        benchmark:
            "results/benchmarks/unidetox/toxic_corpus.tsv"
        priority: CHAIN_PRIORITY
        conda:
            ENV
        threads: res("toxic_corpus")["threads"]
        resources:
            **job_resources("toxic_corpus"),
        params:
            cfg=step_params("toxic_corpus"),
        shell:
            job("toxic-corpus --model-dir {input.model}" " --out {output.rows} > {log} 2>&1")

    rule toxic_model:
        input:
            model=MODEL_DIR.format(model=DISTILLER),
            corpus="results/unidetox/toxic_corpus.jsonl",
        output:
            directory(MODEL_DIR.format(model=TOXIC)),
        log:
            "results/logs/unidetox/toxic_model.log",
        benchmark:
            "results/benchmarks/unidetox/toxic_model.tsv"
        priority: CHAIN_PRIORITY
        conda:
            ENV
        threads: res("finetune")["threads"]
        resources:
            **job_resources("finetune"),
        params:
            cfg=step_params("toxic_model"),
            root=DISTILLER,
        shell:
            job(
                "toxic-model --model-dir {input.model}"
                " --corpus {input.corpus} --root {params.root} --out {output} > {log} 2>&1"
            )

    rule distill:
        # distilled text (contrastive decoding against the toxic model) or the plain-samples ablation
        input:
            model=MODEL_DIR.format(model=DISTILLER),
            toxic=lambda wc: [MODEL_DIR.format(model=TOXIC)] if wc.text == "distilled" else [],
        output:
            rows="results/unidetox/{text}.jsonl",
            meta="results/unidetox/{text}.meta.json",
        log:
            "results/logs/unidetox/{text}.log",
        benchmark:
            "results/benchmarks/unidetox/{text}.tsv"
        wildcard_constraints:
            text="distilled|base_samples",
        priority: CHAIN_PRIORITY
        conda:
            ENV
        threads: res("distill")["threads"]
        resources:
            **job_resources("distill"),
        params:
            cfg=step_params("distill"),
            toxic=lambda wc, input: f"--toxic-dir {input.toxic}" if input.toxic else "",
        shell:
            job("distill --model-dir {input.model}" " {params.toxic} --out {output.rows} > {log} 2>&1")

    rule finetune_on_text:
        input:
            model=MODEL_DIR.format(model="{target}"),
            texts=lambda wc: "results/unidetox/{}.jsonl".format(
                "distilled" if wc.method == "unidetox" else "base_samples"
            ),
        output:
            directory("results/models/{target}.{method}.lr{lr}"),
        log:
            "results/logs/finetune/{target}.{method}.lr{lr}.log",
        benchmark:
            "results/benchmarks/finetune/{target}.{method}.lr{lr}.tsv"
        wildcard_constraints:
            method="unidetox|basesamples",
            lr="[0-9.e+-]+",
        priority: CHAIN_PRIORITY
        conda:
            ENV
        threads: res("finetune")["threads"]
        resources:
            **job_resources("finetune"),
        params:
            cfg=step_params("finetune"),
        shell:
            job(
                "finetune --model-dir {input.model}"
                " --texts {input.texts} --lr={wildcards.lr} --root {wildcards.target} --out {output} > {log} 2>&1"
            )

    # A transferred target whose own grid nothing evaluates trains once, at the distiller's chosen learning rate
    TRANSFER_TRAINED = [s.model for s in ud_plan.selections(config) if s.trains]
    if TRANSFER_TRAINED:

        ruleorder: transfer_finetune > select_model

        rule transfer_finetune:
            input:
                model=lambda wc: MODEL_DIR.format(model=wc.transferred.split(".")[0]),
                texts=lambda wc: "results/unidetox/{}.jsonl".format(
                    "distilled" if wc.transferred.endswith(".unidetox") else "base_samples"
                ),
                source=lambda wc: MODEL_DIR.format(model=f"{DISTILLER}.{ud_plan.method_of(wc.transferred)}"),
            output:
                directory("results/models/{transferred}"),
            log:
                "results/logs/finetune/{transferred}.log",
            benchmark:
                "results/benchmarks/finetune/{transferred}.tsv"
            wildcard_constraints:
                transferred="|".join(re.escape(m) for m in TRANSFER_TRAINED),
            priority: CHAIN_PRIORITY
            conda:
                ENV
            threads: res("finetune")["threads"]
            resources:
                **job_resources("finetune"),
            params:
                cfg=step_params("transfer"),
                root=lambda wc: wc.transferred.split(".")[0],
                method=lambda wc: ud_plan.method_of(wc.transferred),
            shell:
                job(
                    "finetune --model-dir {input.model} --texts {input.texts} --transfer-from {input.source}"
                    " --method {params.method} --root {params.root} --out {output} > {log} 2>&1"
                )

    rule task_arithmetic:
        input:
            model=MODEL_DIR.format(model="{target}"),
            toxic=MODEL_DIR.format(model=TOXIC),
        output:
            directory("results/models/{target}.taskarith.lam{lam}"),
        log:
            "results/logs/derive/{target}.taskarith.lam{lam}.log",
        benchmark:
            "results/benchmarks/derive/{target}.taskarith.lam{lam}.tsv"
        wildcard_constraints:
            lam="-?[0-9.e+-]+",
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        params:
            cfg=step_params("derive"),
        shell:
            "detoxlab --params {params.cfg:q} task-arithmetic --model-dir {input.model} --toxic-dir {input.toxic}"
            " --lam={wildcards.lam} --root {wildcards.target} --out {output} > {log} 2>&1"

    rule lm_steer_train:
        input:
            model=MODEL_DIR.format(model="{target}"),
            corpus="results/unidetox/toxic_corpus.jsonl",
        output:
            directory("results/unidetox/lm_steer/{target}"),
        log:
            "results/logs/lm_steer/{target}.log",
        benchmark:
            "results/benchmarks/lm_steer/{target}.tsv"
        conda:
            ENV
        threads: res("lm_steer")["threads"]
        resources:
            **job_resources("lm_steer"),
        params:
            cfg=step_params("lm_steer"),
        shell:
            job("lm-steer-train --model-dir {input.model}" " --corpus {input.corpus} --out {output} > {log} 2>&1")

    rule lm_steer_model:
        input:
            model=MODEL_DIR.format(model="{target}"),
            steer="results/unidetox/lm_steer/{target}",
        output:
            directory("results/models/{target}.lmsteer.eps{eps}"),
        log:
            "results/logs/derive/{target}.lmsteer.eps{eps}.log",
        benchmark:
            "results/benchmarks/derive/{target}.lmsteer.eps{eps}.tsv"
        wildcard_constraints:
            eps="-?[0-9.e+-]+",
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        params:
            cfg=step_params("derive"),
        shell:
            "detoxlab --params {params.cfg:q} lm-steer-model --model-dir {input.model} --steer-dir {input.steer}"
            " --epsilon={wildcards.eps} --root {wildcards.target} --out {output} > {log} 2>&1"

    rule dexperts_guide:
        input:
            toxic=MODEL_DIR.format(model=TOXIC),
        output:
            directory("results/guides/dexperts.beta{beta}"),
        log:
            "results/logs/derive/dexperts.beta{beta}.log",
        benchmark:
            "results/benchmarks/derive/dexperts.beta{beta}.tsv"
        wildcard_constraints:
            beta="-?[0-9.e+-]+",
        localrule: True
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        params:
            cfg=step_params("dexperts_guide"),
        shell:
            "detoxlab --params {params.cfg:q} dexperts-guide --toxic-dir {input.toxic} --beta={wildcards.beta}"
            " --out {output} > {log} 2>&1"

    rule select_model:
        input:
            dirs=selection_dirs,
            metrics=selection_metrics,
            reference=selection_reference,
            source=selection_source,
        output:
            directory("results/models/{target}.{method}"),
        log:
            "results/logs/select/{target}.{method}.log",
        benchmark:
            "results/benchmarks/select/{target}.{method}.tsv"
        wildcard_constraints:
            method="unidetox|basesamples|taskarith|lmsteer",
        localrule: True
        conda:
            ENV
        threads: res("select")["threads"]
        resources:
            **job_resources("select"),
        params:
            cfg=step_params("select_model"),
            names=lambda wc: " ".join(c.label for c in selection_of(wc).candidates),
            source=lambda wc, input: f"--transfer-from {input.source} --method {wc.method}" if input.source else "",
        shell:
            "detoxlab --params {params.cfg:q} select --kind model --root {wildcards.target} --names {params.names}"
            " --reference {input.reference} {params.source}"
            " --dirs {input.dirs} --metrics {input.metrics} --out {output} > {log} 2>&1"

    rule select_guide:
        input:
            dirs=selection_dirs,
            metrics=selection_metrics,
            reference=selection_reference,
        output:
            directory("results/guides/{method}"),
        log:
            "results/logs/select/{method}.log",
        benchmark:
            "results/benchmarks/select/{method}.tsv"
        wildcard_constraints:
            method="dexperts",
        localrule: True
        conda:
            ENV
        threads: res("select")["threads"]
        resources:
            **job_resources("select"),
        params:
            cfg=step_params("select"),
            names=lambda wc: " ".join(c.label for c in selection_of(wc).candidates),
        shell:
            "detoxlab --params {params.cfg:q} select --kind guide --names {params.names}"
            " --reference {input.reference}"
            " --dirs {input.dirs} --metrics {input.metrics} --out {output} > {log} 2>&1"

    rule unidetox_analysis:
        input:
            distilled="results/unidetox/distilled.jsonl",
            base_samples="results/unidetox/base_samples.jsonl",
            corpus="results/unidetox/toxic_corpus.jsonl",
        output:
            json="results/unidetox/analysis.json",
            md="results/unidetox/analysis.md",
        log:
            "results/logs/unidetox/analysis.log",
        benchmark:
            "results/benchmarks/unidetox/analysis.tsv"
        conda:
            ENV
        threads: res("analysis")["threads"]
        resources:
            **job_resources("analysis"),
        params:
            cfg=step_params("analysis"),
        shell:
            "detoxlab --params {params.cfg:q} unidetox-analysis --distilled {input.distilled}"
            " --base-samples {input.base_samples} --corpus {input.corpus} --out {output.json} > {log} 2>&1"
