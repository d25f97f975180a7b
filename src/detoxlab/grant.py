"""What the scheduler granted this job's process, recorded by the CLI (``--gpus``) for the step code.

Free of torch on purpose: most steps (scoring with a non-neural scorer, metrics, report, selections) never load
it, and importing it would cost each of their jobs seconds."""

from __future__ import annotations

import os

#: GPUs granted to this process; unset means "whatever is visible" (a command run by hand)
GPUS_ENV = "DETOXLAB_GPUS"


def grant_gpus(gpus: int | None) -> None:
    if gpus is not None:
        os.environ[GPUS_ENV] = str(int(gpus))


def granted_gpus() -> int | None:
    value = os.environ.get(GPUS_ENV)
    return None if value in (None, "") else int(value)
