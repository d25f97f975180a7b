"""scripts/gpu-check.sh is ready to run on a GPU machine and says clearly why it does not run without one."""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the check itself")
def test_gpu_check_exits_with_a_clear_message_without_cuda():
    res = subprocess.run(["bash", "scripts/gpu-check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "no CUDA GPU here" in res.stderr and "CUDA build of torch" in res.stderr
    assert res.stdout == ""  # no half-printed key=value line
