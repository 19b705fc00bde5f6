"""Pooling, unpooling and nearest-neighbour upsampling in NHWC (seed 000 §15.6; seed 002 汇聚层/去汇聚层).

Geometry. A pooling window of ``kernel`` (kh, kw) moves with ``stride`` (sh, sw) over the input padded by
``padding`` on each side; the output size is seed 002's ``(W1 - F + 2P)/S + 1`` rounded down (or up with
``ceil_mode``, where a last window that would start in the bottom/right padding is dropped), which for
F = S and no padding is eq. 15.50, H^{l+1} = H^l / H. ``stride=None`` means ``stride = kernel``.
Padding may be asymmetric, ((top, bottom), (left, right)), or named as ONNX's auto_pad ("same_upper",
"same_lower", "valid"; see :func:`pool_padding`). As in PyTorch it may be at most half the kernel
(``padding <= kernel // 2``), so that every window holds at least one input pixel, unless
``allow_large_padding=True`` asks for ONNX's unrestricted pads. With ``ceil_mode`` the last window may
hang over the padded input (it must start inside the input or the leading padding, PyTorch's and
ONNX's rule); the ops pad that overhang too (with -inf for max, 0 for sums) and it never counts in a divisor.

Max pooling (eq. 15.51) keeps, per window, the position of its maximum (the "switches" of seed 002,
the non-zero of each row of the indicator matrix S(x^l) of eq. 15.56); backward is
dz/dvec(x) = S(x)^T dz/dvec(y) (eq. 15.59): each window's gradient goes to its maximum, and where
windows overlap an input pixel collects the gradients of every window it is the maximum of (the
"element 9" example after eq. 15.59). Ties go to the first maximum in row-major window order, as in
PyTorch. Implementation: the forward takes a running ``maximum`` over the kh*kw window taps (strided
views, no copy of the windows), and the switches are recovered from ``x == y`` tap by tap, first
match wins: the fastest of the variants tried, and inference pays only the running max (timings in
docs/perf-notes.md). When the windows are disjoint the backward writes each tap straight into dx (no
accumulation, and no zero fill when they tile the padded input exactly).

Average pooling is eq. 15.52 with PyTorch's divisor rules; L_p pooling is seed 002's "L2-norm
pooling" generalised to any p >= 1. Unpooling puts each value back at its switch in a zero map
(seed 002 "下采样的时候,我们会记住最大值的位置,以供上采样使用"), and nearest upsampling copies each pixel
into an sh x sw block (seed 002 "最近距离去池化"). Nearest resizing generalises it to any size or scale
with ONNX Resize's coordinate transformation and rounding modes; its backward scatter-adds dy to the
source pixels.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from cnnkit import backend as _backend
from cnnkit import jit
from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank, positive_pair, resolve_padding, window
from cnnkit.ops.im2row import pad_nhwc, windows_view

__all__ = [
    "AvgPoolCache",
    "LPPoolCache",
    "MaxPoolCache",
    "MaxUnpoolCache",
    "ResizeCache",
    "UpsampleCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "check_norm_type",
    "lp_pool2d_backward",
    "lp_pool2d_forward",
    "max_pool2d_apply",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "max_pool2d_indices",
    "max_pool2d_window",
    "max_unpool2d_backward",
    "max_unpool2d_forward",
    "nearest_source_indices",
    "pool_padding",
    "resize_nearest2d_backward",
    "resize_nearest2d_forward",
    "scale_factor_pair",
    "unpool_output_size",
    "upsample_nearest2d_backward",
    "upsample_nearest2d_forward",
]


# ---------------------------------------------------------------------------------------------
# shared geometry and window helpers
# ---------------------------------------------------------------------------------------------
def _quiet_division() -> contextlib.AbstractContextManager:
    """Silence NumPy's warnings for a division where 0/0 = NaN is the intended result."""
    errstate = getattr(xp, "errstate", None)
    return errstate(invalid="ignore", divide="ignore") if errstate is not None else contextlib.nullcontext()


def _as_float(x: Array) -> Array:
    """Parameterless ops compute in the input's dtype; integer/bool inputs are promoted to float32."""
    if xp.issubdtype(x.dtype, xp.floating):
        return x
    return x.astype(default_float())


PoolPadding = tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] | str
"""A normalised pooling padding: (ph, pw), ((top, bottom), (left, right)), or 'valid'/'same_upper'/'same_lower'."""

POOL_PADDING_NAMES = ("valid", "same_upper", "same_lower")
"""The padding names pooling takes (ONNX's auto_pad VALID, SAME_UPPER, SAME_LOWER, in lower case)."""


def _check_half_kernel(pads: tuple[int, int, int, int], kernel: tuple[int, int], what: str, where: str = "") -> None:
    t, b, l, r = pads
    if max(t, b) > kernel[0] // 2 or max(l, r) > kernel[1] // 2:
        raise ShapeError(
            f"{what}: padding (top, bottom, left, right) = {pads} must be at most half the kernel {kernel} "
            f"(padding <= kernel // 2, as PyTorch requires, so that every window holds an input pixel){where}; "
            f"pass allow_large_padding=True for ONNX's larger pads"
        )


def pool_padding(
    padding: Padding, kernel_size: IntPair, allow_large_padding: bool = False, what: str = "pool2d"
) -> PoolPadding:
    """Validate and normalise a pooling ``padding`` argument (the layers call it at construction, the ops per call).

    Forms: an int ``p`` or ``(ph, pw)`` -> ``(ph, pw)``; ``((top, bottom), (left, right))`` -> the same as
    tuples (``(ph, pw)`` when symmetric); ``"valid"``, ``"same_upper"``, ``"same_lower"`` (ONNX's auto_pad:
    output ``ceil(H/stride)``, the odd pixel of padding after or before; resolved per input size by
    :func:`~cnnkit.ops.geometry.resolve_padding`). Bare ``"same"`` is refused for pooling: PyTorch's pooling
    has no such option and ONNX names the two splits, so the caller says which one.

    Explicit pads must be at most ``kernel // 2`` on every side (PyTorch's rule, which guarantees that every
    window holds an input pixel) unless ``allow_large_padding=True`` (ONNX allows any pads). The choice is an
    argument rather than a silent ONNX default because a window made of padding only has no natural value:
    cnnkit then gives -inf for max pooling (the padding's value; no gradient flows), NaN for average pooling
    without ``count_include_pad`` (0/0, as ONNX's reference implementation), 0 for L_p pooling.

    Examples
    --------
    >>> from cnnkit.ops.pool import pool_padding
    >>> pool_padding(1, 3), pool_padding(((0, 1), (1, 1)), 3), pool_padding("SAME_LOWER", 2)
    ((1, 1), ((0, 1), (1, 1)), 'same_lower')
    >>> pool_padding(2, 3)
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: pool2d: padding (top, bottom, left, right) = (2, 2, 2, 2) must be at most half the kernel (3, 3) ...
    >>> pool_padding(2, 3, allow_large_padding=True)
    (2, 2)
    """
    kernel = positive_pair(kernel_size, "kernel_size")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in POOL_PADDING_NAMES:
            raise ShapeError(
                f"{what}: padding must be an int, a pair (ph, pw), ((top, bottom), (left, right)), 'valid', 'same_upper' "
                f"or 'same_lower', got {padding!r} (pooling takes ONNX's auto_pad names: 'same_upper' puts the odd pixel "
                f"of padding after, 'same_lower' before)"
            )
        return mode
    try:
        pads = resolve_padding(padding, (1, 1), kernel, (1, 1), (1, 1))  # explicit pads do not depend on the input size
    except ShapeError as exc:
        raise ShapeError(f"{what}: {exc}") from None
    if not allow_large_padding:
        _check_half_kernel(pads, kernel, what)
    t, b, l, r = pads
    if t == b and l == r:
        return (t, l)
    return ((t, b), (l, r))


