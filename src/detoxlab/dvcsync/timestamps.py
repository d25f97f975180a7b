"""Make Snakemake trust what DVC restored.

``dvc pull`` / ``dvc checkout`` write outputs in no particular order, so an output can end up older than its
inputs and Snakemake would rerun a completed job. DVC knows better: a stage that ``dvc status`` does not report
has exactly the deps and outs recorded in dvc.lock. For those stages we rewrite the mtimes of their outputs in
the DAG's order (each stage a step later than every stage it depends on, all later than the source files), which
is the order Snakemake would have written them in. Stages DVC reports as changed are left alone, so Snakemake
still reruns whatever really is out of date.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import yaml

STEP_S = 0.01  # mtime gap between consecutive DAG levels


class TouchError(RuntimeError):
    pass


def _paths(entries: list) -> list[str]:
    """Paths of a stage's deps/outs/metrics/plots list (entries are strings or {path: options})."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def stage_files(stage: dict) -> tuple[list[str], list[str]]:
    """(deps, outputs) of one dvc.yaml stage."""
    outs = _paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots"))
    return _paths(stage.get("deps")), outs


def changed_stages(cwd: str | Path = ".") -> set[str]:
    """Names of the stages ``dvc status`` reports (deps, params, outs or command differ from dvc.lock)."""
    proc = subprocess.run(["dvc", "status", "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TouchError(f"`dvc status` failed: {proc.stderr.strip()[-500:]}")
    return {name.rpartition(":")[2] for name in json.loads(proc.stdout or "{}")}


def levels(stages: dict[str, dict]) -> dict[str, int]:
    """Each stage's depth: one more than the deepest stage producing one of its deps (0 for none)."""
    producer = {out: name for name, st in stages.items() for out in stage_files(st)[1]}
    depth: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...] = ()) -> int:
        if name not in depth:
            if name in trail:
                raise TouchError(f"dvc.yaml has a cycle through stage '{name}'")
            ups = [producer[d] for d in stage_files(stages[name])[0] if d in producer]
            depth[name] = 1 + max((visit(u, trail + (name,)) for u in ups), default=-1)
        return depth[name]

    for name in stages:
        visit(name)
    return depth


def _set_mtime(path: Path, t: float) -> None:
    if path.is_dir():
        for sub in sorted(path.rglob("*")):
            os.utime(sub, (t, t), follow_symlinks=False)
    os.utime(path, (t, t), follow_symlinks=False)


def restore(dvc_yaml: str | Path = "dvc.yaml") -> tuple[int, list[str]]:
    """Rewrite output mtimes of every up-to-date stage in DAG order.

    Returns (the number of stages touched, the stages left alone because DVC reports them changed: a param,
    a dep or an output differs from dvc.lock, or the cached copy failed its hash check).
    """
    dvc_yaml = Path(dvc_yaml)
    root = dvc_yaml.parent
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    changed = changed_stages(root)
    depth = levels(stages)
    produced = {o for st in stages.values() for o in stage_files(st)[1]}
    sources = {d for st in stages.values() for d in stage_files(st)[0] if d not in produced}
    newest = max((os.stat(root / s).st_mtime for s in sources if (root / s).exists()), default=0.0)
    base = max(time.time(), newest) + STEP_S
    touched, left = 0, []
    for name in sorted(stages, key=lambda n: depth[n]):
        outs = [root / o for o in stage_files(stages[name])[1]]
        if name in changed or not all(o.exists() for o in outs):
            left.append(name)
            continue
        for out in outs:
            _set_mtime(out, base + depth[name] * STEP_S)
        touched += 1
    return touched, left
