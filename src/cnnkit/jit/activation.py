"""Compiled ReLU (forward and backward) and the bias-plus-ReLU epilogue of a layer's matrix product.

They compute NumPy's bits: ``maximum(x, 0)`` is x where x > 0 or x is NaN, else +0; the backward is
dy times 1 where y > 0, else times 0 (so -0 and NaN arise exactly where NumPy's ``dy * (y > 0)`` gives
them). NumPy runs these element-wise passes on one thread; the kernels are for the sizes where a second
thread pays (:data:`RELU_THRESHOLD`) and for fusing the bias into the same pass (:func:`bias_relu_`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel, launch

__all__ = ["RELU_THRESHOLD", "bias_relu_", "relu_backward", "relu_forward"]

RELU_THRESHOLD = 1 << 17
"""Elements from which the ReLU kernels run on more than one thread; below it NumPy's single pass is as fast
(docs/perf-notes.md)."""

BIAS_THRESHOLD = 1 << 16
"""Elements from which :func:`bias_relu_` runs on more than one thread."""


def _relu_forward(x: np.ndarray, out: np.ndarray) -> None:
    """out = max(x, 0) over flat arrays (NumPy's bits)."""
    zero = out.dtype.type(0)
    for k in prange(x.shape[0]):
        v = x[k]
        out[k] = v if (v > zero or v != v) else zero


def _relu_backward(dy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    """out = dy * (y > 0) over flat arrays (NumPy's bits, -0 and NaN included)."""
    zero = out.dtype.type(0)
    one = out.dtype.type(1)
    for k in prange(dy.shape[0]):
        out[k] = dy[k] * (one if y[k] > zero else zero)


def _bias_relu(y: np.ndarray, bias: np.ndarray, relu: bool) -> None:
    """y[m, c] += bias[c], then (with ``relu``) y = max(y, 0), in place over an (M, C) array."""
    zero = y.dtype.type(0)
    m, c = y.shape
    for r in prange(m):
        row = y[r]
        if relu:
            for k in range(c):
                v = row[k] + bias[k]
                row[k] = v if (v > zero or v != v) else zero
        else:
            for k in range(c):
                row[k] = row[k] + bias[k]


relu_forward: Callable[..., Any] | None  # None without numba
relu_backward: Callable[..., Any] | None
bias_relu_: Callable[..., Any] | None
if HAVE_NUMBA:
    from numba import prange

    _FWD = (kernel(_relu_forward), kernel(_relu_forward, parallel=True))
    _BWD = (kernel(_relu_backward), kernel(_relu_backward, parallel=True))
    _BIAS = (kernel(_bias_relu), kernel(_bias_relu, parallel=True))

    def relu_forward(x: np.ndarray, out: np.ndarray) -> None:
        """out = max(x, 0) (C-contiguous arrays of one shape and dtype; out may be x)."""
        launch(*_FWD, x.size, RELU_THRESHOLD, x.reshape(-1), out.reshape(-1))

    def relu_backward(dy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        """out = dy * (y > 0) (C-contiguous arrays of one shape and dtype; out may be dy)."""
        launch(*_BWD, dy.size, RELU_THRESHOLD, dy.reshape(-1), y.reshape(-1), out.reshape(-1))

    def bias_relu_(y: np.ndarray, bias: np.ndarray, relu: bool = True) -> None:
        """In place: y += bias (broadcast over the last axis), then y = max(y, 0) with ``relu``; one pass.

        For a layer's epilogue after its matrix product: ``y`` C-contiguous (..., C), ``bias`` (C,) of y's
        dtype. The bits are NumPy's ``y += bias`` followed by ``np.maximum(y, 0, out=y)``.
        """
        c = y.shape[-1]
        launch(*_BIAS, y.size, BIAS_THRESHOLD, y.reshape(-1, c), bias, bool(relu))

else:  # pragma: no cover
    relu_forward = relu_backward = bias_relu_ = None
