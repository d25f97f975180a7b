"""NADO and ACF in the workflow: every run, baseline and report section on the smoke config's tiny models, the
schedules checked on Snakemake's own job graph, and the paper config's DAG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from detoxlab import config as cfgmod
from detoxlab.acf import plan
from tests.workflow_utils import copy_workflow, run_with_overlay, snakemake

FAST = ("systems:\n  targets: [tiny_llama]\n  guides: []\nunidetox: null\nguided: null\n"
        "evaluation:\n  mmlu:\n    enabled: false\n")


@pytest.fixture(scope="module")
def acf_run(tmp_path_factory) -> Path:
    return run_with_overlay(tmp_path_factory, "acf", FAST)


def _json(path: Path):
    return json.loads(path.read_text())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_iteration_artifact_exists_and_records_its_inputs(acf_run):
    cfg = cfgmod.load(acf_run / "config/smoke.yaml")
    for run in plan.runs(cfg):
        art = plan.run_artifacts(cfg, run.name)
        for p in art["samples"] + art["nado"] + art["models"]:
            assert (acf_run / p).exists(), p
    man = _json(acf_run / "results/models/tiny_llama.acf.sequential.it2/manifest.json")
    assert man["inputs"]["start"].endswith("tiny_llama.acf.sequential.it1")
    assert man["inputs"]["nado"] == plan.nado_path(cfg, "sequential", 2)
    assert man["derived"]["base"] == "../tiny_llama"  # a delta over the root: iterations compound, the chain is flat
    par = _json(acf_run / "results/acf/parallel/nado2/manifest.json")
    assert par["training"]["importance_weighted"] and par["inputs"]["target"].endswith("parallel.it1")
    assert par["inputs"]["samples"] == plan.BASE_SAMPLES
    # each parallel model records the NADO that regularised it: the base one, then N_2 (stale S_0, reweighted)
    nados = [_json(acf_run / plan.model_dir(cfg, "parallel", i) / "manifest.json")["inputs"]["nado"] for i in (1, 2, 3)]
    assert nados == [plan.BASE_NADO, plan.BASE_NADO, plan.nado_path(cfg, "parallel", 2)]
    assert not (acf_run / plan.nado_path(cfg, "parallel", 3)).exists()  # only M_4 would read it
    assert 0 < par["training"]["effective_sample_size"] <= par["training"]["n_samples"]
    base = _json(acf_run / "results/acf/base/nado0/manifest.json")
    assert not base["training"]["importance_weighted"]
    assert set(base["training"]["prompt_r"]) == {"head", "monte_carlo"}


def test_samples_are_pure_labelled_continuations_of_training_prompts(acf_run):
    rows = _rows(acf_run / "results/acf/base/samples0.jsonl")
    prompts = _rows(acf_run / "data/prompts/toxicity.jsonl")
    in_domain = {p["id"] for p in prompts if p["split"] == "train" and p["domain"] == "id"}
    # every in-domain training prompt: no evaluation prompt, and no OOD or neutral one (OOD means unseen)
    assert {r["prompt_id"] for r in rows} == in_domain
    assert all(r["label"] == float(r["toxicity"] <= 0.5) and r["tokens"] is not None for r in rows)
    meta = _json(acf_run / "results/acf/base/samples0.meta.json")
    assert meta["sampling"]["top_k"] == 0 and meta["sampling"]["top_p"] == 1.0
    assert meta["prompts"]["domains"] == ["id"] and meta["prompts"]["n_prompts"] == len(in_domain)


def test_report_has_the_acf_section(acf_run):
    md = (acf_run / "results/report/table.md").read_text()
    assert "## NADO and attribute-controlled fine-tuning" in md
    for label in ("ACF sequential", "ACF parallel", "ACF adaptive", "Filtering", "RL (policy gradient)",
                  "NADO decoding", "Classification FT + regulariser"):
        assert label in md
    assert "non-toxic unconditional samples of the base model" in md  # the adaptive run's general data
    summary = _json(acf_run / "results/report/summary.json")["acf"]
    assert set(summary["parallel_vs_sequential"]) == {"sequential_tp", "parallel_tp", "difference", "lo", "hi",
                                                      "margin", "verdict", "matches"}
    runs = summary["runs"]
    assert runs["sequential"]["critical_path_jobs"] == 3 * 3 and runs["parallel"]["critical_path_jobs"] == 3 + 2
    assert runs["parallel"]["critical_path_s"] < runs["parallel"]["sum_s"]
    assert "| M_3 | N_2 | S_0 from M_0 | M_1 | yes |" in md  # the parallel run's importance-weighted NADO
    assert [g["nado_path"] for g in summary["regularisers"]["parallel"]] == \
        [plan.BASE_NADO, plan.BASE_NADO, "results/acf/parallel/nado2"]
    assert (acf_run / "results/report/acf_iterations.png").stat().st_size > 0
    cls = _json(acf_run / "results/models/tiny_llama.acf.cls_reg/manifest.json")["training"]
    assert {"accuracy", "balanced_accuracy"} <= set(cls["objective_after"]["heldout"])


def _job_graph(work: Path, *configs: str) -> dict[str, set[str]]:
    """Snakemake's own job graph (dry run of every job): output -> the outputs of the jobs it waits for."""
    proc = snakemake(work, "-n", "--forceall", "--configfile", *configs, "--cores", "3", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = []
    for block in proc.stdout.split("\nrule ")[1:]:
        fields = dict(re.findall(r"^    (input|output): (.*)$", block, flags=re.M))
        if "output" in fields:
            jobs.append((fields["output"].split(", "), fields.get("input", "").split(", ")))
    made_by = {o: tuple(outs) for outs, _ in jobs for o in outs}
    return {outs[0]: {made_by[i][0] for i in ins if i in made_by} for outs, ins in jobs}


@pytest.fixture(scope="module", params=[2, 3])
def smoke_graph(request, tmp_path_factory) -> tuple[dict[str, set[str]], dict]:
    """The smoke config's job graph at ``acf.iterations`` 2 and 3, and its config."""
    work = copy_workflow(tmp_path_factory.mktemp(f"dag{request.param}"))
    (work / "config/fast.yaml").write_text(FAST + f"acf:\n  iterations: {request.param}\n")
    cfg = cfgmod.load(work / "config/smoke.yaml", {"acf": {"iterations": request.param}})
    return _job_graph(work, "config/smoke.yaml", "config/fast.yaml"), cfg


def _is_run_artifact(cfg: dict, path: str) -> bool:
    """S_i, N_i or M_i of some run (not the baselines, the general text or the classification data)."""
    name = path.rsplit("/", 1)[-1]
    return plan.parse_model(cfg, name) is not None or (
        path.startswith(f"{plan.ACF_DIR}/") and name.startswith(("samples", "nado")))


def test_every_acf_artifact_in_the_dag_is_read(smoke_graph):
    """No job whose output only the report's bookkeeping (its benchmark and NADO inputs) asks for: each S_i, N_i,
    M_i is read by another job, or is a run's final model, or is samples the report plots."""
    graph, cfg = smoke_graph
    readers = {d for job, deps in graph.items() if job != "results/report/table.md" for d in deps}
    leaves = {p for p in graph if _is_run_artifact(cfg, p) and p not in readers}
    finals = {plan.model_dir(cfg, r.name, plan.iterations(cfg)) for r in plan.runs(cfg)}
    plotted = {s for r in plan.runs(cfg) for s in plan.report_samples(cfg, r.name)}
    assert finals <= set(graph)
    assert leaves <= finals | plotted, sorted(leaves - finals - plotted)


def test_parallel_iterations_have_no_edge_between_their_three_jobs(smoke_graph):
    graph, cfg = smoke_graph
    n = plan.iterations(cfg)

    def reaches(a: str, b: str) -> bool:  # a waits (directly or not) for b
        seen, todo = set(), [a]
        while todo:
            x = todo.pop()
            for d in graph.get(x, ()):
                if d == b:
                    return True
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return False

    for i in range(2, n + 1):  # the last iteration has no N_n: only M_{n+1} would read it
        trio = [plan.model_dir(cfg, "parallel", i), plan.samples_path(cfg, "parallel", i - 1)]
        trio += [plan.nado_path(cfg, "parallel", i)] if i < n else []
        assert all(t in graph for t in trio), trio
        assert not any(reaches(a, b) for a in trio for b in trio if a != b)
    assert plan.nado_path(cfg, "parallel", n) not in graph
    # the sequential run is one chain: its last model waits for every sample set and NADO before it
    last = plan.model_dir(cfg, "sequential", n)
    art = plan.run_artifacts(cfg, "sequential")
    assert all(reaches(last, p) for p in art["samples"] + art["nado"] + art["models"] if p != last)


def test_paper_config_runs_acf_on_gpus(tmp_path):
    work = copy_workflow(tmp_path / "paper")
    proc = snakemake(work, "-n", "--configfile", "config/paper.yaml", "--cores", "1", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for rule in ("acf_samples", "nado", "acf_finetune", "acf_rl"):
        block = out[out.index(f"rule {rule}:"):][:2000]
        assert "gpu=1" in block, rule
    cfg = cfgmod.load(work / "config/paper.yaml")
    assert cfg["acf"]["data"]["source"] == "toxigen" and cfg["acf"]["general"]["source"] == "wikitext"
    assert cfg["acf"]["classification"]["source"] == "jigsaw"
    assert plan.model_dir(cfg, "parallel", plan.iterations(cfg)) in out