def _pool_window(
    x_shape: tuple[int, ...],
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: Padding,
    dilation: IntPair,
    ceil_mode: bool,
    what: str,
    allow_large_padding: bool = False,
) -> tuple[Window, tuple[int, int, int, int]]:
    """Validate a pooling geometry; return the window with the ceil_mode overhang added to the
    bottom/right pads (so that every window lies inside the padded array) and the resolved padding
    (top, bottom, left, right) without that overhang."""
    check_rank(x_shape, 4, what)
    kernel = positive_pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else positive_pair(stride, "stride")
    dil = positive_pair(dilation, "dilation")
    normalised = pool_padding(padding, kernel, allow_large_padding, what)
    in_hw = (int(x_shape[1]), int(x_shape[2]))
    pads = resolve_padding(normalised, in_hw, kernel, strides, dil)
    if isinstance(normalised, str) and not allow_large_padding:  # "same_*" with dilation may exceed kernel // 2
        _check_half_kernel(pads, kernel, what, f" ({normalised!r} on an input {in_hw[0]}x{in_hw[1]})")
    t, b, l, r = pads
    win = window(in_hw, kernel, strides, ((t, b), (l, r)), dil, ceil_mode, what=what)
    (ho, wo), (ekh, ekw) = win.out, win.effective_kernel
    over_h = max(0, (ho - 1) * strides[0] + ekh - (in_hw[0] + t + b))
    over_w = max(0, (wo - 1) * strides[1] + ekw - (in_hw[1] + l + r))
    if over_h or over_w:
        win = replace(win, pads=(t, b + over_h, l, r + over_w))
    return win, pads


def _tap(a: Array, win: Window, i: int, j: int) -> Array:
    """The (N, H_out, W_out, C) strided view of tap (i, j) of every window of the padded array ``a``.

    Equal to ``windows_view(a, win)[:, :, :, i, j, :]`` but writable when ``a`` is.
    """
    (ho, wo), (sh, sw), (dh, dw) = win.out, win.stride, win.dilation
    r0, c0 = i * dh, j * dw
    return a[:, r0 : r0 + sh * (ho - 1) + 1 : sh, c0 : c0 + sw * (wo - 1) + 1 : sw, :]


def _taps(win: Window) -> list[tuple[int, int]]:
    """The kernel offsets in row-major order (the tie-breaking order of max pooling)."""
    return [(i, j) for i in range(win.kernel[0]) for j in range(win.kernel[1])]


def _disjoint(win: Window) -> bool:
    """True when no padded pixel lies in two windows (stride >= dilated kernel extent on both axes)."""
    return all(s >= e for s, e in zip(win.stride, win.effective_kernel))


def _covers(win: Window, padded_hw: tuple[int, int]) -> bool:
    """True when the windows tile the padded array exactly: every pixel in exactly one window."""
    (ho, wo), (kh, kw), (sh, sw) = win.out, win.kernel, win.stride
    dense = all(k == 1 or d == 1 for k, d in zip(win.kernel, win.dilation))
    return dense and sh == kh and sw == kw and ho * sh == padded_hw[0] and wo * sw == padded_hw[1]


def _crop(a: Array, win: Window, x_shape: tuple[int, int, int, int]) -> Array:
    """Drop the padding (and the ceil_mode overhang) of an (N, H_pad, W_pad, C) array."""
    t, b, l, r = win.pads
    if t == b == l == r == 0:
        return a
    return xp.ascontiguousarray(a[:, t : t + x_shape[1], l : l + x_shape[2], :])


def _window_sum(a_pad: Array, win: Window) -> Array:
    """sum over each window of the padded array: (N, H_pad, W_pad, C) -> (N, H_out, W_out, C)."""
    view = windows_view(a_pad, win)  # (N, Ho, Wo, kh, kw, C), no copy
    taps = _taps(win)
    out = view[:, :, :, 0, 0, :].copy()
    for i, j in taps[1:]:
        out += view[:, :, :, i, j, :]
    return out


def _scatter_windows(g: Array, win: Window, padded_shape: tuple[int, int, int, int]) -> Array:
    """Adjoint of :func:`_window_sum`: add g (N, H_out, W_out, C) to every tap of its window.

    Returns the padded-size gradient (N, H_pad, W_pad, C); disjoint windows are written directly.
    """
    if _disjoint(win):
        covers = _covers(win, (padded_shape[1], padded_shape[2]))
        out = xp.empty(padded_shape, dtype=g.dtype) if covers else xp.zeros(padded_shape, dtype=g.dtype)
        for i, j in _taps(win):
            _tap(out, win, i, j)[...] = g
        return out
    out = xp.zeros(padded_shape, dtype=g.dtype)
    for i, j in _taps(win):
        _tap(out, win, i, j)[...] += g
    return out


def _check_dy(dy: Array, expected: tuple[int, ...], what: str) -> None:
    if tuple(dy.shape) != tuple(expected):
        raise ShapeError(f"{what} backward: dy has shape {tuple(dy.shape)}, expected the output shape {tuple(expected)}")


# ---------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------
@dataclass
class MaxPoolCache:
    """What max pooling's backward needs: the (-inf padded) input, a private copy of the output and geometry.

    On the compiled path (numba) ``y`` is the returned output itself, not a copy, and ``tap`` records each
    window's first maximum; the backward and the switches then read ``tap`` only, so changing the output in
    place (an in-place ReLU after the pooling) cannot move the gradients.

    The switches are not stored: they are the first tap of each window whose value equals the window's
    maximum, recovered in the backward (cheaper than an argmax in the forward, and free at inference).
    The input is held by reference: do not modify it in place between forward and backward.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_forward
    >>> y, cache = max_pool2d_forward(np.ones((1, 2, 2, 1)), 2, stride=1, padding=1)
    >>> cache.x_pad[0, :, :, 0]  # padding counts as -inf
    array([[-inf, -inf, -inf, -inf],
           [-inf,   1.,   1., -inf],
           [-inf,   1.,   1., -inf],
           [-inf, -inf, -inf, -inf]])
    """

    x_pad: Array  # (N, H_pad, W_pad, C): the input padded with -inf (the input itself without padding)
    y: Array  # (N, H_out, W_out, C), the cache's own copy (the returned output on the compiled path)
    x_shape: tuple[int, int, int, int]
    win: Window  # pads include the ceil_mode overhang
    indices: Array | None = field(default=None, repr=False)  # memo of max_pool2d_indices
    tap: Array | None = field(default=None, repr=False)  # (N, Ho, Wo, C) int32 i*kw + j of each maximum (compiled path)
    relu: int = 0  # a ReLU fused into the pooling: 1 after it, 2 before it (max_pool2d_apply); y is then the ReLU's output


def max_pool2d_forward(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    dilation: IntPair = 1,
    use_jit: bool = True,
    allow_large_padding: bool = False,
) -> tuple[Array, MaxPoolCache]:
    """Max pooling, eq. 15.51: y[n, i, j, c] = max over the (dilated) window at (i*sh - top, j*sw - left).

    x: (N, H, W, C) -> y: (N, H_out, W_out, C). Padding counts as -inf. ``stride=None`` = kernel_size.
    ``padding``: an int, (ph, pw), ((top, bottom), (left, right)), "valid", "same_upper" or "same_lower"
    (see :func:`pool_padding`; pads above kernel // 2 need ``allow_large_padding=True``).
    Returns ``(y, cache)``; :func:`max_pool2d_indices` gives PyTorch-style switches from the cache.
    NaNs propagate to the output (as in PyTorch); the NumPy path gives them no gradient, the compiled path
    (numba, used when available unless ``use_jit=False``) routes it to the first NaN as PyTorch does.

    Examples
    --------
    Seed 004 fig. 1.11: a 4 x 4 image cut into four 2 x 2 blocks, each replaced by its maximum.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_forward
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 4, 4, 1)
    >>> y, cache = max_pool2d_forward(x, 2)
    >>> y[0, :, :, 0]
    array([[6., 8.],
           [3., 4.]], dtype=float32)
    """
    check_rank(x.shape, 4, "max_pool2d")
    x = _as_float(x)
    win, _ = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d", allow_large_padding)
    y, cache = max_pool2d_apply(x, win, use_jit=use_jit)
    assert cache is not None  # keep=True
    return y, cache


