"""Atomic artifact writing: nothing half-written is ever visible under its final name.

Files and directories are written under a temporary sibling name and renamed into place; a directory
artifact gets its ``manifest.json`` last, so a directory without a manifest is never a finished artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # temp files are created 0600/0700; finished artifacts get the usual permissions


class ArtifactError(RuntimeError):
    """An input artifact is missing, incomplete or corrupt."""


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null (readers map null back to NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, default=_json_default, ensure_ascii=False, sort_keys=False)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def relative_path(target: str | os.PathLike, start: str | os.PathLike) -> str:
    """``target`` relative to directory ``start``: artifacts point at each other this way, so a results tree
    can move as a whole."""
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_file(path) as fh:
        fh.write(dumps(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"corrupt JSON in {path}: {exc}") from exc


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_file(path) as fh:
        for row in rows:
            fh.write(dumps(row, indent=None) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"corrupt JSONL in {path} line {lineno}: {exc}") from exc
    return rows


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: str | os.PathLike, kind: str, inputs: dict | None = None,
                   params: dict | None = None, **extra: Any) -> dict:
    """Record what produced an artifact directory (written last, atomically)."""
    from detoxlab import __version__

    manifest = {
        "kind": kind,
        "detoxlab_version": __version__,
        "created_unix": round(time.time(), 3),
        "inputs": inputs or {},
        "params": params or {},
        **extra,
    }
    write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"missing artifact directory: {directory}")
    manifest = read_json(directory / MANIFEST) if (directory / MANIFEST).exists() else None
    if manifest is None:
        raise ArtifactError(f"incomplete artifact (no {MANIFEST}): {directory}")
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{directory} is a '{manifest.get('kind')}' artifact, expected '{kind}'")
    return manifest
