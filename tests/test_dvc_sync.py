"""dvc.yaml generated from the Snakemake DAG: the pieces by hand, then real `dvc` commands in a scratch git repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from detoxlab.dvcsync import params, timestamps
from detoxlab.dvcsync.dag import Job
from detoxlab.dvcsync.stages import stage_name
from tests.conftest import REPO
from tests.workflow_utils import copy_workflow, env

# The smoke models, one target, no guide, no method sections: seven stages (two models, the four evaluation
# jobs, the report), each a separate Snakemake start, which is what a DVC test pays for.
CONFIGS = ["config/smoke.yaml", "config/dvc_test.yaml"]
OVERLAY = """\
systems: {targets: [tiny_llama], guides: []}
evaluation: {mmlu: {enabled: false}}
unidetox: null
guided: null
acf: null
"""
# the toxicity threshold is read by the metrics step and printed by the report; the samples stay as they are
THRESHOLD_DOWNSTREAM = {"metrics-test-tiny_llama-none", "report"}


# ---- the pieces, by hand ---------------------------------------------------------------------------------------

def test_params_json_leaves_map_to_config_keys_and_attribute_views_to_their_sources():
    cfg = {"generation": {"samples_per_prompt": 4, "top_p": 0.9}, "prompts": {"path": "p.jsonl"}, "seed": 0}
    assert params.read_keys(json.dumps(cfg), {}) == ["generation.samples_per_prompt", "generation.top_p",
                                                    "prompts.path", "seed"]
    view = {"prompts": ["guided.attributes.sentiment.prompts", "guided.attributes.sentiment.evaluation"],
            "generation.samples_per_prompt": ["generation.samples_per_prompt",
                                              "guided.attributes.sentiment.evaluation"]}
    assert params.read_keys(json.dumps(cfg), view) == [
        "generation.samples_per_prompt", "guided.attributes.sentiment.evaluation", "generation.top_p",
        "guided.attributes.sentiment.prompts", "seed"]


def test_file_params_list_the_fewest_keys_present_in_each_file():
    raw = {"generation": {"samples_per_prompt": 4, "top_p": 0.9}, "models": {"a": {"arch": "x", "seed": 1}},
           "evaluation": {"bootstrap": {"n_boot": 9}, "splits": ["test"]}}
    overlay = {"generation": {"top_p": 0.5}}
    keys = ["generation.samples_per_prompt", "generation.top_p",  # all of `generation`: listed as the mapping
            "models.a.arch", "models.a.seed", "evaluation.bootstrap.n_boot",
            "evaluation.bootstrap.alpha",  # a schema default, absent from the file: its present prefix
            "device"]  # absent everywhere: covered by the schema, a code dependency
    assert params.file_params(keys, {"c.yaml": raw, "o.yaml": overlay}) == [
        {"c.yaml": ["generation", "models", "evaluation.bootstrap"]}, {"o.yaml": ["generation"]}]


def test_stage_names_use_only_characters_dvc_allows():
    job = Job(rule="generate", wildcards={"split": "sentiment.test", "model": "m.unidetox.lr0.001", "guide": "none"},
              inputs=[], outputs=["o"], directories=[], benchmark=None, params_json=None, snakefile="s",
              input_items=[], same_rule_upstream=False)
    assert stage_name(job) == "generate-sentiment_test-m_unidetox_lr0_001-none"


def test_restore_orders_mtimes_by_dag_level_and_leaves_changed_stages_alone(tmp_path, monkeypatch):
    (tmp_path / "src.txt").write_text("s")
    (tmp_path / "model").mkdir()
    (tmp_path / "model/w.bin").write_text("w")
    for name in ("gen.jsonl", "score.jsonl", "other.jsonl"):
        (tmp_path / name).write_text(name)
    stages = {"score": {"deps": ["gen.jsonl"], "outs": ["score.jsonl"]},
              "gen": {"deps": ["model", "src.txt"], "outs": ["gen.jsonl"]},
              "model": {"deps": ["src.txt"], "outs": ["model"]},
              "other": {"deps": ["gen.jsonl"], "metrics": ["other.jsonl"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    old = 1_000_000.0
    for p in [tmp_path / n for n in ("model", "model/w.bin", "gen.jsonl", "score.jsonl", "other.jsonl")]:
        os.utime(p, (old, old))
    monkeypatch.setattr(timestamps, "changed_stages", lambda root: {"other"})
    assert timestamps.levels(stages) == {"score": 2, "gen": 1, "model": 0, "other": 2}
    assert timestamps.restore(tmp_path / "dvc.yaml") == (3, ["other"])
    mt = {n: (tmp_path / n).stat().st_mtime for n in ("src.txt", "model", "model/w.bin", "gen.jsonl", "score.jsonl")}
    assert mt["src.txt"] < mt["model"] == mt["model/w.bin"] < mt["gen.jsonl"] < mt["score.jsonl"]
    assert (tmp_path / "other.jsonl").stat().st_mtime == old  # DVC says it changed: Snakemake decides


def test_committed_dvc_yaml_is_the_generated_one():
    proc = subprocess.run(["detoxlab", "dvc-sync", "--check"], cwd=REPO, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- real dvc in a scratch git repository ----------------------------------------------------------------------

def run(cwd: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def scratch_repo(path: Path) -> Path:
    copy_workflow(path)
    shutil.copytree(REPO / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(REPO / name, path / name)
    shutil.copytree(REPO / ".dvc", path / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    (path / CONFIGS[1]).write_text(OVERLAY)
    run(path, "detoxlab", "dvc-sync", "--configfile", *CONFIGS)
    run(path, "git", "init", "-q")
    # an identity of the repository's own: `git commit` and `dvc exp run` commit, CI may have none configured
    run(path, "git", "config", "user.name", "detoxlab tests")
    run(path, "git", "config", "user.email", "tests@detoxlab.invalid")
    commit(path, "pipeline")
    return path


def commit(repo: Path, msg: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", msg)


def snakemake_plan(repo: Path) -> set[str]:
    """Stages whose outputs `snakemake -n` would write."""
    out = run(repo, "snakemake", "-n", "--configfile", *CONFIGS).stdout
    planned = {f.strip() for line in re.findall(r"^\s+output: (.+)$", out, re.M) for f in line.split(",")}
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {n for n, st in stages.items() if planned & set(timestamps.stage_files(st)[1])}


def dvc_status(repo: Path) -> set[str]:
    return set(json.loads(run(repo, "dvc", "status", "--json").stdout or "{}"))


def downstream(repo: Path, names: set[str]) -> set[str]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    out = set(names)
    while True:
        produced = {o for n in out for o in timestamps.stage_files(stages[n])[1]}
        more = {n for n, st in stages.items() if produced & set(timestamps.stage_files(st)[0])} - out
        if not more:
            return out
        out |= more


def ran_stages(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """`dvc repro` in a fresh repo, and beside it a plain `snakemake --cores 2` run of the same configs."""
    repo = scratch_repo(tmp_path_factory.mktemp("dvc") / "repo")
    plain = scratch_repo(tmp_path_factory.mktemp("dvc") / "plain")
    sm = subprocess.Popen(["snakemake", "--cores", "1", "--configfile", *CONFIGS], cwd=plain, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = run(repo, "dvc", "repro").stdout
    assert sm.wait(timeout=900) == 0, sm.stdout.read()[-3000:]
    commit(repo, "reproduced")
    return repo, plain, log


@pytest.mark.slow
def test_dvc_repro_runs_every_job_once_and_matches_snakemake_byte_for_byte(reproduced):
    repo, plain, log = reproduced
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert ran_stages(log) == set(stages) and len(stages) == 7
    for rel in ["results/report/metrics.json", "results/report/tradeoff.csv",
                *[f"results/eval/test/tiny_llama--none/{f}.jsonl" for f in ("generations", "scores", "ppl")]]:
        assert (repo / rel).read_bytes() == (plain / rel).read_bytes(), rel
    assert "Nothing to be done" in run(repo, "snakemake", "-n", "--configfile", *CONFIGS).stdout
    assert dvc_status(repo) == set()


@pytest.mark.slow
def test_one_parameter_change_reruns_exactly_its_downstream_jobs_in_both_front_ends(reproduced):
    repo = reproduced[0]
    cfg = repo / CONFIGS[0]
    cfg.write_text(cfg.read_text().replace("toxicity: {threshold: 0.5,", "toxicity: {threshold: 0.001,"))
    changed = dvc_status(repo)
    assert changed == THRESHOLD_DOWNSTREAM  # the stages that read the key...
    assert downstream(repo, changed) == THRESHOLD_DOWNSTREAM == snakemake_plan(repo)  # ...and nothing more
    assert ran_stages(run(repo, "dvc", "repro").stdout) == THRESHOLD_DOWNSTREAM
    assert "Nothing to be done" in run(repo, "snakemake", "-n", "--configfile", *CONFIGS).stdout
    commit(repo, "lower threshold")
    diff = json.loads(run(repo, "dvc", "metrics", "diff", "HEAD~1", "--json").stdout)["results/report/metrics.json"]
    assert any(k.startswith("test.tiny_llama--none.tp") for k in diff)  # more continuations count as toxic
    assert not any(k.startswith(("test.tiny_llama--none.ppl", "test.tiny_llama--none.emt")) for k in diff)


@pytest.mark.slow
def test_push_then_pull_into_a_fresh_clone_leaves_snakemake_nothing_to_do(reproduced, tmp_path):
    repo = reproduced[0]
    run(repo, "dvc", "remote", "add", "-f", "-d", "shared", str(tmp_path / "remote"))
    commit(repo, "shared remote")  # the remote is project config: clones find it
    run(repo, "dvc", "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run(clone, "dvc", "pull")
    weights = "results/models/tiny_llama/model.safetensors"
    assert (clone / weights).read_bytes() == (repo / weights).read_bytes()
    # the pitfall, made certain: every restored output older than its inputs
    for i, p in enumerate(sorted((clone / "results").rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, (1_000_000 + i, 1_000_000 + i), follow_symlinks=False)
    assert snakemake_plan(clone)  # Snakemake would rerun completed jobs
    assert "of 7 up-to-date stage(s)" in run(clone, "detoxlab", "dvc-touch").stdout
    assert "Nothing to be done" in run(clone, "snakemake", "-n", "--configfile", *CONFIGS).stdout
    assert dvc_status(clone) == set()


@pytest.mark.slow
def test_a_corrupted_cache_file_is_detected_and_not_used(reproduced, tmp_path):
    repo = reproduced[0]
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    shutil.copytree(repo / ".dvc/cache", clone / ".dvc/cache")
    rel = "results/eval/test/tiny_llama--none/generations.jsonl"
    run(clone, "dvc", "checkout")
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["generate-test-tiny_llama-none"]
    md5 = next(o["md5"] for o in lock["outs"] if o["path"] == rel)
    cached = clone / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    cached.chmod(0o644)
    data = bytearray(cached.read_bytes())
    data[10] ^= 1
    cached.write_bytes(bytes(data))
    (clone / rel).unlink()
    run(clone, "dvc", "checkout", ok=False)
    touched = run(clone, "detoxlab", "dvc-touch")
    assert "generate-test-tiny_llama-none" in touched.stdout  # named as changed, its outputs not blessed
    assert "generate-test-tiny_llama-none" in dvc_status(clone)
    assert "generate-test-tiny_llama-none" in snakemake_plan(clone)  # so both front ends rebuild it
    assert not cached.exists() or cached.read_bytes() != bytes(data)


@pytest.mark.slow
def test_metrics_plots_and_an_experiment_with_one_hyperparameter(reproduced):
    """Last: `dvc exp run` leaves its parameter in the workspace."""
    repo = reproduced[0]
    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert '"tiny_llama--none"' in flat and '"ppl"' in flat
    plots = json.loads(run(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    scatter = plots["results/report/tradeoff.csv"][0]["content"]
    assert scatter["mark"]["type"] == "point" and scatter["encoding"]["x"]["field"] == "ppl"
    assert [row["system"] for row in scatter["data"]["values"]] == ["tiny_llama--none"]
    assert plots["results/report/tox_vs_ppl.png"][0]["type"] == "image"
    run(repo, "dvc", "plots", "show", "-o", "plots_html")
    assert (repo / "plots_html/index.html").stat().st_size > 0
    before = json.loads((repo / "results/report/metrics.json").read_text())
    log = run(repo, "dvc", "exp", "run", "-n", "boot50", "-S", f"{CONFIGS[0]}:evaluation.bootstrap.n_boot=50").stdout
    assert ran_stages(log) == {"metrics-test-tiny_llama-none", "report"}
    after = json.loads((repo / "results/report/metrics.json").read_text())
    assert after != before and after["test"]["tiny_llama--none"]["tp"] == before["test"]["tiny_llama--none"]["tp"]
    table = json.dumps(json.loads(run(repo, "dvc", "exp", "show", "--json").stdout))
    assert "boot50" in table
    assert json.dumps(after["test"]["tiny_llama--none"]["emt_hi"]) in table  # the experiment's own metrics
