"""Convolution as im2row plus one matrix product, and its transpose (seed 000 §15.5; seed 002).

Forward (eq. 15.25):  vec(y) = vec(phi(x) F), with phi(x) (N*H_out*W_out, kh*kw*C_in) and
F = weight reshaped to (kh*kw*C_in, C_out).
Backward: dF = phi(x)^T dY (eq. 15.38); dX = row2im(dY F^T) (eq. 15.49); db = sum of dY over rows.

Groups split the input and output channels into ``groups`` independent convolutions; each is one
matrix product, done together as a batched ``matmul`` over the group axis (depthwise: groups = C_in).

That is the reference. The same function can be computed by other algorithms (:mod:`cnnkit.ops.conv_algos`:
Winograd, FFT, direct loops, a compiled im2row): ``algo`` names one, ``"auto"`` lets the planner time the
candidates and keep the fastest, and the default is the reference (or what ``CNNKIT_CONV_ALGO`` forces).

Memory for the backward pass: the reference keeps phi(x) when it is small (at most ``KEEP_ROWS_BYTES``, or a
plain reshape of x) and otherwise keeps x and rebuilds phi(x) chunk by chunk in the backward pass; the other
algorithms always keep x only (docs/perf-notes.md has the time this costs and the memory it saves).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from cnnkit import backend as _backend
from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.conv_algos import ConvGeometry, get
from cnnkit.ops.conv_algos import planner as _planner
from cnnkit.ops.conv_algos.base import images_per_chunk
from cnnkit.ops.conv_algos.im2row import (
    Im2row,
    backward_from_rows,
    build_rows,
    colsum,
    forward_rows,
    grouped_matmul,
    is_reshape,
    rows_grad,
    rows_to_dx,
    weight_grad,
)
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank, pair, resolve_padding, window
from cnnkit.ops.im2row import pad_nhwc, row2im, windows_view
from cnnkit.ops.workspace import Workspace, transient

DEFAULT_WORKSPACE_LIMIT = 512 * 2**20
"""Default cap (bytes) on one convolution's im2row workspace phi(x); above it the batch is processed in chunks."""

# Evaluation forwards chunk phi(x) at this size so each chunk is still in cache when the GEMM reads it
# (faster than whole; docs/perf-notes.md); so do training forwards that keep x rather than phi(x).
EVAL_CHUNK_BYTES = 16 * 2**20

KEEP_ROWS_BYTES = 16 * 2**20
"""Training keeps phi(x) for the backward pass when it is at most this large (else x, and phi(x) is rebuilt)."""

BACKWARD_CHUNK_BYTES = 32 * 2**20
"""Chunk (bytes of phi(x) or of an algorithm's temporaries) in which a backward pass that rebuilds them runs."""

# the helpers' old private names, for code that imported them from here
_grouped_matmul, _is_reshape, _colsum, _rows_to_dx, _forward_rows = grouped_matmul, is_reshape, colsum, rows_to_dx, forward_rows
_weight_grad, _rows_grad = weight_grad, rows_grad


def _rows(x: Array, win: Window, ws: Workspace | None = None) -> Array:
    """phi(x) (N*H_out*W_out, kh*kw*C) by NumPy's copy; a view when no copy is needed."""
    return build_rows(x, win, ws)


@dataclass
class ConvCache:
    """What conv2d's backward needs: the rows phi(x) or the input x, the weight, the geometry, the algorithm.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32)
    >>> y, cache = conv2d_forward(A[None, :, :, None], np.ones((2, 2, 1, 1), np.float32))
    >>> cache.rows.shape, cache.win.out, cache.algo  # phi(A): 6 windows x (2*2*1) entries
    ((6, 4), (2, 3), 'im2row')
    """

    rows: Array | None  # (M, kh*kw*C_in), M = N*H_out*W_out; None when x is kept instead
    x: Array | None  # the input, kept when phi(x) is not (the backward rebuilds what it needs from it)
    weight: Array  # (kh, kw, C_in/groups, C_out)
    x_shape: tuple[int, int, int, int]
    win: Window
    groups: int
    has_bias: bool
    chunk: int  # images per chunk of the forward (N when not chunked)
    algo: str = "im2row"  # the algorithm that ran the forward (and runs the backward)
    workspace_limit: int = DEFAULT_WORKSPACE_LIMIT  # the forward's cap on temporaries, kept by the backward


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