def max_pool2d_window(
    x_shape: tuple[int, ...],
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    dilation: IntPair = 1,
    allow_large_padding: bool = False,
) -> Window:
    """The resolved window :func:`max_pool2d_apply` takes, for an input of shape ``x_shape`` (N, H, W, C).

    It depends on the input's H and W only, so a layer resolves it once per input size (the arguments'
    checks and normalisation then cost nothing per call). The pads include the ceil_mode overhang.

    Examples
    --------
    >>> from cnnkit.ops.pool import max_pool2d_window
    >>> win = max_pool2d_window((1, 5, 5, 3), 2, ceil_mode=True)
    >>> win.out, win.pads  # the last window hangs one pixel over the bottom and the right
    ((3, 3), (0, 1, 0, 1))
    """
    return _pool_window(x_shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d", allow_large_padding)[0]


def max_pool2d_apply(
    x: Array, win: Window, keep: bool = True, relu: int = 0, use_jit: bool = True
) -> tuple[Array, MaxPoolCache | None]:
    """Max pooling of a float (N, H, W, C) input over a resolved window (:func:`max_pool2d_window`).

    Returns ``(y, cache)``; with ``keep=False`` (inference) the cache is None and nothing for a backward is
    computed (no switches, no copy of the output). ``relu`` fuses a ReLU into the same pass, on the compiled
    path only: 1 gives max(pool(x), 0) (a ReLU after the pooling), 2 gives pool(max(x, 0)) (a ReLU before it;
    the window must have no padding); the output, switches and gradients are those of the two layers run
    one after the other (:func:`max_pool2d_backward` applies the ReLU's backward too).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_apply, max_pool2d_window
    >>> x = np.array([[-1, -2, 3, 4], [-5, -6, 7, 8]], np.float32).reshape(1, 2, 4, 1)
    >>> win = max_pool2d_window(x.shape, 2)
    >>> y, cache = max_pool2d_apply(x, win, keep=False)
    >>> y[0, :, :, 0], cache
    (array([[-1.,  8.]], dtype=float32), None)
    """
    n, h, w_in, c = x.shape
    if (h, w_in) != win.in_hw:
        raise ShapeError(f"max_pool2d: the window was resolved for an input {win.in_hw[0]}x{win.in_hw[1]}, got {h}x{w_in}")
    x_shape = (int(n), int(h), int(w_in), int(c))
    if relu not in (0, 1, 2) or (relu == 2 and any(win.pads)):
        raise ValueError(f"max_pool2d: relu must be 0, 1 or 2 (2 only without padding), got {relu!r} with pads {win.pads}")
    x_pad = pad_nhwc(x, win.pads, -math.inf)
    if use_jit and jit.usable(x_pad):
        (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
        assert jit.maxpool_forward is not None  # usable(): numba is there, so is the kernel
        y, tap = jit.maxpool_forward(xp.ascontiguousarray(x_pad), kh, kw, sh, sw, dh, dw, win.out[0], win.out[1], relu, keep)
        return y, (MaxPoolCache(x_pad, y, x_shape, win, tap=tap, relu=relu) if keep else None)
    if relu:
        raise ValueError("max_pool2d: a fused ReLU needs the compiled kernels (numba, float32/float64)")
    view = windows_view(x_pad, win)  # (N, Ho, Wo, kh, kw, C), no copy
    taps = _taps(win)
    y = view[:, :, :, 0, 0, :].copy()
    for i, j in taps[1:]:
        xp.maximum(y, view[:, :, :, i, j, :], out=y)
    return y, (MaxPoolCache(x_pad, y.copy(), x_shape, win) if keep else None)


def _first_max_masks(cache: MaxPoolCache) -> Iterator[tuple[int, int, Array]]:
    """For each tap (i, j) in row-major order, the (N, H_out, W_out, C) bool mask of the windows whose
    FIRST maximum is at that tap (the rows of S(x) of eq. 15.56 that have their 1 in tap (i, j)).

    The mask buffer is reused between taps: consume each one before asking for the next. On the compiled path
    the forward recorded each window's first maximum (``tap``), so the masks come from it and the output
    (which the caller may have changed in place since) is not read.
    """
    taps = _taps(cache.win)
    if cache.tap is not None:
        mask = xp.empty(cache.tap.shape, dtype=bool)
        kw = cache.win.kernel[1]
        for i, j in taps:
            xp.equal(cache.tap, i * kw + j, out=mask)
            yield i, j, mask
        return
    view = windows_view(cache.x_pad, cache.win)  # (N, Ho, Wo, kh, kw, C)
    y = cache.y
    mask = xp.empty(y.shape, dtype=bool)
    taken: Array | None = None  # windows whose maximum has already been found
    last = len(taps) - 1
    for q, (i, j) in enumerate(taps):
        xp.equal(view[:, :, :, i, j, :], y, out=mask)
        if taken is None:
            if last > 0:
                taken = mask.copy()
        else:
            xp.greater(mask, taken, out=mask)  # mask & ~taken for booleans
            if q < last:
                xp.logical_or(taken, mask, out=taken)
        yield i, j, mask


def max_pool2d_backward(dy: Array, cache: MaxPoolCache, accumulate: bool = False) -> Array:
    """dz/dx = S(x)^T dz/dy (eq. 15.59): each window's gradient goes to its first maximum.

    dy: (N, H_out, W_out, C) -> dx: (N, H, W, C). Where windows overlap, gradients add (a pixel that
    is the maximum of two windows gets both, the seed's element 9). When the windows are disjoint the
    gradient taps are written straight into dx (and, when they tile the input exactly, dx is never
    zero-filled); ``accumulate=True`` forces the general add-into-zeros path (the reference the tests
    compare the fast path with).

    Examples
    --------
    The seed's example after eq. 15.59: 2 x 2 windows at stride 1 over fig. 15.5's input; 6 and 9 are each
    the maximum of two windows, so each collects two gradients.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_backward, max_pool2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32).reshape(1, 3, 4, 1)
    >>> y, cache = max_pool2d_forward(A, 2, stride=1)
    >>> y[0, :, :, 0]
    array([[5., 6., 6.],
           [8., 9., 9.]], dtype=float32)
    >>> max_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 2., 0.],
           [0., 1., 2., 0.]], dtype=float32)
    """
    _check_dy(dy, cache.y.shape, "max_pool2d")
    dy = dy.astype(cache.y.dtype, copy=False)
    win = cache.win
    padded_shape = cache.x_pad.shape
    if cache.tap is not None and (cache.relu or not accumulate) and jit.usable(dy):
        (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
        assert jit.maxpool_backward is not None and jit.maxpool_backward_disjoint is not None  # usable(): numba is there
        dy = xp.ascontiguousarray(dy)
        fused = cache.y if cache.relu else None  # a fused ReLU: its backward (dy where y > 0) in the same pass
        if _disjoint(win):
            covers = _covers(win, (padded_shape[1], padded_shape[2]))
            dx_pad = xp.empty(padded_shape, dtype=dy.dtype) if covers else xp.zeros(padded_shape, dtype=dy.dtype)
            jit.maxpool_backward_disjoint(dy, cache.tap, dx_pad, kh, kw, sh, sw, dh, dw, y=fused)
        else:
            dx_pad = xp.zeros(padded_shape, dtype=dy.dtype)
            jit.maxpool_backward(dy, cache.tap, dx_pad, kw, sh, sw, dh, dw, y=fused, relu=cache.relu)
        return _crop(dx_pad, win, cache.x_shape)
    if cache.relu:
        raise ValueError("max_pool2d backward: a cache with a fused ReLU needs the compiled kernels (numba)")
    accumulate = accumulate or not _disjoint(win)
    if accumulate:
        dx_pad = xp.zeros(padded_shape, dtype=dy.dtype)
        tmp = xp.empty_like(dy)
        for i, j, mask in _first_max_masks(cache):
            xp.multiply(dy, mask, out=tmp)
            _tap(dx_pad, win, i, j)[...] += tmp
    else:
        covers = _covers(win, (padded_shape[1], padded_shape[2]))
        dx_pad = xp.empty(padded_shape, dtype=dy.dtype) if covers else xp.zeros(padded_shape, dtype=dy.dtype)
        for i, j, mask in _first_max_masks(cache):
            xp.multiply(dy, mask, out=_tap(dx_pad, win, i, j))
    return _crop(dx_pad, win, cache.x_shape)


def max_pool2d_indices(cache: MaxPoolCache) -> Array:
    """The switches as PyTorch's flat indices ``h*W + w`` into the unpadded input: (N, H_out, W_out, C) int64.

    These are what :func:`max_unpool2d_forward` (and PyTorch's ``max_unpool2d``) take. Computed on first
    request and memoised in the cache.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_forward, max_pool2d_indices
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 4, 4, 1)
    >>> y, cache = max_pool2d_forward(x, 2)
    >>> max_pool2d_indices(cache)[0, :, :, 0]  # 6 is x.flat[5], 8 is x.flat[7], ...
    array([[ 5,  7],
           [ 8, 15]])
    """
    if cache.indices is not None:
        return cache.indices
    win = cache.win
    w_in = cache.x_shape[2]
    (ho, wo), (sh, sw), (dh, dw) = win.out, win.stride, win.dilation
    top, left = win.pads[0], win.pads[2]
    if cache.tap is not None:
        i_tap, j_tap = xp.divmod(cache.tap.astype(xp.int64), win.kernel[1])
        offset = i_tap * (dh * w_in) + j_tap * dw
    else:
        offset = xp.zeros(cache.y.shape, dtype=xp.int64)
        for i, j, mask in _first_max_masks(cache):
            step = i * dh * w_in + j * dw
            if step:
                offset += mask * xp.int64(step)
    rows = xp.arange(ho, dtype=xp.int64) * sh - top  # first row of each window, unpadded coordinates
    cols = xp.arange(wo, dtype=xp.int64) * sw - left
    base = rows[:, None] * w_in + cols[None, :]  # (Ho, Wo)
    offset += base[None, :, :, None]
    cache.indices = offset
    return offset


# ---------------------------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------------------------
@dataclass
class AvgPoolCache:
    """What average pooling's backward needs: the divisor (H_out, W_out) and geometry.

    Examples
    --------
    Without ``count_include_pad`` a window divides by the input pixels it holds, not by its padding.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import avg_pool2d_forward
    >>> y, cache = avg_pool2d_forward(np.ones((1, 3, 3, 1)), 2, padding=1, count_include_pad=False)
    >>> cache.divisor
    array([[1., 2.],
           [2., 4.]])
    >>> y[0, :, :, 0]
    array([[1., 1.],
           [1., 1.]])
    """

    divisor: Array  # (H_out, W_out), in the input's dtype
    x_shape: tuple[int, int, int, int]
    padded_shape: tuple[int, int, int, int]
    win: Window
    dtype: xp.dtype


def _axis_counts(
    size: int, k: int, s: int, d: int, before: int, after: int, out: int, count_include_pad: bool
) -> Array:
    """Per output index along one axis, how many taps count in the divisor (PyTorch's and ONNX's rule).

    The taps of window o are start + j*d, j < k, with start = o*s - before. A tap counts when it lies in
    the padded input [-before, size + after) (positions added by ceil_mode never count), or, without
    count_include_pad, in the input [0, size). For d = 1 this is PyTorch's clipped window length.
    """
    start = xp.arange(out, dtype=xp.int64) * s - before
    taps = start[:, None] + xp.arange(k, dtype=xp.int64)[None, :] * d  # (out, k)
    lo, hi = (-before, size + after) if count_include_pad else (0, size)
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


def avg_pool2d_forward(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    dilation: IntPair = 1,
    allow_large_padding: bool = False,
) -> tuple[Array, AvgPoolCache]:
    """Average pooling, eq. 15.52: y = (sum over the window) / divisor.

    x: (N, H, W, C) -> y: (N, H_out, W_out, C). The divisor is PyTorch's (and ONNX's): the number of
    window taps inside the zero-padded input (count_include_pad=True) or inside the input itself (False);
    taps added by ceil_mode never count; ``divisor_override`` replaces it by a constant. ``padding`` takes
    the forms of :func:`pool_padding` (asymmetric, "same_upper"/"same_lower"; pads above kernel // 2 need
    ``allow_large_padding=True``; a window of padding alone, possible then or with dilation, gives 0/0 = NaN
    without count_include_pad, as in ONNX's reference). ``dilation`` spaces the taps (ONNX's AveragePool-19;
    PyTorch has no dilated average pooling); each tap counts on its own.

    Examples
    --------
    Seed 004 fig. 1.11 again, each 2 x 2 block replaced by its mean (eq. 15.52).

    >>> import numpy as np
    >>> from cnnkit.ops.pool import avg_pool2d_forward
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 4, 4, 1)
    >>> y, cache = avg_pool2d_forward(x, 2)
    >>> y[0, :, :, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]], dtype=float32)

    ONNX's dilated example (test_averagepool_2d_dilations): 2 x 2 taps, 2 apart.

    >>> x = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> avg_pool2d_forward(x, 2, stride=1, dilation=2, ceil_mode=True)[0][0, :, :, 0]
    array([[ 6.,  7.],
           [10., 11.]], dtype=float32)
    """
    check_rank(x.shape, 4, "avg_pool2d")
    x = _as_float(x)
    win, (t, b, l, r) = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "avg_pool2d", allow_large_padding)
    if divisor_override is not None and int(divisor_override) == 0:
        raise ValueError(f"avg_pool2d: divisor_override must be non-zero, got {divisor_override!r}")
    _, h, w, _ = x.shape
    (ho, wo), (kh, kw), (sh, sw), (dh, dw) = win.out, win.kernel, win.stride, win.dilation
    x_pad = pad_nhwc(x, win.pads, 0.0)
    total = _window_sum(x_pad, win)  # (N, Ho, Wo, C)
    if divisor_override is not None:
        divisor = xp.full((ho, wo), float(divisor_override), dtype=x.dtype)
    else:
        ch = _axis_counts(h, kh, sh, dh, t, b, ho, count_include_pad)
        cw = _axis_counts(w, kw, sw, dw, l, r, wo, count_include_pad)
        divisor = (ch[:, None] * cw[None, :]).astype(x.dtype)  # (Ho, Wo)
    with _quiet_division():  # 0/0 only for windows of padding alone (large pads, or dilation skipping the input)
        total /= divisor[None, :, :, None]
    return total, AvgPoolCache(divisor, tuple(x.shape), tuple(x_pad.shape), win, x.dtype)


def avg_pool2d_backward(dy: Array, cache: AvgPoolCache) -> Array:
    """dx: every input pixel of a window receives dy / divisor (seed 004: each of 3x3 gets 1/9), summed
    over the windows that contain it. dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).

    Examples
    --------
    Seed 004 fig. 1.12: with a 3 x 3 window each pixel receives 1/9 of the gradient.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import avg_pool2d_backward, avg_pool2d_forward
    >>> y, cache = avg_pool2d_forward(np.ones((1, 3, 3, 1)), 3)
    >>> np.round(avg_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0], 4)
    array([[0.1111, 0.1111, 0.1111],
           [0.1111, 0.1111, 0.1111],
           [0.1111, 0.1111, 0.1111]])
    """
    n, _, _, c = cache.x_shape
    _check_dy(dy, (n, cache.win.out[0], cache.win.out[1], c), "avg_pool2d")
    with _quiet_division():  # windows of padding alone: their NaN lands in the padding, which is cropped
        g = dy.astype(cache.dtype, copy=False) / cache.divisor[None, :, :, None]
    return _crop(_scatter_windows(g, cache.win, cache.padded_shape), cache.win, cache.x_shape)


# ---------------------------------------------------------------------------------------------
# L_p pooling
# ---------------------------------------------------------------------------------------------
@dataclass
class LPPoolCache:
    """What L_p pooling's backward needs.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import lp_pool2d_forward
    >>> y, cache = lp_pool2d_forward(np.ones((1, 2, 2, 1)), 2, 2)
    >>> cache.p, cache.y is y
    (2.0, True)
    """

    x: Array  # (N, H, W, C)
    y: Array  # (N, H_out, W_out, C)
    p: float
    padded_shape: tuple[int, int, int, int]
    win: Window


def check_norm_type(norm_type: float) -> float:
    """Validate L_p pooling's ``norm_type`` (a finite p >= 1) and return it as a float.

    Examples
    --------
    >>> from cnnkit.ops.pool import check_norm_type
    >>> check_norm_type(2)
    2.0
    >>> check_norm_type(0.5)
    Traceback (most recent call last):
    ...
    ValueError: lp_pool2d: norm_type must be a finite number >= 1, got 0.5 (use max pooling for p = inf)
    """
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"lp_pool2d: norm_type must be a number >= 1, got {norm_type!r}") from None
    if not math.isfinite(p) or p < 1:
        raise ValueError(f"lp_pool2d: norm_type must be a finite number >= 1, got {norm_type!r} (use max pooling for p = inf)")
    return p


def lp_pool2d_forward(
    x: Array,
    norm_type: float,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    ceil_mode: bool = False,
    padding: Padding = 0,
    dilation: IntPair = 1,
    allow_large_padding: bool = False,
) -> tuple[Array, LPPoolCache]:
    """L_p pooling (seed 002's "L2-norm pooling" for p = 2): y = (sum over the window of |x|^p)^(1/p).

    x: (N, H, W, C) -> y: (N, H_out, W_out, C); p = norm_type >= 1. ``padding`` (the forms of
    :func:`pool_padding`) adds zeros, which add nothing to the sum; ``dilation`` spaces the taps. This is
    ONNX's LpPool (whose reference pads with zeros too).
    Differences from PyTorch's LPPool2d (which has neither padding nor dilation): PyTorch sums x^p without
    the absolute value (so odd p on negative inputs gives a different value or NaN), and with ceil_mode it
    rescales a window that hangs over the edge by kh*kw / (taps inside), as does ONNX's reference
    implementation (it computes LpPool through AveragePool); cnnkit keeps the plain sum, the L_p norm of
    the taps that exist, as ONNX's specification and its test generator define it. For p = 2 without
    such partial windows all agree.

    Examples
    --------
    With p = 2 each window gives the Euclidean norm of its entries: ||(3, 4, 0, 0)|| = 5.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import lp_pool2d_forward
    >>> x = np.array([[3.0, 4.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
    >>> y, cache = lp_pool2d_forward(x, 2, 2)
    >>> y[0, :, :, 0]
    array([[5.]])
    """
    check_rank(x.shape, 4, "lp_pool2d")
    p = check_norm_type(norm_type)
    x = _as_float(x)
    win, _ = _pool_window(x.shape, kernel_size, stride, padding, dilation, ceil_mode, "lp_pool2d", allow_large_padding)
    if p == 2.0:
        a = x * x
    elif p == 1.0:
        a = xp.abs(x)
    else:
        a = xp.abs(x) ** p
    a_pad = pad_nhwc(a, win.pads, 0.0)
    s = _window_sum(a_pad, win)
    y = xp.sqrt(s) if p == 2.0 else (s if p == 1.0 else s ** (1.0 / p))
    return y, LPPoolCache(x, y, p, tuple(a_pad.shape), win)


def lp_pool2d_backward(dy: Array, cache: LPPoolCache) -> Array:
    """dx = sum over the windows containing x of dy * |x|^(p-1) sign(x) / y^(p-1), with 0 where y == 0.

    dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).

    Examples
    --------
    For p = 2, dx = dy x / y: the unit vector of each window.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import lp_pool2d_backward, lp_pool2d_forward
    >>> x = np.array([[3.0, 4.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
    >>> y, cache = lp_pool2d_forward(x, 2, 2)
    >>> np.round(lp_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0], 4)
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    _check_dy(dy, cache.y.shape, "lp_pool2d")
    p, y, x = cache.p, cache.y, cache.x
    dy = dy.astype(y.dtype, copy=False)
    if p == 1.0:
        g = dy
    else:
        denom = y if p == 2.0 else y ** (p - 1.0)
        safe = xp.where(denom > 0, denom, 1)
        g = xp.where(denom > 0, dy / safe, 0).astype(y.dtype, copy=False)
    back = _crop(_scatter_windows(g, cache.win, cache.padded_shape), cache.win, tuple(x.shape))
    if p == 2.0:
        back *= x
    elif p == 1.0:
        back *= xp.sign(x)
    else:
        back *= xp.abs(x) ** (p - 1.0) * xp.sign(x)
    return back


# ---------------------------------------------------------------------------------------------
# max unpooling
# ---------------------------------------------------------------------------------------------
@dataclass
class MaxUnpoolCache:
    """What unpooling's backward needs: the switches reshaped to (N, H*W, C) and the shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_unpool2d_forward
    >>> x, idx = np.ones((1, 2, 2, 3)), np.zeros((1, 2, 2, 3), np.int64)
    >>> y, cache = max_unpool2d_forward(x, idx, 2)
    >>> cache.indices.shape, cache.y_shape
    ((1, 4, 3), (1, 4, 4, 3))
    """

    indices: Array  # (N, H*W, C) int64, flat positions h*W_out + w in the output plane
    x_shape: tuple[int, int, int, int]
    y_shape: tuple[int, int, int, int]
    dtype: xp.dtype


def unpool_output_size(
    in_hw: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    output_size: Sequence[int] | None = None,
    strict: bool = True,
) -> tuple[int, int]:
    """Spatial size of max unpooling: (H_in - 1)*stride - (top + bottom) + kernel (PyTorch's default,
    -2*padding for symmetric pads), or ``output_size`` ((H, W) or a full (N, H, W, C) shape), which must
    lie strictly within one stride of it unless ``strict=False`` (used when the size is the mirrored
    pooling's true input size). A named padding ("same_upper", ...) depends on the pooled input's size,
    so it needs ``output_size`` with ``strict=False``.

    Examples
    --------
    >>> from cnnkit.ops.pool import unpool_output_size
    >>> unpool_output_size((2, 2), 2)  # (2 - 1)*2 + 2
    (4, 4)
    >>> unpool_output_size((2, 2), 2, output_size=(5, 5))  # a 5 x 5 input pooled to 2 x 2
    (5, 5)
    >>> unpool_output_size((3, 3), 3, 2, ((0, 1), (1, 1)))  # asymmetric pads: (3 - 1)*2 - 1 + 3, (3 - 1)*2 - 2 + 3
    (6, 5)
    """
    kernel = positive_pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else positive_pair(stride, "stride")
    default: tuple[int, int] | None = None
    if isinstance(padding, str):
        if output_size is None or strict:
            raise ShapeError(
                f"max_unpool2d: padding {padding!r} depends on the pooled input's size, so the output size cannot be "
                f"derived from the input {in_hw[0]}x{in_hw[1]}: give the explicit pads, or output_size with strict_size=False"
            )
    else:
        try:
            t, b, l, r = resolve_padding(padding, (1, 1), kernel, (1, 1), (1, 1))
        except ShapeError as exc:
            raise ShapeError(f"max_unpool2d: {exc}") from None
        default = ((in_hw[0] - 1) * strides[0] - t - b + kernel[0], (in_hw[1] - 1) * strides[1] - l - r + kernel[1])
    if output_size is None:
        assert default is not None  # a named padding without output_size was refused above
        if min(default) < 1:
            raise ShapeError(
                f"max_unpool2d: input {in_hw[0]}x{in_hw[1]} with kernel {kernel}, stride {strides}, padding {padding!r} "
                f"gives an empty output {default}"
            )
        return default
    size = tuple(int(v) for v in output_size)
    if len(size) == 4:
        size = size[1:3]
    if len(size) != 2:
        raise ShapeError(f"max_unpool2d: output_size must be (H, W) or (N, H, W, C), got {tuple(output_size)!r}")
    for i, (want, s) in enumerate(zip(size, strides)):
        if want < 1 or (strict and default is not None and not (default[i] - s < want < default[i] + s)):
            raise ShapeError(
                f"max_unpool2d: output_size {size} is invalid for input {in_hw[0]}x{in_hw[1]}: expected each size "
                f"strictly between default - stride and default + stride, default {default}, stride {strides}"
            )
    return (size[0], size[1])


def max_unpool2d_forward(
    x: Array,
    indices: Array,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    output_size: Sequence[int] | None = None,
    strict_size: bool = True,
) -> tuple[Array, MaxUnpoolCache]:
    """Max unpooling (seed 002 去汇聚): a zero map of the pre-pooling size with each x at its switch.

    x, indices: (N, H, W, C); indices are flat positions h*W_out + w in the output plane, as given by
    :func:`max_pool2d_indices` or PyTorch. y: (N, H_out, W_out, C) with the size of
    :func:`unpool_output_size` (``strict_size=False`` accepts any ``output_size`` the indices fit in,
    e.g. the input size of a dilated pooling). Where two switches coincide (overlapping pooling) one value is kept,
    as in PyTorch.

    Examples
    --------
    Seed 002: pooling remembers where each maximum was; unpooling puts it back there.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_pool2d_forward, max_pool2d_indices, max_unpool2d_forward
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 4, 4, 1)
    >>> y, pool_cache = max_pool2d_forward(x, 2)
    >>> up, cache = max_unpool2d_forward(y, max_pool2d_indices(pool_cache), 2)
    >>> up[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 6., 0., 8.],
           [3., 0., 0., 0.],
           [0., 0., 0., 4.]], dtype=float32)
    """
    check_rank(x.shape, 4, "max_unpool2d")
    x = _as_float(x)
    if tuple(indices.shape) != tuple(x.shape):
        raise ShapeError(f"max_unpool2d: indices have shape {tuple(indices.shape)}, expected the input's shape {tuple(x.shape)}")
    if not xp.issubdtype(indices.dtype, xp.integer):
        raise ShapeError(f"max_unpool2d: indices must be integers, got dtype {indices.dtype}")
    n, h, w, c = x.shape
    ho, wo = unpool_output_size((h, w), kernel_size, stride, padding, output_size, strict_size)
    idx = indices.astype(xp.int64, copy=False).reshape(n, h * w, c)  # (N, H*W, C)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= ho * wo):
        raise ShapeError(
            f"max_unpool2d: indices range over [{int(idx.min())}, {int(idx.max())}], expected [0, {ho * wo}) "
            f"for an output of {ho}x{wo} (give output_size if the pooled input had another size)"
        )
    y = xp.zeros((n, ho * wo, c), dtype=x.dtype)
    xp.put_along_axis(y, idx, x.reshape(n, h * w, c), axis=1)
    return y.reshape(n, ho, wo, c), MaxUnpoolCache(idx, (n, h, w, c), (n, ho, wo, c), x.dtype)


def max_unpool2d_backward(dy: Array, cache: MaxUnpoolCache) -> Array:
    """dx[n, i, j, c] = dy at the switch of x[n, i, j, c] (a gather, the adjoint of the forward's scatter).

    dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import max_unpool2d_backward, max_unpool2d_forward
    >>> idx = np.array([[5, 7], [8, 15]]).reshape(1, 2, 2, 1)
    >>> y, cache = max_unpool2d_forward(np.ones((1, 2, 2, 1)), idx, 2)
    >>> dy = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> max_unpool2d_backward(dy, cache)[0, :, :, 0]  # dy read at the switches
    array([[ 5.,  7.],
           [ 8., 15.]])
    """
    _check_dy(dy, cache.y_shape, "max_unpool2d")
    n, ho, wo, c = cache.y_shape
    dy = dy.astype(cache.dtype, copy=False)
    dx = xp.take_along_axis(dy.reshape(n, ho * wo, c), cache.indices, axis=1)  # (N, H*W, C)
    return dx.reshape(cache.x_shape)


# ---------------------------------------------------------------------------------------------
# nearest-neighbour upsampling
# ---------------------------------------------------------------------------------------------
@dataclass
class UpsampleCache:
    """Upsampling's backward needs only the shapes and the factors.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import upsample_nearest2d_forward
    >>> y, cache = upsample_nearest2d_forward(np.ones((1, 2, 2, 1)), (2, 3))
    >>> cache.x_shape, cache.scale
    ((1, 2, 2, 1), (2, 3))
    """

    x_shape: tuple[int, int, int, int]
    scale: tuple[int, int]
    dtype: xp.dtype


def scale_factor_pair(scale_factor: int | float | Sequence[int | float]) -> tuple[int, int]:
    """Normalise an upsampling factor (an int, an integral float, or a pair) to ``(sh, sw)`` ints >= 1.

    Examples
    --------
    >>> from cnnkit.ops.pool import scale_factor_pair
    >>> scale_factor_pair(2), scale_factor_pair((2.0, 3))
    ((2, 2), (2, 3))
    >>> scale_factor_pair(1.5)
    Traceback (most recent call last):
    ...
    ValueError: upsample: only positive integer scale factors are supported for nearest upsampling, got (1.5, 1.5)
    """
    if isinstance(scale_factor, (int, float)):
        scale_factor = (scale_factor, scale_factor)
    try:
        values = tuple(scale_factor)
    except TypeError:
        raise ValueError(f"upsample: scale_factor must be a positive int or a pair, got {scale_factor!r}") from None
    if len(values) != 2:
        raise ValueError(f"upsample: scale_factor must be a positive int or a pair (sh, sw), got {scale_factor!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or int(v) < 1:
            raise ValueError(
                f"upsample: only positive integer scale factors are supported for nearest upsampling, got {scale_factor!r}"
            )
        out.append(int(v))
    return out[0], out[1]


def upsample_nearest2d_forward(
    x: Array, scale_factor: int | Sequence[int]
) -> tuple[Array, UpsampleCache]:
    """Nearest-neighbour upsampling: y[n, i, j, c] = x[n, i // sh, j // sw, c].

    x: (N, H, W, C) -> y: (N, H*sh, W*sw, C); ``scale_factor`` an int or (sh, sw).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import upsample_nearest2d_forward
    >>> x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    >>> y, cache = upsample_nearest2d_forward(x, 2)
    >>> y[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]], dtype=float32)
    """
    check_rank(x.shape, 4, "upsample_nearest2d")
    sh, sw = scale_factor_pair(scale_factor)
    n, h, w, c = x.shape
    y = xp.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c)).reshape(n, h * sh, w * sw, c)  # one copy
    return y, UpsampleCache((n, h, w, c), (sh, sw), y.dtype)


def upsample_nearest2d_backward(dy: Array, cache: UpsampleCache) -> Array:
    """dx = the sum of dy over each sh x sw block. dy: (N, H*sh, W*sw, C) -> dx: (N, H, W, C).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import upsample_nearest2d_backward, upsample_nearest2d_forward
    >>> y, cache = upsample_nearest2d_forward(np.zeros((1, 2, 2, 1), np.float32), 2)
    >>> dy = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> upsample_nearest2d_backward(dy, cache)[0, :, :, 0]  # the sum of each 2 x 2 block
    array([[10., 18.],
           [42., 50.]], dtype=float32)
    """
    n, h, w, c = cache.x_shape
    sh, sw = cache.scale
    _check_dy(dy, (n, h * sh, w * sw, c), "upsample_nearest2d")
    blocks = dy.astype(cache.dtype, copy=False).reshape(n, h, sh, w, sw, c)  # a view: block (i, j) is blocks[:, i, :, j, :, :]
    dx = blocks[:, :, 0, :, 0, :].copy()
    for a in range(sh):
        for b in range(sw):
            if a or b:
                dx += blocks[:, :, a, :, b, :]
    return dx


# ---------------------------------------------------------------------------------------------
# nearest-neighbour resizing (ONNX Resize, mode="nearest")
# ---------------------------------------------------------------------------------------------
COORDINATE_TRANSFORMATION_MODES = (
    "half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn", "half_pixel_symmetric",
)
"""ONNX Resize's coordinate_transformation_mode values that nearest resizing takes (all but tf_crop_and_resize)."""

NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
"""ONNX Resize's nearest_mode values."""


def nearest_source_indices(
    in_size: int,
    out_size: int,
    scale: float | None = None,
    coordinate_transformation_mode: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
) -> Array:
    """For each output index along one axis, the input index nearest resizing copies (ONNX Resize's rule).

    ``scale`` is the resize factor of this axis (``out_size / in_size`` when None, i.e. when the size
    was given). The output coordinate y maps to the input coordinate x (ONNX's formulas, in float64, the
    same arithmetic as onnx.reference):

    - half_pixel: x = (y + 0.5)/scale - 0.5
    - pytorch_half_pixel: the same, but x = -0.5 when the output length scale*in_size is 1
    - half_pixel_symmetric: half_pixel shifted so the centre of the input maps to the centre of the output
    - asymmetric: x = y/scale
    - align_corners: x = y (in_size - 1)/(scale*in_size - 1), 0 when scale*in_size is 1
    - tf_half_pixel_for_nn: x = (y + 0.5)/scale (Resize-11; not in onnx.reference, which dropped it)

    then x is rounded by ``nearest_mode`` (round_prefer_floor: halves go down; round_prefer_ceil: up;
    floor; ceil; an integral x is itself in every mode) and clipped to [0, in_size - 1].

    Examples
    --------
    >>> from cnnkit.ops.pool import nearest_source_indices
    >>> nearest_source_indices(2, 4, coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # PyTorch's 'nearest'
    array([0, 0, 1, 1])
    >>> nearest_source_indices(4, 8, coordinate_transformation_mode="align_corners", nearest_mode="floor")
    array([0, 0, 0, 1, 1, 2, 2, 3])
    >>> nearest_source_indices(4, 2, 0.6)  # ONNX's default (half_pixel, round_prefer_floor), scale 0.6: x = 0.333, 2
    array([0, 2])
    """
    if coordinate_transformation_mode not in COORDINATE_TRANSFORMATION_MODES:
        raise ValueError(
            f"resize_nearest2d: coordinate_transformation_mode must be one of {list(COORDINATE_TRANSFORMATION_MODES)}, "
            f"got {coordinate_transformation_mode!r}"
        )
    if nearest_mode not in NEAREST_MODES:
        raise ValueError(f"resize_nearest2d: nearest_mode must be one of {list(NEAREST_MODES)}, got {nearest_mode!r}")
    if in_size < 1 or out_size < 1:
        raise ShapeError(f"resize_nearest2d: sizes must be >= 1, got input {in_size} and output {out_size}")
    s = float(out_size) / float(in_size) if scale is None else float(scale)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"resize_nearest2d: the scale must be a finite number > 0, got {scale!r}")
    y = xp.arange(out_size, dtype=xp.float64)
    length = s * in_size  # the output length as ONNX's reference computes it (a float with scales)
    mode = coordinate_transformation_mode
    if mode == "align_corners":
        x = xp.zeros(out_size) if length == 1 else y * (in_size - 1) / (length - 1)
    elif mode == "asymmetric":
        x = y / s
    elif mode == "pytorch_half_pixel":
        x = xp.full(out_size, -0.5) if length == 1 else (y + 0.5) / s - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / s - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / length)
        x = offset + (y + 0.5) / s - 0.5
    else:  # tf_half_pixel_for_nn
        x = (y + 0.5) / s
    lower = xp.floor(x)
    frac = x - lower  # exact; 0 where x is an integer
    if nearest_mode == "round_prefer_floor":
        up = frac > 0.5
    elif nearest_mode == "round_prefer_ceil":
        up = frac >= 0.5
    elif nearest_mode == "floor":
        up = xp.zeros(out_size, dtype=bool)
    else:  # ceil
        up = frac > 0
    idx = lower.astype(xp.int64) + up
    return xp.clip(idx, 0, in_size - 1)


