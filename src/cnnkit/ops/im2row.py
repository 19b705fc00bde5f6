"""im2row and its adjoint row2im, in NHWC (seed 000, §15.5.3, eqs. 15.21-15.24).

``im2row`` copies every receptive field of the (padded, dilated, strided) input into one row of a
matrix phi(x), so that a convolution becomes one matrix product (eq. 15.25). The copy is a single
vectorised gather through a strided view: no Python loop touches pixels or output positions.

Row and column order. The seed indexes phi(x) MATLAB-style (column-major, eqs. 15.21/15.22). cnnkit
keeps NHWC memory order instead: row ``p = (n*H_out + i_out)*W_out + j_out`` and column
``q = (i*kw + j)*C + d``, which matches a weight tensor of shape (kh, kw, C, D) reshaped to
(kh*kw*C, D). It is the same linear map with permuted rows and columns; ``cnnkit.textbook`` builds
the seed's exact ordering and the tests check that the two agree.

``row2im`` is the adjoint of ``im2row``: it sums every entry of a row matrix back into the input
position it was copied from (the one-to-many map m^{-1} of eq. 15.49). It loops only over the
kh*kw kernel offsets, each a vectorised strided add.
"""

from __future__ import annotations

from cnnkit import jit
from cnnkit.backend import Array, as_strided, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank, window


def pad_nhwc(x: Array, pads: tuple[int, int, int, int], value: float = 0.0) -> Array:
    """Pad the two spatial axes of an NHWC array by ``(top, bottom, left, right)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.im2row import pad_nhwc
    >>> x = np.ones((1, 2, 2, 1))
    >>> pad_nhwc(x, (1, 0, 0, 1))[0, :, :, 0]
    array([[0., 0., 0.],
           [1., 1., 0.],
           [1., 1., 0.]])
    """
    t, b, l, r = pads
    if t == b == l == r == 0:
        return x
    return xp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode="constant", constant_values=value)


def windows_view(xp_padded: Array, win: Window) -> Array:
    """A read-only strided view (N, H_out, W_out, kh, kw, C) of every window of a padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.geometry import window
    >>> from cnnkit.ops.im2row import windows_view
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]]).reshape(1, 3, 4, 1)
    >>> view = windows_view(A, window((3, 4), 2))
    >>> view.shape
    (1, 2, 3, 2, 2, 1)
    >>> view[0, 1, 1, :, :, 0]  # the window at output (1, 1)
    array([[5, 6],
           [8, 9]])
    """
    n, _, _, c = xp_padded.shape
    s_n, s_h, s_w, s_c = xp_padded.strides
    (sh, sw), (dh, dw) = win.stride, win.dilation
    shape = (n, win.out[0], win.out[1], win.kernel[0], win.kernel[1], c)
    strides = (s_n, sh * s_h, sw * s_w, dh * s_h, dw * s_w, s_c)
    return as_strided(xp_padded, shape=shape, strides=strides, writeable=False)


def im2row(
    x: Array,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    pad_value: float = 0.0,
    what: str = "im2row",
) -> tuple[Array, Window]:
    """phi(x): the im2row expansion of eq. 15.25 for a batch.

    x: (N, H, W, C). Returns ``(rows, window)`` with rows shaped (N*H_out*W_out, kh*kw*C) and the
    resolved :class:`Window` geometry (needed by :func:`row2im`).

    Examples
    --------
    The seed's A with a 2 x 2 kernel: the rows hold the same windows as B^T = im2col(A, [2 2])^T (§15.5.3),
    listed row-major (NHWC) instead of column-major.

    >>> import numpy as np
    >>> from cnnkit.ops.im2row import im2row
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]]).reshape(1, 3, 4, 1)
    >>> rows, win = im2row(A, 2)
    >>> win.out
    (2, 3)
    >>> rows
    array([[1, 2, 4, 5],
           [2, 3, 5, 6],
           [3, 1, 6, 1],
           [4, 5, 7, 8],
           [5, 6, 8, 9],
           [6, 1, 9, 1]])
    """
    check_rank(x.shape, 4, what)
    win = window((x.shape[1], x.shape[2]), kernel_size, stride, padding, dilation, what=what)
    view = windows_view(pad_nhwc(x, win.pads, pad_value), win)  # (N, Ho, Wo, kh, kw, C)
    n, ho, wo, kh, kw, c = view.shape
    rows = xp.ascontiguousarray(view).reshape(n * ho * wo, kh * kw * c)  # one copy
    return rows, win


def row2im(rows: Array, x_shape: tuple[int, int, int, int], win: Window, use_jit: bool = True) -> Array:
    """Adjoint of :func:`im2row` (eq. 15.49): scatter-add rows back into an (N, H, W, C) array.

    rows: (N*H_out*W_out, kh*kw*C) or already shaped (N, H_out, W_out, kh, kw, C).
    Entries that came from padding are dropped. ``use_jit=False`` forces the NumPy scatter even when the
    compiled kernel (numba) is available.

    Examples
    --------
    Scattering all-ones rows back counts how many windows use each pixel (fig. 15.5: the 5 is in four).

    >>> import numpy as np
    >>> from cnnkit.ops.im2row import im2row, row2im
    >>> rows, win = im2row(np.zeros((1, 3, 4, 1)), 2)
    >>> row2im(np.ones_like(rows), (1, 3, 4, 1), win)[0, :, :, 0]
    array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]])
    """
    n, h, w, c = x_shape
    (ho, wo), (kh, kw) = win.out, win.kernel
    expected = n * ho * wo * kh * kw * c
    if rows.size != expected:
        raise ShapeError(
            f"row2im: got rows of shape {rows.shape} ({rows.size} entries); expected "
            f"(N*H_out*W_out, kh*kw*C) = ({n * ho * wo}, {kh * kw * c}) for input {x_shape} and window {win}"
        )
    cols = rows.reshape(n, ho, wo, kh, kw, c)
    hp, wp = win.padded_hw
    out = xp.zeros((n, hp, wp, c), dtype=rows.dtype)
    (sh, sw), (dh, dw) = win.stride, win.dilation
    if use_jit and jit.usable(out):
        assert jit.row2im_add is not None  # usable(): numba is there, so is the kernel
        jit.row2im_add(xp.ascontiguousarray(cols), out, sh, sw, dh, dw)
    else:
        _row2im_numpy(cols, out, win)
    t, b, l, r = win.pads
    if t == b == l == r == 0:
        return out
    return xp.ascontiguousarray(out[:, t : t + h, l : l + w, :])


def _row2im_numpy(cols: Array, out: Array, win: Window) -> None:
    """The NumPy scatter: kh*kw vectorised strided adds (the reference for the compiled kernel)."""
    _, ho, wo, kh, kw, _ = cols.shape
    (sh, sw), (dh, dw) = win.stride, win.dilation
    for i in range(kh):
        hi = i * dh
        for j in range(kw):
            wj = j * dw
            out[:, hi : hi + sh * (ho - 1) + 1 : sh, wj : wj + sw * (wo - 1) + 1 : sw, :] += cols[:, :, :, i, j, :]
