"""The array-module seam: NumPy (the default) or CuPy on a GPU.

Every module of cnnkit takes its array functions from ``xp`` here instead of importing NumPy directly, so
that a NumPy-compatible GPU array library (CuPy) can be swapped in at this one place.

``xp`` is one object for the life of the process (modules bind it at import time with
``from cnnkit.backend import xp``); :func:`use` refills its attributes from the chosen module, so
``xp.matmul``, ``xp.float32`` and ``isinstance(a, xp.ndarray)`` follow the current backend and an attribute
costs what it costs on a module (a dictionary look-up, nothing per call).

=========================  ===================================================================================
``use("numpy"|"cupy")``    choose the backend; ``CNNKIT_BACKEND=numpy|cupy`` in the environment does it at import
``name()``, ``is_gpu()``   which one is in use
``asarray(a)``             ``a`` as an array of the backend (a no-op for one already there)
``to_device(a)``           the same, but ``a`` untouched under NumPy (what the training loop calls per batch)
``to_numpy(a)``            ``a`` as a NumPy array (the same object under NumPy); what files and metrics take
``scatter_add``            ``np.add.at`` / ``cupyx.scatter_add``
``as_strided``             NumPy's / CuPy's ``as_strided`` (CuPy's has no ``writeable``)
=========================  ===================================================================================

Switching changes what *new* arrays are made of. A model built, an optimiser stepped or a dataset
preprocessed before a switch keeps arrays of the old backend, and mixing them is the user's responsibility:
choose the backend first (``cnnkit train --device gpu`` does), then build. The compiled (numba) kernels and
the convolution planner's CPU algorithms are used under NumPy only (:func:`cnnkit.jit.usable`).

Examples
--------
>>> import numpy as np
>>> from cnnkit import backend
>>> from cnnkit.backend import xp
>>> backend.name(), backend.is_gpu(), xp.float32 is np.float32, isinstance(np.zeros(1), xp.ndarray)
('numpy', False, True, True)
>>> a = np.ones(3)
>>> backend.to_numpy(a) is a, backend.asarray(a) is a, backend.to_device(a) is a
(True, True, True)
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy

__all__ = [
    "IS_NUMPY",
    "Array",
    "as_strided",
    "asarray",
    "default_float",
    "is_gpu",
    "module",
    "name",
    "scatter_add",
    "to_device",
    "to_numpy",
    "use",
    "use_module",
    "xp",
]

BACKENDS = ("numpy", "cupy")
"""The backends :func:`use` knows by name."""

ENV = "CNNKIT_BACKEND"
"""The environment variable read at import: ``numpy`` (default) or ``cupy``."""


class ArrayModule:
    """The object behind ``xp``: its instance dictionary is a copy of the current array module's namespace.

    An attribute the copy lacks (a submodule NumPy loads lazily, such as ``numpy.fft``) is looked up on the
    module once and kept.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.backend import xp
    >>> type(xp).__name__, xp.zeros(2).dtype == np.float64, xp.fft.rfft is np.fft.rfft
    ('ArrayModule', True, True)
    """

    _module: types.ModuleType = numpy

    def __getattr__(self, attr: str) -> Any:  # only called for names not (yet) in __dict__
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        value = getattr(type(self)._module, attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<cnnkit array module {type(self)._module.__name__}>"


_XP = ArrayModule()

if TYPE_CHECKING:  # type checkers see NumPy's signatures, as before the seam had a switch
    xp = numpy
else:
    xp = _XP
    """The array module every op computes with: NumPy, or CuPy after ``use("cupy")``."""

Array = numpy.ndarray
"""Type alias used in annotations for an array of ``xp`` (never checked at run time)."""

IS_NUMPY = True
"""Whether the backend is NumPy itself (read by :mod:`cnnkit.jit` and the convolution planner)."""

_name = "numpy"
_to_numpy: Callable[[Any], numpy.ndarray] = numpy.asarray
_scatter_add: Callable[[Any, Any, Any], None] = numpy.add.at
_as_strided: Callable[..., Any] = numpy.lib.stride_tricks.as_strided


def _install(mod: types.ModuleType, label: str, to_np: Callable[[Any], numpy.ndarray],
             scatter: Callable[[Any, Any, Any], None], strided: Callable[..., Any]) -> None:
    global IS_NUMPY, _name, _to_numpy, _scatter_add, _as_strided
    ArrayModule._module = mod
    _XP.__dict__.clear()
    _XP.__dict__.update({k: v for k, v in vars(mod).items() if not (k.startswith("__") and k.endswith("__"))})
    IS_NUMPY = mod is numpy
    _name, _to_numpy, _scatter_add, _as_strided = label, to_np, scatter, strided


def _numpy_strided(a: Any, shape: Any = None, strides: Any = None, writeable: bool = True) -> Any:
    return numpy.lib.stride_tricks.as_strided(a, shape, strides, writeable=writeable)


def use(backend: str) -> None:
    """Make ``backend`` (``"numpy"`` or ``"cupy"``) the array module of everything built from now on.

    ``"cupy"`` needs CuPy and a CUDA device; without either it raises
    :class:`~cnnkit.errors.MissingDependencyError` and the backend stays as it was.

    Examples
    --------
    >>> from cnnkit import backend
    >>> backend.use("numpy"); backend.name()
    'numpy'
    >>> backend.use("jax")
    Traceback (most recent call last):
    ...
    ValueError: unknown backend 'jax'; expected one of numpy, cupy
    """
    key = str(backend).strip().lower()
    if key == "numpy":
        _install(numpy, "numpy", numpy.asarray, numpy.add.at, _numpy_strided)
        return
    if key != "cupy":
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    from cnnkit.errors import MissingDependencyError

    hint = "which is not installed (pip install the CuPy wheel for your CUDA, e.g. cupy-cuda12x)"
    try:
        import cupy
        import cupyx
    except ImportError:
        raise MissingDependencyError("CuPy", "gpu", "the GPU backend (--device gpu)", hint) from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError, or a driver missing
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MissingDependencyError("CuPy with a CUDA GPU", "gpu", "the GPU backend (--device gpu)",
                                     f"but CUDA found no usable device ({why})") from None
    if count < 1:
        raise MissingDependencyError("CuPy with a CUDA GPU", "gpu", "the GPU backend (--device gpu)",
                                     "but CUDA reports no device")

    def cupy_strided(a: Any, shape: Any = None, strides: Any = None, writeable: bool = True) -> Any:
        return cupy.lib.stride_tricks.as_strided(a, shape, strides)

    _install(cupy, "cupy", cupy.asnumpy, cupyx.scatter_add, cupy_strided)


def use_module(mod: types.ModuleType, label: str | None = None, *, to_numpy: Callable[[Any], numpy.ndarray] | None = None,
               scatter_add: Callable[[Any, Any, Any], None] | None = None,
               as_strided: Callable[..., Any] | None = None) -> None:
    """Make any NumPy-compatible module the backend (for tests of the seam: a NumPy in disguise).

    Whatever it is, it counts as not NumPy: the compiled kernels and the CPU convolution algorithms are
    bypassed as they are under CuPy. ``to_numpy``, ``scatter_add`` and ``as_strided`` default to the module's
    ``asnumpy``, ``scatter_add`` and ``lib.stride_tricks.as_strided`` when it has them, else NumPy's.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> backend.use_module(np, "numpy-in-disguise")
    >>> backend.name(), backend.IS_NUMPY
    ('numpy-in-disguise', False)
    >>> backend.use("numpy"); backend.name(), backend.IS_NUMPY
    ('numpy', True)
    """
    strided = as_strided
    if strided is None:
        inner = getattr(getattr(getattr(mod, "lib", None), "stride_tricks", None), "as_strided", None)
        strided = (lambda a, shape=None, strides=None, writeable=True: inner(a, shape, strides)) if inner else _numpy_strided
    to_np: Callable[[Any], numpy.ndarray] = to_numpy if to_numpy is not None else getattr(mod, "asnumpy", numpy.asarray)
    scatter: Callable[[Any, Any, Any], None] = scatter_add if scatter_add is not None else getattr(mod, "scatter_add", numpy.add.at)
    _install(mod, label or mod.__name__, to_np, scatter, strided)
    global IS_NUMPY
    IS_NUMPY = False


def name() -> str:
    """The backend in use: ``"numpy"`` or ``"cupy"`` (a module given to :func:`use_module`: its label).

    Examples
    --------
    >>> from cnnkit import backend
    >>> backend.name()
    'numpy'
    """
    return _name


def is_gpu() -> bool:
    """Whether arrays live on a GPU (the CuPy backend).

    Examples
    --------
    >>> from cnnkit import backend
    >>> backend.is_gpu()
    False
    """
    return _name == "cupy"


def module() -> types.ModuleType:
    """The array module itself (``numpy``, ``cupy``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> backend.module() is np
    True
    """
    return ArrayModule._module


def asarray(a: Any, dtype: Any = None) -> Any:
    """``a`` as an array of the backend (copied to the device under CuPy; the same array when it is one).

    Examples
    --------
    >>> from cnnkit import backend
    >>> backend.asarray([1, 2], dtype="float32")
    array([1., 2.], dtype=float32)
    """
    return ArrayModule._module.asarray(a, dtype=dtype)


def to_device(a: Any) -> Any:
    """``a`` unchanged under NumPy, else :func:`asarray` (one host-to-device copy per call).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> a = np.arange(3)
    >>> backend.to_device(a) is a
    True
    """
    return a if IS_NUMPY else ArrayModule._module.asarray(a)


def to_numpy(a: Any) -> numpy.ndarray:
    """``a`` as a NumPy array: the same object when it is one, a device-to-host copy of a CuPy array.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> a = np.arange(3)
    >>> backend.to_numpy(a) is a, backend.to_numpy([1, 2]).tolist()
    (True, [1, 2])
    """
    if type(a) is numpy.ndarray:
        return a
    if IS_NUMPY or not isinstance(a, _XP.ndarray):
        return numpy.asarray(a)
    return _to_numpy(a)


def scatter_add(a: Any, indices: Any, values: Any) -> None:
    """``a[indices] += values`` with repeated indices adding up (``np.add.at``; ``cupyx.scatter_add``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> a = np.zeros(3)
    >>> backend.scatter_add(a, np.array([0, 0, 2]), np.array([1.0, 2.0, 5.0]))
    >>> a
    array([3., 0., 5.])
    """
    _scatter_add(a, indices, values)


def as_strided(a: Any, shape: Any = None, strides: Any = None, writeable: bool = True) -> Any:
    """A strided view of ``a`` (``numpy.lib.stride_tricks.as_strided``; CuPy's ignores ``writeable``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import backend
    >>> backend.as_strided(np.arange(4.0), (3, 2), (8, 8), writeable=False).tolist()
    [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    """
    if IS_NUMPY:
        return numpy.lib.stride_tricks.as_strided(a, shape, strides, writeable=writeable)
    return _as_strided(a, shape, strides, writeable)


def default_float() -> numpy.dtype:
    """The dtype parameters are created in unless asked otherwise (float32).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.backend import default_float
    >>> default_float()
    dtype('float32')
    >>> np.zeros(2, default_float()).dtype
    dtype('float32')
    """
    return numpy.dtype(numpy.float32)


_install(numpy, "numpy", numpy.asarray, numpy.add.at, _numpy_strided)
if os.environ.get(ENV, "").strip():
    use(os.environ[ENV])
