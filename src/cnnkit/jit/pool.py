"""Compiled max pooling: forward (with or without the tap of each window's first maximum, optionally fused
with a ReLU before or after it) and the two backwards.

Every kernel exists serial and parallel (see :mod:`cnnkit.jit`); the entry points here pick the variant and
the thread count. The parallel forward and the disjoint backward split the output rows of all images; the
overlapping backward, whose windows add into shared input pixels, splits the images.

ReLU fusion (``relu``): 0 none; 1 ReLU after the pooling, y = max(pool(x), 0); 2 ReLU before it,
y = pool(max(x, 0)) (for an unpadded input only: the padding must stay -inf). Each computes the bits of the
two layers run one after the other (NumPy's ``maximum(v, 0)`` is v where v > 0 or v is NaN, else +0), and
the fused backward gives those of ReLU's backward (dy times 1 or 0 where y > 0) and pooling's backward in
the layers' order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel, launch

__all__ = ["maxpool_backward", "maxpool_backward_disjoint", "maxpool_forward"]

POOL_THRESHOLD = 1 << 15
"""Output elements from which pooling runs on more than one thread (docs/perf-notes.md)."""


def _make_forward(relu: int, want_tap: bool) -> Callable[..., Any]:
    """The forward kernel for one ReLU mode, with or without taps (closure constants: each variant compiles
    to its own loops, no flag tested inside them). Flat unsigned indices let LLVM vectorise the channel loops."""

    def maxpool_forward(
        x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Max over each window of a C-contiguous (-inf padded) NHWC input; returns (y, tap) where tap = i*kw + j
        of the first maximum in row-major window order (NaN wins, as in PyTorch); tap is empty without taps."""
        n, h, w, c = x.shape
        y = np.empty((n, ho, wo, c), dtype=x.dtype)
        tap = np.empty((n, ho, wo, c) if want_tap else (0, 0, 0, 0), dtype=np.int32)
        xf, yf, tf = x.reshape(-1), y.reshape(-1), tap.reshape(-1)
        cu = np.uint64(c)
        zero = x.dtype.type(0)
        for r in prange(n * ho):
            b = r // ho
            oh = r - b * ho
            for ow in range(wo):
                h0, w0 = oh * sh, ow * sw
                o = np.uint64(((b * ho + oh) * wo + ow) * c)
                src = np.uint64(((b * h + h0) * w + w0) * c)
                for k in range(cu):
                    v = xf[src + k]
                    if relu == 2:
                        v = v if (v > zero) | (v != v) else zero
                    yf[o + k] = v
                if want_tap:
                    for k in range(cu):
                        tf[o + k] = 0
                for i in range(kh):
                    for j in range(kw):
                        if i == 0 and j == 0:
                            continue
                        src = np.uint64(((b * h + h0 + i * dh) * w + w0 + j * dw) * c)
                        if want_tap:
                            t = np.int32(i * kw + j)
                            for k in range(cu):
                                v = xf[src + k]
                                if relu == 2:
                                    v = v if (v > zero) | (v != v) else zero
                                m = yf[o + k]
                                up = (v > m) | ((v != v) & (m == m))
                                yf[o + k] = v if up else m
                                tf[o + k] = t if up else tf[o + k]
                        else:
                            for k in range(cu):
                                v = xf[src + k]
                                if relu == 2:
                                    v = v if (v > zero) | (v != v) else zero
                                m = yf[o + k]
                                up = (v > m) | ((v != v) & (m == m))
                                yf[o + k] = v if up else m
                if relu == 1:
                    for k in range(cu):
                        m = yf[o + k]
                        yf[o + k] = m if (m > zero) | (m != m) else zero
        return y, tap

    maxpool_forward.__qualname__ = f"maxpool_forward_relu{relu}{'_tap' if want_tap else ''}"
    maxpool_forward.__name__ = maxpool_forward.__qualname__
    return maxpool_forward


def _make_backward_disjoint(relu: bool) -> Callable[..., Any]:
    def maxpool_backward_disjoint(
        dy: np.ndarray, tap: np.ndarray, y: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int
    ) -> None:
        """Disjoint windows: write every tap of every window (dy at the maximum, 0 elsewhere), no accumulation;
        with ``relu`` dy is first multiplied by 1 where y > 0, else by 0 (ReLU's backward). C-contiguous arrays."""
        n, ho, wo, c = dy.shape
        h, w = out.shape[1], out.shape[2]
        df, tf, yf, of = dy.reshape(-1), tap.reshape(-1), y.reshape(-1), out.reshape(-1)
        cu = np.uint64(c)
        zero = out.dtype.type(0)
        one = out.dtype.type(1)
        for r in prange(n * ho):
            b = r // ho
            oh = r - b * ho
            for ow in range(wo):
                o = np.uint64(((b * ho + oh) * wo + ow) * c)
                for i in range(kh):
                    for j in range(kw):
                        t = np.int32(i * kw + j)
                        dst = np.uint64(((b * h + oh * sh + i * dh) * w + ow * sw + j * dw) * c)
                        if relu:
                            for k in range(cu):
                                g = df[o + k] * (one if yf[o + k] > zero else zero)
                                of[dst + k] = g if tf[o + k] == t else zero
                        else:
                            for k in range(cu):
                                of[dst + k] = df[o + k] if tf[o + k] == t else zero

    maxpool_backward_disjoint.__qualname__ = f"maxpool_backward_disjoint{'_relu' if relu else ''}"
    maxpool_backward_disjoint.__name__ = maxpool_backward_disjoint.__qualname__
    return maxpool_backward_disjoint


