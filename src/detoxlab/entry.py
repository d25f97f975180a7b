"""The ``detoxlab`` command: a job's step runs in the workflow's warm worker when there is one (see
:mod:`detoxlab.worker`), else here. Nothing heavy is imported before that choice."""

from __future__ import annotations

import sys


def main() -> None:
    from detoxlab.worker.client import dispatch

    status = dispatch(sys.argv[1:])
    if status is None:
        from detoxlab.cli import main as run_here

        status = run_here()
    sys.exit(status)