def keeps_rows(g: ConvGeometry, workspace_limit: int = DEFAULT_WORKSPACE_LIMIT) -> bool:
    """Whether a training forward of the reference keeps phi(x) (else x): phi(x) is x reshaped, or small.

    Examples
    --------
    >>> from cnnkit.ops.conv import keeps_rows
    >>> from cnnkit.ops.conv_algos import geometry
    >>> keeps_rows(geometry((100, 12, 12, 20), (5, 5, 20, 50)))  # BASE conv2: phi(x) 12.8 MB
    True
    >>> keeps_rows(geometry((64, 32, 32, 64), (3, 3, 64, 64), padding=1))  # 151 MB, 9 x the input
    False
    """
    if is_reshape(g.win, g.x_shape):
        return True
    return g.rows_bytes <= min(KEEP_ROWS_BYTES, workspace_limit)


def resolve_algo(algo: str | None, g: ConvGeometry, mode: str = "train") -> str:
    """The algorithm that runs: ``None`` is the reference unless ``CNNKIT_CONV_ALGO`` forces another; ``"auto"``
    asks the planner; a name is used where it applies and falls back to ``im2row`` elsewhere. Under a backend
    other than NumPy (:mod:`cnnkit.backend`) it is always ``im2row``: the others are CPU algorithms (compiled
    kernels, NumPy-only constants) that were neither written nor measured for a GPU.

    Examples
    --------
    >>> from cnnkit.ops.conv import resolve_algo
    >>> from cnnkit.ops.conv_algos import geometry
    >>> g = geometry((1, 8, 8, 2), (5, 5, 2, 3))
    >>> resolve_algo("winograd4", g), resolve_algo("fft", g)  # Winograd takes 3x3 kernels only
    ('im2row', 'fft')
    """
    if not _backend.IS_NUMPY:
        return "im2row"
    if algo is None or algo == "auto":
        forced = _planner.forced()
        if forced is not None:
            algo = forced
        elif algo is None:
            return "im2row"
        else:
            return _planner.choose(g, mode)
    return algo if get(algo).supports(g) else "im2row"


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
    *,
    algo: str | None = None,
    keep_rows: bool | None = None,
) -> tuple[Array, ConvCache]:
    """2-D convolution (cross-correlation, as every framework and the seed define it), eq. 15.25.

    x: (N, H, W, C_in); weight: (kh, kw, C_in/groups, C_out); bias: (C_out,) or None.
    Returns y: (N, H_out, W_out, C_out) and the cache for :func:`conv2d_backward`.
    When phi(x) for the whole batch would exceed ``workspace_limit`` bytes, the batch is processed in chunks
    of images (identical results; the backward then rebuilds phi(x) per chunk instead of keeping it).
    ``workspace`` (optional) provides reusable memory for a phi(x) that the cache keeps, so the same
    workspace must not be used by another forward before this one's backward; temporaries come from
    :func:`cnnkit.ops.workspace.transient`.
    ``algo``: None (the reference, or what ``CNNKIT_CONV_ALGO`` forces), ``"auto"`` (the planner's choice for
    training) or an algorithm of :mod:`cnnkit.ops.conv_algos` (the reference where it does not apply).
    ``keep_rows``: whether the reference keeps phi(x) rather than x for the backward pass (None: when phi(x)
    is small, :func:`keeps_rows`).

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
    g = ConvGeometry(tuple(x.shape), tuple(weight.shape), win, groups, x.dtype.name)
    name = resolve_algo(algo, g)
    alg = get(name)
    n, (ho, wo) = x.shape[0], win.out
    per_image = max(1, g.rows_bytes // n)
    if isinstance(alg, Im2row):
        keep = keeps_rows(g, workspace_limit) if keep_rows is None else keep_rows
        if is_reshape(win, x.shape) or (keep and g.rows_bytes <= workspace_limit):
            rows = build_rows(x, win, workspace, alg.compiled)  # phi(x): (M, kh*kw*C_in), kept for dW
            w2 = weight.reshape(kh * kw * cg, c_out)  # F of eq. 15.25
            y = forward_rows(rows, w2, bias, groups, kh * kw).reshape(n, ho, wo, c_out)
            return y, ConvCache(rows, None, weight, g.x_shape, win, groups, bias is not None, n, name, workspace_limit)
    # x is kept: the forward's phi(x) (or the algorithm's temporaries) are transient, in cache-sized chunks,
    # except that keep_rows=True with a phi(x) over the limit chunks at the limit (the old behaviour)
    limit = workspace_limit if keep_rows else min(workspace_limit, EVAL_CHUNK_BYTES)
    y = alg.forward(x, weight, bias, g, limit, transient())
    chunk = images_per_chunk(n, per_image, limit)
    return y, ConvCache(None, x, weight, g.x_shape, win, groups, bias is not None, chunk, name, workspace_limit)


def conv2d_backward(
    dy: Array, cache: ConvCache, need_dx: bool = True, workspace: Workspace | None = None
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of conv2d: returns ``(dx, dweight, dbias)``.

    dy: (N, H_out, W_out, C_out). dweight = phi(x)^T dY (eq. 15.38); dx = row2im(dY F^T) (eq. 15.49);
    dbias = dY summed over N, H_out, W_out (None without bias). ``need_dx=False`` skips dx (first layer).
    The algorithm of the forward computes the same gradients its own way. ``workspace`` (optional, not the
    forward's) provides memory for the temporaries (default: :func:`cnnkit.ops.workspace.transient`).

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
    c_out = w.shape[3]
    n = cache.x_shape[0]
    expected = (n, cache.win.out[0], cache.win.out[1], c_out)
    if tuple(dy.shape) != expected:
        raise ShapeError(f"conv2d backward: dy has shape {tuple(dy.shape)}, expected {expected}")
    dy = dy.astype(w.dtype, copy=False)
    ws = workspace if workspace is not None else transient()
    db = colsum(dy.reshape(-1, c_out)) if cache.has_bias else None
    g = ConvGeometry(cache.x_shape, tuple(w.shape), cache.win, cache.groups, w.dtype.name)
    if cache.rows is not None:
        dx, dw = backward_from_rows(cache.rows, dy, w, g, need_dx, ws)
        return dx, dw, db
    x = cache.x
    assert x is not None  # no rows kept: the forward kept x
    dx, dw = get(cache.algo).backward(x, dy, w, g, need_dx, min(cache.workspace_limit, BACKWARD_CHUNK_BYTES), ws)
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
    weight: Array  # (kh, kw, C_in, C_out/groups)
    y_shape: tuple[int, int, int, int]
    win: Window  # geometry of the conv2d whose adjoint this is (its input is y)
    has_bias: bool
    groups: int = 1


def conv_transpose_out_size(
    size: int, k: int, stride: int, padding: int, output_padding: int, dilation: int, padding_end: int | None = None
) -> int:
    """H_out = (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1 (PyTorch's formula).

    With ``padding_end`` the pads are asymmetric (ONNX's pads begin/end): ``padding`` is removed from the
    start and ``padding_end`` from the end of the full output, H_out = (H-1)*stride - padding - padding_end
    + dilation*(k-1) + output_padding + 1.

    Examples
    --------
    >>> from cnnkit.ops.conv import conv_transpose_out_size
    >>> conv_transpose_out_size(55, 11, 4, 0, 0, 1)  # undoes AlexNet's conv1 geometry, 227 -> 55
    227
    >>> conv_transpose_out_size(3, 3, 2, 0, 0, 1, padding_end=1)  # ONNX's test_convtranspose_pads-like: 7 - 0 - 1
    6
    """
    end = padding if padding_end is None else padding_end
    return (size - 1) * stride - padding - end + dilation * (k - 1) + output_padding + 1


def conv_transpose_pads(padding: IntPair | Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
    """A transposed convolution's padding as (top, bottom, left, right): an int, (ph, pw) or ((top, bottom), (left, right)).

    The pads crop the full output (they are the padding of the adjoint conv2d): ONNX's ConvTranspose
    pads [top, left, bottom, right] are ``((top, bottom), (left, right))`` here.

    Examples
    --------
    >>> from cnnkit.ops.conv import conv_transpose_pads
    >>> conv_transpose_pads(1), conv_transpose_pads((1, 2)), conv_transpose_pads(((0, 1), (2, 0)))
    ((1, 1, 1, 1), (1, 1, 2, 2), (0, 1, 2, 0))
    """
    if isinstance(padding, str):
        raise ShapeError(f"conv_transpose2d: padding must be an int, (ph, pw) or ((top, bottom), (left, right)), got {padding!r}")
    pads = resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1))  # explicit pads: the geometry does not matter
    return pads


def _check_conv_transpose_args(x: Array, weight: Array, bias: Array | None, groups: int) -> tuple[int, int]:
    """Validate; return (C_in, C_out)."""
    check_rank(x.shape, 4, "conv_transpose2d")
    if weight.ndim != 4 or weight.shape[2] != x.shape[3]:
        layout = "(kh, kw, C_in, C_out)" if groups == 1 else "(kh, kw, C_in, C_out/groups)"
        raise ShapeError(
            f"conv_transpose2d: weight must be {layout} with C_in = {x.shape[3]} "
            f"(input shape {x.shape}); got weight shape {weight.shape}"
        )
    if isinstance(groups, bool) or int(groups) != groups or groups < 1 or x.shape[3] % groups:
        raise ShapeError(f"conv_transpose2d: groups={groups!r} must be a positive integer dividing the input channels ({x.shape[3]})")
    c_in, c_out = int(x.shape[3]), int(weight.shape[3]) * int(groups)
    if bias is not None and bias.shape != (c_out,):
        raise ShapeError(f"conv_transpose2d: bias must have shape ({c_out},), got {bias.shape}")
    return c_in, c_out


def conv_transpose2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: IntPair | Sequence[Sequence[int]] = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[Array, ConvTransposeCache]:
    """Transposed ("fractionally strided") convolution: the adjoint of conv2d (seed 002).

    If conv2d with weight W' (kh, kw, C_out, C_in) maps an (H_out, W_out, C_out) image to (H, W, C_in),
    this maps x (N, H, W, C_in) to y (N, H_out, W_out, C_out) by y = row2im(x W'^T), where
    W' = weight.transpose(0, 1, 3, 2). weight: (kh, kw, C_in, C_out/groups), PyTorch's and ONNX's
    (C_in, C_out/groups, kh, kw) moved to the seed's order. H_out = (H-1)*stride - top - bottom +
    dilation*(k-1) + output_padding + 1.

    ``padding``: an int, (ph, pw), or ((top, bottom), (left, right)) for ONNX's asymmetric pads; the pads
    crop the full output at the start and the end. ``output_padding`` adds rows/columns at the bottom/right
    (it must be smaller than the stride or the dilation). ``groups`` splits the channels into independent
    transposed convolutions: input channels [g*C_in/groups, (g+1)*C_in/groups) feed output channels
    [g*C_out/groups, (g+1)*C_out/groups), as in PyTorch and ONNX.

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

    Asymmetric pads crop the full 4 x 4 output: one row at the top, one column at the right.

    >>> conv_transpose2d_forward(x, np.ones((2, 2, 1, 1), np.float32), stride=2, padding=((1, 0), (0, 1)))[0][0, :, :, 0]
    array([[1., 1., 2.],
           [3., 3., 4.],
           [3., 3., 4.]], dtype=float32)
    """
    c_in, c_out = _check_conv_transpose_args(x, weight, bias, groups)
    kh, kw, _, og = weight.shape
    s, op, d = pair(stride, "stride"), pair(output_padding, "output_padding"), pair(dilation, "dilation")
    t, b, l, r = conv_transpose_pads(padding)
    if min(s) < 1 or min(d) < 1 or min(op) < 0:
        raise ShapeError(
            f"conv_transpose2d: stride/dilation must be >= 1 and padding/output_padding >= 0; got {s}, {d}, {(t, b, l, r)}, {op}"
        )
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ShapeError(f"conv_transpose2d: output_padding {op} must be smaller than stride {s} or dilation {d}")
    n, h, w_in, _ = x.shape
    ho = conv_transpose_out_size(h, kh, s[0], t, op[0], d[0], b)
    wo = conv_transpose_out_size(w_in, kw, s[1], l, op[1], d[1], r)
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"conv_transpose2d: input {x.shape} with kernel {kh}x{kw}, stride {s}, padding {(t, b, l, r)} gives an empty output {ho}x{wo}"
        )
    # geometry of the forward conv (y -> x); output_padding extends the bottom/right pads
    win = window((ho, wo), (kh, kw), s, ((t, b), (l, r)), d, what="conv_transpose2d")
    # output_padding >= stride (allowed when < dilation) leaves floor(op/s) extra windows: drop them
    win = dataclasses.replace(win, out=(h, w_in))
    x = x.astype(weight.dtype, copy=False)
    if groups == 1:
        wt = weight.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)  # (C_in, kh*kw*C_out)
        rows = x.reshape(-1, c_in) @ wt  # (N*H*W, kh*kw*C_out)
    else:
        m, cg, taps = n * h * w_in, c_in // groups, kh * kw
        xg = x.reshape(m, groups, cg).transpose(1, 0, 2)  # (g, M, C_in/g)
        rows = xp.matmul(xg, _group_weight(weight, groups))  # (g, M, taps*og)
        rows = rows.reshape(groups, m, taps, og).transpose(1, 2, 0, 3).reshape(m, taps * c_out)  # channel = g*og + o
    y = row2im(rows, (n, ho, wo, c_out), win)
    if bias is not None:
        y += bias
    return y, ConvTransposeCache(x, weight, (n, ho, wo, c_out), win, bias is not None, int(groups))


def _group_weight(weight: Array, groups: int) -> Array:
    """(kh, kw, C_in, og) -> per group (g, C_in/g, kh*kw*og): the matrix that maps a group's input channels to its rows."""
    kh, kw, c_in, og = weight.shape
    cg = c_in // groups
    return weight.reshape(kh * kw, groups, cg, og).transpose(1, 2, 0, 3).reshape(groups, cg, kh * kw * og)


def conv_transpose2d_backward(dy: Array, cache: ConvTransposeCache) -> tuple[Array, Array, Array | None]:
    """Gradients of conv_transpose2d: ``(dx, dweight, dbias)``; dx is a plain conv2d of dy (the adjoint's adjoint).

    dy: (N, H_out, W_out, C_out) -> dx: (N, H, W, C_in), dweight: (kh, kw, C_in, C_out/groups), dbias: (C_out,) or None.
    With groups, each group's dx and dweight come from its own channels of dy (one batched product per group).

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
    kh, kw, c_in, og = w.shape
    groups = cache.groups
    c_out = og * groups
    dy = dy.astype(w.dtype, copy=False)
    view = windows_view(pad_nhwc(dy, cache.win.pads), cache.win)  # (N, H, W, kh, kw, C_out)
    m = cache.x.shape[0] * cache.x.shape[1] * cache.x.shape[2]
    drows = xp.ascontiguousarray(view).reshape(m, kh * kw * c_out)  # im2row(dy)
    db = dy.sum(axis=(0, 1, 2)) if cache.has_bias else None
    if groups == 1:
        wt = w.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)
        dx = (drows @ wt.T).reshape(cache.x.shape)
        dwt = cache.x.reshape(m, c_in).T @ drows  # (C_in, kh*kw*C_out)
        dw = dwt.reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)
        return dx, xp.ascontiguousarray(dw), db
    cg, taps = c_in // groups, kh * kw
    dr = drows.reshape(m, taps, groups, og).transpose(2, 0, 1, 3).reshape(groups, m, taps * og)  # (g, M, taps*og)
    wg = _group_weight(w, groups)  # (g, C_in/g, taps*og)
    dx = xp.matmul(dr, wg.transpose(0, 2, 1))  # (g, M, C_in/g)
    dx = dx.transpose(1, 0, 2).reshape(cache.x.shape)
    xg = cache.x.reshape(m, groups, cg).transpose(1, 2, 0)  # (g, C_in/g, M)
    dwg = xp.matmul(xg, dr).reshape(groups, cg, taps, og)  # (g, C_in/g, taps, og)
    dw = dwg.transpose(2, 0, 1, 3).reshape(kh, kw, c_in, og)  # input channel = g*cg + c
    return dx, xp.ascontiguousarray(dw), db