def _make_backward(relu: int) -> Callable[..., Any]:
    def maxpool_backward(
        dy: np.ndarray, tap: np.ndarray, y: np.ndarray, out: np.ndarray, kw: int, sh: int, sw: int, dh: int, dw: int
    ) -> None:
        """out[n, oh*sh + i*dh, ow*sw + j*dw, c] += dy[n, oh, ow, c] at each window's maximum (out pre-zeroed).

        relu 1 (ReLU after the pooling): dy is multiplied by 1 where y > 0, else by 0, before it is added;
        relu 2 (ReLU before it): each maximum's sum is multiplied by 0 afterwards where y <= 0."""
        n, ho, wo, c = dy.shape
        zero = out.dtype.type(0)
        one = out.dtype.type(1)
        for b in prange(n):
            for oh in range(ho):
                for ow in range(wo):
                    for k in range(c):
                        t = tap[b, oh, ow, k]
                        i = t // kw
                        j = t - i * kw
                        g = dy[b, oh, ow, k]
                        if relu == 1:
                            g = g * (one if y[b, oh, ow, k] > zero else zero)
                        out[b, oh * sh + i * dh, ow * sw + j * dw, k] += g
            if relu == 2:
                for oh in range(ho):
                    for ow in range(wo):
                        for k in range(c):
                            if not (y[b, oh, ow, k] > zero):
                                t = tap[b, oh, ow, k]
                                i = t // kw
                                j = t - i * kw
                                h, w = oh * sh + i * dh, ow * sw + j * dw
                                out[b, h, w, k] = out[b, h, w, k] * zero

    maxpool_backward.__qualname__ = f"maxpool_backward_relu{relu}"
    maxpool_backward.__name__ = maxpool_backward.__qualname__
    return maxpool_backward


# None without numba
maxpool_forward: Callable[..., Any] | None
maxpool_backward: Callable[..., Any] | None
maxpool_backward_disjoint: Callable[..., Any] | None
if HAVE_NUMBA:
    from numba import prange

    _FORWARD = {
        (relu, tap): (kernel(f), kernel(f, parallel=True))
        for relu in (0, 1, 2)
        for tap in (True, False)
        for f in [_make_forward(relu, tap)]
    }
    _BACKWARD_DISJOINT = {relu: (kernel(f), kernel(f, parallel=True)) for relu in (False, True) for f in [_make_backward_disjoint(relu)]}
    _BACKWARD = {relu: (kernel(f), kernel(f, parallel=True)) for relu in (0, 1, 2) for f in [_make_backward(relu)]}

    def maxpool_forward(
        x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int, relu: int = 0, want_tap: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(y, tap) of max pooling a C-contiguous (-inf padded) NHWC input; tap is None when not wanted
        (evaluation). ``relu``: 0, 1 (after) or 2 (before; unpadded input only), see the module docstring."""
        serial, par = _FORWARD[(relu, want_tap)]
        y, tap = launch(serial, par, x.shape[0] * ho * wo * x.shape[3], POOL_THRESHOLD, x, kh, kw, sh, sw, dh, dw, ho, wo)
        return y, (tap if want_tap else None)

    def maxpool_backward_disjoint(
        dy: np.ndarray, tap: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
        y: np.ndarray | None = None,
    ) -> None:
        """Disjoint windows: write every pixel of every window into ``out`` (dy at the maximum, 0 elsewhere).
        With ``y`` (the fused output), dy passes only where y > 0 (the fused ReLU's backward, either order)."""
        serial, par = _BACKWARD_DISJOINT[y is not None]
        launch(serial, par, out.size, POOL_THRESHOLD, dy, tap, tap if y is None else y, out, kh, kw, sh, sw, dh, dw)

    def maxpool_backward(
        dy: np.ndarray, tap: np.ndarray, out: np.ndarray, kw: int, sh: int, sw: int, dh: int, dw: int,
        y: np.ndarray | None = None, relu: int = 0,
    ) -> None:
        """Overlapping windows: add dy into ``out`` (pre-zeroed) at each window's maximum; ``relu`` 1 or 2 with
        ``y`` the fused output applies the fused ReLU's backward in that order."""
        serial, par = _BACKWARD[relu if y is not None else 0]
        launch(serial, par, out.size, POOL_THRESHOLD, dy, tap, tap if y is None else y, out, kw, sh, sw, dh, dw)

else:  # pragma: no cover
    maxpool_forward = maxpool_backward = maxpool_backward_disjoint = None
