"""Drawing helpers shared by the pictures: matplotlib (the optional ``plot`` extra) imported on demand, figures
written as PNG atomically, arrays scaled for display."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import MissingDependencyError
from cnnkit.serialize import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display); MissingDependencyError without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "drawing pictures") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def save(fig: Any, out: str | Path, dpi: int = 100) -> None:
    """Write the figure to ``out`` as PNG, atomically; the figure is closed."""
    atomic_write_bytes(out, png_bytes(fig, dpi))


def unit_scale(a: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """``a`` min-max scaled to [0, 1] over ``axes`` (all by default); a constant block becomes 0.5.

    >>> unit_scale(np.array([2.0, 4.0, 3.0]))
    array([0. , 1. , 0.5])
    """
    a = np.asarray(a, dtype=np.float64)
    lo = a.min(axis=axes, keepdims=True) if a.size else np.zeros(())
    hi = a.max(axis=axes, keepdims=True) if a.size else np.zeros(())
    span = hi - lo
    flat = span == 0
    return np.where(flat, 0.5, (a - lo) / np.where(flat, 1.0, span))


def display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An (H, W, C) image ready for ``imshow``: (H, W) with a grey colour map for one channel, (H, W, 3) in
    [0, 1] for three; uint8 pixels are shown as they are, anything else min-max scaled.

    >>> img, cmap = display_image(np.zeros((2, 3, 1), np.uint8))
    >>> img.shape, cmap
    ((2, 3), 'gray')
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype == np.uint8:
        shown = a.astype(np.float64) / 255.0
    else:
        shown = unit_scale(a)
    if shown.shape[2] == 3:
        return shown, None
    return shown.mean(axis=2) if shown.shape[2] != 1 else shown[:, :, 0], "gray"


def mosaic(tiles: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """Tiles (n, h, w) or (n, h, w, 3) laid out ``cols`` to a row with ``gap`` pixels of NaN between them.

    >>> mosaic(np.ones((3, 2, 2)), cols=2).shape
    (5, 5)
    """
    n, h, w = tiles.shape[:3]
    rows = -(-n // cols)
    shape = (rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:])
    out = np.full(shape, np.nan if tiles.ndim == 3 else 1.0)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[k]
    return out