@dataclass
class ResizeCache:
    """What nearest resizing's backward needs: the source index of every output row and column.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import resize_nearest2d_forward
    >>> y, cache = resize_nearest2d_forward(np.ones((1, 2, 3, 1)), size=(3, 2), coordinate_transformation_mode="asymmetric")
    >>> cache.rows, cache.cols  # x = 0, 0.67, 1.33 and 0, 1.5, rounded with halves down
    (array([0, 1, 1]), array([0, 1]))
    """

    rows: Array  # (H_out,) int64 source row of each output row
    cols: Array  # (W_out,) int64 source column of each output column
    x_shape: tuple[int, int, int, int]
    dtype: xp.dtype


def _resize_axis(in_size: int, size: int | None, scale: float | None, axis: str) -> tuple[int, float | None]:
    """(output size, scale for the coordinate map) of one axis from a given size or scale."""
    if size is not None:
        if isinstance(size, bool) or int(size) != size or int(size) < 1:
            raise ShapeError(f"resize_nearest2d: the output {axis} must be a positive integer, got {size!r}")
        return int(size), None
    assert scale is not None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"resize_nearest2d: scale_factor must be finite numbers > 0, got {scale!r} for the {axis}")
    out = math.floor(float(scale) * in_size)  # ONNX and PyTorch: floor(scale * size)
    if out < 1:
        raise ShapeError(f"resize_nearest2d: scale {scale!r} leaves no output {axis} for an input {axis} of {in_size}")
    return out, float(scale)


