"""The warm worker: a job's step runs in a fork of a server that imported the stack once, and behaves as if it
ran in the job's own process (streams, exit status, environment, working directory, being killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detoxlab.worker import DISABLE_ENV, SOCKET_ENV
from tests.conftest import REPO

CLIENT = [sys.executable, "-c", "import sys; from detoxlab.worker.client import dispatch; "
                                "s = dispatch(sys.argv[1:]); sys.exit(99 if s is None else s)"]


def _wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def server(tmp_path):
    """A real server whose jobs run ``tests.worker_entry:main``."""
    sock = str(tmp_path / "w.sock")
    log = open(tmp_path / "worker.log", "w")
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    proc = subprocess.Popen([sys.executable, "-m", "detoxlab.worker.server", "--socket", sock, "--parent",
                             str(parent.pid), "--entry", "tests.worker_entry:main"], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    assert _wait_for(lambda: os.path.exists(sock)), (tmp_path / "worker.log").read_text()
    yield {"sock": sock, "proc": proc, "parent": parent, "log": tmp_path / "worker.log"}
    for p in (proc, parent):
        p.kill()
        p.wait()
    log.close()


def _client(server, *args, env=None, **kw):
    e = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    e.update({SOCKET_ENV: server["sock"], **(env or {})})
    return subprocess.run([*CLIENT, *args], env=e, capture_output=True, text=True, timeout=60, **kw)


def test_job_streams_status_env_and_cwd_are_the_clients(server, tmp_path):
    out = _client(server, "echo", "hello")
    assert (out.returncode, out.stdout, out.stderr) == (0, "hello\n", "err:hello\n")
    assert _client(server, "exit", "3").returncode == 3
    failed = _client(server, "raise")
    assert failed.returncode == 1 and "RuntimeError: boom" in failed.stderr
    where = _client(server, "env", "JOB_ONLY_VAR", env={"JOB_ONLY_VAR": "x1"}, cwd=tmp_path)
    assert where.stdout.split() == ["x1", str(tmp_path)]
    # the fork ran the job, not the client: the server logged it
    assert "job " in server["log"].read_text()


def test_killing_the_job_process_kills_its_step(server, tmp_path):
    pidfile = tmp_path / "pid"
    e = {**os.environ, SOCKET_ENV: server["sock"]}
    client = subprocess.Popen([*CLIENT, "pid", str(pidfile)], env=e)
    assert _wait_for(lambda: pidfile.exists() and pidfile.read_text())
    step = int(pidfile.read_text())
    assert step != client.pid
    client.send_signal(signal.SIGTERM)  # what Snakemake and SLURM do to a job
    client.wait()
    assert _wait_for(lambda: not Path(f"/proc/{step}").exists() or
                     Path(f"/proc/{step}/stat").read_text().split()[2] == "Z", timeout=10)


def test_refused_and_absent_servers_leave_the_job_to_its_own_process(server, tmp_path):
    # an import-time setting differs: the server refuses, the client runs the step itself (exit 99 here)
    assert _client(server, "echo", "x", env={"HF_HOME": str(tmp_path)}).returncode == 99
    assert _client(server, "echo", "x", env={DISABLE_ENV: "1"}).returncode == 99
    assert _client(server, "echo", "x", env={"SLURM_JOB_ID": "12"}).returncode == 99
    gone = {**os.environ, SOCKET_ENV: str(tmp_path / "nothing.sock")}
    assert subprocess.run([*CLIENT, "echo", "x"], env=gone, timeout=60).returncode == 99


def test_server_exits_with_the_process_that_started_it(server):
    server["parent"].kill()
    server["parent"].wait()
    assert server["proc"].wait(timeout=10) == 0
    assert not os.path.exists(server["sock"])


def test_a_real_step_writes_the_same_output_through_the_worker(tmp_path, tiny_llama_dir):
    """``detoxlab score`` run by the real server equals the same step run in its own process, and its metadata
    records start-up, loading and compute."""
    rows = [{"prompt_id": f"p{i}", "sample": 0, "prompt": "You are", "continuation": text}
            for i, text in enumerate(["a lovely person", "a damn idiot", "here"])]
    gens = tmp_path / "gens.jsonl"
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"type": "profanity_check", "batch_size": 8}
    params = json.dumps({"scorer": spec, "evaluation": {"scorers": {"profanity_check": spec},
                                                        "primary": "profanity_check"}})
    sock = str(tmp_path / "real.sock")
    proc = subprocess.Popen([sys.executable, "-m", "detoxlab.worker.server", "--socket", sock], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: os.path.exists(sock), timeout=120)
        cli = [str(Path(sys.executable).parent / "detoxlab"), "--params", params, "--threads", "1", "--gpus", "0",
               "score", "--generations", str(gens), "--out"]
        for name, extra in (("worker", {SOCKET_ENV: sock}), ("own", {DISABLE_ENV: "1"})):
            e = {**os.environ, **extra}
            done = subprocess.run([*cli, str(tmp_path / f"{name}.jsonl")], env=e, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr
            meta = json.loads((tmp_path / f"{name}.meta.json").read_text())
            assert meta["timing"]["worker"] is (name == "worker")
            assert set(meta["timing"]) == {"startup_s", "load_s", "compute_s", "worker", "peak_rss_mb"}
        assert (tmp_path / "worker.jsonl").read_bytes() == (tmp_path / "own.jsonl").read_bytes()
        forked = json.loads((tmp_path / "worker.meta.json").read_text())["timing"]
        alone = json.loads((tmp_path / "own.meta.json").read_text())["timing"]
        assert forked["startup_s"] < alone["startup_s"]  # the imports were paid once, by the server
    finally:
        proc.kill()
        proc.wait()
