"""Compiled max pooling: forward with the tap of each window's first maximum, and the two backwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel

__all__ = ["maxpool_backward", "maxpool_backward_disjoint", "maxpool_forward"]

# None without numba
maxpool_forward: Callable[..., Any] | None
maxpool_backward: Callable[..., Any] | None
maxpool_backward_disjoint: Callable[..., Any] | None
if HAVE_NUMBA:

    @kernel
    def maxpool_forward(
        x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Max over each window of a (-inf padded) NHWC input; returns (y, tap) where tap = i*kw + j of the
        first maximum in row-major window order (NaN wins, as in PyTorch)."""
        n, _, _, c = x.shape
        y = np.empty((n, ho, wo, c), dtype=x.dtype)
        tap = np.empty((n, ho, wo, c), dtype=np.int32)
        for b in range(n):
            for oh in range(ho):
                for ow in range(wo):
                    h0, w0 = oh * sh, ow * sw
                    for k in range(c):
                        y[b, oh, ow, k] = x[b, h0, w0, k]
                        tap[b, oh, ow, k] = 0
                    for i in range(kh):
                        for j in range(kw):
                            if i == 0 and j == 0:
                                continue
                            t = i * kw + j
                            h, w = h0 + i * dh, w0 + j * dw
                            for k in range(c):
                                v = x[b, h, w, k]
                                m = y[b, oh, ow, k]
                                if v > m or (v != v and m == m):
                                    y[b, oh, ow, k] = v
                                    tap[b, oh, ow, k] = t
        return y, tap

    @kernel
    def maxpool_backward(
        dy: np.ndarray, tap: np.ndarray, out: np.ndarray, kw: int, sh: int, sw: int, dh: int, dw: int
    ) -> None:
        """out[n, oh*sh + i*dh, ow*sw + j*dw, c] += dy[n, oh, ow, c] at each window's maximum (out pre-zeroed)."""
        n, ho, wo, c = dy.shape
        for b in range(n):
            for oh in range(ho):
                for ow in range(wo):
                    for k in range(c):
                        t = tap[b, oh, ow, k]
                        i = t // kw
                        j = t - i * kw
                        out[b, oh * sh + i * dh, ow * sw + j * dw, k] += dy[b, oh, ow, k]

    @kernel
    def maxpool_backward_disjoint(
        dy: np.ndarray, tap: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int
    ) -> None:
        """Disjoint windows: write every tap of every window (dy at the maximum, 0 elsewhere), no accumulation."""
        n, ho, wo, c = dy.shape
        zero = out.dtype.type(0)
        for b in range(n):
            for oh in range(ho):
                for ow in range(wo):
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            h, w = oh * sh + i * dh, ow * sw + j * dw
                            for k in range(c):
                                out[b, h, w, k] = dy[b, oh, ow, k] if tap[b, oh, ow, k] == t else zero

else:  # pragma: no cover
    maxpool_forward = maxpool_backward = maxpool_backward_disjoint = None
