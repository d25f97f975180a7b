"""Start and stop the worker from the workflow's onstart / onsuccess / onerror handlers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from detoxlab.worker import DISABLE_ENV, SOCKET_ENV

#: fewer jobs than this to run (a DVC stage runs one): importing the stack in a server would gain nothing
MIN_JOBS = 4
_server: dict = {}


def _socket_dir() -> Path:
    """A directory only this user can enter (the socket hands out this user's jobs)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"detoxlab-worker-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise RuntimeError(f"{path} is not a private directory of this user")
    return path


def start(workflow, log_path: str = "results/logs/worker.log") -> str | None:
    """Launch a server for this Snakemake run's local jobs and export its socket to them; None when not used."""
    if os.environ.get(DISABLE_ENV) == "1" or os.environ.get(SOCKET_ENV):
        return None
    if not workflow.local_exec or workflow.remote_exec:
        return None  # cluster jobs run on other machines, inside their own allocations
    if sum(1 for _ in workflow.dag.needrun_jobs()) < MIN_JOBS:
        return None
    sock = str(_socket_dir() / f"{os.getpid()}.sock")
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # torch's CUDA check must not initialise CUDA
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detoxlab.worker.server", "--socket", sock, "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    _server.update(proc=proc, sock=sock)
    os.environ[SOCKET_ENV] = sock  # jobs inherit it; until the server is ready they run in their own process
    return sock


def stop() -> None:
    proc = _server.pop("proc", None)
    if proc is None:
        return
    os.environ.pop(SOCKET_ENV, None)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