def _float_pair(value: float | Sequence[float], what: str) -> tuple[float, float]:
    if isinstance(value, bool):
        raise ValueError(f"resize_nearest2d: {what} must be a number or a pair, got {value!r}")
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f"resize_nearest2d: {what} must be a number or a pair, got {value!r}") from None
    if len(values) != 2:
        raise ValueError(f"resize_nearest2d: {what} must be a number or a pair (h, w), got {value!r}")
    return values[0], values[1]


def resize_nearest2d_forward(
    x: Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    coordinate_transformation_mode: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
) -> tuple[Array, ResizeCache]:
    """Nearest-neighbour resizing, ONNX's Resize with mode="nearest": y[n, i, j, c] = x[n, r(i), c(j), c].

    x: (N, H, W, C) -> y: (N, H_out, W_out, C). Give exactly one of ``size`` ((H_out, W_out) or an int) or
    ``scale_factor`` (positive floats, one or (sh, sw); H_out = floor(sh*H)). The source indices r, c are
    :func:`nearest_source_indices` per axis; the defaults are ONNX's (half_pixel, round_prefer_floor).
    PyTorch's ``interpolate(mode="nearest")`` is asymmetric + floor, ``mode="nearest-exact"`` is half_pixel
    + round_prefer_ceil. ONNX stores scales as float32: pass ``float(np.float32(s))`` to reproduce a model's
    rounding exactly.

    Examples
    --------
    ONNX's test_resize_downsample_scales_nearest: scales 0.6 on a 2 x 4 image.

    >>> import numpy as np
    >>> from cnnkit.ops.pool import resize_nearest2d_forward
    >>> x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32).reshape(1, 2, 4, 1)
    >>> y, cache = resize_nearest2d_forward(x, scale_factor=float(np.float32(0.6)))
    >>> y[0, :, :, 0]
    array([[1., 3.]], dtype=float32)
    >>> resize_nearest2d_forward(x, size=(3, 3))[0][0, :, :, 0]  # rows x = -0.17, 0.5, 1.17; columns 0.17, 1.5, 2.83
    array([[1., 2., 4.],
           [1., 2., 4.],
           [5., 6., 8.]], dtype=float32)
    """
    check_rank(x.shape, 4, "resize_nearest2d")
    if (size is None) == (scale_factor is None):
        raise ValueError("resize_nearest2d: give exactly one of size and scale_factor")
    n, h, w, c = (int(v) for v in x.shape)
    if size is not None:
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(sizes) != 2:
            raise ShapeError(f"resize_nearest2d: size must be an int or (H_out, W_out), got {size!r}")
        (ho, s_h), (wo, s_w) = _resize_axis(h, sizes[0], None, "height"), _resize_axis(w, sizes[1], None, "width")
    else:
        assert scale_factor is not None
        f_h, f_w = _float_pair(scale_factor, "scale_factor")
        (ho, s_h), (wo, s_w) = _resize_axis(h, None, f_h, "height"), _resize_axis(w, None, f_w, "width")
    rows = nearest_source_indices(h, ho, s_h, coordinate_transformation_mode, nearest_mode)
    cols = nearest_source_indices(w, wo, s_w, coordinate_transformation_mode, nearest_mode)
    x = _as_float(x)
    y = x[:, rows][:, :, cols]
    return y, ResizeCache(rows, cols, (n, h, w, c), x.dtype)


