"""Element-wise activations and the softmax family, as pure forward/backward pairs.

Every ``<name>_forward(x, ...)`` returns ``(y, cache)`` and ``<name>_backward(dy, cache)`` returns dx
(``(dx, dweight)`` for PReLU). Inputs are any shape; the activations act element-wise, PReLU's weight
and the softmax family act on the last axis, which is the channel axis of NHWC tensors (and the class
axis of an (N, K) score matrix).

Caches keep only references to arrays that exist anyway (the input or the output), never copies, so
callers must not modify ``x`` or ``y`` in place between forward and backward (the ``inplace`` options
are the deliberate exception: they overwrite ``x`` and keep ``y``).

Parameterless ops compute in the input's dtype (a non-float input is converted to float32); PReLU
computes in its weight's dtype.

Selections between two branches are written as arithmetic on 0/1 masks (exact, since one term is 0)
rather than ``where``, which is several times slower in NumPy on unpredictable masks.

Gradients at the kink x == 0 follow PyTorch: ReLU 0, LeakyReLU ``negative_slope``, PReLU the weight,
ELU ``alpha`` (the left-hand derivative everywhere except ReLU, whose derivative there is 0 as eq. 15.14's
indicator [x > 0] also gives).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from cnnkit import jit
from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError


def as_float(x: Array) -> Array:
    """``x`` as an array of a floating dtype: float arrays pass through unchanged, others become float32.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import as_float
    >>> as_float(np.array([1, 2])).dtype
    dtype('float32')
    >>> x = np.zeros(2, np.float64)
    >>> as_float(x) is x
    True
    """
    x = xp.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(default_float())
    return x


def _grad_like(dy: Array, ref: Array, what: str) -> Array:
    """Check that dy has the forward output's shape and return it in that dtype."""
    dy = xp.asarray(dy)
    if dy.shape != ref.shape:
        raise ShapeError(f"{what} backward: dy has shape {tuple(dy.shape)}, expected the output shape {tuple(ref.shape)}")
    return dy.astype(ref.dtype, copy=False)


