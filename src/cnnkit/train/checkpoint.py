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
    """Write the state after ``epoch`` finished epochs: model, buffers and optimiser state (atomically)."""
    arrays = state_arrays(model)
    meta = {
        "format": FORMAT,
        "epoch": int(epoch),
        "optimizer": flatten_state("optimizer", optimizer.state_dict(), arrays),
        **(extra or {}),
    }
    save_arrays(path, arrays, meta)


def load_checkpoint(path: PathLike, model: Model, optimizer: Any) -> dict:
    """Restore model and optimiser from a checkpoint in place; returns its metadata (``epoch`` ...)."""
    arrays, meta = load_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{Path(path)}: not a cnnkit checkpoint")
    load_state_arrays(model, arrays)
    optimizer.load_state_dict(unflatten_state(meta["optimizer"], arrays))
    return meta
