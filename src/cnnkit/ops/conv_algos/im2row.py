"""The reference: im2row plus one matrix product (eq. 15.25), its transposes for the gradients (eqs. 15.38, 15.49).

Forward: vec(y) = vec(phi(x) F), phi(x) (N*H_out*W_out, kh*kw*C_in), F = weight reshaped (kh*kw*C_in, C_out).
Backward: dF = phi(x)^T dY (eq. 15.38); dX = row2im(dY F^T) (eq. 15.49).

Groups split the input and output channels into ``groups`` independent convolutions; each is one matrix
product, done together as a batched ``matmul`` over the group axis (depthwise: groups = C_in).

Two algorithms share this code: ``im2row`` builds phi(x) with NumPy's strided copy (the reference, what
``CNNKIT_CONV_ALGO=im2row`` forces) and ``im2row-jit`` with a compiled gather that pads on the fly
(:func:`cnnkit.jit.conv.im2row_gather`), which pays where NumPy's copy moves short runs (1 or 3 channels).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cnnkit import jit
from cnnkit.backend import Array, xp
from cnnkit.ops.conv_algos.base import Algorithm, ConvGeometry, images_per_chunk
from cnnkit.ops.geometry import Window
from cnnkit.ops.im2row import pad_nhwc, row2im, windows_view
from cnnkit.ops.workspace import Workspace, scratch

# The public names: the two algorithms. The functions below are the shared pieces of the reference, imported by
# name by cnnkit.ops.conv and the other algorithms, not an API of their own.
__all__ = ["Im2row", "Im2rowJit"]


def is_reshape(win: Window, x_shape: tuple[int, ...]) -> bool:
    """True when phi(x) is a plain reshape of x: a 1x1 kernel at stride 1, or one window covering the whole input."""
    if any(win.pads):
        return False
    if win.kernel == (1, 1) and win.stride == (1, 1):
        return True
    return win.out == (1, 1) and win.kernel == (x_shape[1], x_shape[2])


def build_rows(x: Array, win: Window, ws: Workspace | None = None, compiled: bool = False) -> Array:
    """phi(x) (N*H_out*W_out, kh*kw*C) for a resolved window; a view when no copy is needed.

    The copy goes into ``ws`` (reused memory) when a workspace is given; ``compiled`` uses the compiled gather
    (when numba is there and x is a float32/float64 NumPy array).
    """
    if is_reshape(win, x.shape):
        return x.reshape(x.shape[0] * win.out[0] * win.out[1], -1)  # (M, kh*kw*C), same memory order
    n, c = x.shape[0], x.shape[3]
    (ho, wo), (kh, kw) = win.out, win.kernel
    if compiled and jit.usable(x) and conv_kernels() is not None:
        out = scratch(ws, "rows", (n * ho * wo, kh * kw * c), x.dtype)
        t, _, l, _ = win.pads
        _gather()(xp.ascontiguousarray(x), out, win.kernel, win.stride, win.dilation, (t, l), win.out)
        return out
    view = windows_view(pad_nhwc(x, win.pads), win)  # (N, Ho, Wo, kh, kw, C)
    out = scratch(ws, "rows", view.shape, x.dtype)
    xp.copyto(out, view)  # the one im2row copy
    return out.reshape(n * ho * wo, kh * kw * c)


def conv_kernels() -> Any:
    """:mod:`cnnkit.jit.conv` when its kernels exist and apply (numba, the NumPy backend), else None."""
    if not jit.active():
        return None
    from cnnkit.jit import conv as kernels

    return kernels


def _gather() -> Any:
    kernels = conv_kernels()
    assert kernels is not None and kernels.im2row_gather is not None
    return kernels.im2row_gather


def grouped_matmul(rows: Array, w2: Array, groups: int, taps: int) -> Array:
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


def colsum(a: Array) -> Array:
    """Column sums of a 2-D array as one matrix-vector product (faster than ``a.sum(0)`` for tall arrays)."""
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


def rows_to_dx(drows: Array, x_shape: tuple[int, int, int, int], win: Window) -> Array:
    """row2im (eq. 15.49), or a reshape when phi(x) was one."""
    if is_reshape(win, x_shape):
        return drows.reshape(x_shape)
    return row2im(drows, x_shape, win)


def forward_rows(rows: Array, w2: Array, bias: Array | None, groups: int, taps: int, out: Array | None = None) -> Array:
    """phi(x) F (+ bias): (M, C_out), into ``out`` when given (groups = 1)."""
    if groups == 1:
        y = xp.matmul(rows, w2, out=out) if out is not None else rows @ w2
    else:
        y = grouped_matmul(rows, w2, groups, taps)
        if out is not None:
            out[...] = y
            y = out
    if bias is not None:
        y += bias
    return y


def weight_grad(rows: Array, dy2: Array, w_shape: tuple[int, ...], groups: int) -> Array:
    """dF = phi(x)^T dY (eq. 15.38), per group."""
    if groups == 1:
        return (rows.T @ dy2).reshape(w_shape)
    kh, kw, cg, c_out = w_shape
    m, taps, og = dy2.shape[0], kh * kw, c_out // groups
    r = rows.reshape(m, taps, groups, cg).transpose(2, 1, 3, 0).reshape(groups, taps * cg, m)  # (g, taps*cg, M)
    d = dy2.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, og)
    return xp.matmul(r, d).transpose(1, 0, 2).reshape(w_shape)  # (taps*cg, g, og) -> (kh, kw, cg, C_out)


def rows_grad(dy2: Array, w2: Array, w_shape: tuple[int, ...], groups: int, ws: Workspace | None = None) -> Array:
    """dphi(x) = dY F^T (the matrix that eq. 15.49 scatters back), per group: (M, kh*kw*C_in)."""
    if groups == 1:
        return xp.matmul(dy2, w2.T, out=scratch(ws, "drows", (dy2.shape[0], w2.shape[0]), dy2.dtype))
    kh, kw, cg, c_out = w_shape
    m, taps, og = dy2.shape[0], kh * kw, c_out // groups
    d = dy2.reshape(m, groups, og).transpose(1, 0, 2)  # (g, M, og)
    wg = w2.reshape(taps, cg, groups, og).transpose(2, 3, 0, 1).reshape(groups, og, taps * cg)  # F_g^T per group
    dr = xp.matmul(d, wg).reshape(groups, m, taps, cg)  # (g, M, taps, cg)
    return dr.transpose(1, 2, 0, 3).reshape(m, taps * groups * cg)  # column = tap*C_in + g*cg + c


def backward_from_rows(rows: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, ws: Workspace | None
                       ) -> tuple[Array | None, Array]:
    """(dX, dW) of one chunk from its phi(x) and dY (eqs. 15.38 and 15.49)."""
    kh, kw, cg, c_out = weight.shape
    dy2 = dy.reshape(-1, c_out)  # dY: (M, C_out)
    dw = weight_grad(rows, dy2, weight.shape, g.groups)
    if not need_dx:
        return None, dw
    w2 = weight.reshape(kh * kw * cg, c_out)
    x_shape = (dy.shape[0], *g.x_shape[1:])
    # dX must not live in ``ws`` (it outlives this call): when phi(x) was a reshape, dX is dY F^T itself
    drows_ws = None if is_reshape(g.win, x_shape) else ws
    return rows_to_dx(rows_grad(dy2, w2, weight.shape, g.groups, drows_ws), x_shape, g.win), dw


class Im2row(Algorithm):
    """phi(x) then one matrix product, in chunks of images whose phi(x) fits the chunk budget.

    Examples
    --------
    The chunks change nothing: a budget of one image's phi(x) gives the bits of the whole batch at once.

    >>> import numpy as np
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.im2row import Im2row
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((3, 3, 2, 5))
    >>> g = geometry(x.shape, w.shape, padding=1, dtype="float64")
    >>> alg = Im2row()
    >>> y = alg.forward(x, w, None, g, 2**20, None)
    >>> y.shape, alg.per_image_bytes(g)  # 36 rows of 3*3*2 float64 per image
    ((4, 6, 6, 5), 5184)
    >>> bool((alg.forward(x, w, None, g, alg.per_image_bytes(g), None) == y).all())
    True
    >>> dx, dw = alg.backward(x, np.ones_like(y), w, g, True, 2**20, None)
    >>> dx.shape, dw.shape
    ((4, 6, 6, 2), (3, 3, 2, 5))
    """

    name: ClassVar[str] = "im2row"
    summary: ClassVar[str] = "im2row (NumPy strided copy) + one GEMM; the reference (eq. 15.25)"
    compiled: ClassVar[bool] = False

    def supports(self, g: ConvGeometry) -> bool:
        return True

    def per_image_bytes(self, g: ConvGeometry) -> int:
        return g.rows_bytes // g.x_shape[0]

    def forward(self, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, chunk_bytes: int, ws: Any) -> Array:
        kh, kw, cg, c_out = weight.shape
        w2 = weight.reshape(kh * kw * cg, c_out)  # F of eq. 15.25
        n, (ho, wo) = x.shape[0], g.win.out
        if is_reshape(g.win, x.shape):
            return forward_rows(build_rows(x, g.win), w2, bias, g.groups, kh * kw).reshape(n, ho, wo, c_out)
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        y = xp.empty((n, ho, wo, c_out), dtype=x.dtype)
        y2 = y.reshape(n * ho * wo, c_out)
        for s in range(0, n, chunk):
            xc = x[s : s + chunk]
            rows = build_rows(xc, g.win, ws, self.compiled)
            forward_rows(rows, w2, bias, g.groups, kh * kw, out=y2[s * ho * wo : (s + len(xc)) * ho * wo])
        return y

    def backward(self, x: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, chunk_bytes: int, ws: Any
                 ) -> tuple[Array | None, Array]:
        n = x.shape[0]
        if is_reshape(g.win, x.shape):
            return backward_from_rows(build_rows(x, g.win), dy, weight, g, need_dx, ws)
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        dw = None
        dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None
        for s in range(0, n, chunk):
            xc = x[s : s + chunk]
            dxc, dwc = backward_from_rows(build_rows(xc, g.win, ws, self.compiled), dy[s : s + chunk], weight, g, need_dx, ws)
            dw = dwc if dw is None else dw + dwc
            if dx is not None:
                dx[s : s + chunk] = dxc
        assert dw is not None
        return dx, dw


class Im2rowJit(Im2row):
    """As :class:`Im2row`, with phi(x) built by the compiled gather (numba).

    Examples
    --------
    Not for a 1x1 kernel (phi(x) is x); without numba, not at all, and ``algo="im2row-jit"`` runs the reference:

    >>> import numpy as np
    >>> from cnnkit import jit
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.im2row import Im2rowJit
    >>> Im2rowJit().supports(geometry((2, 8, 8, 3), (3, 3, 3, 4))) == jit.HAVE_NUMBA
    True
    >>> Im2rowJit().supports(geometry((2, 8, 8, 3), (1, 1, 3, 4)))
    False
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 8, 8, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    >>> ref, _ = conv2d_forward(x, w, None, stride=2, padding=1)
    >>> y, _ = conv2d_forward(x, w, None, stride=2, padding=1, algo="im2row-jit")
    >>> y.shape, bool(np.allclose(y, ref, atol=1e-5))
    ((2, 4, 4, 4), True)
    """

    name: ClassVar[str] = "im2row-jit"
    summary: ClassVar[str] = "im2row by a compiled gather (padding on the fly) + one GEMM"
    compiled: ClassVar[bool] = True

    def supports(self, g: ConvGeometry) -> bool:
        return jit.active() and g.dtype in ("float32", "float64") and not is_reshape(g.win, g.x_shape)
