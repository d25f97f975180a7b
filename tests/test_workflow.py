"""The workflow itself: dry-runs, lint, a bad config, the smoke run end to end, kill-and-resume, notebook."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.workflow_utils import SMOKE, copy_workflow, env, snakemake, snakemake_cmd

CONFIGS = sorted(p.name for p in (REPO / "config").glob("*.yaml"))
COST_COLUMNS = {"gen_seconds", "seconds_per_token", "job_seconds", "peak_rss_mb"}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    proc = snakemake(work, *SMOKE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.parametrize("name", CONFIGS)
def test_dry_run_succeeds_for_every_config(name, tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(work, "-n", "--configfile", f"config/{name}", "--cores", "1", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (work / "results").exists()


def test_lint_is_clean(tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(work, "--lint", "--configfile", "config/smoke.yaml", timeout=300)
    out = proc.stdout + proc.stderr
    assert "Lints for" not in out, out[-3000:]


@pytest.mark.parametrize("bad, key", [
    ("generation:\n  samples_per_prompt: 3\n  top_pp: 0.9\n", "generation.top_pp"),
    ("systems:\n  targets: [tiny_llama, missing_model]\n", "systems.targets[1]"),
])
def test_bad_config_fails_before_any_job_and_writes_nothing(tmp_path, bad, key):
    work = copy_workflow(tmp_path)
    (work / "config/bad.yaml").write_text(bad)
    proc = snakemake(work, "--configfile", "config/smoke.yaml", "config/bad.yaml", "--cores", "1", timeout=300)
    assert proc.returncode != 0
    assert f"'{key}'" in proc.stdout + proc.stderr
    assert not (work / "results").exists()


def test_smoke_run_produces_the_report(smoke_run):
    report = smoke_run / "results/report"
    for name in ("table.md", "table.csv", "tox_vs_ppl.png", "cost.csv", "summary.json"):
        assert (report / name).stat().st_size > 0, name
    rows = json.loads((report / "summary.json").read_text())["systems"]
    assert {r["system"] for r in rows} == {f"{m}--{g}" for m in ("tiny_llama", "tiny_gemma")
                                           for g in ("none", "preprompt_short")}
    for r in rows:
        assert r["tp_lo"] <= r["tp"] <= r["tp_hi"] and r["emt_lo"] <= r["emt"] <= r["emt_hi"]
        assert r["judge"] != r["model"] and 0 <= r["mmlu_letter"] <= 1 and r["job_seconds"] > 0
        assert 0 <= r["mmlu_answer"] <= 1 and r["heldout_ppl_lo"] <= r["heldout_ppl"] <= r["heldout_ppl_hi"]
    # every number is recomputable from stored rows
    from detoxlab import config as cfgmod
    from detoxlab.artifacts import read_jsonl
    from detoxlab.evaluation import summarize

    os.chdir(smoke_run)
    cfg = cfgmod.load("config/smoke.yaml")
    d = smoke_run / "results/eval/test/tiny_llama--none"
    again = summarize(cfg, read_jsonl(d / "generations.jsonl"), read_jsonl(d / "scores.jsonl"),
                      read_jsonl(d / "ppl.jsonl"))
    stored = json.loads((d / "metrics.json").read_text())
    assert again["toxicity"]["overall"] == stored["toxicity"]["overall"]
    assert again["diversity"] == stored["diversity"]


def test_snakemake_html_report(smoke_run):
    proc = snakemake(smoke_run, "--configfile", "config/smoke.yaml", "config/overlays/base_only.yaml", "--report",
                     "results/report/report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (smoke_run / "results/report/report.html").read_text(errors="ignore")
    assert "tox_vs_ppl.png" in html and "table.csv" in html


def test_rerun_has_nothing_to_do(smoke_run):
    proc = snakemake(smoke_run, "-n", *SMOKE)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run as {rule: count}."""
    counts, table = {}, output.split("Job stats:")[-1].splitlines()
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_changing_one_parameter_reruns_only_downstream_jobs(smoke_run):
    (smoke_run / "config/more_boot.yaml").write_text("evaluation:\n  bootstrap:\n    n_boot: 300\n")
    proc = snakemake(smoke_run, "-n", "--profile", "profiles/default", "--configfile", "config/smoke.yaml",
                     "config/overlays/base_only.yaml", "config/more_boot.yaml", "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert _job_counts(out) == {"metrics": 4, "report": 1, "all": 1}


def test_changing_a_scorer_setting_rescores_without_regenerating(smoke_run):
    (smoke_run / "config/scorer_batch.yaml").write_text("scorer:\n  batch_size: 7\n")
    proc = snakemake(smoke_run, "-n", "--profile", "profiles/default", "--configfile", "config/smoke.yaml",
                     "config/overlays/base_only.yaml", "config/scorer_batch.yaml", "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert _job_counts(out) == {"score": 4, "metrics": 4, "report": 1, "all": 1}


def test_jobs_ran_in_the_warm_worker_and_recorded_their_timing(smoke_run):
    """The run's model jobs were forked by the worker (start-up without imports); every step's output metadata
    says where its time went."""
    log = (smoke_run / "results/logs/worker.log").read_text()
    assert "ready on" in log and "stopped" in log
    metas = sorted((smoke_run / "results/eval").rglob("generations.meta.json"))
    records = [json.loads(m.read_text())["timing"] for m in metas]
    assert records and all(set(r) == {"startup_s", "load_s", "compute_s", "worker", "peak_rss_mb"} for r in records)
    assert any(r["worker"] for r in records)
    # a forked step holds torch and its model (hundreds of MB); the client Snakemake measures holds ~15 MB
    assert all(r["peak_rss_mb"] > 100 for r in records)
    with open(smoke_run / "results/report/table.csv") as f:
        assert all(float(row["peak_rss_mb"]) > 100 for row in csv.DictReader(f))
    forked = [r["startup_s"] for r in records if r["worker"]]
    assert max(forked) < 2.0  # a fresh process spends longer than that importing torch and transformers
    manifest = json.loads((smoke_run / "results/models/tiny_llama/manifest.json").read_text())
    assert manifest["timing"]["compute_s"] >= 0


def test_worker_and_own_process_runs_write_identical_artifacts(smoke_run, tmp_path):
    """The same DAG with every step in its own process (DETOXLAB_NO_WORKER=1) writes byte-identical
    generations, scores, perplexities and report metrics."""
    work = copy_workflow(tmp_path)
    proc = subprocess.run(snakemake_cmd(*SMOKE), cwd=work, env={**env(), "DETOXLAB_NO_WORKER": "1"},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (work / "results/logs/worker.log").exists()
    names = ("generations.jsonl", "scores.jsonl", "ppl.jsonl")
    files = sorted(p.relative_to(smoke_run) for n in names for p in (smoke_run / "results/eval").rglob(n))
    files.append(Path("results/report/metrics.json"))
    assert len(files) > 3
    for rel in files:
        assert (work / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel


def _metric_view(work: Path) -> list[dict]:
    rows = json.loads((work / "results/report/summary.json").read_text())["systems"]
    return sorted(({k: v for k, v in r.items() if k not in COST_COLUMNS} for r in rows), key=lambda r: r["system"])


def test_killed_run_resumes_and_matches_uninterrupted_run(smoke_run, tmp_path):
    work = copy_workflow(tmp_path)
    proc = subprocess.Popen(snakemake_cmd(*SMOKE), cwd=work, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    logs = work / "results/logs/generate"
    while time.time() < deadline and not (logs.exists() and any(logs.iterdir())):
        time.sleep(0.2)
    time.sleep(1.0)  # let the first generation job get under way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # nothing under its final name may be half-written: every model directory has its manifest (written last),
    # and every JSON/JSONL artifact parses
    models = [d for d in (work / "results/models").iterdir() if not d.name.startswith(".")]
    assert models and all((d / "manifest.json").is_file() for d in models)
    for f in (work / "results").rglob("*.json*"):
        if not f.name.startswith(".") and "logs" not in f.parts:
            text = f.read_text()
            if f.suffix == ".jsonl":
                [json.loads(line) for line in text.splitlines()]
            else:
                json.loads(text)
    assert snakemake(work, "--unlock", *SMOKE).returncode == 0
    again = snakemake(work, *SMOKE)
    assert again.returncode == 0, again.stderr[-4000:]
    assert _metric_view(work) == _metric_view(smoke_run)


def test_notebook_redraws_table_and_plot(smoke_run):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks/analysis.ipynb", as_version=4)
    os.environ["DETOXLAB_RESULTS"] = str(smoke_run / "results")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        del os.environ["DETOXLAB_RESULTS"]
    assert (smoke_run / "results/report/notebook_tox_vs_ppl.png").stat().st_size > 0
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "table matches results/report/table.csv" in outputs
