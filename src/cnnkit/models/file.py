"""Model files: a network and what inference needs, in one pickle-free ``.npz`` (see :mod:`cnnkit.serialize`).

A model file holds the architecture as data (:mod:`cnnkit.nn.architecture`, so any network built from
cnnkit layers can be saved, not only one written as a network string), the parameters and buffers, and
optionally the input shape, the class names and the preprocessing statistics fitted on the training data.
Files of the first format (``cnnkit-model-1``, architecture as a network string) are still read.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from cnnkit.nn import Conv2d, Flatten, Sequential
>>> net = Sequential(Conv2d(1, 3, 28, rng=np.random.default_rng(0)), Flatten())
>>> with tempfile.TemporaryDirectory() as d:
...     save_model(os.path.join(d, "m.npz"), net, input_shape=(28, 28, 1), classes=["a", "b", "c"])
...     m = load_model(os.path.join(d, "m.npz"))
>>> m.classes, m.input_shape, np.array_equal(m.network[0].params["weight"], net[0].params["weight"])
(['a', 'b', 'c'], (28, 28, 1), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import MismatchError, ModelFileError, quote
from cnnkit.nn.architecture import from_data, to_data
from cnnkit.nn.base import Layer
from cnnkit.serialize import PathLike, flatten_state, load_arrays, load_state_arrays, save_arrays, state_arrays, unflatten_state

FORMAT = "cnnkit-model-2"
FORMAT_V1 = "cnnkit-model-1"


@dataclass
class ModelFile:
    """What a model file holds: the network (weights loaded), and what is known about its inputs and outputs.

    ``preprocess`` is a :class:`~cnnkit.data.Preprocessor`'s ``to_dict()`` (None when the file has none);
    ``meta`` is the file's whole metadata (``data``, ``model`` and whatever else was stored).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.models.file import load_model, save_model
    >>> from cnnkit.nn import Linear
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_model(Path(d) / "m.npz", Linear(2, 3, rng=np.random.default_rng(0)), input_shape=(2,), classes=["a", "b", "c"])
    ...     m = load_model(Path(d) / "m.npz")
    >>> type(m.network).__name__, m.input_shape, m.classes, m.preprocess
    ('Linear', (2,), ['a', 'b', 'c'], None)
    """

    network: Layer
    input_shape: tuple[int, ...] | None = None
    classes: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def check_outputs(network: Layer, input_shape: tuple[int, ...], classes: list[str] | None, what: str = "the model") -> None:
    """MismatchError unless ``network`` maps ``input_shape`` to one score per class.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models.file import check_outputs
    >>> from cnnkit.nn import Linear
    >>> net = Linear(4, 3, rng=np.random.default_rng(0))
    >>> check_outputs(net, (4,), ["a", "b", "c"])  # one output per class: fine
    >>> check_outputs(net, (4,), ["cat", "dog"])
    Traceback (most recent call last):
    ...
    cnnkit.errors.MismatchError: the model gives 3 outputs per example (output shape (3,)) but there are 2 classes ...
    """
    out = network.output_shape(input_shape)
    if classes is not None and out[-1] != len(classes):
        raise MismatchError(
            f"{what} gives {out[-1]} outputs per example (output shape {out}) but there are {len(classes)} classes "
            f"({', '.join(map(str, classes[:10]))}{' ...' if len(classes) > 10 else ''}); the last layer must have one output per class"
        )


def save_model(
    path: PathLike,
    model: Layer,
    *,
    input_shape: tuple[int, ...] | None = None,
    classes: list[str] | None = None,
    preprocess: dict | None = None,
    extra: dict | None = None,
    spec: str | None = None,
) -> None:
    """Write a model file atomically: architecture, parameters, buffers and (optionally) input shape, classes,
    preprocessing and extra metadata. ``spec`` records the network string the model was built from, if any.

    With both ``input_shape`` and ``classes``, the network must give one output per class (MismatchError).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import Preprocessor
    >>> from cnnkit.models import create
    >>> from cnnkit.models.file import load_model, save_model
    >>> pre = Preprocessor("mean_image").fit(np.zeros((2, 28, 28, 1), np.uint8))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     net = create("base", np.random.default_rng(0))
    ...     save_model(Path(d) / "base.npz", net, input_shape=(28, 28, 1), classes=list("0123456789"), preprocess=pre.to_dict())
    ...     m = load_model(Path(d) / "base.npz")
    >>> len(m.classes), m.preprocess["mode"], m.input_shape
    (10, 'mean_image', (28, 28, 1))
    """
    if input_shape is not None:
        check_outputs(model, tuple(input_shape), None if classes is None else list(classes))
    arrays = state_arrays(model)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "architecture": to_data(model),
        "dtype": str(model.dtype),
        "preprocess": flatten_state("preprocess", preprocess or {}, arrays),
    }
    if input_shape is not None:
        meta["input_shape"] = [int(v) for v in input_shape]
    if classes is not None:
        meta["classes"] = [str(c) for c in classes]
    if spec is not None:
        meta["spec"] = spec
    for k, v in (extra or {}).items():
        if k in meta:
            raise ValueError(f"save_model: extra metadata key {k!r} is reserved")
        meta[k] = v
    save_arrays(path, arrays, meta)


def load_model(path: PathLike) -> ModelFile:
    """Read a model file (either format); never unpickles. Raises ModelFileError naming what is wrong.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.models.file import load_model
    >>> from cnnkit.serialize import save_arrays
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_arrays(Path(d) / "other.npz", {"w": np.zeros(2)}, {"format": "something else"})
    ...     load_model(Path(d) / "other.npz")
    Traceback (most recent call last):
    ...
    cnnkit.errors.ModelFileError: .../other.npz: not a cnnkit model file ...
    """
    arrays, meta = load_arrays(path)
    fmt = meta.get("format")
    dtype_name = meta.get("dtype", "float32")
    if dtype_name not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype {quote(dtype_name, 40)} is not float32 or float64")
    dtype = np.dtype(dtype_name)
    input_shape = _shape(meta.get("input_shape"), path)
    if fmt == FORMAT:
        network = from_data(meta.get("architecture"), dtype)
    elif fmt == FORMAT_V1:
        from cnnkit.models.spec import BuildOptions, build

        if input_shape is None or not isinstance(meta.get("spec"), str):
            raise ModelFileError(f"{path}: a {FORMAT_V1} file needs 'spec' and 'input_shape'")
        network = build(meta["spec"], input_shape, np.random.default_rng(0), BuildOptions(init="pytorch", dtype=dtype))  # type: ignore[arg-type]
    else:
        raise ModelFileError(f"{path}: not a cnnkit model file (format {quote(fmt, 60)}, expected {FORMAT!r})")
    try:
        load_state_arrays(network, arrays)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the stored weights do not fit the architecture: {exc}") from None
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise ModelFileError(f"{path}: 'classes' must be a list of names")
    preprocess = unflatten_state(meta.get("preprocess") or {}, arrays) or None
    return ModelFile(network, input_shape, classes, preprocess, meta)


def _shape(value: Any, path: PathLike) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and 1 <= len(value) <= 3 and all(isinstance(v, int) and v >= 1 for v in value)):
        raise ModelFileError(f"{path}: input_shape must be a list of 1 to 3 positive integers, got {quote(value, 80)}")
    return tuple(value)
