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

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import MismatchError, ModelFileError, quote
from cnnkit.limits import LIMITS, check_size
from cnnkit.nn.architecture import from_data, to_data
from cnnkit.nn.base import Layer
from cnnkit.nn.init import shapes_only
from cnnkit.serialize import NpzReader, PathLike, flatten_state, load_state_arrays, save_arrays, state_arrays, unflatten_state

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
    with NpzReader(path, ModelFileError, "a cnnkit model file") as z:
        meta = z.meta
        fmt = meta.get("format")
        if fmt not in (FORMAT, FORMAT_V1):
            raise ModelFileError(f"{path}: not a cnnkit model file (format {quote(fmt, 60)}, expected {FORMAT!r})")
        dtype_name = meta.get("dtype", "float32")
        if dtype_name not in ("float32", "float64"):
            raise ModelFileError(f"{path}: dtype {quote(dtype_name, 40)} is not float32 or float64")
        dtype = np.dtype(dtype_name)
        input_shape = _shape(meta.get("input_shape"), path)
        classes = meta.get("classes")
        if classes is not None and not (
            isinstance(classes, list) and len(classes) <= 1_000_000 and all(isinstance(c, str) and len(c) <= 1000 for c in classes)
        ):
            raise ModelFileError(f"{path}: 'classes' must be a list of names (at most 1000 characters each)")
        # the architecture, built without memory, says which arrays the file must hold; they are checked
        # against the archive's headers before anything is read or allocated
        with shapes_only():
            template = _network(meta, fmt, dtype, input_shape, path)
            if input_shape is not None:  # what save_model checked: the network takes its input and scores its classes
                try:
                    check_outputs(template, input_shape, classes, "its network")
                except ValueError as exc:  # ShapeError, MismatchError
                    raise ModelFileError(f"{path}: its network does not fit the input shape {list(input_shape)} and classes "
                                         f"it records: {_one_line(exc)}") from None
        expected = {f"param/{k}": v for k, v in template.params.items()}
        expected.update({f"buffer/{k}": v for k, v in template.buffers.items()})
        _check_headers(z, expected, path)
        refs = _refs(meta.get("preprocess") or {}, path)
        missing = sorted(refs - set(z.headers))
        if missing:
            raise ModelFileError(f"{path}: its preprocessing refers to arrays it does not hold: {quote(missing[:5], 200)}")
        unknown = sorted(k for k in z.headers if k not in expected and k not in refs)
        if unknown:
            raise ModelFileError(f"{path}: holds arrays its architecture does not have: {quote(unknown[:5], 200)}")
        network = _network(meta, fmt, dtype, input_shape, path)
        arrays = {k: z.read(k) for k in z.headers}
    _check_values(arrays, expected, path)
    try:
        load_state_arrays(network, arrays)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the stored weights do not fit the architecture: {_one_line(exc)}") from None
    preprocess = unflatten_state(meta.get("preprocess") or {}, arrays) or None
    if preprocess is not None:
        from cnnkit.data.preprocess import Preprocessor

        try:
            pre = Preprocessor.from_dict(preprocess)
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{path}: its preprocessing is malformed: {_one_line(exc)}") from None
        if input_shape is not None and len(input_shape) == 3 and pre.mean is not None:
            want = {"mean_image": tuple(input_shape), "per_channel": (input_shape[-1],)}.get(pre.mode)
            if want is not None and pre.mean.shape != want:
                raise ModelFileError(f"{path}: its {pre.mode} statistics have shape {pre.mean.shape}; its input shape "
                                     f"{list(input_shape)} needs {want}")
    return ModelFile(network, input_shape, classes, preprocess, meta)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An error's message on one line, shortened to ``limit`` characters (it may quote what the file holds)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _network(meta: dict[str, Any], fmt: str, dtype: np.dtype, input_shape: tuple[int, ...] | None, path: PathLike) -> Layer:
    """The network the metadata describes (inside ``shapes_only``: no memory); ModelFileError if it cannot be built."""
    from cnnkit.errors import SpecError
    from cnnkit.limits import LIMITS, check_size

    if fmt == FORMAT:
        network = from_data(meta.get("architecture"), dtype)
    else:
        from cnnkit.models.spec import BuildOptions, build

        spec = meta.get("spec")
        if input_shape is None or len(input_shape) != 3 or not isinstance(spec, str):
            raise ModelFileError(f"{path}: a {FORMAT_V1} file needs 'spec' and an H x W x C 'input_shape'")
        try:
            network = build(spec, (input_shape[0], input_shape[1], input_shape[2]), np.random.default_rng(0),
                            BuildOptions(init="pytorch", dtype=dtype))
        except SpecError as exc:
            raise ModelFileError(f"{path}: its network string does not build: {exc}") from None
    nbytes = sum(v.size * v.dtype.itemsize for v in network.params.values())
    check_size(nbytes, LIMITS.param_bytes, f"{path}: its network's parameters", "param_bytes", ModelFileError)
    return network


def _check_headers(z: NpzReader, expected: dict[str, Any], path: PathLike) -> None:
    for key, want in expected.items():
        h = z.headers.get(key)
        if h is None:
            if key.endswith("num_batches_tracked"):  # files of the first format lack it
                continue
            raise ModelFileError(f"{path}: the architecture has {quote(key, 100)}, which the file does not hold")
        if h.shape != tuple(want.shape) or h.dtype != want.dtype:
            raise ModelFileError(f"{path}: {quote(key, 100)} is stored as {h.shape} {h.dtype}; the architecture needs "
                                 f"{tuple(want.shape)} {want.dtype}")


def _refs(tree: Any, path: PathLike) -> set[str]:
    """The array names a flattened state refers to (see :func:`cnnkit.serialize.flatten_state`)."""
    out: set[str] = set()
    stack = [tree]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                if not isinstance(v["__array__"], str):
                    raise ModelFileError(f"{path}: an array reference must be a name")
                out.add(v["__array__"])
            else:
                stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def _check_values(arrays: dict[str, Any], expected: dict[str, Any], path: PathLike) -> None:
    """ModelFileError for weights that could only give wrong numbers: a NaN or infinity in a parameter or
    buffer, or a negative batch-norm running variance (whose square root is NaN)."""
    for key in expected:
        a = arrays.get(key)
        if a is None or a.dtype.kind != "f":
            continue
        if not np.isfinite(a).all():
            raise ModelFileError(f"{path}: {key} holds NaN or infinite values")
        if key.endswith("running_var") and (a < 0).any():
            raise ModelFileError(f"{path}: {key} holds negative variances (smallest {float(a.min()):.3g})")


def _shape(value: Any, path: PathLike) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and 1 <= len(value) <= 3 and all(isinstance(v, int) and v >= 1 for v in value)):
        raise ModelFileError(f"{path}: input_shape must be a list of 1 to 3 positive integers, got {quote(value, 80)}")
    # one float32 input of that shape must be a size a file may declare (before any layer sizes itself by it)
    check_size(4 * math.prod(value), LIMITS.file_bytes, f"{path}: one input of input_shape {quote(value, 80)}",
               error=ModelFileError)
    return tuple(value)
