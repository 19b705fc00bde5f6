"""Batch normalisation (Ioffe & Szegedy 2015): seed 000 §15.2.1 names the normalisation layer
("规范化层") and exercise 15.3 points to the batch-normalisation paper; the formulas are the paper's.

Channels are the last axis: x is (N, H, W, C) for images or (N, C) for features, and the
statistics of channel c are taken over every other axis, M = x.size / C entries each.

Training (batch statistics; biased variance to normalise, as the paper and PyTorch do)::

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),  y = gamma*xhat + beta

and the running statistics are updated in place with PyTorch's rule
``running = (1 - momentum)*running + momentum*batch``, where the batch variance put into
``running_var`` is the *unbiased* one, var * M / (M - 1) (``running_var_unbiased=False``: the biased
var itself, as ONNX's BatchNormalization in training mode does; ONNX's ``momentum`` m is 1 - momentum here).

Evaluation: the same affine map with the running statistics in place of mu and var.

Backward in training mode (the statistics depend on x), the compact form::

    dx = gamma/sqrt(var+eps) / M * (M*dy - sum(dy) - xhat*sum(dy*xhat)),
    dgamma = sum(dy*xhat),  dbeta = sum(dy)

(sums over the M entries of a channel). In evaluation mode the statistics are constants and the
backward is the affine map's: dx = gamma/sqrt(running_var+eps) * dy.

Speed and memory: x is viewed as an (M, C) matrix, and that as a wider (M/r, r*C) matrix (r a
power of two dividing M, chosen so rows hold a few thousand entries) with the per-channel vectors
tiled r times: NumPy's broadcast loops then run over long rows even for few channels (3-5x faster at
C = 3..16), and per-channel sums are folded back from r*C partial sums (in float64, which also
makes float32 statistics more accurate: each float32 accumulator sees only M/r terms). Per-channel sums are BLAS
matrix-vector products (ones @ X); sums of products go through ``einsum`` (no product temporaries).
The forward allocates only its output and the backward only dx; xhat is not cached, it is recomputed
in place inside dx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError, StateError


@dataclass
class BatchNormCache:
    """What batch_norm's backward needs (x is referenced, not copied).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.norm import batch_norm_forward
    >>> y, cache = batch_norm_forward(np.array([[1.0, 10.0], [3.0, 30.0]]), None, None, None, None, train=True)
    >>> cache.mean, cache.batch_stats
    (array([ 2., 20.]), True)
    """

    x: Array  # (M/r, r*C) wide view of the input, in the compute dtype
    r: int  # rows of the (M, C) matrix folded into one wide row
    x_shape: tuple[int, ...]
    mean: Array  # (C,) the mean that was subtracted (batch or running)
    inv_std: Array  # (C,) 1/sqrt(var + eps) for the variance that was used
    gamma: Array | None  # (C,) or None without an affine part
    has_beta: bool
    batch_stats: bool  # True: statistics came from the batch (training), so they depend on x


_ROW_TARGET = 4096  # entries per wide row


def _fold_factor(m: int, c: int) -> int:
    """r: a power of two dividing M with r*C about _ROW_TARGET (1 when M is odd)."""
    want = 1 << max(0, (max(1, _ROW_TARGET // c)).bit_length() - 1)
    return math.gcd(m, want)


def _column_sum(a: Array, r: int) -> Array:
    """Per-channel sum of a wide (M/r, r*C) matrix: one BLAS matrix-vector product, then a fold: (C,)."""
    s = xp.ones(a.shape[0], dtype=a.dtype) @ a  # (r*C,) partial sums
    return _fold(s, r)


def _column_dot(a: Array, b: Array, r: int) -> Array:
    """Per-channel sum of a*b for wide matrices, without a full-size temporary: (C,)."""
    return _fold(xp.einsum("ij,ij->j", a, b), r)


def _fold(s: Array, r: int) -> Array:
    """Add up the r partial sums of each channel, (r*C,) -> (C,), accumulating in float64 (cheap: r*C entries)."""
    if r == 1:
        return s
    return s.reshape(r, -1).sum(axis=0, dtype=xp.float64).astype(s.dtype)


def _tile(v: Array, r: int) -> Array:
    """A per-channel vector (C,) repeated to match a wide row (r*C,)."""
    return v if r == 1 else xp.tile(v, r)


def _compute_dtype(x: Array, *candidates: Array | None) -> xp.dtype:
    for a in candidates:
        if a is not None:
            return a.dtype
    return x.dtype if xp.issubdtype(x.dtype, xp.floating) else default_float()


def _check_vector(name: str, v: Array | None, c: int, x_shape: tuple[int, ...]) -> None:
    if v is not None and tuple(v.shape) != (c,):
        raise ShapeError(
            f"batch_norm: {name} must have shape ({c},) for an input of shape {x_shape} "
            f"(channels last), got {tuple(v.shape)}"
        )


def batch_norm_forward(
    x: Array,
    gamma: Array | None,
    beta: Array | None,
    running_mean: Array | None,
    running_var: Array | None,
    train: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    running_var_unbiased: bool = True,
) -> tuple[Array, BatchNormCache]:
    """Batch normalisation over every axis but the last (channels).

    x: (N, ..., C), e.g. (N, H, W, C) or (N, C); gamma, beta, running_mean, running_var: (C,) or None.
    With ``train=True`` (or when there are no running statistics) the batch statistics are used and,
    if given, ``running_mean``/``running_var`` are updated *in place* (momentum rule above, with the
    unbiased batch variance, PyTorch's choice, or with ``running_var_unbiased=False`` the biased one that
    normalised the batch, ONNX's). With ``train=False`` the running statistics are used. Returns y with x's shape and the
    cache for :func:`batch_norm_backward`. The computation runs in gamma's dtype (else the running
    statistics', else x's).

    Examples
    --------
    Two channels, two examples: each channel is normalised to mean 0 and variance 1, and the running
    statistics move 10% towards the batch's (with the unbiased variance, 2 and 200).

    >>> import numpy as np
    >>> from cnnkit.ops.norm import batch_norm_forward
    >>> x, mean, var = np.array([[1.0, 10.0], [3.0, 30.0]]), np.zeros(2), np.ones(2)
    >>> y, cache = batch_norm_forward(x, np.ones(2), np.zeros(2), mean, var, train=True)
    >>> np.round(y, 3)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> np.round(mean, 3), np.round(var, 3)
    (array([0.2, 2. ]), array([ 1.1, 20.9]))

    ONNX's rule puts the biased batch variance (1 and 100) into the running variance:

    >>> var = np.ones(2)
    >>> _ = batch_norm_forward(x, None, None, np.zeros(2), var, train=True, running_var_unbiased=False)
    >>> np.round(var, 3)
    array([ 1. , 10.9])
    """
    if x.ndim < 2:
        raise ShapeError(
            f"batch_norm: expected an input (N, C) or (N, H, W, C) with channels last, got shape {tuple(x.shape)}"
        )
    x_shape = tuple(x.shape)
    c = x_shape[-1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        _check_vector(name, v, c, x_shape)
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if eps <= 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps}")
    dtype = _compute_dtype(x, gamma, beta, running_mean)
    x2 = x.astype(dtype, copy=False).reshape(-1, c)  # (M, C); a view for contiguous input
    m = x2.shape[0]
    r = _fold_factor(m, c)
    xw = x2.reshape(m // r, r * c)  # (M/r, r*C): r consecutive rows side by side
    batch_stats = train or running_mean is None

    if batch_stats:
        if m < 2:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel in training mode, got input shape {x_shape}"
            )
        mean = _column_sum(xw, r) / m  # (C,)
        y = xw - _tile(mean, r)  # x - mu, becomes y in place below
        var = _column_dot(y, y, r) / m  # biased variance, used to normalise
        inv_std = 1.0 / xp.sqrt(var + eps)
        if running_mean is not None and running_var is not None:  # both or neither (checked above)
            running_mean *= 1.0 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
            running_var *= 1.0 - momentum
            batch_var = var * (m / (m - 1)) if running_var_unbiased else var
            running_var += (momentum * batch_var).astype(running_var.dtype, copy=False)
        scale = inv_std if gamma is None else gamma * inv_std
        y *= _tile(scale, r)
        if beta is not None:
            y += _tile(beta, r)
    else:
        assert running_mean is not None and running_var is not None  # batch_stats is False
        mean = running_mean.astype(dtype, copy=False)
        inv_std = 1.0 / xp.sqrt(running_var.astype(dtype, copy=False) + eps)
        scale = inv_std if gamma is None else gamma * inv_std
        shift = -mean * scale if beta is None else beta - mean * scale
        y = xw * _tile(scale, r)
        y += _tile(shift, r)
    cache = BatchNormCache(xw, r, x_shape, mean, inv_std, gamma, beta is not None, batch_stats)
    return y.reshape(x_shape), cache


def batch_norm_backward(dy: Array, cache: BatchNormCache) -> tuple[Array, Array | None, Array | None]:
    """Gradients of batch_norm: ``(dx, dgamma, dbeta)`` (dgamma/dbeta None without those parameters).

    Training mode: dx = gamma*inv_std/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)); evaluation mode:
    dx = gamma*inv_std*dy. Both: dgamma = sum(dy*xhat), dbeta = sum(dy), sums over all axes but the last.
    dy: x's shape (N, ..., C) -> dx: (N, ..., C), dgamma and dbeta: (C,).

    Examples
    --------
    In training mode dx sums to zero over each channel (shifting a channel leaves y unchanged).

    >>> import numpy as np
    >>> from cnnkit.ops.norm import batch_norm_backward, batch_norm_forward
    >>> y, cache = batch_norm_forward(np.array([[1.0], [2.0], [6.0]]), np.ones(1), np.zeros(1), None, None, train=True)
    >>> dx, dgamma, dbeta = batch_norm_backward(np.array([[1.0], [0.0], [0.0]]), cache)
    >>> np.round(dx[:, 0], 4), np.round(dgamma, 4), dbeta
    (array([ 0.1763, -0.2204,  0.0441]), array([-0.9258]), array([1.]))
    """
    if cache is None:
        raise StateError("batch_norm backward called before forward")
    if tuple(dy.shape) != cache.x_shape:
        raise ShapeError(f"batch_norm backward: dy has shape {tuple(dy.shape)}, expected {cache.x_shape}")
    xw, r = cache.x, cache.r
    m = xw.shape[0] * r
    dyw = dy.astype(xw.dtype, copy=False).reshape(xw.shape)  # (M/r, r*C)
    gamma, inv_std, mean = cache.gamma, cache.inv_std, cache.mean
    scale = inv_std if gamma is None else gamma * inv_std
    sum_dy = _column_sum(dyw, r)  # dbeta
    dx = xw - _tile(mean, r)  # x - mu; the only full-size allocation
    sum_dy_xc = _column_dot(dyw, dx, r)  # sum(dy*(x-mu)) = sum(dy*xhat) / inv_std
    dgamma = sum_dy_xc * inv_std if gamma is not None else None
    dbeta = sum_dy if cache.has_beta else None
    if cache.batch_stats:
        # dx = scale*(dy - sum(dy)/M - xhat*sum(dy*xhat)/M), with xhat = (x-mu)*inv_std
        dx *= _tile(-(sum_dy_xc / m) * inv_std * inv_std, r)  # -xhat * sum(dy*xhat)/M
        dx += dyw
        dx -= _tile(sum_dy / m, r)
        dx *= _tile(scale, r)
    else:
        xp.multiply(dyw, _tile(scale, r), out=dx)
    return dx.reshape(cache.x_shape), dgamma, dbeta
