# NADO and attribute-controlled fine-tuning (METHODS.md section 3): labelled samples S_i, NADO models N_i and
# fine-tuned models M_i per run, wired as the run's schedule says (acf/plan.py); the baselines (filtering, RL,
# NADO decoding) and the classification experiment. The rules exist only when the config has an `acf` section.

if config.get("acf"):

    ACF = config["acf"]
    ACF_BASE = ACF["base"]
    ACF_ROOT = MODEL_DIR.format(model=ACF_BASE)

    wildcard_constraints:
        run="|".join([acf_plan.BASE] + list(ACF["runs"])),
        i="[0-9]+",

    rule acf_samples:
        input:
            model=lambda wc: acf_model_deps(acf_plan.model_name(config, wc.run, int(wc.i))),
            prompts=prompt_files,
        output:
            rows="results/acf/{run}/samples{i}.jsonl",
            meta="results/acf/{run}/samples{i}.meta.json",
        log:
            "results/logs/acf/{run}.samples{i}.log",
        benchmark:
            "results/benchmarks/acf/{run}.samples{i}.tsv"
        conda:
            ENV
        threads: res("acf_samples")["threads"]
        resources:
            **job_resources("acf_samples"),
        params:
            cfg=acf_params("acf_samples"),
            model=lambda wc: acf_plan.model_dir(config, wc.run, int(wc.i)),
        shell:
            job("acf-samples --model-dir {params.model}" " --out {output.rows} > {log} 2>&1")

    rule nado:
        input:
            samples=lambda wc: nado_job(wc).samples,
            models=lambda wc: list(
                dict.fromkeys(acf_model_deps(nado_job(wc).proposal) + acf_model_deps(nado_job(wc).target))
            ),
            backbone=MODEL_DIR.format(model=ACF["nado"]["backbone"]),
            previous=lambda wc: [nado_job(wc).previous] if nado_job(wc).previous else [],
        output:
            directory("results/acf/{run}/nado{i}"),
        log:
            "results/logs/acf/{run}.nado{i}.log",
        benchmark:
            "results/benchmarks/acf/{run}.nado{i}.tsv"
        conda:
            ENV
        threads: res("nado")["threads"]
        resources:
            **job_resources("nado"),
        params:
            cfg=acf_params("nado"),
            proposal=lambda wc: MODEL_DIR.format(model=nado_job(wc).proposal),
            target=lambda wc: MODEL_DIR.format(model=nado_job(wc).target),
            previous=lambda wc, input: f"--previous {input.previous}" if input.previous else "",
        shell:
            job(
                "nado --samples {input.samples}"
                " --proposal-dir {params.proposal} --target-dir {params.target} --backbone-dir {input.backbone}"
                " {params.previous} --out {output} > {log} 2>&1"
            )

    rule acf_general:
        input:
            ACF_ROOT,
        output:
            rows=acf_plan.GENERAL,
            meta=acf_plan.GENERAL.replace(".jsonl", ".meta.json"),
        log:
            "results/logs/acf/general.log",
        benchmark:
            "results/benchmarks/acf/general.tsv"
        conda:
            ENV
        threads: res("acf_samples")["threads"]
        resources:
            **job_resources("acf_samples"),
        params:
            cfg=acf_params("acf_general"),
        shell:
            job("acf-general --model-dir {input}" " --out {output.rows} > {log} 2>&1")

    rule acf_finetune:
        input:
            start=lambda wc: acf_model_deps(acf_start(wc)),
            root=ACF_ROOT,
            nado=lambda wc: acf_plan.finetune_nado(config, wc.run, int(wc.i)),
            data=acf_plan.BASE_SAMPLES,
            general=acf_general_input,
        output:
            directory(f"results/models/{ACF_BASE}.acf.{{run}}.it{{i}}"),
        log:
            "results/logs/acf/{run}.it{i}.log",
        benchmark:
            "results/benchmarks/acf/{run}.it{i}.tsv"
        conda:
            ENV
        threads: res("acf_finetune")["threads"]
        resources:
            **job_resources("acf_finetune"),
        params:
            cfg=lambda wc: acf_params("acf_finetune", f"acf.runs.{wc.run}"),
            start=lambda wc: MODEL_DIR.format(model=acf_start(wc)),
            root=ACF_BASE,
            general=lambda wc, input: f"--general {input.general}" if input.general else "",
        shell:
            job(
                "acf-finetune --run {wildcards.run}"
                " --iteration {wildcards.i} --data {input.data} --start-dir {params.start} --nado-dir {input.nado}"
                " --root-dir {input.root} --root {params.root} {params.general} --out {output} > {log} 2>&1"
            )

    if ACF["baselines"].get("filtering") is not None:

        rule acf_filtering:
            input:
                model=ACF_ROOT,
                data=acf_plan.BASE_SAMPLES,
            output:
                directory(f"results/models/{ACF_BASE}.acf.filtering"),
            log:
                "results/logs/acf/filtering.log",
            benchmark:
                "results/benchmarks/acf/filtering.tsv"
            conda:
                ENV
            threads: res("acf_finetune")["threads"]
            resources:
                **job_resources("acf_finetune"),
            params:
                cfg=acf_params("acf_filtering"),
                root=ACF_BASE,
            shell:
                job(
                    "acf-filtering --data {input.data}"
                    " --model-dir {input.model} --root {params.root} --out {output} > {log} 2>&1"
                )

    if ACF["baselines"].get("rl") is not None:

        rule acf_rl:
            input:
                model=ACF_ROOT,
                prompts=prompt_files,
            output:
                directory(f"results/models/{ACF_BASE}.acf.rl"),
            log:
                "results/logs/acf/rl.log",
            benchmark:
                "results/benchmarks/acf/rl.tsv"
            conda:
                ENV
            threads: res("acf_finetune")["threads"]
            resources:
                **job_resources("acf_finetune"),
            params:
                cfg=acf_params("acf_rl"),
                root=ACF_BASE,
            shell:
                job("acf-rl --model-dir {input.model}" " --root {params.root} --out {output} > {log} 2>&1")

    rule acf_classification_data:
        input:
            acf_plan.BASE_SAMPLES,
        output:
            rows=acf_plan.CLASSIFICATION,
            meta=acf_plan.CLASSIFICATION.replace(".jsonl", ".meta.json"),
        log:
            "results/logs/acf/classification_data.log",
        benchmark:
            "results/benchmarks/acf/classification_data.tsv"
        localrule: True
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        params:
            cfg=acf_params("acf_classification_data"),
        shell:
            "detoxlab --params {params.cfg:q} acf-classification-data --samples {input} --out {output.rows}"
            " > {log} 2>&1"

    rule acf_classify:
        # cls: the task alone; cls_reg: the task with q* held on the generation contexts of S_0
        input:
            model=ACF_ROOT,
            data=acf_plan.CLASSIFICATION,
            nado=lambda wc: [acf_plan.BASE_NADO, acf_plan.BASE_SAMPLES] if wc.variant == "cls_reg" else [],
        output:
            directory(f"results/models/{ACF_BASE}.acf.{{variant}}"),
        log:
            "results/logs/acf/{variant}.log",
        benchmark:
            "results/benchmarks/acf/{variant}.tsv"
        wildcard_constraints:
            variant="cls|cls_reg",
        conda:
            ENV
        threads: res("acf_finetune")["threads"]
        resources:
            **job_resources("acf_finetune"),
        params:
            cfg=acf_params("acf_classify"),
            root=ACF_BASE,
            reg=lambda wc, input: (f"--nado-dir {input.nado[0]} --anchors {input.nado[1]}" if input.nado else ""),
        shell:
            job(
                "acf-classify --data {input.data}"
                " --model-dir {input.model} --root {params.root} {params.reg} --out {output} > {log} 2>&1"
            )

    rule nado_guide:
        input:
            acf_plan.BASE_NADO,
        output:
            directory(f"results/guides/{acf_plan.NADO_GUIDE}"),
        log:
            "results/logs/acf/nado_guide.log",
        benchmark:
            "results/benchmarks/acf/nado_guide.tsv"
        localrule: True
        conda:
            ENV
        threads: res("derive")["threads"]
        resources:
            **job_resources("derive"),
        shell:
            "detoxlab nado-guide --nado-dir {input} --out {output} > {log} 2>&1"
