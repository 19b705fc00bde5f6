"""Batch normalisation (Ioffe & Szegedy 2015): seed 000 §15.2.1 names the normalisation layer
("规范化层") and exercise 15.3 points to the batch-normalisation paper; the formulas are the paper's.

Channels are the last axis: x is (N, H, W, C) for images or (N, C) for features, and the
statistics of channel c are taken over every other axis, M = x.size / C entries each.

Training (batch statistics; biased variance to normalise, as the paper and PyTorch do)::

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),  y = gamma*xhat + beta

and the running statistics are updated in place with PyTorch's rule
``running = (1 - momentum)*running + momentum*batch``, where the batch variance put into
``running_var`` is the *unbiased* one, var * M / (M - 1).

Evaluation: the same affine map with the running statistics in place of mu and var.

Backward in training mode (the statistics depend on x), the compact form::

    dx = gamma/sqrt(var+eps) / M * (M*dy - sum(dy) - xhat*sum(dy*xhat)),
    dgamma = sum(dy*xhat),  dbeta = sum(dy)

(sums over the M entries of a channel). In evaluation mode the statistics are constants and the
backward is the affine map's: dx = gamma/sqrt(running_var+eps) * dy.

Speed and memory: x is viewed as an (M, C) matrix; per-channel sums are BLAS matrix-vector
products (ones @ X) and sums of products go through ``einsum`` (no product temporaries). The forward
allocates only its output and the backward only dx; xhat is not cached, it is recomputed in place
inside dx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError, StateError


@dataclass
class BatchNormCache:
    """What batch_norm's backward needs (x is referenced, not copied)."""

    x: Array  # (M, C) view of the input, in the compute dtype
    x_shape: tuple[int, ...]
    mean: Array  # (C,) the mean that was subtracted (batch or running)
    inv_std: Array  # (C,) 1/sqrt(var + eps) for the variance that was used
    gamma: Optional[Array]  # (C,) or None without an affine part
    has_beta: bool
    batch_stats: bool  # True: statistics came from the batch (training), so they depend on x


def _column_sum(a: Array) -> Array:
    """Sum an (M, C) matrix over its rows as one BLAS matrix-vector product: (C,)."""
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


def _column_dot(a: Array, b: Array) -> Array:
    """sum_i a[i, c] * b[i, c] for (M, C) matrices, without an (M, C) temporary: (C,)."""
    return xp.einsum("ij,ij->j", a, b)


def _compute_dtype(x: Array, *candidates: Optional[Array]) -> xp.dtype:
    for a in candidates:
        if a is not None:
            return a.dtype
    return x.dtype if xp.issubdtype(x.dtype, xp.floating) else default_float()


def _check_vector(name: str, v: Optional[Array], c: int, x_shape: tuple[int, ...]) -> None:
    if v is not None and tuple(v.shape) != (c,):
        raise ShapeError(
            f"batch_norm: {name} must have shape ({c},) for an input of shape {x_shape} "
            f"(channels last), got {tuple(v.shape)}"
        )


def batch_norm_forward(
    x: Array,
    gamma: Optional[Array],
    beta: Optional[Array],
    running_mean: Optional[Array],
    running_var: Optional[Array],
    train: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Array, BatchNormCache]:
    """Batch normalisation over every axis but the last (channels).

    x: (N, ..., C), e.g. (N, H, W, C) or (N, C); gamma, beta, running_mean, running_var: (C,) or None.
    With ``train=True`` (or when there are no running statistics) the batch statistics are used and,
    if given, ``running_mean``/``running_var`` are updated *in place* (momentum rule above, unbiased
    variance). With ``train=False`` the running statistics are used. Returns y with x's shape and the
    cache for :func:`batch_norm_backward`. The computation runs in gamma's dtype (else the running
    statistics', else x's).
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
    batch_stats = train or running_mean is None

    if batch_stats:
        if m < 2:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel in training mode, got input shape {x_shape}"
            )
        mean = _column_sum(x2) / m  # (C,)
        y = x2 - mean  # (M, C): x - mu, becomes y in place below
        var = _column_dot(y, y) / m  # biased variance, used to normalise
        inv_std = 1.0 / xp.sqrt(var + eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
            running_var *= 1.0 - momentum
            running_var += (momentum * var * (m / (m - 1))).astype(running_var.dtype, copy=False)
        scale = inv_std if gamma is None else gamma * inv_std
        y *= scale
        if beta is not None:
            y += beta
    else:
        mean = running_mean.astype(dtype, copy=False)
        inv_std = 1.0 / xp.sqrt(running_var.astype(dtype, copy=False) + eps)
        scale = inv_std if gamma is None else gamma * inv_std
        shift = -mean * scale if beta is None else beta - mean * scale
        y = x2 * scale  # (M, C)
        y += shift
    cache = BatchNormCache(x2, x_shape, mean, inv_std, gamma, beta is not None, batch_stats)
    return y.reshape(x_shape), cache


def batch_norm_backward(dy: Array, cache: BatchNormCache) -> tuple[Array, Optional[Array], Optional[Array]]:
    """Gradients of batch_norm: ``(dx, dgamma, dbeta)`` (dgamma/dbeta None without those parameters).

    Training mode: dx = gamma*inv_std/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)); evaluation mode:
    dx = gamma*inv_std*dy. Both: dgamma = sum(dy*xhat), dbeta = sum(dy), sums over all axes but the last.
    """
    if cache is None:
        raise StateError("batch_norm backward called before forward")
    if tuple(dy.shape) != cache.x_shape:
        raise ShapeError(f"batch_norm backward: dy has shape {tuple(dy.shape)}, expected {cache.x_shape}")
    x2 = cache.x
    m, c = x2.shape
    dy2 = dy.astype(x2.dtype, copy=False).reshape(m, c)  # (M, C)
    gamma, inv_std, mean = cache.gamma, cache.inv_std, cache.mean
    scale = inv_std if gamma is None else gamma * inv_std
    sum_dy = _column_sum(dy2)  # dbeta
    dx = x2 - mean  # (M, C): x - mu; the only full-size allocation
    sum_dy_xc = _column_dot(dy2, dx)  # sum(dy*(x-mu)) = sum(dy*xhat) / inv_std
    dgamma = sum_dy_xc * inv_std if gamma is not None else None
    dbeta = sum_dy if cache.has_beta else None
    if cache.batch_stats:
        # dx = scale*(dy - sum(dy)/M - xhat*sum(dy*xhat)/M), with xhat = (x-mu)*inv_std
        dx *= -(sum_dy_xc / m) * inv_std * inv_std  # -xhat * sum(dy*xhat)/M
        dx += dy2
        dx -= sum_dy / m
        dx *= scale
    else:
        xp.multiply(dy2, scale, out=dx)
    return dx.reshape(cache.x_shape), dgamma, dbeta
