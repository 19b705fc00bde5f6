"""Convolution as im2row plus one matrix product, and its transpose (seed 000 §15.5; seed 002).

Forward (eq. 15.25):  vec(y) = vec(phi(x) F), with phi(x) (N*H_out*W_out, kh*kw*C_in) and
F = weight reshaped to (kh*kw*C_in, C_out).
Backward: dF = phi(x)^T dY (eq. 15.38); dX = row2im(dY F^T) (eq. 15.49); db = sum of dY over rows.

Groups split the input and output channels into ``groups`` independent convolutions; each is one
matrix product, done together as a batched ``matmul`` over the group axis (depthwise: groups = C_in).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank, pair, window
from cnnkit.ops.im2row import pad_nhwc, row2im, windows_view
from cnnkit.ops.workspace import Workspace, scratch

DEFAULT_WORKSPACE_LIMIT = 512 * 2**20
"""Default cap (bytes) on one convolution's im2row workspace phi(x); above it the batch is processed in chunks."""

# Evaluation forwards chunk phi(x) at this size so each chunk is still in cache when the GEMM reads it
# (faster than whole; docs/perf-notes.md); training keeps phi(x) whole for dW.
EVAL_CHUNK_BYTES = 16 * 2**20


@dataclass
class ConvCache:
    """What conv2d's backward needs: the rows phi(x) (or x itself when chunked), the weight, geometry.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32)
    >>> y, cache = conv2d_forward(A[None, :, :, None], np.ones((2, 2, 1, 1), np.float32))
    >>> cache.rows.shape, cache.win.out  # phi(A): 6 windows x (2*2*1) entries
    ((6, 4), (2, 3))
    """

    rows: Array | None  # (M, kh*kw*C_in), M = N*H_out*W_out; None when the forward ran in chunks
    x: Array | None  # the input, kept only when chunked (the backward rebuilds phi(x) chunk by chunk)
    weight: Array  # (kh, kw, C_in/groups, C_out)
    x_shape: tuple[int, int, int, int]
    win: Window
    groups: int
    has_bias: bool
    chunk: int  # images per chunk (N when not chunked)


def _check_conv_args(x: Array, weight: Array, bias: Array | None, groups: int, what: str) -> None:
    check_rank(x.shape, 4, what)
    if weight.ndim != 4:
        raise ShapeError(f"{what}: weight must be (kh, kw, C_in/groups, C_out), got shape {weight.shape}")
    c_in, (_, _, cg, c_out) = x.shape[3], weight.shape
    if groups < 1 or c_in % groups or c_out % groups:
        raise ShapeError(
            f"{what}: groups={groups} must divide both the input channels ({c_in}) and the output channels ({c_out})"
        )
    if cg * groups != c_in:
        raise ShapeError(
            f"{what}: input has {c_in} channels (shape {x.shape}) but the weight {weight.shape} expects "
            f"C_in/groups = {cg} with groups={groups}, i.e. {cg * groups} input channels"
        )
    if bias is not None and bias.shape != (c_out,):
        raise ShapeError(f"{what}: bias must have shape ({c_out},), got {bias.shape}")


def _grouped_matmul(rows: Array, w2: Array, groups: int, taps: int) -> Array:
    """rows (M, taps*C_in) @ block-diagonal weight -> (M, C_out).

    w2 is the weight reshaped to (taps*C_in/groups, C_out).
    """
    m = rows.shape[0]
    cg = rows.shape[1] // (taps * groups)
    og = w2.shape[1] // groups
    r = rows.reshape(m, taps, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, taps * cg)  # (g, M, taps*cg)
    wg = w2.reshape(taps * cg, groups, og).transpose(1, 0, 2)  # (g, taps*cg, og)
    y = xp.matmul(r, wg)  # (g, M, og)
    return y.transpose(1, 0, 2).reshape(m, groups * og)  # (M, C_out), channel = g*og + o