def _ignore_overflow() -> contextlib.AbstractContextManager:
    """Silence the overflow warning of exp where an infinite intermediate is intended."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore") if errstate is not None else contextlib.nullcontext()


def stable_sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)), accurate in both tails: exp(-x) may overflow to inf for x << 0, giving exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import stable_sigmoid
    >>> stable_sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    t = xp.negative(x)
    with _ignore_overflow():
        xp.exp(t, out=t)
    t += 1
    xp.reciprocal(t, out=t)
    return t


def select_factor(mask: Array, other: float | Array, dtype: xp.dtype) -> Array:
    """1 where ``mask``, ``other`` elsewhere (``other`` broadcasts against mask), in ``dtype``; exact.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import select_factor
    >>> select_factor(np.array([True, False, True]), 0.5, np.float64)
    array([1. , 0.5, 1. ])
    """
    f = xp.multiply(xp.logical_not(mask), xp.asarray(other, dtype=dtype), dtype=dtype)
    f += mask
    return f


# ---------------------------------------------------------------------------------------------- ReLU
@dataclass
class ReLUCache:
    """ReLU keeps its output: y > 0 exactly where x > 0, and the output exists anyway (no new memory).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import relu_forward
    >>> y, cache = relu_forward(np.array([-1.0, 2.0]))
    >>> cache.y is y
    True
    """

    y: Array


class LazyReLUCache:
    """The cache of a ReLU whose output was never stored because a fused kernel consumed it (a ReLU before a
    max pooling, :class:`~cnnkit.nn.Sequential`): ``y = max(x, 0)`` is computed from the input on first read.
    Like :class:`ReLUCache` it holds the input by reference.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import LazyReLUCache, relu_backward
    >>> cache = LazyReLUCache(np.array([-1.0, 2.0]))
    >>> relu_backward(np.array([5.0, 5.0]), cache)
    array([0., 5.])
    """

    def __init__(self, x: Array) -> None:
        self.x = x
        self._y: Array | None = None

    @property
    def y(self) -> Array:
        if self._y is None:
            self._y = relu_forward(self.x)[0]
        return self._y


RELU_KERNEL_MIN = 1 << 12
"""From this many elements ReLU's backward runs as one compiled pass (below it NumPy's two small passes cost
no more than calling the kernel)."""


def _relu_kernel_ok(*arrays: Array) -> bool:
    """The compiled ReLU applies: numba, float arrays of one dtype, C-contiguous, large enough."""
    a = arrays[0]
    return (a.size >= RELU_KERNEL_MIN and jit.usable(*arrays) and all(b.dtype == a.dtype and b.flags.c_contiguous for b in arrays))


def relu_forward(x: Array, inplace: bool = False) -> tuple[Array, ReLUCache]:
    """y = max{0, x} element-wise (eq. 15.13). Any shape. ``inplace=True`` overwrites ``x`` with y.

    Large arrays run on the compiled kernel's threads when more than one is allowed (the same bits).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import relu_forward
    >>> y, cache = relu_forward(np.array([[-2.0, 0.0, 3.0]]))
    >>> y
    array([[0., 0., 3.]])
    """
    x = as_float(x)
    if x.size >= jit.RELU_THRESHOLD and _relu_kernel_ok(x) and jit.threads() > 1:
        y = x if inplace else xp.empty_like(x)
        assert jit.relu_forward is not None  # usable(): numba is there
        jit.relu_forward(x, y)
        return y, ReLUCache(y)
    y = xp.maximum(x, 0, out=x if inplace else None)
    return y, ReLUCache(y)


def relu_backward(dy: Array, cache: ReLUCache | LazyReLUCache) -> Array:
    """dz/dx = dz/dy where x > 0, else 0 (eqs. 15.14-15.15; 0 at x == 0, as in PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import relu_backward, relu_forward
    >>> y, cache = relu_forward(np.array([-2.0, 0.0, 3.0]))
    >>> relu_backward(np.array([5.0, 5.0, 5.0]), cache)
    array([0., 0., 5.])
    """
    y = cache.y
    dy = _grad_like(dy, y, "relu")
    if _relu_kernel_ok(dy, y):
        dx = xp.empty_like(dy)
        assert jit.relu_backward is not None  # usable(): numba is there
        jit.relu_backward(dy, y, dx)  # dy * (y > 0) in one pass, the same bits
        return dx
    return dy * (y > 0)


# ------------------------------------------------------------------------------------------- Sigmoid
@dataclass
class SigmoidCache:
    """What sigmoid's backward needs: the output y (dy/dx = y (1 - y)).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import sigmoid_forward
    >>> y, cache = sigmoid_forward(np.zeros(2))
    >>> cache.y is y
    True
    """

    y: Array


def sigmoid_forward(x: Array) -> tuple[Array, SigmoidCache]:
    """Logistic sigmoid y = 1 / (1 + exp(-x)) (seed 000 §15.4), computed without overflow. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import sigmoid_forward
    >>> y, cache = sigmoid_forward(np.array([-800.0, 0.0, 2.0]))
    >>> np.round(y, 4)
    array([0.    , 0.5   , 0.8808])
    """
    y = stable_sigmoid(as_float(x))
    return y, SigmoidCache(y)


def sigmoid_backward(dy: Array, cache: SigmoidCache) -> Array:
    """dy/dx = y (1 - y), which lies in (0, 1/4] (seed 000 §15.4).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import sigmoid_backward, sigmoid_forward
    >>> y, cache = sigmoid_forward(np.array([0.0, 3.0]))
    >>> np.round(sigmoid_backward(np.ones(2), cache), 4)
    array([0.25  , 0.0452])
    """
    y = cache.y
    dy = _grad_like(dy, y, "sigmoid")
    return dy * y * (1 - y)


# ---------------------------------------------------------------------------------------------- Tanh
@dataclass
class TanhCache:
    """What tanh's backward needs: the output y (dy/dx = 1 - y^2).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import tanh_forward
    >>> y, cache = tanh_forward(np.zeros(2))
    >>> cache.y is y
    True
    """

    y: Array


def tanh_forward(x: Array) -> tuple[Array, TanhCache]:
    """y = tanh(x) element-wise. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import tanh_forward
    >>> y, cache = tanh_forward(np.array([-1.0, 0.0, 1.0]))
    >>> np.round(y, 4)
    array([-0.7616,  0.    ,  0.7616])
    """
    y = xp.tanh(as_float(x))
    return y, TanhCache(y)


def tanh_backward(dy: Array, cache: TanhCache) -> Array:
    """dy/dx = 1 - y^2.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import tanh_backward, tanh_forward
    >>> y, cache = tanh_forward(np.array([0.0, 1.0]))
    >>> np.round(tanh_backward(np.ones(2), cache), 4)
    array([1.  , 0.42])
    """
    y = cache.y
    dy = _grad_like(dy, y, "tanh")
    return dy * (1 - y * y)


# ----------------------------------------------------------------------------------------- LeakyReLU
@dataclass
class LeakyReLUCache:
    """What leaky ReLU's backward needs: an array with the sign of x (the output when the slope is positive).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import leaky_relu_forward
    >>> y, cache = leaky_relu_forward(np.array([-1.0, 2.0]), 0.1)
    >>> cache.ref is y, cache.negative_slope
    (True, 0.1)
    """

    ref: Array  # the output when negative_slope > 0 (same sign as x), else the input x
    negative_slope: float


def leaky_relu_forward(x: Array, negative_slope: float = 0.01, inplace: bool = False) -> tuple[Array, LeakyReLUCache]:
    """y = x for x > 0, negative_slope * x otherwise (PyTorch's LeakyReLU). Any shape.

    ``inplace=True`` overwrites x; it needs negative_slope > 0 (else the sign of x would be lost).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import leaky_relu_forward
    >>> y, cache = leaky_relu_forward(np.array([-10.0, 0.0, 4.0]), negative_slope=0.1)
    >>> y
    array([-1.,  0.,  4.])
    """
    x = as_float(x)
    if inplace and not negative_slope > 0:
        raise ValueError(f"leaky_relu: inplace=True needs negative_slope > 0, got {negative_slope}")
    slope = x * x.dtype.type(negative_slope)
    # a slope <= 1 makes leaky_relu(x) = max(x, slope x), a slope > 1 makes it min(x, slope x)
    pick = xp.maximum if negative_slope <= 1 else xp.minimum
    y = pick(x, slope, out=x if inplace else slope)
    return y, LeakyReLUCache(y if negative_slope > 0 else x, float(negative_slope))


def leaky_relu_backward(dy: Array, cache: LeakyReLUCache) -> Array:
    """dx = dy where x > 0, negative_slope * dy otherwise (negative_slope at x == 0, as PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import leaky_relu_backward, leaky_relu_forward
    >>> y, cache = leaky_relu_forward(np.array([-10.0, 0.0, 4.0]), negative_slope=0.1)
    >>> leaky_relu_backward(np.ones(3), cache)
    array([0.1, 0.1, 1. ])
    """
    dy = _grad_like(dy, cache.ref, "leaky_relu")
    f = select_factor(cache.ref > 0, cache.negative_slope, dy.dtype)
    f *= dy
    return f


# --------------------------------------------------------------------------------------------- PReLU
@dataclass
class PReLUCache:
    """What PReLU's backward needs: the input x (in the weight's dtype) and the slopes.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import prelu_forward
    >>> y, cache = prelu_forward(np.array([[-1.0, 2.0]]), np.array([0.25, 0.5]))
    >>> cache.x.shape, cache.weight.shape
    ((1, 2), (2,))
    """

    x: Array  # (..., C), in the weight's dtype
    weight: Array  # (1,) or (C,), or any shape broadcasting to x's (broadcast=True)


def _check_prelu(x: Array, weight: Array, broadcast: bool) -> None:
    if broadcast:
        ok = weight.ndim <= x.ndim and all(w in (1, d) for w, d in zip(reversed(weight.shape), reversed(x.shape)))
        if not ok:
            raise ShapeError(
                f"prelu: weight of shape {tuple(weight.shape)} does not broadcast to the input {tuple(x.shape)} "
                f"(numpy's rule, aligned at the last axis, without changing the input's shape)"
            )
        return
    if weight.ndim != 1 or (weight.shape[0] != 1 and (x.ndim == 0 or weight.shape[0] != x.shape[-1])):
        c = x.shape[-1] if x.ndim else None
        raise ShapeError(
            f"prelu: weight must have shape (1,) or (C,) with C = {c} channels on the last axis of the "
            f"input {tuple(x.shape)}; got weight shape {tuple(weight.shape)} (broadcast=True takes any shape that "
            f"broadcasts to the input, e.g. (H, W, C))"
        )


def prelu_forward(x: Array, weight: Array, broadcast: bool = False) -> tuple[Array, PReLUCache]:
    """Parametric ReLU: y = x for x > 0, a x otherwise, with learnable slopes a.

    x: (..., C) channel-last (NHWC or (N, C)); weight: (1,) (one slope shared) or (C,) (one per channel).
    With ``broadcast=True`` the weight may have any shape that broadcasts to x's by NumPy's rule (aligned
    at the last axis, x's shape unchanged): ONNX's PRelu slope, e.g. (H, W, C) for a slope per element of
    an NHWC image, or () for a scalar. Broadcasting is opt-in so that an NCHW-shaped slope such as (C, 1, 1)
    given by mistake fails instead of silently broadcasting over the wrong axes.
    Computes in the weight's dtype. Returns y with x's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import prelu_forward
    >>> x = np.array([[-4.0, -4.0], [2.0, 2.0]])  # (N=2, C=2)
    >>> y, cache = prelu_forward(x, np.array([0.25, 0.5]))  # one slope per channel
    >>> y
    array([[-1., -2.],
           [ 2.,  2.]])
    >>> prelu_forward(x, np.array([[0.25, 0.5], [0.1, 0.1]]), broadcast=True)[0]  # one slope per element
    array([[-1., -2.],
           [ 2.,  2.]])
    """
    x = xp.asarray(x)
    weight = xp.asarray(weight)
    _check_prelu(x, weight, broadcast)
    x = x.astype(weight.dtype, copy=False)
    y = xp.minimum(x, 0)
    y *= weight  # weight broadcasts along the last axes
    y += xp.maximum(x, 0)  # exact: one of the two terms is 0
    return y, PReLUCache(x, weight)


def prelu_backward(dy: Array, cache: PReLUCache) -> tuple[Array, Array]:
    """Returns ``(dx, dweight)``: dx = dy where x > 0 else a dy; da = sum of x dy over x <= 0, summed over
    every axis the weight broadcasts along (all but the channel for (C,), all for (1,)).

    dy: x's shape (..., C) -> dx: (..., C), dweight: the weight's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import prelu_backward, prelu_forward
    >>> x = np.array([[-4.0, -4.0], [2.0, 2.0]])
    >>> y, cache = prelu_forward(x, np.array([0.25, 0.5]))
    >>> dx, dweight = prelu_backward(np.ones((2, 2)), cache)
    >>> dx, dweight
    (array([[0.25, 0.5 ],
           [1.  , 1.  ]]), array([-4., -4.]))
    """
    x, w = cache.x, cache.weight
    dy = _grad_like(dy, x, "prelu")
    dx = select_factor(x > 0, w, x.dtype)
    dx *= dy
    xneg = xp.minimum(x, 0)  # x where the slope acts, else 0
    if w.ndim == 1 and w.shape[0] == 1:
        dw = xp.reshape(xp.vdot(xneg.reshape(-1), dy.reshape(-1)), (1,))
    elif w.ndim == 1 and x.ndim >= 1 and w.shape[0] == x.shape[-1]:
        c = w.shape[0]
        dw = xp.einsum("ij,ij->j", xneg.reshape(-1, c), dy.reshape(-1, c))  # (M, C) * (M, C) summed over M
    else:  # a broadcasting slope: sum over the leading axes, then over the axes where the weight has size 1
        g = xneg * dy
        lead = x.ndim - w.ndim
        if lead:
            g = g.sum(axis=tuple(range(lead)))
        ones = tuple(i for i, (a, b) in enumerate(zip(w.shape, g.shape)) if a == 1 and b != 1)
        dw = g.sum(axis=ones, keepdims=True) if ones else g
        dw = dw.reshape(w.shape)
    return dx, dw.astype(w.dtype, copy=False)


# ----------------------------------------------------------------------------------------------- ELU
@dataclass
class ELUCache:
    """What ELU's backward needs: the output y (and the input x only when alpha <= 0).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import elu_forward
    >>> y, cache = elu_forward(np.array([-1.0, 1.0]))
    >>> cache.y is y, cache.x, cache.alpha
    (True, None, 1.0)
    """

    y: Array
    x: Array | None  # only when alpha <= 0; with alpha > 0, y > 0 exactly where x > 0
    alpha: float


def elu_forward(x: Array, alpha: float = 1.0) -> tuple[Array, ELUCache]:
    """Exponential linear unit: y = x for x > 0, alpha (exp(x) - 1) otherwise (PyTorch's ELU). Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import elu_forward
    >>> y, cache = elu_forward(np.array([-50.0, -1.0, 0.0, 2.0]), alpha=1.0)
    >>> np.round(y, 4)
    array([-1.    , -0.6321,  0.    ,  2.    ])
    """
    x = as_float(x)
    y = xp.minimum(x, 0)
    xp.expm1(y, out=y)  # exp(min(x, 0)) - 1, never overflows; 0 for x > 0
    y *= x.dtype.type(alpha)
    y += xp.maximum(x, 0)  # exact: one of the two terms is 0
    return y, ELUCache(y, x if not alpha > 0 else None, float(alpha))


def elu_backward(dy: Array, cache: ELUCache) -> Array:
    """dx = dy for x > 0, else alpha exp(x) dy = (y + alpha) dy (alpha at x == 0, as PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import elu_backward, elu_forward
    >>> y, cache = elu_forward(np.array([-1.0, 0.0, 2.0]), alpha=1.0)
    >>> np.round(elu_backward(np.ones(3), cache), 4)
    array([0.3679, 1.    , 1.    ])
    """
    dy = _grad_like(dy, cache.y, "elu")
    pos = cache.y > 0 if cache.x is None else cache.x > 0
    f = select_factor(pos, cache.y + cache.y.dtype.type(cache.alpha), dy.dtype)
    f *= dy
    return f


# ------------------------------------------------------------------------------------------ Softplus
@dataclass
class SoftplusCache:
    """What softplus's backward needs: the input x and the parameters beta and threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softplus_forward
    >>> y, cache = softplus_forward(np.zeros(2), beta=2.0)
    >>> cache.beta, cache.threshold
    (2.0, 20.0)
    """

    x: Array
    beta: float
    threshold: float


def softplus_forward(x: Array, beta: float = 1.0, threshold: float = 20.0) -> tuple[Array, SoftplusCache]:
    """y = log(1 + exp(beta x)) / beta, and y = x where beta x > threshold (PyTorch's formula). Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softplus_forward
    >>> y, cache = softplus_forward(np.array([-1.0, 0.0, 30.0]))
    >>> np.round(y, 4)
    array([ 0.3133,  0.6931, 30.    ])
    """
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    x = as_float(x)
    bx = x * x.dtype.type(beta)
    linear = bx > threshold
    t = xp.minimum(bx, threshold, out=bx)  # no exp overflow; the linear region is replaced below
    xp.exp(t, out=t)
    xp.log1p(t, out=t)
    t /= x.dtype.type(beta)
    if linear.any():
        t *= xp.logical_not(linear)
        t += x * linear  # exact: one of the two terms is 0
    return t, SoftplusCache(x, float(beta), float(threshold))


def softplus_backward(dy: Array, cache: SoftplusCache) -> Array:
    """dy/dx = sigmoid(beta x), and 1 in the linear region beta x > threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softplus_backward, softplus_forward
    >>> y, cache = softplus_forward(np.array([0.0, 30.0]))
    >>> softplus_backward(np.ones(2), cache)
    array([0.5, 1. ])
    """
    x = cache.x
    dy = _grad_like(dy, x, "softplus")
    bx = x * x.dtype.type(cache.beta)
    linear = bx > cache.threshold
    f = stable_sigmoid(bx)
    if linear.any():
        f = select_factor(linear, f, f.dtype)
    f *= dy
    return f


# ------------------------------------------------------------------------------------------- Softmax
def row_sum(a: Array) -> Array:
    """Sum over the last axis, keeping it: (..., K) -> (..., 1); a matrix-vector product, much faster
    than ``sum(axis=-1)`` when K is small.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import row_sum
    >>> row_sum(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    array([[ 6.],
           [15.]])
    """
    k = a.shape[-1]
    ones = xp.ones(k, dtype=a.dtype)
    return xp.matmul(a.reshape(-1, k), ones).reshape((*a.shape[:-1], 1))  # (M, K) @ (K,) -> (M,)


def row_shift(x: Array) -> Array | None:
    """What to subtract from each row (last axis) before ``exp`` so that nothing overflows.

    The softmax is unchanged by any per-row shift. When every |x| <= log(largest float) / 4, exp(x) can
    neither overflow nor approach the subnormal range (so loses no accuracy) and None is returned: no
    shift is needed, which skips the slow row maximum. Otherwise the row maxima, shape (..., 1).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import row_shift
    >>> row_shift(np.array([[1.0, 2.0]])) is None
    True
    >>> row_shift(np.array([[1000.0, 2.0], [3.0, 4.0]]))
    array([[1000.],
           [   4.]])
    """
    if x.size == 0:
        return None
    bound = math.log(float(xp.finfo(x.dtype).max)) / 4  # ~22 in float32, ~177 in float64
    if float(x.max()) <= bound and float(x.min()) >= -bound:
        return None
    return x.max(axis=-1, keepdims=True)


@dataclass
class SoftmaxCache:
    """What softmax's backward needs: the probabilities y, (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softmax_forward
    >>> y, cache = softmax_forward(np.zeros((2, 3)))
    >>> cache.y is y
    True
    """

    y: Array  # the probabilities, (..., K)


def softmax(x: Array) -> Array:
    """Softmax over the last axis (eq. 15.7), stabilised by subtracting the row maximum when needed.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softmax
    >>> np.round(softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])), 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    """
    x = as_float(x)
    if x.ndim == 0:
        raise ShapeError("softmax: needs at least one axis, got a 0-d array")
    shift = row_shift(x)
    e = xp.exp(x) if shift is None else xp.exp(x - shift)  # (..., K), at most 1 after a shift
    e /= row_sum(e)
    return e


def softmax_forward(x: Array) -> tuple[Array, SoftmaxCache]:
    """x_i^{l+1} = exp(x_i) / sum_j exp(x_j) over the last axis (eq. 15.7; seed 004 §1.3.4).

    Shape (..., K) -> (..., K); rows sum to 1. Finite for any finite input (see :func:`row_shift`).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softmax_forward
    >>> y, cache = softmax_forward(np.log(np.array([[1.0, 3.0], [2.0, 2.0]])))
    >>> np.round(y, 4)
    array([[0.25, 0.75],
           [0.5 , 0.5 ]])
    >>> np.round(y.sum(axis=-1), 4)
    array([1., 1.])
    """
    y = softmax(x)
    return y, SoftmaxCache(y)


def softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    """Jacobian-vector product: dx = y * (dy - sum_k dy_k y_k), row by row over the last axis.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import softmax_backward, softmax_forward
    >>> y, cache = softmax_forward(np.log(np.array([[1.0, 3.0]])))
    >>> np.round(softmax_backward(np.array([[1.0, 0.0]]), cache), 4)
    array([[ 0.1875, -0.1875]])
    """
    y = cache.y
    dy = _grad_like(dy, y, "softmax")
    dx = dy * y
    s = row_sum(dx)  # (..., 1): sum_k dy_k y_k
    xp.subtract(dy, s, out=dx)
    dx *= y
    return dx


@dataclass
class LogSoftmaxCache:
    """What log-softmax's backward needs: the log-probabilities y, (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import log_softmax_forward
    >>> y, cache = log_softmax_forward(np.zeros((1, 2)))
    >>> cache.y is y
    True
    """

    y: Array  # log-probabilities, (..., K)


def log_softmax_forward(x: Array) -> tuple[Array, LogSoftmaxCache]:
    """y = log softmax(x) = x - log sum_k exp(x_k) over the last axis, with the row maximum subtracted
    first when needed (see :func:`row_shift`). Shape (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import log_softmax_forward
    >>> y, cache = log_softmax_forward(np.log(np.array([[1.0, 3.0]])))
    >>> np.round(np.exp(y), 4)
    array([[0.25, 0.75]])
    """
    x = as_float(x)
    if x.ndim == 0:
        raise ShapeError("log_softmax: needs at least one axis, got a 0-d array")
    shift = row_shift(x)
    s = x if shift is None else x - shift  # (..., K)
    lse = xp.log(row_sum(xp.exp(s)))  # (..., 1): log sum_k exp(s_k)
    if shift is None:
        y = x - lse
    else:
        y = s
        y -= lse
    return y, LogSoftmaxCache(y)


def log_softmax_backward(dy: Array, cache: LogSoftmaxCache) -> Array:
    """dx = dy - softmax(x) * sum_k dy_k, with softmax(x) = exp(y).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.activation import log_softmax_backward, log_softmax_forward
    >>> y, cache = log_softmax_forward(np.log(np.array([[1.0, 3.0]])))
    >>> np.round(log_softmax_backward(np.array([[1.0, 0.0]]), cache), 4)
    array([[ 0.75, -0.75]])
    """
    y = cache.y
    dy = _grad_like(dy, y, "log_softmax")
    p = xp.exp(y)
    p *= row_sum(dy)
    return dy - p
