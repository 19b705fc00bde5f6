"""Model files and training checkpoints: ``.npz`` archives without pickle, written atomically.

A *model file* holds what inference needs: parameters, buffers, the network string and input shape,
the class names and the preprocessing statistics fitted on the training data. A *checkpoint* adds the
optimiser state and the number of finished epochs, so that a run resumes exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnkit.serialize import PathLike, load_arrays, load_state_arrays, save_arrays, state_arrays

FORMAT = "cnnkit-model-1"


def flatten_state(prefix: str, tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Move every array of a nested dict into ``arrays`` under ``prefix/key/...``; return the rest (JSON-able)."""
    if isinstance(tree, dict):
        return {k: flatten_state(f"{prefix}/{k}", v, arrays) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, (np.floating, np.integer)):
        return tree.item()
    if isinstance(tree, (list, tuple)):
        return [flatten_state(f"{prefix}/{i}", v, arrays) for i, v in enumerate(tree)]
    return tree


def unflatten_state(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]].copy()
        return {k: unflatten_state(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, arrays) for v in tree]
    return tree


def save_model(
    path: PathLike,
    model: Any,
    spec: str,
    input_shape: tuple[int, int, int],
    classes: list[str],
    preprocess: Optional[dict] = None,
    extra: Optional[dict] = None,
) -> None:
    """Write a model file: parameters, buffers, architecture, classes and preprocessing."""
    arrays = state_arrays(model)
    meta = {
        "format": FORMAT,
        "spec": spec,
        "input_shape": list(input_shape),
        "classes": list(classes),
        "dtype": str(model.dtype),
        "preprocess": flatten_state("preprocess", preprocess or {}, arrays),
        **(extra or {}),
    }
    save_arrays(path, arrays, meta)


def load_model(path: PathLike) -> tuple[Any, dict, dict]:
    """Read a model file: returns ``(model, preprocess_dict, meta)``. Never unpickles."""
    from cnnkit.models.spec import BuildOptions, build

    arrays, meta = load_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a cnnkit model file (format {meta.get('format')!r}, expected {FORMAT!r})")
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = build(meta["spec"], tuple(meta["input_shape"]), np.random.default_rng(0), BuildOptions(init="pytorch", dtype=dtype))
    load_state_arrays(model, arrays)
    preprocess = unflatten_state(meta.get("preprocess", {}), arrays)
    return model, preprocess, meta


def save_checkpoint(path: PathLike, model: Any, optimizer: Any, epoch: int, extra: Optional[dict] = None) -> None:
    """Write the state after ``epoch`` finished epochs: model, buffers and optimiser state."""
    arrays = state_arrays(model)
    meta = {
        "format": "cnnkit-checkpoint-1",
        "epoch": int(epoch),
        "optimizer": flatten_state("optimizer", optimizer.state_dict(), arrays),
        **(extra or {}),
    }
    save_arrays(path, arrays, meta)


def load_checkpoint(path: PathLike, model: Any, optimizer: Any) -> dict:
    """Restore model and optimiser from a checkpoint in place; returns its metadata (``epoch`` ...)."""
    arrays, meta = load_arrays(path)
    if meta.get("format") != "cnnkit-checkpoint-1":
        raise ValueError(f"{Path(path)}: not a cnnkit checkpoint")
    load_state_arrays(model, arrays)
    optimizer.load_state_dict(unflatten_state(meta["optimizer"], arrays))
    return meta
