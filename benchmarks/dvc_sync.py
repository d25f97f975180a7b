"""Cost of the DVC front end on the embedded default's DAG.

generate_s: writing dvc.yaml from the Snakemake DAG (``detoxlab dvc-sync``).
status_s:   ``dvc status`` on an up-to-date workspace: a scratch git+DVC copy of the workflow whose every stage
            output exists and is committed to dvc.lock, so the time is DVC's per-stage bookkeeping (graph, params,
            dependency hashes from its state database), not the hashing of model weights.

    python benchmarks/dvc_sync.py [--config config/config.yaml] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, emit, median_time  # noqa: E402

COPIED = ["Snakefile", "workflow", "config", "data", "envs", "profiles", "requirements", "src", ".gitignore",
          ".dvcignore"]


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def up_to_date_copy(work: Path, config: str, text: str) -> None:
    from detoxlab.dvcsync.dag import read

    # directory outputs (models, reward models, NADO) get a file inside, so DVC hashes them as trees
    dirs = {d for job in read([config]).jobs for d in job.directories}
    for name in COPIED:
        src = REPO / name
        shutil.copytree(src, work / name) if src.is_dir() else shutil.copy2(src, work / name)
    (work / "dvc.yaml").write_text(text)
    stages = yaml.safe_load(text)["stages"]
    for st in stages.values():
        for entry in st.get("outs", []) + st.get("metrics", []) + st.get("plots", []):
            out = work / (entry if isinstance(entry, str) else next(iter(entry)))
            target = out / "placeholder" if str(out.relative_to(work)) in dirs else out
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{out.name}\n")
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    shutil.copy2(REPO / ".dvc/config", work / ".dvc/config")  # the project's DVC settings
    run(["dvc", "commit", "-f", "-q"], work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.chdir(REPO)
    from detoxlab.dvcsync.stages import render

    result: dict = {}
    generate_s = median_time(lambda: result.update(out=render([args.config])), args.repeats)
    text, n = result["out"]
    with tempfile.TemporaryDirectory(prefix="dvc-bench-") as tmp:
        work = Path(tmp)
        up_to_date_copy(work, args.config, text)
        run(["dvc", "status"], work)  # first call fills DVC's state database, as any earlier run would have
        status_s = median_time(lambda: run(["dvc", "status"], work), args.repeats)
        report = run(["dvc", "status"], work)
        assert "up to date" in report, report[-2000:]  # the timed calls checked every stage, found nothing
    print(f"{n} stages for {args.config}")
    emit(stages=n, generate_s=generate_s, status_s=status_s)


if __name__ == "__main__":
    main()
