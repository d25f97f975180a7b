"""The job side of the worker: hand this process's step to the server, or say it must run here.

Torch-free and import-light on purpose: this runs at the start of every job.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

from detoxlab.timing import process_start_time
from detoxlab.worker import DISABLE_ENV, REFUSED, SOCKET_ENV

HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")


def _gpu_job(argv: list[str]) -> bool:
    """A job granted a GPU on a machine that has one: it must initialise CUDA in a process of its own."""
    try:
        granted = int(argv[argv.index("--gpus") + 1])
    except (ValueError, IndexError):
        granted = None
    if granted == 0:
        return False
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia"))


def usable(argv: list[str]) -> str | None:
    """The server's socket path when this job may use it."""
    path = os.environ.get(SOCKET_ENV)
    if not path or os.environ.get(DISABLE_ENV) == "1" or os.environ.get("SLURM_JOB_ID"):
        return None
    if not os.path.exists(path) or _gpu_job(argv):
        return None
    return path


def installation() -> list[str]:
    """Which Python and which detoxlab: a job in another environment (a conda env) must not run in ours."""
    import detoxlab

    return [os.path.realpath(sys.prefix), os.path.realpath(detoxlab.__file__)]


def request(argv: list[str]) -> bytes:
    return json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "installation": installation(),
                       "started": process_start_time()}).encode()


def dispatch(argv: list[str]) -> int | None:
    """Run ``detoxlab argv`` in the worker and return its exit status; None: run it in this process."""
    path = usable(argv)
    if path is None:
        return None
    payload = request(argv)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(path)
        socket.send_fds(conn, [HEADER.pack(len(payload)) + payload], [0, 1, 2])
        conn.settimeout(None)  # the step may run for hours
    except OSError:
        return None  # no server (it stopped, or is not ours): nothing was run yet
    data = b""
    while len(data) < STATUS.size:
        chunk = conn.recv(STATUS.size - len(data))
        if not chunk:
            # the server went away mid-step: the step's outputs are incomplete, Snakemake removes them
            print("detoxlab: the worker stopped before the step finished", file=sys.stderr)
            return 1
        data += chunk
    conn.close()
    status = STATUS.unpack(data)[0]
    return None if status == REFUSED else status
