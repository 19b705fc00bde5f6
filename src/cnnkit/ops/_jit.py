"""Optional compiled kernels (numba) for the scatter and pooling loops that NumPy cannot fuse.

Measured on the 2-core development machine with ``python scripts/microbench_jit.py`` (float32): the
scatter-add of eq. 15.49 for BASE conv2's dX ((100, 8, 8, 5, 5, 20) rows into (100, 12, 12, 20)) takes
~3.6 ms as kh*kw strided NumPy adds and ~0.8 ms here; max pooling 2x2/2 over (100, 24, 24, 20) forward
+ backward ~2.4 ms vs ~1.2 ms. The kernels are serial on purpose: numba's parallel loops competed with
OpenBLAS's spinning threads for the same two cores and were slower end to end. Numba is an optional
dependency (extra ``fast``); without it, or with ``CNNKIT_JIT=0`` in the environment, every op uses its
NumPy path, and the tests check that both give the same results. Kernels are compiled on first use and
cached on disk, so later processes pay only the import (~0.4 s).
"""

from __future__ import annotations

import os

import numpy as np

try:  # pragma: no cover - depends on the environment
    if os.environ.get("CNNKIT_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        raise ImportError("disabled by CNNKIT_JIT")
    import numba
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "usable", "row2im_add", "maxpool_forward", "maxpool_backward", "maxpool_backward_disjoint", "sgd_momentum_"]


def usable(*arrays: object) -> bool:
    """True when the compiled kernels can take these arrays: numba present, NumPy arrays of float32/float64."""
    if not HAVE_NUMBA:
        return False
    return all(isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) for a in arrays)




if HAVE_NUMBA:

    @njit(parallel=False, cache=True, nogil=True, fastmath=False)
    def row2im_add(cols, out, sh, sw, dh, dw):  # noqa: ANN001, ANN201
        """out[n, ho*sh + i*dh, wo*sw + j*dw, c] += cols[n, ho, wo, i, j, c] (out: padded, pre-zeroed)."""
        n, ho, wo, kh, kw, c = cols.shape
        for b in range(n):
            for oh in range(ho):
                for ow in range(wo):
                    for i in range(kh):
                        h = oh * sh + i * dh
                        for j in range(kw):
                            w = ow * sw + j * dw
                            for k in range(c):
                                out[b, h, w, k] += cols[b, oh, ow, i, j, k]

    @njit(parallel=False, cache=True, nogil=True)
    def maxpool_forward(x, kh, kw, sh, sw, dh, dw, ho, wo):  # noqa: ANN001, ANN201
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

    @njit(parallel=False, cache=True, nogil=True)
    def maxpool_backward(dy, tap, out, kw, sh, sw, dh, dw):  # noqa: ANN001, ANN201
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

    @njit(parallel=False, cache=True, nogil=True)
    def maxpool_backward_disjoint(dy, tap, out, kh, kw, sh, sw, dh, dw):  # noqa: ANN001, ANN201
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

    @njit(parallel=False, cache=True, nogil=True)
    def sgd_momentum_(p, g, buf, lr, mu, wd, decay):  # noqa: ANN001, ANN201
        """One SGD step with momentum in a single pass over flat arrays (scalars of p's dtype):
        d = g + wd*p (when ``decay``); buf = mu*buf + d; p -= lr*buf. The operations and their rounding are
        those of the NumPy path in cnnkit.optim.sgd, element by element, so both give identical bits."""
        for k in range(p.shape[0]):
            d = g[k]
            if decay:
                d = p[k] * wd + g[k]
            b = buf[k] * mu + d
            buf[k] = b
            p[k] = p[k] - b * lr

else:  # pragma: no cover
    row2im_add = maxpool_forward = maxpool_backward = maxpool_backward_disjoint = None  # type: ignore[assignment]
    sgd_momentum_ = None  # type: ignore[assignment]
