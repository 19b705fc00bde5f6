"""Parameter initialisers. Every one takes an explicit ``np.random.Generator`` (no global RNG).

Shape-only building: inside ``with shapes_only():`` the initialisers return read-only zero views that
hold no memory (``broadcast_to``), so that a network of any size can be built to read its shapes,
parameter counts and costs (``cnnkit summary``, checking a model file against its architecture) before
anything large is allocated. Such a network must not be trained or run on real data.

Examples
--------
>>> import numpy as np
>>> from cnnkit.nn import Conv2d
>>> with shapes_only():
...     big = Conv2d(512, 4096, 7, rng=np.random.default_rng(0))
>>> big.num_params(), big.params["weight"].strides
(102764544, (0, 0, 0, 0))
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from cnnkit.backend import Array, default_float, xp

_state = threading.local()


@contextmanager
def shapes_only() -> Iterator[None]:
    """Build layers whose parameters are zero-size-in-memory placeholders (see the module docstring).

    Examples
    --------
    VGG-16's fc6 (25088 x 4096 weights) built for its shapes, holding no memory:

    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.nn.init import shapes_only
    >>> with shapes_only():
    ...     fc6 = Linear(25088, 4096, rng=np.random.default_rng(0))
    >>> fc6.num_params(), fc6.params["weight"].strides
    (102764544, (0, 0))
    """
    before = getattr(_state, "shapes_only", False)
    _state.shapes_only = True
    try:
        yield
    finally:
        _state.shapes_only = before


def building_shapes_only() -> bool:
    """True inside :func:`shapes_only`.

    Examples
    --------
    >>> from cnnkit.nn.init import building_shapes_only, shapes_only
    >>> with shapes_only():
    ...     inside = building_shapes_only()
    >>> inside, building_shapes_only()
    (True, False)
    """
    return bool(getattr(_state, "shapes_only", False))


def _placeholder(shape: tuple[int, ...], dtype: Any) -> Array:
    return xp.broadcast_to(xp.zeros((), dtype=dtype or default_float()), shape)


def filled(shape: int | tuple[int, ...], value: float, dtype: Any = None) -> Array:
    """An array of ``value`` (BN's ones and zeros); a placeholder inside :func:`shapes_only`, so that a layer
    of a billion channels costs nothing until the parameter limit has been checked.

    Examples
    --------
    >>> from cnnkit.nn.init import filled, shapes_only
    >>> filled(3, 1.0, "float32")
    array([1., 1., 1.], dtype=float32)
    >>> with shapes_only():
    ...     big = filled(10**12, 0.0, "float32")
    >>> big.shape, big.strides
    ((1000000000000,), (0,))
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if building_shapes_only():
        return _placeholder(shape, dtype)
    return xp.full(shape, value, dtype=dtype or default_float())


def zeros_like(a: Array) -> Array:
    """Zeros shaped and typed like ``a`` (a placeholder inside :func:`shapes_only`).

    Examples
    --------
    >>> zeros_like(np.ones((2, 3), np.float32)).dtype
    dtype('float32')
    """
    if building_shapes_only():
        return _placeholder(tuple(a.shape), a.dtype)
    return xp.zeros_like(a)


def as_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """Return ``rng``, or a fresh OS-seeded generator when None (like an unseeded framework).

    Examples
    --------
    >>> int(as_rng(None).integers(0, 1))
    0
    """
    return rng if rng is not None else np.random.default_rng()


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: Any = None) -> Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv2d and Linear weights and biases.

    Examples
    --------
    >>> w = uniform_fan_in((3, 3, 1, 4), 9, np.random.default_rng(0))
    >>> w.shape, bool(abs(w).max() <= 1 / 3)
    ((3, 3, 1, 4), True)
    """
    if building_shapes_only():
        return _placeholder(shape, dtype)
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return xp.asarray(rng.uniform(-bound, bound, size=shape), dtype=dtype or default_float())


def gaussian(shape: tuple[int, ...], std: float, rng: np.random.Generator, dtype: Any = None) -> Array:
    """std * N(0, 1), e.g. MatConvNet's 0.01 * randn.

    Examples
    --------
    >>> gaussian((2,), 0.01, np.random.default_rng(0)).dtype
    dtype('float32')
    """
    if building_shapes_only():
        return _placeholder(shape, dtype)
    return xp.asarray(std * rng.standard_normal(size=shape), dtype=dtype or default_float())


def he_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: Any = None) -> Array:
    """N(0, 2/fan_in) (He et al.), suited to ReLU networks.

    Examples
    --------
    >>> w = he_normal((100000,), 50, np.random.default_rng(0), np.float64)
    >>> round(float(w.var() * 50), 1)
    2.0
    """
    return gaussian(shape, math.sqrt(2.0 / max(fan_in, 1)), rng, dtype)
