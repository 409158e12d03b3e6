"""Writing files so that a crash never leaves half of one behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["save_png"]


def save_png(fig: Any, path: str | Path, *, dpi: int) -> Path:
    """Save the matplotlib figure ``fig`` to ``path`` (PNG) atomically: written beside it, then renamed over it."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)
    return path