def _scatter_add_axis(g: Array, index: Array, size: int, axis: int) -> Array:
    """out[..., k, ...] = sum of g[..., i, ...] over the i with index[i] == k (along ``axis``).

    The indices of nearest resizing never decrease, so each source index owns one run of consecutive
    positions: one ``add.reduceat`` over the runs, written to the distinct indices. Under another backend
    than NumPy, one scatter-add (:func:`cnnkit.backend.scatter_add`).
    """
    moved = xp.moveaxis(g, axis, 0)  # a view with the resized axis first
    out = xp.zeros((size, *moved.shape[1:]), dtype=g.dtype)
    if not _backend.IS_NUMPY:
        if index.size:
            _backend.scatter_add(out, xp.asarray(index), moved)
    elif index.size and bool(xp.all(index[1:] >= index[:-1])):
        starts = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), index[1:] != index[:-1]]))
        out[index[starts]] = xp.add.reduceat(moved, starts, axis=0)
    elif index.size:  # pragma: no cover - the coordinate maps are monotone; kept for safety
        _backend.scatter_add(out, index, moved)
    return xp.ascontiguousarray(xp.moveaxis(out, 0, axis))


def resize_nearest2d_backward(dy: Array, cache: ResizeCache) -> Array:
    """dx = the scatter-add of dy to the source pixels: each input pixel collects the gradients of every
    output pixel that copied it (none when downsampling skipped it). dy: (N, H_out, W_out, C) -> dx: (N, H, W, C).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.pool import resize_nearest2d_backward, resize_nearest2d_forward
    >>> y, cache = resize_nearest2d_forward(np.zeros((1, 1, 3, 1)), size=(1, 5), coordinate_transformation_mode="asymmetric",
    ...                                      nearest_mode="floor")
    >>> cache.cols  # x = 0, 0.6, 1.2, 1.8, 2.4 rounded down
    array([0, 0, 1, 1, 2])
    >>> resize_nearest2d_backward(np.ones((1, 1, 5, 1)), cache)[0, 0, :, 0]
    array([2., 2., 1.])
    """
    n, h, w, c = cache.x_shape
    _check_dy(dy, (n, len(cache.rows), len(cache.cols), c), "resize_nearest2d")
    g = dy.astype(cache.dtype, copy=False)
    return _scatter_add_axis(_scatter_add_axis(g, cache.rows, h, 1), cache.cols, w, 2)


