"""Model files: what inference needs, in one pickle-free ``.npz`` (see :mod:`cnnkit.serialize`).

A model file holds the parameters and buffers, the network string and input shape, the class names and
the preprocessing statistics fitted on the training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.models.spec import BuildOptions, build
from cnnkit.nn.container import Sequential
from cnnkit.protocols import Model
from cnnkit.serialize import PathLike, flatten_state, load_arrays, load_state_arrays, save_arrays, state_arrays, unflatten_state

FORMAT = "cnnkit-model-1"


def save_model(
    path: PathLike,
    model: Model,
    spec: str,
    input_shape: tuple[int, int, int],
    classes: list[str],
    preprocess: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write a model file: parameters, buffers, architecture, classes and preprocessing (atomically)."""
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


def load_model(path: PathLike) -> tuple[Sequential, dict, dict[str, Any]]:
    """Read a model file: returns ``(model, preprocess_dict, meta)``. Never unpickles."""
    arrays, meta = load_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a cnnkit model file (format {meta.get('format')!r}, expected {FORMAT!r})")
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = build(meta["spec"], tuple(meta["input_shape"]), np.random.default_rng(0), BuildOptions(init="pytorch", dtype=dtype))
    load_state_arrays(model, arrays)
    preprocess = unflatten_state(meta.get("preprocess", {}), arrays)
    return model, preprocess, meta
