"""The seed's convolution, written exactly as chapter 15 writes it (seed 000, §15.5.3-15.5.7).

This is the *reference and teaching path*: one image, stride 1, no padding, MATLAB's column-major
ordering everywhere, and loops where the text sums over a set. It exists so that every equation of
§15.5 can be executed and checked on small numbers. The fast path is :mod:`cnnkit.ops.conv` (with
:mod:`cnnkit.ops.im2row`), which computes the *same linear map* on NHWC batches with the rows and
columns of phi(x) permuted into row-major memory order (see :func:`nhwc_order`); the test-suite
checks that the two agree.

Notation (table 15.1 of the seed):

* the input x^l is a 3rd-order tensor (H^l, W^l, D^l), indexed by (i^l, j^l, d^l);
* the filters f are a 4th-order tensor (H, W, D^l, D), indexed by (i, j, d^l, d), the same memory
  layout as a cnnkit conv weight (kh, kw, C_in, C_out);
* the output y = x^{l+1} is (H^{l+1}, W^{l+1}, D) with H^{l+1} = H^l - H + 1, W^{l+1} = W^l - W + 1;
* vec() stacks columns (MATLAB's ``A(:)``): the first index runs fastest, so for the input
  u = i^l + H^l j^l + H^l W^l d^l;
* phi(x^l) is the im2row matrix (H^{l+1} W^{l+1}) x (H W D^l) whose entry (p, q) is a copy of
  x^l[i^l, j^l, d^l] with (eqs. 15.21-15.24)

      p = i^{l+1} + H^{l+1} j^{l+1},   q = i + H j + H W d^l,   i^l = i^{l+1} + i,   j^l = j^{l+1} + j;

* F = the (H W D^l) x D matrix whose column d is vec(f[:, :, :, d]); Y = the (H^{l+1} W^{l+1}) x D
  matrix with vec(Y) = vec(y).

Then vec(y) = vec(phi(x) F) (eq. 15.25), dL/dF = phi(x)^T dL/dY (eq. 15.38) and dL/dX is the sum of
the entries of dL/dY F^T over the one-to-many map m^{-1} (eq. 15.49).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError

Index = int | Array
IndexT = TypeVar("IndexT", int, Array)
"""An index of the maps below: ints in, ints out; integer arrays in (broadcast), arrays out."""


# ---------------------------------------------------------------------------------------------
# vec and its inverse
# ---------------------------------------------------------------------------------------------
def vec(a: Array) -> Array:
    """Column-major vectorisation (MATLAB's ``a(:)``): vec([[1, 2], [3, 4]]) = (1, 3, 2, 4)^T.

    Works for any order of tensor; the first index runs fastest. Returns a 1-D array.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import vec
    >>> vec(np.array([[1, 2], [3, 4]]))
    array([1, 3, 2, 4])
    """
    return xp.asarray(a).reshape(-1, order="F")


def unvec(v: Array, shape: Sequence[int]) -> Array:
    """Inverse of :func:`vec`: fold a vector back into ``shape`` in column-major order.

    Examples
    --------
    Eq. 15.20's vector, "reshaped appropriately", is the convolution result of eq. 15.19:

    >>> from cnnkit.textbook import unvec
    >>> unvec([12, 24, 16, 28, 11, 17], (2, 3))
    array([[12, 16, 11],
           [24, 28, 17]])
    """
    v = xp.asarray(v)
    shape = tuple(int(s) for s in shape)
    if v.size != int(xp.prod(shape)):
        raise ShapeError(f"unvec: a vector of {v.size} entries (shape {v.shape}) cannot fill shape {shape}")
    return v.reshape(shape, order="F")


# ---------------------------------------------------------------------------------------------
# index maps, eqs. 15.21-15.24, and the one-to-many inverse m^{-1}
# ---------------------------------------------------------------------------------------------
def _geometry(in_shape: Sequence[int], kernel_hw: Sequence[int]) -> tuple[int, int, int, int, int, int, int]:
    """(H^l, W^l, D^l, H, W, H^{l+1}, W^{l+1}) for a stride-1, unpadded convolution."""
    if len(in_shape) == 2:
        in_shape = (in_shape[0], in_shape[1], 1)
    if len(in_shape) != 3 or len(kernel_hw) != 2:
        raise ShapeError(
            f"expected an input shape (H^l, W^l[, D^l]) and a kernel size (H, W); got {tuple(in_shape)} and {tuple(kernel_hw)}"
        )
    hl, wl, dl = (int(s) for s in in_shape)
    h, w = (int(s) for s in kernel_hw)
    if h < 1 or w < 1 or h > hl or w > wl:
        raise ShapeError(f"kernel {h}x{w} must be at least 1x1 and fit inside the input {hl}x{wl}")
    return hl, wl, dl, h, w, hl - h + 1, wl - w + 1


def row_index(i_out: IndexT, j_out: IndexT, out_h: int) -> IndexT:
    """Eq. 15.21: p = i^{l+1} + H^{l+1} j^{l+1}, the row of phi(x) of output position (i^{l+1}, j^{l+1}).

    Examples
    --------
    The six windows of fig. 15.3 (a 2 x 3 output) in the column order of B: (0, 0), (1, 0), (0, 1), ...

    >>> from cnnkit.textbook import row_index
    >>> [row_index(i, j, 2) for j in range(3) for i in range(2)]
    [0, 1, 2, 3, 4, 5]
    """
    return i_out + out_h * j_out


def split_row_index(p: IndexT, out_h: int) -> tuple[IndexT, IndexT]:
    """Inverse of eq. 15.21: (i^{l+1}, j^{l+1}) = (p mod H^{l+1}, p div H^{l+1}).

    Examples
    --------
    >>> from cnnkit.textbook import split_row_index
    >>> split_row_index(3, 2)  # the 4th window of fig. 15.3 is at output (1, 1)
    (1, 1)
    """
    return p % out_h, p // out_h


def col_index(i: IndexT, j: IndexT, d: IndexT, kernel_hw: Sequence[int]) -> IndexT:
    """Eq. 15.22: q = i + H j + H W d^l, the column of phi(x) of kernel entry (i, j, d^l).

    Examples
    --------
    >>> from cnnkit.textbook import col_index
    >>> col_index(1, 0, 0, (2, 2)), col_index(0, 1, 0, (2, 2)), col_index(1, 1, 2, (2, 2))
    (1, 2, 11)
    """
    h, w = kernel_hw
    return i + h * j + h * w * d


def split_col_index(q: IndexT, kernel_hw: Sequence[int]) -> tuple[IndexT, IndexT, IndexT]:
    """Inverse of eq. 15.22: q div HW gives the channel d^l, the remainder gives (i, j) inside the kernel.

    Examples
    --------
    >>> from cnnkit.textbook import split_col_index
    >>> split_col_index(11, (2, 2))  # (i, j, d^l)
    (1, 1, 2)
    """
    h, w = kernel_hw
    d, r = q // (h * w), q % (h * w)
    return r % h, r // h, d


def m_map(p: IndexT, q: IndexT, in_shape: Sequence[int], kernel_hw: Sequence[int]) -> tuple[IndexT, IndexT, IndexT]:
    """The one-to-one map m: (p, q) -> (i^l, j^l, d^l) of §15.5.6 (eqs. 15.21-15.24).

    ``p``/``q`` may be ints or broadcastable integer arrays.

    Examples
    --------
    Fig. 15.5: entry (p, q) = (2, 3) of B^T (1-based) is a copy of the input's 5, at (1, 1):

    >>> import numpy as np
    >>> from cnnkit.textbook import m_map
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> il, jl, dl = m_map(1, 2, A.shape, (2, 2))
    >>> (il, jl, dl), int(A[il, jl])
    ((1, 1, 0), 5)
    """
    _, _, _, h, w, ho, _ = _geometry(in_shape, kernel_hw)
    i_out, j_out = split_row_index(p, ho)
    i, j, d = split_col_index(q, (h, w))
    return i_out + i, j_out + j, d  # eqs. 15.23, 15.24


def m_inverse(il: int, jl: int, dl: int, in_shape: Sequence[int], kernel_hw: Sequence[int]) -> list[tuple[int, int]]:
    """The one-to-many inverse m^{-1}(i^l, j^l, d^l): every (p, q) of phi(x) that copies x^l[i^l, j^l, d^l].

    It has at most H W elements: one per kernel offset (i, j) whose output position
    (i^{l+1}, j^{l+1}) = (i^l - i, j^l - j) lies inside the output. Sorted by p.

    Examples
    --------
    Fig. 15.5: the 5 at (1, 1) takes part in the convolutions p = 1, 2, 3, 4 (1-based); a corner in one.

    >>> from cnnkit.textbook import m_inverse
    >>> m_inverse(1, 1, 0, (3, 4), (2, 2))
    [(0, 3), (1, 2), (2, 1), (3, 0)]
    >>> m_inverse(0, 0, 0, (3, 4), (2, 2))
    [(0, 0)]
    """
    hl, wl, dlen, h, w, ho, wo = _geometry(in_shape, kernel_hw)
    if not (0 <= il < hl and 0 <= jl < wl and 0 <= dl < dlen):
        raise ShapeError(f"m_inverse: index ({il}, {jl}, {dl}) is outside the input {(hl, wl, dlen)}")
    pairs = []
    for j in range(w):
        for i in range(h):
            i_out, j_out = il - i, jl - j
            if 0 <= i_out < ho and 0 <= j_out < wo:
                pairs.append((int(row_index(i_out, j_out, ho)), int(col_index(i, j, dl, (h, w)))))
    return sorted(pairs)


def indicator_matrix(in_shape: Sequence[int], kernel_hw: Sequence[int], dtype=None) -> Array:
    """The indicator matrix M of eq. 15.39, (H^{l+1} W^{l+1} H W D^l) x (H^l W^l D^l).

    Row (p, q) is numbered p + H^{l+1} W^{l+1} q (the vec order of phi(x)); column (i^l, j^l, d^l)
    is numbered i^l + H^l j^l + H^l W^l d^l (the vec order of x^l). vec(phi(x)) = M vec(x) (eq. 15.40).
    Dense: only for small cases.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import im2row, indicator_matrix, vec
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> M = indicator_matrix(A.shape, (2, 2))
    >>> M.shape, bool(np.array_equal(M @ vec(A), vec(im2row(A, (2, 2)))))  # eq. 15.40
    ((24, 12), True)
    """
    hl, wl, dlen, h, w, ho, wo = _geometry(in_shape, kernel_hw)
    n_p, n_q = ho * wo, h * w * dlen
    p, q = xp.meshgrid(xp.arange(n_p), xp.arange(n_q), indexing="ij")  # (n_p, n_q) each
    il, jl, dl = m_map(p, q, (hl, wl, dlen), (h, w))
    rows = vec(p + n_p * q)
    cols = vec(il + hl * jl + hl * wl * dl)
    m = xp.zeros((n_p * n_q, hl * wl * dlen), dtype=dtype or xp.float64)
    m[rows, cols] = 1
    return m


# ---------------------------------------------------------------------------------------------
# im2col / im2row (phi) and the filter matrix F
# ---------------------------------------------------------------------------------------------
def im2row(x: Array, kernel_hw: Sequence[int]) -> Array:
    """phi(x^l): the seed's im2row matrix (H^{l+1} W^{l+1}) x (H W D^l) (eqs. 15.21-15.24).

    x: (H^l, W^l, D^l) or a single-channel (H^l, W^l). Entry (p, q) = x[m(p, q)]; within a row the
    channels are stacked one after the other, each unrolled column-major.

    Examples
    --------
    The seed's A with a 2 x 2 kernel: phi(A) = B^T (§15.5.3).

    >>> import numpy as np
    >>> from cnnkit.textbook import im2row
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> im2row(A, (2, 2))
    array([[1, 4, 2, 5],
           [4, 7, 5, 8],
           [2, 5, 3, 6],
           [5, 8, 6, 9],
           [3, 6, 1, 1],
           [6, 9, 1, 1]])
    """
    x = xp.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ShapeError(f"im2row: expected one image (H^l, W^l, D^l) or (H^l, W^l), got shape {x.shape}")
    _, _, dlen, h, w, ho, wo = _geometry(x.shape, kernel_hw)
    p, q = xp.meshgrid(xp.arange(ho * wo), xp.arange(h * w * dlen), indexing="ij")
    il, jl, dl = m_map(p, q, x.shape, (h, w))
    return x[il, jl, dl]  # (H^{l+1} W^{l+1}, H W D^l), a gather through the map m


def im2col(a: Array, kernel_hw: Sequence[int]) -> Array:
    """MATLAB/Octave ``im2col(A, [H W])`` ('sliding'): the transpose of :func:`im2row`.

    For a 2-D A (H^l, W^l) this returns the (H W) x (H^{l+1} W^{l+1}) matrix B of §15.5.3, whose
    column p is the window at (i^{l+1}, j^{l+1}) unrolled column-major. For a 3-D input the channels
    are stacked (H W D^l rows), i.e. phi(x)^T.

    Examples
    --------
    The MATLAB example of §15.5.3, ``B = im2col(A, [2 2])``:

    >>> import numpy as np
    >>> from cnnkit.textbook import im2col
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> im2col(A, (2, 2))
    array([[1, 4, 2, 5, 3, 6],
           [4, 7, 5, 8, 6, 9],
           [2, 5, 3, 6, 1, 1],
           [5, 8, 6, 9, 1, 1]])
    """
    return im2row(a, kernel_hw).T


def filter_matrix(f: Array) -> Array:
    """F of eq. 15.25: the (H W D^l) x D matrix whose column d is vec(f[:, :, :, d]).

    f: (H, W, D^l, D), or (H, W) / (H, W, D^l) for a single filter.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import filter_matrix
    >>> f = np.arange(8).reshape(2, 2, 1, 2)  # two 2 x 2 single-channel filters
    >>> filter_matrix(f)  # column d = vec(f[:, :, :, d])
    array([[0, 1],
           [4, 5],
           [2, 3],
           [6, 7]])
    """
    f = xp.asarray(f)
    if f.ndim == 2:
        f = f[:, :, None, None]
    elif f.ndim == 3:
        f = f[:, :, :, None]
    if f.ndim != 4:
        raise ShapeError(f"filter_matrix: expected filters (H, W, D^l, D), got shape {f.shape}")
    h, w, dl, d = f.shape
    return f.reshape(h * w * dl, d, order="F")


def unfilter_matrix(fmat: Array, kernel_shape: Sequence[int]) -> Array:
    """Inverse of :func:`filter_matrix`: the (H W D^l) x D matrix back to filters (H, W, D^l, D).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import filter_matrix, unfilter_matrix
    >>> f = np.arange(24).reshape(2, 3, 2, 2)
    >>> bool(np.array_equal(unfilter_matrix(filter_matrix(f), f.shape), f))
    True
    """
    return unvec(vec(fmat), kernel_shape)


# ---------------------------------------------------------------------------------------------
# forward and backward, eqs. 15.25, 15.38, 15.49
# ---------------------------------------------------------------------------------------------
def _as_image(x: Array) -> Array:
    x = xp.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ShapeError(f"expected one image (H^l, W^l, D^l) or (H^l, W^l), got shape {x.shape}")
    return x


def _as_filters(f: Array, channels: int) -> Array:
    f = xp.asarray(f)
    if f.ndim == 2:
        f = f[:, :, None, None]
    elif f.ndim == 3:
        f = f[:, :, :, None]
    if f.ndim != 4 or f.shape[2] != channels:
        raise ShapeError(f"expected filters (H, W, D^l={channels}, D), got shape {f.shape}")
    return f


def conv_forward_textbook(x: Array, f: Array) -> Array:
    """y = x * f by eq. 15.25: vec(y) = vec(phi(x) F).

    x: (H^l, W^l, D^l) (or 2-D); f: (H, W, D^l, D) (or (H, W) for one single-channel filter).
    Returns y: (H^{l+1}, W^{l+1}, D). Equals eq. 15.16 (a cross-correlation, no kernel flip).

    Examples
    --------
    Fig. 15.3 / eq. 15.19:

    >>> import numpy as np
    >>> from cnnkit.textbook import conv_forward_textbook
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> conv_forward_textbook(A, np.ones((2, 2)))[:, :, 0]
    array([[12., 16., 11.],
           [24., 28., 17.]])
    """
    x = _as_image(x)
    f = _as_filters(f, x.shape[2])
    _, _, _, h, w, ho, wo = _geometry(x.shape, f.shape[:2])
    y_mat = im2row(x, (h, w)) @ filter_matrix(f)  # Y: (H^{l+1} W^{l+1}, D)
    return unvec(vec(y_mat), (ho, wo, f.shape[3]))


def conv_backward_textbook(x: Array, f: Array, dy: Array) -> tuple[Array, Array]:
    """(dL/dx, dL/df) for y = x * f, given dL/dy.

    dL/dF = phi(x)^T dL/dY (eq. 15.38); dL/dX[i^l, j^l, d^l] = sum over (p, q) in m^{-1}(i^l, j^l, d^l)
    of [dL/dY F^T]_{(p, q)} (eq. 15.49), evaluated literally with a loop (reference, not fast).
    x: (H^l, W^l, D^l); f: (H, W, D^l, D); dy: (H^{l+1}, W^{l+1}, D). Returns dx like x, df like f.

    Examples
    --------
    With dL/dy all ones, dL/dA counts the windows over each pixel (fig. 15.5) and dL/dF sums each tap's inputs.

    >>> import numpy as np
    >>> from cnnkit.textbook import conv_backward_textbook
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> dx, df = conv_backward_textbook(A, np.ones((2, 2)), np.ones((2, 3, 1)))
    >>> dx[:, :, 0]
    array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]])
    >>> df[:, :, 0, 0]
    array([[21., 18.],
           [39., 30.]])
    """
    x = _as_image(x)
    f = _as_filters(f, x.shape[2])
    hl, wl, dlen, h, w, ho, wo = _geometry(x.shape, f.shape[:2])
    d = f.shape[3]
    dy = xp.asarray(dy)
    if dy.shape != (ho, wo, d):
        raise ShapeError(f"conv_backward_textbook: dy has shape {dy.shape}, expected {(ho, wo, d)}")
    dy_mat = unvec(vec(dy), (ho * wo, d))  # dL/dY: (H^{l+1} W^{l+1}, D)
    fmat = filter_matrix(f)  # F: (H W D^l, D)
    df = unfilter_matrix(im2row(x, (h, w)).T @ dy_mat, f.shape)  # eq. 15.38
    g = dy_mat @ fmat.T  # dL/dY F^T: (H^{l+1} W^{l+1}, H W D^l)
    dx = xp.zeros(x.shape, dtype=g.dtype)
    for dl in range(dlen):
        for jl in range(wl):
            for il in range(hl):
                dx[il, jl, dl] = sum(g[p, q] for p, q in m_inverse(il, jl, dl, x.shape, (h, w)))  # eq. 15.49
    return dx, df


# ---------------------------------------------------------------------------------------------
# Kronecker products, eqs. 15.26-15.30
# ---------------------------------------------------------------------------------------------
def kron(a: Array, b: Array) -> Array:
    """A ⊗ B built from its block definition (eq. 15.26): block (r, c) is a_{rc} B; shape (mp, nq).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import kron
    >>> kron(np.array([[1, 2]]), np.array([[1, 1], [1, -1]]))  # blocks 1*B and 2*B
    array([[ 1,  1,  2,  2],
           [ 1, -1,  2, -2]])
    """
    a, b = xp.asarray(a), xp.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"kron: expected two matrices, got shapes {a.shape} and {b.shape}")
    (m, n), (p, q) = a.shape, b.shape
    out = xp.zeros((m * p, n * q), dtype=xp.result_type(a, b))
    for r in range(m):
        for c in range(n):
            out[r * p : (r + 1) * p, c * q : (c + 1) * q] = a[r, c] * b
    return out


def vec_product_matrix(a: Array, b: Array) -> Array:
    """The matrix B^T ⊗ A of eq. 15.28, which maps vec(X) to vec(A X B).

    Examples
    --------
    Eq. 15.28, vec(A X B) = (B^T ⊗ A) vec(X):

    >>> import numpy as np
    >>> from cnnkit.textbook import vec, vec_product_matrix
    >>> rng = np.random.default_rng(0)
    >>> a, x, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    >>> bool(np.allclose(vec(a @ x @ b), vec_product_matrix(a, b) @ vec(x)))
    True
    """
    return kron(xp.asarray(b).T, a)


def conv_matrix_of_filters(x: Array, kernel_hw: Sequence[int], out_channels: int) -> Array:
    """I ⊗ phi(x) of eq. 15.29 (I is D x D): vec(y) = (I ⊗ phi(x)) vec(F), linear in the filters.

    Examples
    --------
    Eq. 15.29 on the seed's example gives the vector of eq. 15.20:

    >>> import numpy as np
    >>> from cnnkit.textbook import conv_matrix_of_filters, filter_matrix, vec
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> conv_matrix_of_filters(A, (2, 2), 1) @ vec(filter_matrix(np.ones((2, 2))))
    array([12., 24., 16., 28., 11., 17.])
    """
    return kron(xp.eye(out_channels), im2row(x, kernel_hw))


def conv_matrix_of_rows(f: Array, out_hw: Sequence[int]) -> Array:
    """F^T ⊗ I of eq. 15.30 (I is H^{l+1}W^{l+1} square): vec(y) = (F^T ⊗ I) vec(phi(x)).

    Examples
    --------
    Eq. 15.30 on the seed's example gives the vector of eq. 15.20:

    >>> import numpy as np
    >>> from cnnkit.textbook import conv_matrix_of_rows, im2row, vec
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> conv_matrix_of_rows(np.ones((2, 2)), (2, 3)) @ vec(im2row(A, (2, 2)))
    array([12., 24., 16., 28., 11., 17.])
    """
    ho, wo = out_hw
    return kron(filter_matrix(f).T, xp.eye(ho * wo))


def conv_jacobian_x(f: Array, in_shape: Sequence[int]) -> Array:
    """d vec(y) / d vec(x)^T = (F^T ⊗ I) M of eq. 15.41: the whole convolution as one (dense) matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import conv_jacobian_x, vec
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> J = conv_jacobian_x(np.ones((2, 2)), A.shape)  # (H^{l+1} W^{l+1} D) x (H^l W^l D^l)
    >>> J.shape, J @ vec(A)
    ((6, 12), array([12., 24., 16., 28., 11., 17.]))
    """
    f = xp.asarray(f)
    _, _, _, _, _, ho, wo = _geometry(in_shape, f.shape[:2])
    return conv_matrix_of_rows(f, (ho, wo)) @ indicator_matrix(in_shape, f.shape[:2])


# ---------------------------------------------------------------------------------------------
# link to the fast NHWC path
# ---------------------------------------------------------------------------------------------
def nhwc_order(out_hw: Sequence[int], kernel_hw: Sequence[int], channels: int) -> tuple[Array, Array]:
    """Row and column permutations from the seed's phi(x) to :func:`cnnkit.ops.im2row.im2row`'s rows.

    Returns ``(rows, cols)`` such that ``phi[rows][:, cols]`` equals cnnkit's im2row matrix of the
    same single image: cnnkit row r = i^{l+1} W^{l+1} + j^{l+1} and column c = (i W + j) D^l + d^l
    (row-major), against the seed's p = i^{l+1} + H^{l+1} j^{l+1} and q = i + H j + H W d^l.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.im2row import im2row as im2row_nhwc
    >>> from cnnkit.textbook import im2row, nhwc_order
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> rows, cols = nhwc_order((2, 3), (2, 2), 1)
    >>> rows, cols
    (array([0, 2, 4, 1, 3, 5]), array([0, 2, 1, 3]))
    >>> bool(np.array_equal(im2row(A, (2, 2))[rows][:, cols], im2row_nhwc(A[None, :, :, None], 2)[0]))
    True
    """
    ho, wo = out_hw
    h, w = kernel_hw
    i_out, j_out = xp.meshgrid(xp.arange(ho), xp.arange(wo), indexing="ij")  # (ho, wo), row-major order
    rows = row_index(i_out, j_out, ho).reshape(-1)
    i, j, d = xp.meshgrid(xp.arange(h), xp.arange(w), xp.arange(channels), indexing="ij")  # (h, w, D^l)
    cols = col_index(i, j, d, (h, w)).reshape(-1)
    return rows, cols