# ---------------------------------------------------------------------------------------------
# global pooling
# ---------------------------------------------------------------------------------------------
def global_avg_pool2d_forward(x: Array) -> tuple[Array, tuple[int, ...]]:
    """Average of each channel over the whole image: (N, H, W, C) -> (N, 1, 1, C) (NIN's and ResNet's head).

    The backward spreads each dy evenly: dx = dy / (H W) at every pixel.

    Examples
    --------
    >>> import numpy as np
    >>> y, cache = global_avg_pool2d_forward(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    >>> y[0, 0, 0], global_avg_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0]
    (array([3., 4.], dtype=float32), array([[0.25, 0.25],
           [0.25, 0.25]], dtype=float32))
    """
    check_rank(x.shape, 4, "global_avg_pool2d")
    x = _as_float(x)
    return x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype), tuple(x.shape)


def global_avg_pool2d_backward(dy: Array, cache: tuple[int, ...]) -> Array:
    """dx (N, H, W, C) = dy / (H W) broadcast over the image."""
    n, h, w, c = cache
    _check_dy(dy, (n, 1, 1, c), "global_avg_pool2d")
    return xp.broadcast_to(dy / dy.dtype.type(h * w), cache).copy()


def global_max_pool2d_forward(x: Array) -> tuple[Array, tuple[Array, tuple[int, ...]]]:
    """Maximum of each channel over the whole image: (N, H, W, C) -> (N, 1, 1, C).

    The backward sends each dy to the first (row-major) position of its channel's maximum.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1, 5], [5, 2]], np.float32).reshape(1, 2, 2, 1)
    >>> y, cache = global_max_pool2d_forward(x)
    >>> float(y[0, 0, 0, 0]), global_max_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0]
    (5.0, array([[0., 1.],
           [0., 0.]], dtype=float32))
    """
    check_rank(x.shape, 4, "global_max_pool2d")
    x = _as_float(x)
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    arg = flat.argmax(axis=1)  # (N, C), the first maximum (NaN wins, as in max pooling)
    y = xp.take_along_axis(flat, arg[:, None, :], axis=1).reshape(n, 1, 1, c)
    return y, (arg, tuple(x.shape))


def global_max_pool2d_backward(dy: Array, cache: tuple[Array, tuple[int, ...]]) -> Array:
    """dx (N, H, W, C): dy at each channel's maximum, zero elsewhere."""
    arg, shape = cache
    n, h, w, c = shape
    _check_dy(dy, (n, 1, 1, c), "global_max_pool2d")
    dx = xp.zeros((n, h * w, c), dtype=dy.dtype)
    xp.put_along_axis(dx, arg[:, None, :], dy.reshape(n, 1, c), axis=1)
    return dx.reshape(shape)
