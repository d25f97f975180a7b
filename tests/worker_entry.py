"""What a job runs in the worker tests: ``echo TEXT``, ``exit N``, ``env NAME``, ``sleep S``, ``pid FILE``."""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    cmd, arg = argv[0], argv[1] if len(argv) > 1 else ""
    if cmd == "echo":
        print(arg)
        print(f"err:{arg}", file=sys.stderr)
    elif cmd == "exit":
        return int(arg)
    elif cmd == "env":
        print(os.environ.get(arg, "<unset>"), os.getcwd())
    elif cmd == "pid":
        with open(arg, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(60)
    elif cmd == "raise":
        raise RuntimeError("boom")
    return 0
