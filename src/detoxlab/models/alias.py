"""A model directory that stands for another one (the grid point a selection step chose); no model code."""

from __future__ import annotations

import os
from pathlib import Path

from detoxlab.artifacts import atomic_dir, read_manifest, relative_path, write_manifest


def save_alias(out_dir: str | os.PathLike, target_dir: str | os.PathLike, *, root: str, **extra) -> dict:
    """Write ``out_dir`` as an alias of the model directory ``target_dir`` (``derived.alias_of``)."""
    out_dir = Path(out_dir)
    target = read_manifest(target_dir, "model")
    with atomic_dir(out_dir) as tmp:
        return write_manifest(tmp, "model", inputs={"alias_of": str(target_dir)}, params=target.get("params", {}),
                              root=root, derived={"alias_of": relative_path(target_dir, out_dir)}, **extra)