def _is_reshape(win: Window, x_shape: tuple[int, ...]) -> bool:
    """True when phi(x) is a plain reshape of x: a 1x1 kernel at stride 1, or one window covering the whole input."""
    if any(win.pads):
        return False
    if win.kernel == (1, 1) and win.stride == (1, 1):
        return True
    return win.out == (1, 1) and win.kernel == (x_shape[1], x_shape[2])


def _rows(x: Array, win: Window, ws: Workspace | None = None) -> Array:
    """phi(x) (N*H_out*W_out, kh*kw*C) for a resolved window; a view when no copy is needed.

    The copy goes into ``ws`` (reused memory) when a workspace is given.
    """
    if _is_reshape(win, x.shape):
        return x.reshape(x.shape[0] * win.out[0] * win.out[1], -1)  # (M, kh*kw*C), same memory order
    view = windows_view(pad_nhwc(x, win.pads), win)  # (N, Ho, Wo, kh, kw, C)
    n, ho, wo, kh, kw, c = view.shape
    out = scratch(ws, "rows", view.shape, x.dtype)
    xp.copyto(out, view)  # the one im2row copy
    return out.reshape(n * ho * wo, kh * kw * c)


def _colsum(a: Array) -> Array:
    """Column sums of a 2-D array as one matrix-vector product (faster than ``a.sum(0)`` for tall arrays)."""
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


def _rows_to_dx(drows: Array, x_shape: tuple[int, int, int, int], win: Window) -> Array:
    """row2im (eq. 15.49), or a reshape when phi(x) was one."""
    if _is_reshape(win, x_shape):
        return drows.reshape(x_shape)
    return row2im(drows, x_shape, win)


def _forward_rows(rows: Array, w2: Array, bias: Array | None, groups: int, taps: int) -> Array:
    y = rows @ w2 if groups == 1 else _grouped_matmul(rows, w2, groups, taps)  # (M, C_out)
    if bias is not None:
        y += bias
    return y


