"""Matplotlib without a display, and figures written atomically (a killed report never leaves half a PNG)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, dpi: int = 120) -> None:
    from detoxlab.artifacts import atomic_file

    fig.tight_layout()
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    pyplot().close(fig)
