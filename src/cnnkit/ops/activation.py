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

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError


def as_float(x: Array) -> Array:
    """``x`` as an array of a floating dtype: float arrays pass through unchanged, others become float32."""
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
    """1 / (1 + exp(-x)), accurate in both tails: exp(-x) may overflow to inf for x << 0, giving exactly 0."""
    t = xp.negative(x)
    with _ignore_overflow():
        xp.exp(t, out=t)
    t += 1
    xp.reciprocal(t, out=t)
    return t


def select_factor(mask: Array, other: float | Array, dtype: xp.dtype) -> Array:
    """1 where ``mask``, ``other`` elsewhere (``other`` broadcasts against mask), in ``dtype``; exact."""
    f = xp.multiply(xp.logical_not(mask), xp.asarray(other, dtype=dtype), dtype=dtype)
    f += mask
    return f


# ---------------------------------------------------------------------------------------------- ReLU
@dataclass
class ReLUCache:
    """ReLU keeps its output: y > 0 exactly where x > 0, and the output exists anyway (no new memory)."""

    y: Array


def relu_forward(x: Array, inplace: bool = False) -> tuple[Array, ReLUCache]:
    """y = max{0, x} element-wise (eq. 15.13). Any shape. ``inplace=True`` overwrites ``x`` with y."""
    x = as_float(x)
    y = xp.maximum(x, 0, out=x if inplace else None)
    return y, ReLUCache(y)


def relu_backward(dy: Array, cache: ReLUCache) -> Array:
    """dz/dx = dz/dy where x > 0, else 0 (eqs. 15.14-15.15; 0 at x == 0, as in PyTorch)."""
    dy = _grad_like(dy, cache.y, "relu")
    return dy * (cache.y > 0)


# ------------------------------------------------------------------------------------------- Sigmoid
@dataclass
class SigmoidCache:
    y: Array


def sigmoid_forward(x: Array) -> tuple[Array, SigmoidCache]:
    """Logistic sigmoid y = 1 / (1 + exp(-x)) (seed 000 §15.4), computed without overflow. Any shape."""
    y = stable_sigmoid(as_float(x))
    return y, SigmoidCache(y)


def sigmoid_backward(dy: Array, cache: SigmoidCache) -> Array:
    """dy/dx = y (1 - y), which lies in (0, 1/4] (seed 000 §15.4)."""
    y = cache.y
    dy = _grad_like(dy, y, "sigmoid")
    return dy * y * (1 - y)


# ---------------------------------------------------------------------------------------------- Tanh
@dataclass
class TanhCache:
    y: Array


def tanh_forward(x: Array) -> tuple[Array, TanhCache]:
    """y = tanh(x) element-wise. Any shape."""
    y = xp.tanh(as_float(x))
    return y, TanhCache(y)


def tanh_backward(dy: Array, cache: TanhCache) -> Array:
    """dy/dx = 1 - y^2."""
    y = cache.y
    dy = _grad_like(dy, y, "tanh")
    return dy * (1 - y * y)


# ----------------------------------------------------------------------------------------- LeakyReLU
@dataclass
class LeakyReLUCache:
    ref: Array  # the output when negative_slope > 0 (same sign as x), else the input x
    negative_slope: float


