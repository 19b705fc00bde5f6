"""Learning-curve plots (PNG) through matplotlib, an optional dependency (extra ``plot``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from cnnkit.serialize import atomic_write_bytes


def have_matplotlib() -> bool:
    """True when matplotlib (the optional ``plot`` extra) can be imported.

    Examples
    --------
    >>> import importlib.util
    >>> from cnnkit.train.plots import have_matplotlib
    >>> have_matplotlib() == (importlib.util.find_spec("matplotlib") is not None)
    True
    """
    try:
        import matplotlib  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        return False
    return True


def learning_curves(records: Sequence[dict], path: str | Path, title: str = "") -> bool:
    """Plot train vs test loss and top-1 error per epoch to ``path``; returns False without matplotlib.

    Examples
    --------
    The plot is drawn when matplotlib is installed; without it the function says so by returning False.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.train.plots import have_matplotlib, learning_curves
    >>> records = [{"epoch": e, "train_loss": 1 / e, "train_top1_error": 0.5 / e} for e in (1, 2, 3)]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     drawn = learning_curves(records, Path(d) / "curves.png", title="demo")
    ...     written = (Path(d) / "curves.png").exists()
    >>> drawn == written == have_matplotlib()
    True
    """
    if not records or not have_matplotlib():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("test", "-s")):
        if f"{split}_loss" in records[0]:
            ax_loss.plot(epochs, [r[f"{split}_loss"] for r in records], style, label=split, markersize=3)
            ax_err.plot(epochs, [100 * r[f"{split}_top1_error"] for r in records], style, label=split, markersize=3)
    ax_loss.set(xlabel="epoch", ylabel="loss (objective)", title="loss")
    ax_err.set(xlabel="epoch", ylabel="top-1 error (%)", title="top-1 error")
    for ax in (ax_loss, ax_err):
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True
