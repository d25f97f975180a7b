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
        params:
            cfg=step_params("toxic_corpus"),
        threads: res("toxic_corpus")["threads"]
        priority: CHAIN_PRIORITY
        resources:
            **job_resources("toxic_corpus"),
        log:
            "results/logs/unidetox/toxic_corpus.log",
        benchmark:
            "results/benchmarks/unidetox/toxic_corpus.tsv"
        conda:
            ENV
        shell:
            job(
                "toxic-corpus --model-dir {input.model}"
                " --out {output.rows} > {log} 2>&1"
            )

    rule toxic_model:
        input:
            model=MODEL_DIR.format(model=DISTILLER),
            corpus="results/unidetox/toxic_corpus.jsonl",
        output:
            directory(MODEL_DIR.format(model=TOXIC)),
        params:
            cfg=step_params("toxic_model"),
            root=DISTILLER,
        threads: res("finetune")["threads"]
        priority: CHAIN_PRIORITY
        resources:
            **job_resources("finetune"),
        log:
            "results/logs/unidetox/toxic_model.log",
        benchmark:
            "results/benchmarks/unidetox/toxic_model.tsv"
        conda:
            ENV
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
        wildcard_constraints:
            text="distilled|base_samples",
        params:
            cfg=step_params("distill"),
            toxic=lambda wc, input: f"--toxic-dir {input.toxic}" if input.toxic else "",
        threads: res("distill")["threads"]
        priority: CHAIN_PRIORITY
        resources:
            **job_resources("distill"),
        log:
            "results/logs/unidetox/{text}.log",
        benchmark:
            "results/benchmarks/unidetox/{text}.tsv"
        conda:
            ENV
        shell:
            job(
                "distill --model-dir {input.model}"
                " {params.toxic} --out {output.rows} > {log} 2>&1"
            )

    rule finetune_on_text:
        input:
            model=MODEL_DIR.format(model="{target}"),
            texts=lambda wc: "results/unidetox/{}.jsonl".format(
                "distilled" if wc.method == "unidetox" else "base_samples"
            ),
        output:
            directory("results/models/{target}.{method}.lr{lr}"),
        wildcard_constraints:
            method="unidetox|basesamples",
            lr="[0-9.e+-]+",
        params:
            cfg=step_params("finetune"),
        threads: res("finetune")["threads"]
        priority: CHAIN_PRIORITY
        resources:
            **job_resources("finetune"),
        log:
            "results/logs/finetune/{target}.{method}.lr{lr}.log",
        benchmark:
            "results/benchmarks/finetune/{target}.{method}.lr{lr}.tsv"
        conda:
            ENV
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
                source=lambda wc: MODEL_DIR.format(
                    model=f"{DISTILLER}.{ud_plan.method_of(wc.transferred)}"
                ),
            output:
                directory("results/models/{transferred}"),
            wildcard_constraints:
                transferred="|".join(re.escape(m) for m in TRANSFER_TRAINED),
            params:
                cfg=step_params("transfer"),
                root=lambda wc: wc.transferred.split(".")[0],
                method=lambda wc: ud_plan.method_of(wc.transferred),
            threads: res("finetune")["threads"]
            priority: CHAIN_PRIORITY
            resources:
                **job_resources("finetune"),
            log:
                "results/logs/finetune/{transferred}.log",
            benchmark:
                "results/benchmarks/finetune/{transferred}.tsv"
            conda:
                ENV
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
        wildcard_constraints:
            lam="-?[0-9.e+-]+",
        params:
            cfg=step_params("derive"),
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        log:
            "results/logs/derive/{target}.taskarith.lam{lam}.log",
        benchmark:
            "results/benchmarks/derive/{target}.taskarith.lam{lam}.tsv"
        conda:
            ENV
        shell:
            "detoxlab --params {params.cfg:q} task-arithmetic --model-dir {input.model} --toxic-dir {input.toxic}"
            " --lam={wildcards.lam} --root {wildcards.target} --out {output} > {log} 2>&1"

    rule lm_steer_train:
        input:
            model=MODEL_DIR.format(model="{target}"),
            corpus="results/unidetox/toxic_corpus.jsonl",
        output:
            directory("results/unidetox/lm_steer/{target}"),
        params:
            cfg=step_params("lm_steer"),
        threads: res("lm_steer")["threads"]
        resources:
            **job_resources("lm_steer"),
        log:
            "results/logs/lm_steer/{target}.log",
        benchmark:
            "results/benchmarks/lm_steer/{target}.tsv"
        conda:
            ENV
        shell:
            job(
                "lm-steer-train --model-dir {input.model}"
                " --corpus {input.corpus} --out {output} > {log} 2>&1"
            )

    rule lm_steer_model:
        input:
            model=MODEL_DIR.format(model="{target}"),
            steer="results/unidetox/lm_steer/{target}",
        output:
            directory("results/models/{target}.lmsteer.eps{eps}"),
        wildcard_constraints:
            eps="-?[0-9.e+-]+",
        params:
            cfg=step_params("derive"),
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        log:
            "results/logs/derive/{target}.lmsteer.eps{eps}.log",
        benchmark:
            "results/benchmarks/derive/{target}.lmsteer.eps{eps}.tsv"
        conda:
            ENV
        shell:
            "detoxlab --params {params.cfg:q} lm-steer-model --model-dir {input.model} --steer-dir {input.steer}"
            " --epsilon={wildcards.eps} --root {wildcards.target} --out {output} > {log} 2>&1"

    rule dexperts_guide:
        localrule: True
        input:
            toxic=MODEL_DIR.format(model=TOXIC),
        output:
            directory("results/guides/dexperts.beta{beta}"),
        wildcard_constraints:
            beta="-?[0-9.e+-]+",
        params:
            cfg=step_params("dexperts_guide"),
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        log:
            "results/logs/derive/dexperts.beta{beta}.log",
        benchmark:
            "results/benchmarks/derive/dexperts.beta{beta}.tsv"
        conda:
            ENV
        shell:
            "detoxlab --params {params.cfg:q} dexperts-guide --toxic-dir {input.toxic} --beta={wildcards.beta}"
            " --out {output} > {log} 2>&1"

    rule select_model:
        localrule: True
        input:
            dirs=selection_dirs,
            metrics=selection_metrics,
            reference=selection_reference,
            source=selection_source,
        output:
            directory("results/models/{target}.{method}"),
        wildcard_constraints:
            method="unidetox|basesamples|taskarith|lmsteer",
        params:
            cfg=step_params("select_model"),
            names=lambda wc: " ".join(c.label for c in selection_of(wc).candidates),
            source=lambda wc, input: f"--transfer-from {input.source} --method {wc.method}" if input.source else "",
        threads: res("select")["threads"]
        resources:
            **job_resources("select"),
        log:
            "results/logs/select/{target}.{method}.log",
        benchmark:
            "results/benchmarks/select/{target}.{method}.tsv"
        conda:
            ENV
        shell:
            "detoxlab --params {params.cfg:q} select --kind model --root {wildcards.target} --names {params.names}"
            " --reference {input.reference} {params.source}"
            " --dirs {input.dirs} --metrics {input.metrics} --out {output} > {log} 2>&1"

    rule select_guide:
        localrule: True
        input:
            dirs=selection_dirs,
            metrics=selection_metrics,
            reference=selection_reference,
        output:
            directory("results/guides/{method}"),
        wildcard_constraints:
            method="dexperts",
        params:
            cfg=step_params("select"),
            names=lambda wc: " ".join(c.label for c in selection_of(wc).candidates),
        threads: res("select")["threads"]
        resources:
            **job_resources("select"),
        log:
            "results/logs/select/{method}.log",
        benchmark:
            "results/benchmarks/select/{method}.tsv"
        conda:
            ENV
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
        params:
            cfg=step_params("analysis"),
        threads: res("analysis")["threads"]
        resources:
            **job_resources("analysis"),
        log:
            "results/logs/unidetox/analysis.log",
        benchmark:
            "results/benchmarks/unidetox/analysis.tsv"
        conda:
            ENV
        shell:
            "detoxlab --params {params.cfg:q} unidetox-analysis --distilled {input.distilled}"
            " --base-samples {input.base_samples} --corpus {input.corpus} --out {output.json} > {log} 2>&1"