def conv2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    workspace_limit: int = DEFAULT_WORKSPACE_LIMIT,
    workspace: Workspace | None = None,
) -> tuple[Array, ConvCache]:
    """2-D convolution (cross-correlation, as every framework and the seed define it), eq. 15.25.

    x: (N, H, W, C_in); weight: (kh, kw, C_in/groups, C_out); bias: (C_out,) or None.
    Returns y: (N, H_out, W_out, C_out) and the cache for :func:`conv2d_backward`.
    When phi(x) for the whole batch would exceed ``workspace_limit`` bytes, the batch is processed in chunks
    of images (identical results; the backward then rebuilds phi(x) per chunk instead of keeping it).
    ``workspace`` (optional) provides reusable memory for phi(x); the cache refers to it, so the same
    workspace must not be used by another forward before this one's backward.

    Examples
    --------
    The seed's example (fig. 15.3, eq. 15.19): a 3 x 4 image convolved with a 2 x 2 kernel of ones.

    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32)
    >>> y, cache = conv2d_forward(A[None, :, :, None], np.ones((2, 2, 1, 1), np.float32))
    >>> y[0, :, :, 0]
    array([[12., 16., 11.],
           [24., 28., 17.]], dtype=float32)
    """
    _check_conv_args(x, weight, bias, groups, "conv2d")
    kh, kw, cg, c_out = weight.shape
    x = x.astype(weight.dtype, copy=False)
    win = window((x.shape[1], x.shape[2]), (kh, kw), stride, padding, dilation, what="conv2d")
    n, (ho, wo) = x.shape[0], win.out
    w2 = weight.reshape(kh * kw * cg, c_out)  # F of eq. 15.25
    per_image = ho * wo * kh * kw * x.shape[3] * x.dtype.itemsize
    chunk = n if _is_reshape(win, x.shape) else max(1, min(n, workspace_limit // max(per_image, 1)))
    if chunk >= n:
        rows = _rows(x, win, workspace)  # phi(x): (M, kh*kw*C_in)
        y = _forward_rows(rows, w2, bias, groups, kh * kw).reshape(n, ho, wo, c_out)
        return y, ConvCache(rows, None, weight, tuple(x.shape), win, groups, bias is not None, n)
    y = xp.empty((n, ho, wo, c_out), dtype=x.dtype)
    for s in range(0, n, chunk):
        xc = x[s : s + chunk]
        y[s : s + chunk] = _forward_rows(_rows(xc, win, workspace), w2, bias, groups, kh * kw).reshape(len(xc), ho, wo, c_out)
    return y, ConvCache(None, x, weight, tuple(x.shape), win, groups, bias is not None, chunk)


def _weight_grad(rows: Array, dy2: Array, w_shape: tuple[int, ...], groups: int) -> Array:
    """dF = phi(x)^T dY (eq. 15.38), per group."""
    if groups == 1:
        return (rows.T @ dy2).reshape(w_shape)
    kh, kw, cg, c_out = w_shape
    m, taps, og = dy2.shape[0], kh * kw, c_out // groups
    r = rows.reshape(m, taps, groups, cg).transpose(2, 1, 3, 0).reshape(groups, taps * cg, m)  # (g, taps*cg, M)
    d = dy2.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, og)
    return xp.matmul(r, d).transpose(1, 0, 2).reshape(w_shape)  # (taps*cg, g, og) -> (kh, kw, cg, C_out)


def _rows_grad(dy2: Array, w2: Array, w_shape: tuple[int, ...], groups: int, ws: Workspace | None = None) -> Array:
    """dphi(x) = dY F^T (the matrix that eq. 15.49 scatters back), per group: (M, kh*kw*C_in)."""
    if groups == 1:
        return xp.matmul(dy2, w2.T, out=scratch(ws, "drows", (dy2.shape[0], w2.shape[0]), dy2.dtype))
    kh, kw, cg, c_out = w_shape
    m, taps, og = dy2.shape[0], kh * kw, c_out // groups
    d = dy2.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, og)
    wg = w2.reshape(taps, cg, groups, og).transpose(2, 3, 0, 1).reshape(groups, og, taps * cg)  # F_g^T per group
    dr = xp.matmul(d, wg).reshape(groups, m, taps, cg)  # (g, M, taps, cg)
    return dr.transpose(1, 2, 0, 3).reshape(m, taps * groups * cg)  # column = tap*C_in + g*cg + c


