"""The server side of the worker: import once, fork one process per job.

One thread, one selector loop: the server never forks while another of its threads might hold a lock. It
imports the step code, and, the first time a job names a model directory, that model's tokenizer (Gemma's
262k-entry one takes seconds to build) and its architecture's modules; a forked job finds them ready. It runs
no tensor work and never touches CUDA itself.

Started by the workflow (``python -m detoxlab.worker.server --socket PATH --parent PID``); it exits when the
Snakemake process that started it is gone, or on SIGTERM, and removes its socket.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from detoxlab.timing import JOB_START_ENV
from detoxlab.worker import REFUSED
from detoxlab.worker.client import HEADER, STATUS, installation

#: what every step imports; a job imports anything else itself
PRELOAD = ("torch", "transformers", "detoxlab.cli", "detoxlab.evaluation", "detoxlab.generation",
           "detoxlab.models.registry", "detoxlab.models.derived", "detoxlab.guides", "detoxlab.scorers",
           "detoxlab.unidetox.steps", "detoxlab.rewards.steps", "detoxlab.acf.steps", "detoxlab.report",
           "detoxlab.metrics.perplexity", "detoxlab.metrics.mmlu", "detoxlab.training.loop")
#: environment read when a module is imported: a job whose values differ runs in its own process
IMPORT_TIME_ENV = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH_", "PYTORCH_", "DETOXLAB_NO_WORKER")
MAX_REQUEST = 16 << 20


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} worker[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def preload_modules() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    from detoxlab.scorers import scorer_from_config

    scorer_from_config({"type": "profanity_check"})  # unpickles its model once (scikit-learn)


def import_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


def preload_models(argv: list[str], cwd: str) -> None:
    """Tokenizers and architecture modules of the model directories a job's command line names."""
    from detoxlab.models.registry import preload

    for arg in argv:
        if arg.startswith(("-", "{")):
            continue
        path = Path(cwd) / arg
        try:
            if (path / "manifest.json").is_file():
                preload(path)
        except Exception as exc:  # the job reports a broken model itself, with its own error
            _log(f"not preloading {arg[:200]}: {type(exc).__name__}: {exc}")


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(10)
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(msg) < HEADER.size:
        raise ValueError("truncated request")
    size = HEADER.unpack(msg[:HEADER.size])[0]
    if size > MAX_REQUEST:
        raise ValueError(f"request of {size} bytes")
    data = msg[HEADER.size:]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("truncated request")
        data += chunk
    conn.settimeout(None)
    if len(fds) != 3:
        raise ValueError(f"expected 3 standard streams, got {len(fds)}")
    return json.loads(data), fds


def run_job(req: dict, fds: list[int], inherited: list[int], entry: str) -> None:
    """In the forked process: become the job (streams, directory, environment, arguments) and run its step."""
    status = 1
    try:
        os.setpgid(0, 0)  # the step and anything it starts die together when the job is killed
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        for fd, target in zip(fds, (0, 1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ[JOB_START_ENV] = repr(req["started"])
        sys.argv = ["detoxlab", *req["argv"]]
        module, _, function = entry.partition(":")
        status = getattr(importlib.import_module(module), function)(req["argv"])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status if 0 <= status < 256 else 1)


class Server:
    def __init__(self, sock_path: str, parent: int | None, entry: str = "detoxlab.cli:main"):
        self.sock_path, self.parent, self.entry = sock_path, parent, entry
        self.sel = selectors.DefaultSelector()
        self.jobs: dict[int, socket.socket] = {}  # pid of a forked job -> its client's connection
        self.env = import_time_env(dict(os.environ))
        self.stopping = False

    def listen(self) -> None:
        """Bind under a temporary name and rename: a client that sees the socket sees a ready server."""
        tmp = f"{self.sock_path}.{os.getpid()}.tmp"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(tmp)
        finally:
            os.umask(old)
        self.listener.listen(64)
        os.replace(tmp, self.sock_path)
        self.sel.register(self.listener, selectors.EVENT_READ)

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            req, fds = read_request(conn)
            if import_time_env(req["env"]) != self.env or req.get("installation") != installation():
                _log("refused a job from another environment or installation; it runs in its own process")
                conn.sendall(STATUS.pack(REFUSED))
                conn.close()
                return
            preload_models(req["argv"], req["cwd"])
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            inherited = [self.listener.fileno(), conn.fileno(), *(c.fileno() for c in self.jobs.values())]
            pid = os.fork()
            if pid == 0:
                run_job(req, fds, inherited, self.entry)
        except Exception as exc:  # nothing ran: the job runs in its own process
            _log(f"not taking a job: {type(exc).__name__}: {str(exc)[:300]}")
            try:
                conn.sendall(STATUS.pack(REFUSED))
            except OSError:
                pass
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.jobs[pid] = conn
        self.sel.register(conn, selectors.EVENT_READ, pid)
        _log(f"job {pid}: {' '.join(a for a in req['argv'] if not a.startswith('{'))[:200]}")

    def client_gone(self, pid: int) -> None:
        """The job's process closed its end (killed by Snakemake, SLURM or the user): stop the step."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.jobs.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
            self.sel.unregister(conn)
            try:
                conn.sendall(STATUS.pack(code))
            except OSError:
                pass
            conn.close()

    def parent_alive(self) -> bool:
        if self.parent is None:
            return True
        try:
            os.kill(self.parent, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self.listen()
        _log(f"ready on {self.sock_path}")
        try:
            while not self.stopping and self.parent_alive():
                for key, _ in self.sel.select(timeout=0.2):
                    if key.fileobj is self.listener:
                        self.accept()
                    elif not key.fileobj.recv(1, socket.MSG_PEEK):
                        self.client_gone(key.data)
                self.reap()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        for pid in list(self.jobs):
            self.client_gone(pid)
        deadline = time.time() + 5
        while self.jobs and time.time() < deadline:
            self.reap()
            time.sleep(0.05)
        _log("stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    ap.add_argument("--entry", default="detoxlab.cli:main", help="module:function a job runs, given its arguments")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    server = Server(args.socket, args.parent, args.entry)  # records the import-time environment before the imports
    preload_modules()
    _log(f"imported the step code in {time.perf_counter() - t0:.1f} s")
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