def leaky_relu_forward(x: Array, negative_slope: float = 0.01, inplace: bool = False) -> tuple[Array, LeakyReLUCache]:
    """y = x for x > 0, negative_slope * x otherwise (PyTorch's LeakyReLU). Any shape.

    ``inplace=True`` overwrites x; it needs negative_slope > 0 (else the sign of x would be lost).
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
    """dx = dy where x > 0, negative_slope * dy otherwise (negative_slope at x == 0, as PyTorch)."""
    dy = _grad_like(dy, cache.ref, "leaky_relu")
    f = select_factor(cache.ref > 0, cache.negative_slope, dy.dtype)
    f *= dy
    return f


# --------------------------------------------------------------------------------------------- PReLU
@dataclass
class PReLUCache:
    x: Array  # (..., C), in the weight's dtype
    weight: Array  # (1,) or (C,)


def _check_prelu(x: Array, weight: Array) -> None:
    if weight.ndim != 1 or (weight.shape[0] != 1 and (x.ndim == 0 or weight.shape[0] != x.shape[-1])):
        c = x.shape[-1] if x.ndim else None
        raise ShapeError(
            f"prelu: weight must have shape (1,) or (C,) with C = {c} channels on the last axis of the "
            f"input {tuple(x.shape)}; got weight shape {tuple(weight.shape)}"
        )


def prelu_forward(x: Array, weight: Array) -> tuple[Array, PReLUCache]:
    """Parametric ReLU: y = x for x > 0, a_c x otherwise, with a learnable slope per channel.

    x: (..., C) channel-last (NHWC or (N, C)); weight: (1,) (one slope shared) or (C,).
    Computes in the weight's dtype. Returns y with x's shape.
    """
    x = xp.asarray(x)
    _check_prelu(x, weight)
    x = x.astype(weight.dtype, copy=False)
    y = xp.minimum(x, 0)
    y *= weight  # weight broadcasts along the last axis
    y += xp.maximum(x, 0)  # exact: one of the two terms is 0
    return y, PReLUCache(x, weight)


def prelu_backward(dy: Array, cache: PReLUCache) -> tuple[Array, Array]:
    """Returns ``(dx, dweight)``: dx = dy where x > 0 else a dy; da_c = sum of x dy over x <= 0 in channel c."""
    x, w = cache.x, cache.weight
    dy = _grad_like(dy, x, "prelu")
    dx = select_factor(x > 0, w, x.dtype)
    dx *= dy
    xneg = xp.minimum(x, 0)  # x where the slope acts, else 0
    if w.shape[0] == 1:
        dw = xp.reshape(xp.vdot(xneg.reshape(-1), dy.reshape(-1)), (1,))
    else:
        c = w.shape[0]
        dw = xp.einsum("ij,ij->j", xneg.reshape(-1, c), dy.reshape(-1, c))  # (M, C) * (M, C) summed over M
    return dx, dw.astype(w.dtype, copy=False)


# ----------------------------------------------------------------------------------------------- ELU
@dataclass
class ELUCache:
    y: Array
    x: Array | None  # only when alpha <= 0; with alpha > 0, y > 0 exactly where x > 0
    alpha: float


def elu_forward(x: Array, alpha: float = 1.0) -> tuple[Array, ELUCache]:
    """Exponential linear unit: y = x for x > 0, alpha (exp(x) - 1) otherwise (PyTorch's ELU). Any shape."""
    x = as_float(x)
    y = xp.minimum(x, 0)
    xp.expm1(y, out=y)  # exp(min(x, 0)) - 1, never overflows; 0 for x > 0
    y *= x.dtype.type(alpha)
    y += xp.maximum(x, 0)  # exact: one of the two terms is 0
    return y, ELUCache(y, x if not alpha > 0 else None, float(alpha))


def elu_backward(dy: Array, cache: ELUCache) -> Array:
    """dx = dy for x > 0, else alpha exp(x) dy = (y + alpha) dy (alpha at x == 0, as PyTorch)."""
    dy = _grad_like(dy, cache.y, "elu")
    pos = cache.y > 0 if cache.x is None else cache.x > 0
    f = select_factor(pos, cache.y + cache.y.dtype.type(cache.alpha), dy.dtype)
    f *= dy
    return f


# ------------------------------------------------------------------------------------------ Softplus
@dataclass
class SoftplusCache:
    x: Array
    beta: float
    threshold: float


def softplus_forward(x: Array, beta: float = 1.0, threshold: float = 20.0) -> tuple[Array, SoftplusCache]:
    """y = log(1 + exp(beta x)) / beta, and y = x where beta x > threshold (PyTorch's formula). Any shape."""
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
    """dy/dx = sigmoid(beta x), and 1 in the linear region beta x > threshold."""
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
    than ``sum(axis=-1)`` when K is small."""
    k = a.shape[-1]
    ones = xp.ones(k, dtype=a.dtype)
    return xp.matmul(a.reshape(-1, k), ones).reshape((*a.shape[:-1], 1))  # (M, K) @ (K,) -> (M,)


def row_shift(x: Array) -> Array | None:
    """What to subtract from each row (last axis) before ``exp`` so that nothing overflows.

    The softmax is unchanged by any per-row shift. When every |x| <= log(largest float) / 4, exp(x) can
    neither overflow nor approach the subnormal range (so loses no accuracy) and None is returned: no
    shift is needed, which skips the slow row maximum. Otherwise the row maxima, shape (..., 1).
    """
    if x.size == 0:
        return None
    bound = math.log(float(xp.finfo(x.dtype).max)) / 4  # ~22 in float32, ~177 in float64
    if float(x.max()) <= bound and float(x.min()) >= -bound:
        return None
    return x.max(axis=-1, keepdims=True)


@dataclass
class SoftmaxCache:
    y: Array  # the probabilities, (..., K)


def softmax(x: Array) -> Array:
    """Softmax over the last axis (eq. 15.7), stabilised by subtracting the row maximum when needed."""
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
    """
    y = softmax(x)
    return y, SoftmaxCache(y)


def softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    """Jacobian-vector product: dx = y * (dy - sum_k dy_k y_k), row by row over the last axis."""
    y = cache.y
    dy = _grad_like(dy, y, "softmax")
    dx = dy * y
    s = row_sum(dx)  # (..., 1): sum_k dy_k y_k
    xp.subtract(dy, s, out=dx)
    dx *= y
    return dx


@dataclass
class LogSoftmaxCache:
    y: Array  # log-probabilities, (..., K)


def log_softmax_forward(x: Array) -> tuple[Array, LogSoftmaxCache]:
    """y = log softmax(x) = x - log sum_k exp(x_k) over the last axis, with the row maximum subtracted
    first when needed (see :func:`row_shift`). Shape (..., K)."""
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
    """dx = dy - softmax(x) * sum_k dy_k, with softmax(x) = exp(y)."""
    y = cache.y
    dy = _grad_like(dy, y, "log_softmax")
    p = xp.exp(y)
    p *= row_sum(dy)
    return dy - p
