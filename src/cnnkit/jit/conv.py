"""Compiled kernels of the convolution algorithms (:mod:`cnnkit.ops.conv_algos`).

* :func:`im2row_gather`: phi(x) of eq. 15.25 written row by row, padding done on the fly (no padded copy
  of x). NumPy's strided copy moves kw*C elements per inner loop, which is slow for 1 or 3 input channels.
* :func:`wino_gather` and :func:`wino_scatter`: the tile transforms of Winograd's minimal filtering
  (Lavin and Gray, 2016). ``wino_gather`` cuts overlapping t x t tiles out of an NHWC array (zeros outside
  it) and applies ``B`` on both sides, ``out[xi*a + nu, p, :] = sum_ij B[xi, i] B[nu, j] tile_p[i, j, :]``;
  ``wino_scatter`` applies ``A`` on both sides of each a x a tile and writes (or adds) the t x t result into
  an NHWC array. With ``B = B^T`` of F(m, 3) this is the input transform, with ``A^T`` of F(m, 3) the output
  transform; their transposes give the backward pass (the kernels serve both).
* :func:`depthwise_forward`, :func:`depthwise_backward_weight`, :func:`depthwise_backward_input`: the direct
  convolution of a depthwise layer (one input channel per group), where im2row's grouped product is a
  batch of tiny matrix products.

Every kernel takes C-contiguous arrays, runs over images (``prange``; :func:`cnnkit.jit.launch` picks the
serial or the parallel copy) and does its inner loops over the channels with unsigned indices, which is
what lets LLVM vectorise them (signed indices keep NumPy's negative-index wrap-around and do not vectorise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel, launch

__all__ = [
    "depthwise_backward_input",
    "depthwise_backward_weight",
    "depthwise_forward",
    "im2row_gather",
    "wino_gather",
    "wino_scatter",
]

PAR_THRESHOLD = 1 << 16
"""Output elements from which the kernels run on more than one thread (below it a second thread's start-up
costs more than it saves; docs/perf-notes.md)."""


def _im2row_gather(x: np.ndarray, rows: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
                   pt: int, pl: int, ho: int, wo: int) -> None:
    """rows[(b*ho + oh)*wo + ow, (i*kw + j)*C + c] = x[b, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] (0 outside)."""
    n, h, w, c = x.shape
    xf = x.reshape(-1)
    rf = rows.reshape(-1)
    cu = np.uint64(c)
    zero = rows.dtype.type(0)
    taps = kh * kw * c
    for b in prange(n):
        for oh in range(ho):
            for ow in range(wo):
                r = np.uint64(((b * ho + oh) * wo + ow) * taps)
                for i in range(kh):
                    hh = oh * sh + i * dh - pt
                    seg = r + np.uint64(i * kw * c)
                    if hh < 0 or hh >= h:
                        for t in range(np.uint64(kw * c)):
                            rf[seg + t] = zero
                        continue
                    w0 = ow * sw - pl
                    if dw == 1 and w0 >= 0 and w0 + kw <= w:  # the whole kernel row inside: one contiguous run
                        src = np.uint64(((b * h + hh) * w + w0) * c)
                        for t in range(np.uint64(kw * c)):
                            rf[seg + t] = xf[src + t]
                        continue
                    for j in range(kw):
                        ww = w0 + j * dw
                        dst = seg + np.uint64(j * c)
                        if ww < 0 or ww >= w:
                            for t in range(cu):
                                rf[dst + t] = zero
                        else:
                            src = np.uint64(((b * h + hh) * w + ww) * c)
                            for t in range(cu):
                                rf[dst + t] = xf[src + t]


def _wino_gather(x: np.ndarray, bm: np.ndarray, m: int, pt: int, pl: int, th: int, tw: int, out: np.ndarray) -> None:
    """out[xi*a + nu, p, :] = sum_{i,j} bm[xi, i] bm[nu, j] x[b, ty*m + i - pt, tx*m + j - pl, :] (0 outside x).

    x: (n, H, W, C); bm: (a, t), t x t tiles at stride m; out: (a*a, n*th*tw, C); p = (b*th + ty)*tw + tx.
    One strip of tiles at a time: bm along the rows first, as long loops over whole image rows (W*C), then
    along the columns tile by tile.
    """
    n, h, w, c = x.shape
    a, t = bm.shape
    npos = n * th * tw
    wp = tw * m + t - m  # the strip's width, padding included
    xf = x.reshape(-1)
    of = out.reshape(-1)
    cu = np.uint64(c)
    zero = out.dtype.type(0)
    wc = np.uint64(max(0, min(w, wp - pl)) * c)  # the part of an image row inside the strip
    for b in prange(n):
        s = np.empty(a * wp * c, out.dtype)  # s[xi, col, :] = sum_i bm[xi, i] x[ty*m + i - pt, col - pl, :]
        acc = np.empty(c, out.dtype)
        for ty in range(th):
            for xi in range(a):
                sb = np.uint64(xi * wp * c)
                for q in range(np.uint64(wp * c)):
                    s[sb + q] = zero
                inner = sb + np.uint64(pl * c)  # where column 0 of x lands
                for i in range(t):
                    coef = bm[xi, i]
                    hh = ty * m + i - pt
                    if coef == zero or hh < 0 or hh >= h:
                        continue
                    xb = np.uint64((b * h + hh) * w * c)
                    for q in range(wc):
                        s[inner + q] += coef * xf[xb + q]
            for tx in range(tw):
                p = (b * th + ty) * tw + tx
                for xi in range(a):
                    for nu in range(a):
                        for k in range(cu):
                            acc[k] = zero
                        for j in range(t):
                            coef = bm[nu, j]
                            if coef != zero:
                                sb = np.uint64((xi * wp + tx * m + j) * c)
                                for k in range(cu):
                                    acc[k] += coef * s[sb + k]
                        ob = np.uint64(((xi * a + nu) * npos + p) * c)
                        for k in range(cu):
                            of[ob + k] = acc[k]


def _wino_scatter(mt: np.ndarray, am: np.ndarray, m: int, pt: int, pl: int, th: int, tw: int, out: np.ndarray,
                  bias: np.ndarray, add: bool) -> None:
    """out[b, ty*m + r - pt, tx*m + s - pl, :] (+)= sum_{xi,nu} am[r, xi] am[s, nu] mt[xi*a + nu, p, :] (+ bias).

    mt: (a*a, n*th*tw, K); am: (t, a); out: (n, H, W, K), positions outside it skipped. ``add``: accumulate
    (overlapping tiles, the input transform's adjoint); else store the sum plus ``bias`` (disjoint tiles).
    One strip of tiles at a time: am along the columns tile by tile, then along the rows as long loops.
    """
    n, h, w, k = out.shape
    t, a = am.shape
    npos = n * th * tw
    wp = tw * m + t - m
    mf = mt.reshape(-1)
    of = out.reshape(-1)
    ku = np.uint64(k)
    zero = out.dtype.type(0)
    wv = max(0, min(w, wp - pl))  # the columns of out the strip reaches
    wk = np.uint64(wv * k)
    for b in prange(n):
        s = np.empty(a * wp * k, out.dtype)  # s[xi, col, :] = sum over tiles and nu of am[col - tx*m, nu] mt[xi*a + nu, p]
        acc = np.empty(wv * k, out.dtype)
        for ty in range(th):
            for q in range(np.uint64(a * wp * k)):
                s[q] = zero
            for tx in range(tw):
                p = (b * th + ty) * tw + tx
                for xi in range(a):
                    for sc in range(t):
                        sb = np.uint64((xi * wp + tx * m + sc) * k)
                        for nu in range(a):
                            coef = am[sc, nu]
                            if coef != zero:
                                mb = np.uint64(((xi * a + nu) * npos + p) * k)
                                for q in range(ku):
                                    s[sb + q] += coef * mf[mb + q]
            for r in range(t):
                hh = ty * m + r - pt
                if hh < 0 or hh >= h:
                    continue
                for q in range(wk):
                    acc[q] = zero
                for xi in range(a):
                    coef = am[r, xi]
                    if coef != zero:
                        sb = np.uint64((xi * wp + pl) * k)  # column 0 of out
                        for q in range(wk):
                            acc[q] += coef * s[sb + q]
                ob = np.uint64((b * h + hh) * w * k)
                if add:
                    for q in range(wk):
                        of[ob + q] += acc[q]
                else:
                    for col in range(np.uint64(wv)):
                        cb = col * ku
                        for q in range(ku):
                            of[ob + cb + q] = acc[cb + q] + bias[q]


def _dw_forward(x: np.ndarray, wt: np.ndarray, bias: np.ndarray, y: np.ndarray, mult: int, sh: int, sw: int,
                dh: int, dw: int, pt: int, pl: int) -> None:
    """Depthwise: y[b, oh, ow, o] = bias[o] + sum_{i,j} x[b, oh*sh + i*dh - pt, ow*sw + j*dw - pl, o // mult] wt[i, j, o].

    x: (n, H, W, C); wt: (kh, kw, C*mult); y: (n, Ho, Wo, C*mult).
    """
    n, h, w, c = x.shape
    kh, kw, k = wt.shape
    _, ho, wo, _ = y.shape
    xf = x.reshape(-1)
    wf = wt.reshape(-1)
    yf = y.reshape(-1)
    ku = np.uint64(k)
    for b in prange(n):
        for oh in range(ho):
            for ow in range(wo):
                ob = np.uint64(((b * ho + oh) * wo + ow) * k)
                for q in range(ku):
                    yf[ob + q] = bias[q]
                for i in range(kh):
                    hh = oh * sh + i * dh - pt
                    if hh < 0 or hh >= h:
                        continue
                    for j in range(kw):
                        ww = ow * sw + j * dw - pl
                        if ww < 0 or ww >= w:
                            continue
                        xb = np.uint64(((b * h + hh) * w + ww) * c)
                        wb = np.uint64((i * kw + j) * k)
                        if mult == 1:
                            for q in range(ku):
                                yf[ob + q] += xf[xb + q] * wf[wb + q]
                        else:
                            for q in range(ku):
                                yf[ob + q] += xf[xb + q // np.uint64(mult)] * wf[wb + q]


def _dw_backward_weight(x: np.ndarray, dy: np.ndarray, dwt: np.ndarray, mult: int, sh: int, sw: int, dh: int,
                        dw: int, pt: int, pl: int) -> None:
    """dwt[b, i, j, o] = sum_{oh,ow} x[b, oh*sh + i*dh - pt, ow*sw + j*dw - pl, o // mult] dy[b, oh, ow, o].

    One (kh, kw, K) slice per image (summed by the caller), so that images can run in parallel.
    """
    n, h, w, c = x.shape
    _, ho, wo, k = dy.shape
    _, kh, kw, _ = dwt.shape
    xf = x.reshape(-1)
    df = dy.reshape(-1)
    gf = dwt.reshape(-1)
    ku = np.uint64(k)
    zero = dwt.dtype.type(0)
    for b in prange(n):
        gb0 = np.uint64(b * kh * kw * k)
        for q in range(np.uint64(kh * kw * k)):
            gf[gb0 + q] = zero
        for oh in range(ho):
            for ow in range(wo):
                db = np.uint64(((b * ho + oh) * wo + ow) * k)
                for i in range(kh):
                    hh = oh * sh + i * dh - pt
                    if hh < 0 or hh >= h:
                        continue
                    for j in range(kw):
                        ww = ow * sw + j * dw - pl
                        if ww < 0 or ww >= w:
                            continue
                        xb = np.uint64(((b * h + hh) * w + ww) * c)
                        gb = gb0 + np.uint64((i * kw + j) * k)
                        if mult == 1:
                            for q in range(ku):
                                gf[gb + q] += xf[xb + q] * df[db + q]
                        else:
                            for q in range(ku):
                                gf[gb + q] += xf[xb + q // np.uint64(mult)] * df[db + q]


def _dw_backward_input(dy: np.ndarray, wt: np.ndarray, dx: np.ndarray, mult: int, sh: int, sw: int, dh: int,
                       dw: int, pt: int, pl: int) -> None:
    """dx[b, oh*sh + i*dh - pt, ow*sw + j*dw - pl, c] += sum_{o: o // mult = c} dy[b, oh, ow, o] wt[i, j, o] (dx pre-zeroed)."""
    n, h, w, c = dx.shape
    _, ho, wo, k = dy.shape
    kh, kw, _ = wt.shape
    xf = dx.reshape(-1)
    df = dy.reshape(-1)
    wf = wt.reshape(-1)
    cu = np.uint64(c)
    for b in prange(n):
        for oh in range(ho):
            for ow in range(wo):
                db = np.uint64(((b * ho + oh) * wo + ow) * k)
                for i in range(kh):
                    hh = oh * sh + i * dh - pt
                    if hh < 0 or hh >= h:
                        continue
                    for j in range(kw):
                        ww = ow * sw + j * dw - pl
                        if ww < 0 or ww >= w:
                            continue
                        xb = np.uint64(((b * h + hh) * w + ww) * c)
                        wb = np.uint64((i * kw + j) * k)
                        if mult == 1:
                            for q in range(cu):
                                xf[xb + q] += df[db + q] * wf[wb + q]
                        else:
                            for q in range(cu):
                                s = xf[xb + q]
                                for e in range(np.uint64(mult)):
                                    o = q * np.uint64(mult) + e
                                    s += df[db + o] * wf[wb + o]
                                xf[xb + q] = s


im2row_gather: Callable[..., Any] | None  # None without numba
wino_gather: Callable[..., Any] | None
wino_scatter: Callable[..., Any] | None
depthwise_forward: Callable[..., Any] | None
depthwise_backward_weight: Callable[..., Any] | None
depthwise_backward_input: Callable[..., Any] | None

if HAVE_NUMBA:
    from numba import prange

    _GATHER = (kernel(_im2row_gather), kernel(_im2row_gather, parallel=True))
    _WG = (kernel(_wino_gather), kernel(_wino_gather, parallel=True))
    _WS = (kernel(_wino_scatter), kernel(_wino_scatter, parallel=True))
    _DWF = (kernel(_dw_forward), kernel(_dw_forward, parallel=True))
    _DWW = (kernel(_dw_backward_weight), kernel(_dw_backward_weight, parallel=True))
    _DWX = (kernel(_dw_backward_input), kernel(_dw_backward_input, parallel=True))

    def im2row_gather(x: np.ndarray, rows: np.ndarray, kernel_hw: tuple[int, int], stride: tuple[int, int],
                      dilation: tuple[int, int], pad_tl: tuple[int, int], out_hw: tuple[int, int]) -> None:
        """Fill ``rows`` (N*H_out*W_out, kh*kw*C) with phi(x) for an unpadded C-contiguous x (N, H, W, C)."""
        launch(*_GATHER, rows.size, PAR_THRESHOLD, x, rows, *kernel_hw, *stride, *dilation, *pad_tl, *out_hw)

    def wino_gather(x: np.ndarray, bm: np.ndarray, m: int, pad_tl: tuple[int, int], tiles: tuple[int, int],
                    out: np.ndarray) -> None:
        """The tile transform ``out = bm tile bm^T`` of every t x t tile at stride m (see the module docstring)."""
        launch(*_WG, out.size, PAR_THRESHOLD, x, bm, m, *pad_tl, *tiles, out)

    def wino_scatter(mt: np.ndarray, am: np.ndarray, m: int, pad_tl: tuple[int, int], tiles: tuple[int, int],
                     out: np.ndarray, bias: np.ndarray, add: bool) -> None:
        """The tile transform ``am M am^T`` of every tile, stored (plus ``bias``) or added into ``out``."""
        launch(*_WS, mt.size, PAR_THRESHOLD, mt, am, m, *pad_tl, *tiles, out, bias, bool(add))

    def depthwise_forward(x: np.ndarray, wt: np.ndarray, bias: np.ndarray, y: np.ndarray, mult: int,
                          stride: tuple[int, int], dilation: tuple[int, int], pad_tl: tuple[int, int]) -> None:
        """Direct depthwise convolution into ``y`` (see :func:`_dw_forward`)."""
        launch(*_DWF, y.size, PAR_THRESHOLD, x, wt, bias, y, mult, *stride, *dilation, *pad_tl)

    def depthwise_backward_weight(x: np.ndarray, dy: np.ndarray, dwt: np.ndarray, mult: int, stride: tuple[int, int],
                                  dilation: tuple[int, int], pad_tl: tuple[int, int]) -> None:
        """Per-image weight gradients of the depthwise convolution into ``dwt`` (N, kh, kw, K)."""
        launch(*_DWW, dy.size, PAR_THRESHOLD, x, dy, dwt, mult, *stride, *dilation, *pad_tl)

    def depthwise_backward_input(dy: np.ndarray, wt: np.ndarray, dx: np.ndarray, mult: int, stride: tuple[int, int],
                                 dilation: tuple[int, int], pad_tl: tuple[int, int]) -> None:
        """The input gradient of the depthwise convolution, added into the zeroed ``dx``."""
        launch(*_DWX, dy.size, PAR_THRESHOLD, dy, wt, dx, mult, *stride, *dilation, *pad_tl)

else:  # pragma: no cover
    im2row_gather = wino_gather = wino_scatter = None
    depthwise_forward = depthwise_backward_weight = depthwise_backward_input = None
