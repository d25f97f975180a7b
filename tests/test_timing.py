"""Step timing records: start-up, loading and compute, attached to the output's metadata."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from detoxlab import timing


def test_record_splits_startup_loading_and_compute(monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr(timing.time, "time", lambda: clock["t"])
    perf = {"t": 0.0}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: perf["t"])
    monkeypatch.setenv(timing.JOB_START_ENV, "997.5")  # the job's process started 2.5 s before the step
    timing.begin()
    with timing.loading():
        perf["t"] += 1.25
        with timing.loading():  # nested loads count once
            perf["t"] += 0.5
    clock["t"] += 4.0  # 4 s of step time, 1.75 of it loading
    rec = timing.record()
    assert rec.pop("peak_rss_mb") > 1  # this process's own peak, in MB
    assert rec == {"startup_s": 2.5, "load_s": 1.75, "compute_s": 2.25, "worker": True}


def test_counts_as_loading_decorator(monkeypatch):
    timing.begin()

    @timing.counts_as_loading
    def load():
        time.sleep(0.05)
        return 7

    assert load() == 7
    assert timing.record()["load_s"] >= 0.05


def test_process_start_time_of_a_child_started_now():
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        time.sleep(0.3)
        started = timing.process_start_time(child.pid)
    finally:
        child.kill()
        child.wait()
    assert before - 0.05 <= started <= before + 0.3


def test_attach_writes_the_record_into_each_kind_of_metadata(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model/manifest.json").write_text(json.dumps({"kind": "model"}))
    (tmp_path / "rows.meta.json").write_text(json.dumps({"n": 3}))
    (tmp_path / "rows.jsonl").write_text("{}\n")
    (tmp_path / "result.json").write_text(json.dumps({"accuracy": 0.5}))
    timing.begin()
    for out, meta in (("model", "model/manifest.json"), ("rows.jsonl", "rows.meta.json"),
                      ("result.json", "result.json")):
        timing.attach(tmp_path / out)
        data = json.loads((tmp_path / meta).read_text())
        assert set(data["timing"]) == {"startup_s", "load_s", "compute_s", "worker", "peak_rss_mb"}
    assert json.loads((tmp_path / "rows.meta.json").read_text())["n"] == 3
    assert (tmp_path / "rows.jsonl").read_text() == "{}\n"  # the rows themselves are untouched
    assert timing.metadata_file(tmp_path / "report.md") is None


def test_a_job_keeps_every_thread_pool_to_its_grant():
    """Two 1-thread jobs on two cores must not each start a pool per core: torch, BLAS (already started, as in
    a job forked by the worker) and the tokenizers' pool all get the granted threads."""
    code = ("import numpy, torch, os, json; from threadpoolctl import threadpool_info; "
            "from detoxlab.cli import limit_threads; limit_threads(1); "
            "print(json.dumps([torch.get_num_threads(), max(p['num_threads'] for p in threadpool_info()), "
            "os.environ['RAYON_NUM_THREADS'], os.environ['OMP_NUM_THREADS']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [1, 1, "1", "1"]
