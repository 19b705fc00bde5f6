"""Training checkpoints: the state after a finished epoch, so that a run resumes exactly.

A checkpoint is a :mod:`cnnkit.serialize` archive holding the model's parameters and buffers, the
optimiser's state (momentum buffers, moments, step counts), the number of finished epochs and whatever
the caller adds to the metadata (the run's configuration and metric records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.protocols import Model
from cnnkit.serialize import PathLike, flatten_state, load_arrays, load_state_arrays, save_arrays, state_arrays, unflatten_state

FORMAT = "cnnkit-checkpoint-1"


def save_checkpoint(path: PathLike, model: Model, optimizer: Any, epoch: int, extra: dict | None = None) -> None:
    """Write the state after ``epoch`` finished epochs: model, buffers and optimiser state (atomically).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.serialize import load_arrays
    >>> from cnnkit.train.checkpoint import save_checkpoint
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_checkpoint(Path(d) / "checkpoint.npz", net, SGD(net, lr=0.1, momentum=0.9), epoch=3, extra={"note": "demo"})
    ...     arrays, meta = load_arrays(Path(d) / "checkpoint.npz")
    >>> sorted(arrays), meta["format"], meta["epoch"], meta["optimizer"]["optimizer"], meta["note"]
    (['param/bias', 'param/weight'], 'cnnkit-checkpoint-1', 3, 'SGD', 'demo')
    """
    arrays = state_arrays(model)
    meta = {
        "format": FORMAT,
        "epoch": int(epoch),
        "optimizer": flatten_state("optimizer", optimizer.state_dict(), arrays),
        **(extra or {}),
    }
    save_arrays(path, arrays, meta)


def load_checkpoint(path: PathLike, model: Model, optimizer: Any) -> dict:
    """Restore model and optimiser from a checkpoint in place; returns its metadata (``epoch`` ...).

    Examples
    --------
    A fresh model and optimiser take over the saved state (weights, momentum buffers) in place:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train.checkpoint import load_checkpoint, save_checkpoint
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> fresh = Linear(2, 2, rng=np.random.default_rng(1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_checkpoint(Path(d) / "checkpoint.npz", net, SGD(net, lr=0.1, momentum=0.9), epoch=3)
    ...     meta = load_checkpoint(Path(d) / "checkpoint.npz", fresh, SGD(fresh, lr=0.1, momentum=0.9))
    >>> meta["epoch"], bool((fresh.params["weight"] == net.params["weight"]).all())
    (3, True)
    """
    arrays, meta = load_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{Path(path)}: not a cnnkit checkpoint")
    load_state_arrays(model, arrays)
    optimizer.load_state_dict(unflatten_state(meta["optimizer"], arrays))
    return meta
