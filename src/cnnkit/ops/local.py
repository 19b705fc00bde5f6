"""Locally connected 2-D layer: a convolution without weight sharing (seed 002, "局部连接层",
Locally-Connected Layer).

Every output position p = (i, j) has its own kernel F_p (kh*kw*C_in, C_out) and its own bias b_p, so
with phi(x) the im2row rows of eq. 15.25 (seed 000) grouped by position::

    y[n, p, :] = phi(x)[n, p, :] F_p + b_p                      (one matrix product per position)
    dF_p = phi(x)[:, p, :]^T dY[:, p, :]                        (eq. 15.38 per position)
    dX = row2im(dY_p F_p^T stacked over p)                      (eq. 15.49)
    db_p = sum_n dY[n, p, :]

The P = H_out*W_out products run as one batched ``matmul`` over the position axis; rows and
gradients are read and written through transposed views, so no position is touched by Python.
Weight (H_out, W_out, kh, kw, C_in, C_out); bias (H_out, W_out, C_out).
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError, StateError
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank
from cnnkit.ops.im2row import im2row, row2im


@dataclass
class LocalCache:
    """What locally_connected2d's backward needs.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.local import locally_connected2d_forward
    >>> y, cache = locally_connected2d_forward(np.ones((2, 3, 4, 1)), np.ones((2, 3, 2, 2, 1, 5)))
    >>> cache.rows.shape  # (N, P = H_out*W_out, K = kh*kw*C_in)
    (2, 6, 4)
    """

    rows: Array  # (N, P, K): im2row rows grouped by position, K = kh*kw*C_in
    weight: Array  # (H_out, W_out, kh, kw, C_in, C_out)
    x_shape: tuple[int, int, int, int]
    win: Window
    has_bias: bool


def locally_connected2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
) -> tuple[Array, LocalCache]:
    """Unshared convolution. x: (N, H, W, C_in); weight: (H_out, W_out, kh, kw, C_in, C_out);
    bias: (H_out, W_out, C_out) or None. Returns y (N, H_out, W_out, C_out) and the cache.

    The geometry (stride, padding incl. "same", dilation) is conv2d's; (H_out, W_out) it produces must
    equal weight.shape[:2].

    Examples
    --------
    With every position's kernel all ones it is the seed's convolution (eq. 15.19); then the kernel at
    position (0, 0) alone is doubled.

    >>> import numpy as np
    >>> from cnnkit.ops.local import locally_connected2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float64).reshape(1, 3, 4, 1)
    >>> weight = np.ones((2, 3, 2, 2, 1, 1))  # (H_out, W_out, kh, kw, C_in, C_out)
    >>> weight[0, 0] *= 2
    >>> y, cache = locally_connected2d_forward(A, weight)
    >>> y[0, :, :, 0]
    array([[24., 16., 11.],
           [24., 28., 17.]])
    """
    check_rank(x.shape, 4, "locally_connected2d")
    if weight.ndim != 6:
        raise ShapeError(
            f"locally_connected2d: weight must be (H_out, W_out, kh, kw, C_in, C_out), got shape {tuple(weight.shape)}"
        )
    ho, wo, kh, kw, c_in, c_out = weight.shape
    if x.shape[3] != c_in:
        raise ShapeError(
            f"locally_connected2d: input has {x.shape[3]} channels (shape {tuple(x.shape)}) but the weight "
            f"{tuple(weight.shape)} expects C_in = {c_in}"
        )
    x = x.astype(weight.dtype, copy=False)
    rows, win = im2row(x, (kh, kw), stride, padding, dilation)  # (N*P, K)
    if win.out != (ho, wo):
        raise ShapeError(
            f"locally_connected2d: input {tuple(x.shape)} with kernel {kh}x{kw}, stride {win.stride}, pads "
            f"{win.pads} gives a {win.out[0]}x{win.out[1]} output, but the weight {tuple(weight.shape)} has "
            f"kernels for {ho}x{wo} positions"
        )
    if bias is not None and tuple(bias.shape) != (ho, wo, c_out):
        raise ShapeError(f"locally_connected2d: bias must have shape {(ho, wo, c_out)}, got {tuple(bias.shape)}")
    n, p, k = x.shape[0], ho * wo, kh * kw * c_in
    rows = rows.reshape(n, p, k)  # (N, P, K)
    w3 = weight.reshape(p, k, c_out)  # F_p stacked: (P, K, C_out)
    y = xp.empty((n, p, c_out), dtype=weight.dtype)
    xp.matmul(rows.transpose(1, 0, 2), w3, out=y.transpose(1, 0, 2))  # (P, N, K) @ (P, K, C_out) -> (P, N, C_out)
    if bias is not None:
        y += bias.reshape(p, c_out)
    cache = LocalCache(rows, weight, tuple(x.shape), win, bias is not None)
    return y.reshape(n, ho, wo, c_out), cache


def locally_connected2d_backward(
    dy: Array, cache: LocalCache, need_dx: bool = True
) -> tuple[Array | None, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)``: dF_p = phi_p^T dY_p, dX = row2im(dY_p F_p^T), db_p = sum_n dY_p.

    dy: (N, H_out, W_out, C_out) -> dx: (N, H, W, C_in) (None when ``need_dx=False``), dweight:
    (H_out, W_out, kh, kw, C_in, C_out), dbias: (H_out, W_out, C_out) or None (eqs. 15.38 and 15.49 per position).

    Examples
    --------
    Each position's kernel gradient is its own window of the input (with dL/dy = 1).

    >>> import numpy as np
    >>> from cnnkit.ops.local import locally_connected2d_backward, locally_connected2d_forward
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float64).reshape(1, 3, 4, 1)
    >>> y, cache = locally_connected2d_forward(A, np.ones((2, 3, 2, 2, 1, 1)), np.zeros((2, 3, 1)))
    >>> dx, dweight, dbias = locally_connected2d_backward(np.ones_like(y), cache)
    >>> dweight[1, 1, :, :, 0, 0]  # position (1, 1)
    array([[5., 6.],
           [8., 9.]])
    """
    if cache is None:
        raise StateError("locally_connected2d backward called before forward")
    w = cache.weight
    ho, wo, kh, kw, c_in, c_out = w.shape
    n = cache.x_shape[0]
    expected = (n, ho, wo, c_out)
    if tuple(dy.shape) != expected:
        raise ShapeError(f"locally_connected2d backward: dy has shape {tuple(dy.shape)}, expected {expected}")
    p, k = ho * wo, kh * kw * c_in
    dy3 = dy.astype(w.dtype, copy=False).reshape(n, p, c_out)  # (N, P, C_out)
    dy_p = dy3.transpose(1, 0, 2)  # (P, N, C_out)
    dw = xp.matmul(cache.rows.transpose(1, 2, 0), dy_p)  # (P, K, N) @ (P, N, C_out) -> (P, K, C_out)
    db = dy3.sum(axis=0).reshape(ho, wo, c_out) if cache.has_bias else None
    if not need_dx:
        return None, dw.reshape(w.shape), db
    drows = xp.empty((n, p, k), dtype=w.dtype)
    w3 = w.reshape(p, k, c_out)
    xp.matmul(dy_p, w3.transpose(0, 2, 1), out=drows.transpose(1, 0, 2))  # (P, N, C_out) @ (P, C_out, K)
    dx = row2im(drows, cache.x_shape, cache.win)
    return dx, dw.reshape(w.shape), db
