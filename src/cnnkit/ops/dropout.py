"""Inverted dropout (Srivastava et al. 2014; seed 000 §15.7.1 "随机失活层" and exercise 15.1).

Training: every entry is kept independently with probability 1 - p and the kept entries are scaled
by 1/(1 - p), so that E[y] = x and evaluation needs no rescaling::

    y = x * mask / (1 - p),   mask ~ Bernoulli(1 - p)   (training)
    y = x                                               (evaluation, or p = 0)

Backward: dx = dy * mask / (1 - p), with the mask of the forward. p = 1 gives zeros (and zero
gradients), as PyTorch does; p outside [0, 1] is an error.

The mask comes from one call ``rng.random(shape, dtype=float32)`` compared with p (float32 uniforms
are half the cost of float64 ones and resolve p to 2**-24) and is cached as a bool array, a quarter of
the memory of a float mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError, StateError


@dataclass
class DropoutCache:
    """The kept entries (None when the forward was the identity) and the scale 1/(1-p).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.dropout import dropout_forward
    >>> y, cache = dropout_forward(np.ones((2, 3)), 0.5, True, np.random.default_rng(0))
    >>> cache.keep.dtype, cache.scale, cache.shape
    (dtype('bool'), 2.0, (2, 3))
    """

    keep: Array | None  # bool, x's shape
    scale: float
    shape: tuple[int, ...]
    dtype: xp.dtype


def check_p(p: float) -> float:
    """Validate a dropout probability (PyTorch's rule: 0 <= p <= 1).

    Examples
    --------
    >>> from cnnkit.ops.dropout import check_p
    >>> check_p(0.5)
    0.5
    >>> check_p(1.5)
    Traceback (most recent call last):
    ...
    ValueError: dropout probability has to be between 0 and 1, got 1.5
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    return p


def dropout_forward(x: Array, p: float, train: bool, rng: np.random.Generator) -> tuple[Array, DropoutCache]:
    """Inverted dropout of any-shaped x: returns (y, cache), y with x's shape and dtype.

    Identity (y is x itself, not a copy) when ``train`` is False or p = 0; all zeros when p = 1.
    ``rng`` is the only source of randomness.

    Examples
    --------
    Kept entries are scaled by 1/(1-p) = 2, so the mean stays near 1; evaluation returns x itself.

    >>> import numpy as np
    >>> from cnnkit.ops.dropout import dropout_forward
    >>> x = np.ones((100, 100), np.float32)
    >>> y, cache = dropout_forward(x, 0.5, True, np.random.default_rng(0))
    >>> np.unique(y), round(float(y.mean()), 1)
    (array([0., 2.], dtype=float32), 1.0)
    >>> dropout_forward(x, 0.5, False, np.random.default_rng(0))[0] is x
    True
    """
    p = check_p(p)
    dtype = x.dtype if xp.issubdtype(x.dtype, xp.floating) else default_float()
    x = x.astype(dtype, copy=False)
    shape = tuple(x.shape)
    if not train or p == 0.0:
        return x, DropoutCache(None, 1.0, shape, dtype)
    if p == 1.0:
        return xp.zeros_like(x), DropoutCache(xp.zeros(shape, dtype=bool), 0.0, shape, dtype)
    keep = xp.asarray(rng.random(shape, dtype=xp.float32)) >= p  # P(keep) = 1 - p
    scale = 1.0 / (1.0 - p)
    y = x * dtype.type(scale)
    y *= keep
    return y, DropoutCache(keep, scale, shape, dtype)


def dropout_backward(dy: Array, cache: DropoutCache) -> Array:
    """dx = dy * mask / (1 - p), the same mask as the forward; dy passes through for the identity.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.dropout import dropout_backward, dropout_forward
    >>> y, cache = dropout_forward(np.ones(1000), 0.25, True, np.random.default_rng(0))
    >>> dx = dropout_backward(np.ones(1000), cache)
    >>> bool(np.array_equal(dx, y)), np.unique(np.round(dx, 4))  # same mask and scale 1/(1-p)
    (True, array([0.    , 1.3333]))
    """
    if cache is None:
        raise StateError("dropout backward called before forward")
    if tuple(dy.shape) != cache.shape:
        raise ShapeError(f"dropout backward: dy has shape {tuple(dy.shape)}, expected {cache.shape}")
    dy = dy.astype(cache.dtype, copy=False)
    if cache.keep is None:
        return dy
    dx = dy * cache.dtype.type(cache.scale)
    dx *= cache.keep
    return dx