def conv2d_backward(
    dy: Array, cache: ConvCache, need_dx: bool = True, workspace: Workspace | None = None
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of conv2d: returns ``(dx, dweight, dbias)``.

    dy: (N, H_out, W_out, C_out). dweight = phi(x)^T dY (eq. 15.38); dx = row2im(dY F^T) (eq. 15.49);
    dbias = dY summed over N, H_out, W_out (None without bias). ``need_dx=False`` skips dx (first layer).
    ``workspace`` (optional, not the forward's) provides reusable memory for dY F^T.

    Examples
    --------
    With dL/dy all ones (fig. 15.5), dx counts the windows that cover each pixel and dF sums each kernel tap's inputs.

    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_backward, conv2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32)
    >>> y, cache = conv2d_forward(A[None, :, :, None], np.ones((2, 2, 1, 1), np.float32))
    >>> dx, dweight, dbias = conv2d_backward(np.ones_like(y), cache)
    >>> dx[0, :, :, 0]
    array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]], dtype=float32)
    >>> dweight[:, :, 0, 0]
    array([[21., 18.],
           [39., 30.]], dtype=float32)
    """
    w = cache.weight
    kh, kw, cg, c_out = w.shape
    n = cache.x_shape[0]
    expected = (n, cache.win.out[0], cache.win.out[1], c_out)
    if tuple(dy.shape) != expected:
        raise ShapeError(f"conv2d backward: dy has shape {tuple(dy.shape)}, expected {expected}")
    dy = dy.astype(w.dtype, copy=False)
    w2 = w.reshape(kh * kw * cg, c_out)
    db = _colsum(dy.reshape(-1, c_out)) if cache.has_bias else None
    if cache.rows is not None:
        dy2 = dy.reshape(-1, c_out)  # dY: (M, C_out)
        dw = _weight_grad(cache.rows, dy2, w.shape, cache.groups)
        if not need_dx:
            return None, dw, db
        return _rows_to_dx(_rows_grad(dy2, w2, w.shape, cache.groups, workspace), cache.x_shape, cache.win), dw, db
    # chunked: rebuild phi(x) for each chunk of images
    x, chunk = cache.x, cache.chunk
    assert x is not None  # no rows kept: the forward kept x
    dw = xp.zeros(w.shape, dtype=w.dtype)
    dx = xp.empty(cache.x_shape, dtype=w.dtype) if need_dx else None
    for s in range(0, n, chunk):
        xc = x[s : s + chunk]
        dyc = dy[s : s + chunk].reshape(-1, c_out)
        dw += _weight_grad(_rows(xc, cache.win, workspace), dyc, w.shape, cache.groups)
        if dx is not None:
            drows = _rows_grad(dyc, w2, w.shape, cache.groups, workspace)
            dx[s : s + chunk] = _rows_to_dx(drows, tuple(xc.shape), cache.win)
    return dx, dw, db


@dataclass
class ConvTransposeCache:
    """What conv_transpose2d's backward needs.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv_transpose2d_forward
    >>> y, cache = conv_transpose2d_forward(np.ones((1, 2, 2, 3), np.float32), np.ones((2, 2, 3, 4), np.float32), stride=2)
    >>> cache.y_shape, cache.win.out  # the output, and the adjoint conv2d's output (= this input)
    ((1, 4, 4, 4), (2, 2))
    """

    x: Array  # (N, H, W, C_in)
    weight: Array  # (kh, kw, C_in, C_out)
    y_shape: tuple[int, int, int, int]
    win: Window  # geometry of the conv2d whose adjoint this is (its input is y)
    has_bias: bool


def conv_transpose_out_size(size: int, k: int, stride: int, padding: int, output_padding: int, dilation: int) -> int:
    """H_out = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1 (PyTorch's formula).

    Examples
    --------
    >>> from cnnkit.ops.conv import conv_transpose_out_size
    >>> conv_transpose_out_size(55, 11, 4, 0, 0, 1)  # undoes AlexNet's conv1 geometry, 227 -> 55
    227
    """
    return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def conv_transpose2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
) -> tuple[Array, ConvTransposeCache]:
    """Transposed ("fractionally strided") convolution: the adjoint of conv2d (seed 002).

    If conv2d with weight W' (kh, kw, C_out, C_in) maps an (H_out, W_out, C_out) image to (H, W, C_in),
    this maps x (N, H, W, C_in) to y (N, H_out, W_out, C_out) by y = row2im(x W'^T), where
    W' = weight.transpose(0, 1, 3, 2). weight: (kh, kw, C_in, C_out), PyTorch's (C_in, C_out, kh, kw)
    moved to the seed's order. H_out = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1.

    Examples
    --------
    A 2 x 2 kernel of ones at stride 2 copies each input pixel into a 2 x 2 block (H_out = (2-1)*2 + 2 = 4).

    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv_transpose2d_forward
    >>> x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    >>> y, cache = conv_transpose2d_forward(x, np.ones((2, 2, 1, 1), np.float32), stride=2)
    >>> y[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]], dtype=float32)
    """
    check_rank(x.shape, 4, "conv_transpose2d")
    if weight.ndim != 4 or weight.shape[2] != x.shape[3]:
        raise ShapeError(
            f"conv_transpose2d: weight must be (kh, kw, C_in, C_out) with C_in = {x.shape[3]} "
            f"(input shape {x.shape}); got weight shape {weight.shape}"
        )
    kh, kw, c_in, c_out = weight.shape
    if bias is not None and bias.shape != (c_out,):
        raise ShapeError(f"conv_transpose2d: bias must have shape ({c_out},), got {bias.shape}")
    s, p, op, d = pair(stride, "stride"), pair(padding, "padding"), pair(output_padding, "output_padding"), pair(dilation, "dilation")
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(op) < 0:
        raise ShapeError(f"conv_transpose2d: stride/dilation must be >= 1 and padding/output_padding >= 0; got {s}, {d}, {p}, {op}")
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ShapeError(f"conv_transpose2d: output_padding {op} must be smaller than stride {s} or dilation {d}")
    n, h, w_in, _ = x.shape
    ho = conv_transpose_out_size(h, kh, s[0], p[0], op[0], d[0])
    wo = conv_transpose_out_size(w_in, kw, s[1], p[1], op[1], d[1])
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"conv_transpose2d: input {x.shape} with kernel {kh}x{kw}, stride {s}, padding {p} gives an empty output {ho}x{wo}"
        )
    # geometry of the forward conv (y -> x); output_padding extends the bottom/right pads
    win = window((ho, wo), (kh, kw), s, ((p[0], p[0]), (p[1], p[1])), d, what="conv_transpose2d")
    # output_padding >= stride (allowed when < dilation) leaves floor(op/s) extra windows: drop them
    win = dataclasses.replace(win, out=(h, w_in))
    x = x.astype(weight.dtype, copy=False)
    wt = weight.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)  # (C_in, kh*kw*C_out)
    rows = x.reshape(-1, c_in) @ wt  # (N*H*W, kh*kw*C_out)
    y = row2im(rows, (n, ho, wo, c_out), win)
    if bias is not None:
        y += bias
    return y, ConvTransposeCache(x, weight, (n, ho, wo, c_out), win, bias is not None)


def conv_transpose2d_backward(dy: Array, cache: ConvTransposeCache) -> tuple[Array, Array, Array | None]:
    """Gradients of conv_transpose2d: ``(dx, dweight, dbias)``; dx is a plain conv2d of dy (the adjoint's adjoint).

    dy: (N, H_out, W_out, C_out) -> dx: (N, H, W, C_in), dweight: (kh, kw, C_in, C_out), dbias: (C_out,) or None.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv_transpose2d_backward, conv_transpose2d_forward
    >>> x = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    >>> y, cache = conv_transpose2d_forward(x, np.ones((2, 2, 1, 1), np.float32), stride=2)
    >>> dx, dweight, dbias = conv_transpose2d_backward(np.ones_like(y), cache)
    >>> dx[0, :, :, 0]
    array([[4., 4.],
           [4., 4.]], dtype=float32)
    >>> dweight[:, :, 0, 0]
    array([[10., 10.],
           [10., 10.]], dtype=float32)
    """
    if tuple(dy.shape) != cache.y_shape:
        raise ShapeError(f"conv_transpose2d backward: dy has shape {tuple(dy.shape)}, expected {cache.y_shape}")
    w = cache.weight
    kh, kw, c_in, c_out = w.shape
    dy = dy.astype(w.dtype, copy=False)
    view = windows_view(pad_nhwc(dy, cache.win.pads), cache.win)  # (N, H, W, kh, kw, C_out)
    m = cache.x.shape[0] * cache.x.shape[1] * cache.x.shape[2]
    drows = xp.ascontiguousarray(view).reshape(m, kh * kw * c_out)  # im2row(dy)
    wt = w.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)
    dx = (drows @ wt.T).reshape(cache.x.shape)
    dwt = cache.x.reshape(m, c_in).T @ drows  # (C_in, kh*kw*C_out)
    dw = dwt.reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)
    db = dy.sum(axis=(0, 1, 2)) if cache.has_bias else None
    return dx, xp.ascontiguousarray(dw), db
