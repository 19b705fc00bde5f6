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

Beyond the forward and backward formulas the module evaluates the rest of §15.5-15.6 on numbers:

* :func:`table_15_1`: the sizes of table 15.1 for a given layer;
* :func:`filter_gradient_derivation`, :func:`input_gradient_derivation`: every step of the derivations
  15.31-15.38 and 15.41-15.49, each an :class:`Identity` whose two sides are computed independently;
* :func:`max_pooling_matrix`, :func:`avg_pooling_matrix` (S(x^l) of eqs. 15.56-15.59),
  :func:`pool_forward_textbook`, :func:`pool_backward_textbook`;
* :func:`compose_kernels`, :func:`composition_jacobian`: two stacked linear convolutions as one (§15.7.1);
* :func:`dft_matrix`, :func:`dft2`, :func:`convolve2d_circular_textbook`, :func:`convolve2d_full_textbook`,
  :func:`convolution_theorem`: the convolution theorem of the lecture notes (seed 004, §1.2.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

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


# ---------------------------------------------------------------------------------------------
# table 15.1: the variables of the derivation and their sizes
# ---------------------------------------------------------------------------------------------
def table_15_1(in_shape: Sequence[int], kernel_shape: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Table 15.1: the size (rows, columns) of each variable of a convolution layer's gradient derivation.

    in_shape: (H^l, W^l, D^l) (or (H^l, W^l)); kernel_shape: (H, W, D^l, D) (or (H, W) for one filter).
    Stride 1 and no padding, as in §15.5: H^{l+1} = H^l - H + 1, W^{l+1} = W^l - W + 1 (eqs. 15.17, 15.18).
    The keys are the table's rows, in its order; an alias (in brackets) holds the same numbers reshaped:

    =========  ======================  =============================================================
    key        the table's variable     size and meaning
    =========  ======================  =============================================================
    ``X``      X  (x^l)                 H^l W^l x D^l, the input
    ``F``      F  (f, w^l)              H W D^l x D, D kernels of size H x W with D^l channels
    ``Y``      Y  (y, x^{l+1})          H^{l+1} W^{l+1} x D^{l+1}, the output, D^{l+1} = D
    ``phi``    φ(x^l)                   H^{l+1} W^{l+1} x H W D^l, the im2row expansion of x^l
    ``M``      M                        H^{l+1} W^{l+1} H W D^l x H^l W^l D^l, the indicator matrix of φ(x^l)
    ``dz/dY``  ∂z/∂Y  (∂z/∂vec(y))      H^{l+1} W^{l+1} x D^{l+1}, the gradient of y
    ``dz/dF``  ∂z/∂F  (∂z/∂vec(f))      H W D^l x D, the gradient that updates the kernels
    ``dz/dX``  ∂z/∂X  (∂z/∂vec(x^l))    H^l W^l x D^l, the gradient of x^l, passed back
    =========  ======================  =============================================================

    Examples
    --------
    The example of fig. 15.3 (a 3 x 4 image, one 2 x 2 kernel): φ(A) = B^T is 6 x 4 and M is 24 x 12.

    >>> from cnnkit.textbook import table_15_1
    >>> table_15_1((3, 4, 1), (2, 2, 1, 1))
    {'X': (12, 1), 'F': (4, 1), 'Y': (6, 1), 'phi': (6, 4), 'M': (24, 12), 'dz/dY': (6, 1), 'dz/dF': (4, 1), 'dz/dX': (12, 1)}
    """
    kernel_shape = tuple(int(s) for s in kernel_shape)
    if len(kernel_shape) == 2:
        kernel_shape = (*kernel_shape, 1, 1)
    elif len(kernel_shape) == 3:
        kernel_shape = (*kernel_shape, 1)
    if len(kernel_shape) != 4:
        raise ShapeError(f"table_15_1: expected a kernel shape (H, W, D^l, D), got {kernel_shape}")
    hl, wl, dl, h, w, ho, wo = _geometry(in_shape, kernel_shape[:2])
    if kernel_shape[2] != dl:
        raise ShapeError(f"table_15_1: the kernels have {kernel_shape[2]} channels but the input {tuple(in_shape)} has D^l = {dl}")
    d = kernel_shape[3]
    return {
        "X": (hl * wl, dl),
        "F": (h * w * dl, d),
        "Y": (ho * wo, d),
        "phi": (ho * wo, h * w * dl),
        "M": (ho * wo * h * w * dl, hl * wl * dl),
        "dz/dY": (ho * wo, d),
        "dz/dF": (h * w * dl, d),
        "dz/dX": (hl * wl, dl),
    }


# ---------------------------------------------------------------------------------------------
# the derivations 15.31-15.38 (dz/dF) and 15.41-15.49 (dz/dX), one identity at a time
# ---------------------------------------------------------------------------------------------
class Identity(NamedTuple):
    """One equation of a text evaluated on numbers: the values of its two sides.

    ``eq`` is the equation's number; ``lhs_text`` and ``rhs_text`` are its two sides as the text writes them;
    ``lhs`` and ``rhs`` are their values, computed independently of each other. Vectors are 2-D: a column
    (n, 1), or a row (1, n) where the text transposes, so the shapes show which is which.

    Examples
    --------
    Eq. 15.27 on two small matrices:

    >>> import numpy as np
    >>> from cnnkit.textbook import Identity, kron
    >>> a, b = np.array([[1, 2]]), np.array([[0, 1], [1, 0]])
    >>> s = Identity("15.27", "(A ⊗ B)^T", "A^T ⊗ B^T", kron(a, b).T, kron(a.T, b.T))
    >>> s.holds(), s.lhs.shape
    (True, (4, 2))
    """

    eq: str
    lhs_text: str
    rhs_text: str
    lhs: Array
    rhs: Array

    def holds(self, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        """True when the two sides have the same shape and agree to ``rtol`` / ``atol``."""
        return tuple(self.lhs.shape) == tuple(self.rhs.shape) and bool(xp.allclose(self.lhs, self.rhs, rtol=rtol, atol=atol))


def _l2_loss(y: Array, t: Array) -> float:
    """z = 1/2 ||y - t||^2 (eq. 15.6): the scalar whose gradients the derivations compute; dz/dy = y - t."""
    r = y - t
    return 0.5 * float(xp.sum(r * r))


def _central_gradient(z: Callable[[Array], float], v: Array) -> Array:
    """dz/dv as a column (n, 1), by central differences with step 1: exact (up to rounding) when z is quadratic."""
    g = xp.zeros((v.size, 1))
    for k in range(v.size):
        e = xp.zeros(v.size)
        e[k] = 1.0
        g[k, 0] = (z(v + e) - z(v - e)) / 2
    return g


def _probe_jacobian(fun: Callable[[Array], Array], n: int) -> Array:
    """d fun(v) / d v^T (eq. 15.3) of a linear map on R^n: column k is fun(e_k), exactly."""
    return xp.stack([fun(xp.eye(n)[k]) for k in range(n)], axis=1)


def _derivation_setup(x: Array, f: Array, t: Array) -> tuple[Array, Array, Array, Array, Array, tuple[int, int, int, int, int, int, int]]:
    x = _as_image(x).astype(xp.float64)
    f = _as_filters(f, x.shape[2]).astype(xp.float64)
    geo = _geometry(x.shape, f.shape[:2])
    ho, wo = geo[5], geo[6]
    t = xp.asarray(t, dtype=xp.float64)
    if t.ndim == 2:
        t = t[:, :, None]
    if t.shape != (ho, wo, f.shape[3]):
        raise ShapeError(f"the target t must have the shape of y, {(ho, wo, f.shape[3])}; got {t.shape}")
    y = conv_forward_textbook(x, f)
    dz_dvec_y = vec(y - t)[:, None]  # eq. 15.6: dz/dy = y - t, as a column
    return x, f, t, y, dz_dvec_y, geo


def filter_gradient_derivation(x: Array, f: Array, t: Array) -> list[Identity]:
    """Eqs. 15.31-15.38 (§15.5.5, the derivation of ∂z/∂F) evaluated step by step, for z = ½‖y - t‖² (eq. 15.6).

    x: (H^l, W^l, D^l); f: (H, W, D^l, D); t: a target with the shape of y = x * f, (H^{l+1}, W^{l+1}, D).
    The derivatives on the left are computed without the chain rule: ∂z/∂vec(F) by central differences of
    z (exact up to rounding, since z is quadratic in F), and ∂vec(y)/∂vec(F)^T by applying the linear map
    F ↦ y to the unit vectors (eq. 15.3). The right-hand sides are the book's expressions, with
    ∂z/∂vec(y) = vec(y - t) and ∂z/∂Y the same numbers as an (H^{l+1} W^{l+1}) x D matrix. I is D x D.
    One :class:`Identity` per equation:

    * 15.31: ∂z/∂vec(F)^T = ∂z/∂vec(Y)^T · ∂vec(y)/∂vec(F)^T (the chain rule);
    * 15.32: ∂vec(y)/∂vec(F)^T = I ⊗ φ(x^l) (the linear map of eq. 15.29);
    * 15.33: ∂z/∂vec(F)^T = ∂z/∂vec(y)^T (I ⊗ φ(x^l));
    * 15.34: ∂z/∂vec(F) = (I ⊗ φ(x^l))^T ∂z/∂vec(y) (15.33 transposed);
    * 15.35: (I ⊗ φ(x^l))^T ∂z/∂vec(y) = (I ⊗ φ(x^l)^T) vec(∂z/∂Y) (eq. 15.27);
    * 15.36: (I ⊗ φ(x^l)^T) vec(∂z/∂Y) = vec(φ(x^l)^T ∂z/∂Y I) (eq. 15.28, right to left);
    * 15.37: vec(φ(x^l)^T ∂z/∂Y I) = vec(φ(x^l)^T ∂z/∂Y);
    * 15.38: ∂z/∂F = φ(x^l)^T ∂z/∂Y (the result, as a matrix).

    The Kronecker matrices are built densely: small cases only.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import filter_gradient_derivation
    >>> rng = np.random.default_rng(0)
    >>> x, f, t = rng.standard_normal((4, 5, 2)), rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((3, 3, 3))
    >>> steps = filter_gradient_derivation(x, f, t)  # t: the target of z = ½‖y - t‖²
    >>> [(s.eq, s.holds()) for s in steps]  # doctest: +NORMALIZE_WHITESPACE
    [('15.31', True), ('15.32', True), ('15.33', True), ('15.34', True), ('15.35', True), ('15.36', True),
     ('15.37', True), ('15.38', True)]
    >>> steps[1].rhs_text, steps[1].lhs.shape  # H^{l+1}W^{l+1}D x HWD^lD = 27 x 36
    ('I ⊗ φ(x^l)', (27, 36))
    """
    x, f, t, _, dz_dvec_y, (_, _, _, h, w, ho, wo) = _derivation_setup(x, f, t)
    d = f.shape[3]
    phi = im2row(x, (h, w))
    fmat = filter_matrix(f)
    dz_dY = unvec(dz_dvec_y, (ho * wo, d))

    def y_of(v: Array) -> Array:  # vec(F) -> vec(y), linear
        return vec(conv_forward_textbook(x, unfilter_matrix(unvec(v, fmat.shape), f.shape)))

    def z_of(v: Array) -> float:
        return _l2_loss(unvec(y_of(v), t.shape), t)

    vec_f = vec(fmat)
    dz_dvec_f = _central_gradient(z_of, vec_f)  # ∂z/∂vec(F), a column
    jac = _probe_jacobian(y_of, vec_f.size)  # ∂vec(y)/∂vec(F)^T
    eye = xp.eye(d)
    i_phi = kron(eye, phi)
    s34 = i_phi.T @ dz_dvec_y
    s35 = kron(eye, phi.T) @ vec(dz_dY)[:, None]
    s36 = vec(phi.T @ dz_dY @ eye)[:, None]
    s37 = vec(phi.T @ dz_dY)[:, None]
    return [
        Identity("15.31", "∂z/∂vec(F)^T", "∂z/∂vec(Y)^T ∂vec(y)/∂vec(F)^T", dz_dvec_f.T, dz_dvec_y.T @ jac),
        Identity("15.32", "∂vec(y)/∂vec(F)^T", "I ⊗ φ(x^l)", jac, i_phi),
        Identity("15.33", "∂z/∂vec(F)^T", "∂z/∂vec(y)^T (I ⊗ φ(x^l))", dz_dvec_f.T, dz_dvec_y.T @ i_phi),
        Identity("15.34", "∂z/∂vec(F)", "(I ⊗ φ(x^l))^T ∂z/∂vec(y)", dz_dvec_f, s34),
        Identity("15.35", "(I ⊗ φ(x^l))^T ∂z/∂vec(y)", "(I ⊗ φ(x^l)^T) vec(∂z/∂Y)", s34, s35),
        Identity("15.36", "(I ⊗ φ(x^l)^T) vec(∂z/∂Y)", "vec(φ(x^l)^T ∂z/∂Y I)", s35, s36),
        Identity("15.37", "vec(φ(x^l)^T ∂z/∂Y I)", "vec(φ(x^l)^T ∂z/∂Y)", s36, s37),
        Identity("15.38", "∂z/∂F", "φ(x^l)^T ∂z/∂Y", unvec(dz_dvec_f, fmat.shape), phi.T @ dz_dY),
    ]


def input_gradient_derivation(x: Array, f: Array, t: Array) -> list[Identity]:
    """Eqs. 15.41-15.49 (§15.5.7, the derivation of ∂z/∂X) evaluated step by step, for z = ½‖y - t‖² (eq. 15.6).

    Arguments as in :func:`filter_gradient_derivation`. ∂z/∂vec(x^l) on the left is computed by central
    differences of z (exact up to rounding: z is quadratic in x^l), and ∂vec(y)/∂vec(x^l)^T by applying
    the linear map x^l ↦ y to the unit vectors. I is H^{l+1}W^{l+1} x H^{l+1}W^{l+1}; M is
    :func:`indicator_matrix`. One :class:`Identity` per equation:

    * 15.41: ∂vec(y)/∂vec(x^l)^T = (F^T ⊗ I) M;
    * 15.42: ∂z/∂vec(x^l)^T = ∂z/∂vec(y)^T (F^T ⊗ I) M (the chain rule with 15.41);
    * 15.43: ∂z/∂vec(y)^T (F^T ⊗ I) = ((F ⊗ I) ∂z/∂vec(y))^T (eq. 15.27);
    * 15.44: ((F ⊗ I) ∂z/∂vec(y))^T = ((F ⊗ I) vec(∂z/∂Y))^T (y and Y are the same numbers);
    * 15.45: ((F ⊗ I) vec(∂z/∂Y))^T = vec(I ∂z/∂Y F^T)^T (eq. 15.28, right to left);
    * 15.46: vec(I ∂z/∂Y F^T)^T = vec(∂z/∂Y F^T)^T;
    * 15.47: ∂z/∂vec(x^l)^T = vec(∂z/∂Y F^T)^T M;
    * 15.48: ∂z/∂vec(x^l) = M^T vec(∂z/∂Y F^T) (15.47 transposed);
    * 15.49: [∂z/∂X]_(i^l, j^l, d^l) = sum over (p, q) in m^{-1}(i^l, j^l, d^l) of [∂z/∂Y F^T]_(p, q)
      (:func:`conv_backward_textbook`'s loop), compared as H^l W^l x D^l matrices.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import input_gradient_derivation
    >>> rng = np.random.default_rng(0)
    >>> x, f, t = rng.standard_normal((4, 5, 2)), rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((3, 3, 3))
    >>> steps = input_gradient_derivation(x, f, t)  # t: the target of z = ½‖y - t‖²
    >>> [(s.eq, s.holds()) for s in steps]  # doctest: +NORMALIZE_WHITESPACE
    [('15.41', True), ('15.42', True), ('15.43', True), ('15.44', True), ('15.45', True), ('15.46', True),
     ('15.47', True), ('15.48', True), ('15.49', True)]
    >>> steps[0].lhs.shape  # H^{l+1}W^{l+1}D x H^lW^lD^l
    (27, 40)
    """
    x, f, t, _, dz_dvec_y, (hl, wl, dl, h, w, ho, wo) = _derivation_setup(x, f, t)
    d = f.shape[3]
    fmat = filter_matrix(f)
    dz_dY = unvec(dz_dvec_y, (ho * wo, d))
    m = indicator_matrix(x.shape, (h, w))

    def y_of(v: Array) -> Array:  # vec(x^l) -> vec(y), linear
        return vec(conv_forward_textbook(unvec(v, x.shape), f))

    def z_of(v: Array) -> float:
        return _l2_loss(unvec(y_of(v), t.shape), t)

    vec_x = vec(x)
    dz_dvec_x = _central_gradient(z_of, vec_x)  # ∂z/∂vec(x^l), a column
    jac = _probe_jacobian(y_of, vec_x.size)  # ∂vec(y)/∂vec(x^l)^T
    eye = xp.eye(ho * wo)
    ft_i, f_i = kron(fmat.T, eye), kron(fmat, eye)
    s43 = (f_i @ dz_dvec_y).T
    s44 = (f_i @ vec(dz_dY)[:, None]).T
    s45 = vec(eye @ dz_dY @ fmat.T)[None, :]
    s46 = vec(dz_dY @ fmat.T)[None, :]
    dx49, _ = conv_backward_textbook(x, f, unvec(dz_dvec_y, t.shape))  # the m^{-1} sums of eq. 15.49
    return [
        Identity("15.41", "∂vec(y)/∂vec(x^l)^T", "(F^T ⊗ I) M", jac, ft_i @ m),
        Identity("15.42", "∂z/∂vec(x^l)^T", "∂z/∂vec(y)^T (F^T ⊗ I) M", dz_dvec_x.T, dz_dvec_y.T @ ft_i @ m),
        Identity("15.43", "∂z/∂vec(y)^T (F^T ⊗ I)", "((F ⊗ I) ∂z/∂vec(y))^T", dz_dvec_y.T @ ft_i, s43),
        Identity("15.44", "((F ⊗ I) ∂z/∂vec(y))^T", "((F ⊗ I) vec(∂z/∂Y))^T", s43, s44),
        Identity("15.45", "((F ⊗ I) vec(∂z/∂Y))^T", "vec(I ∂z/∂Y F^T)^T", s44, s45),
        Identity("15.46", "vec(I ∂z/∂Y F^T)^T", "vec(∂z/∂Y F^T)^T", s45, s46),
        Identity("15.47", "∂z/∂vec(x^l)^T", "vec(∂z/∂Y F^T)^T M", dz_dvec_x.T, s46 @ m),
        Identity("15.48", "∂z/∂vec(x^l)", "M^T vec(∂z/∂Y F^T)", dz_dvec_x, m.T @ s46.T),
        Identity(
            "15.49",
            "[∂z/∂X]_(i^l, j^l, d^l)",
            "Σ_{(p, q) ∈ m^{-1}(i^l, j^l, d^l)} [∂z/∂Y F^T]_(p, q)",
            unvec(dz_dvec_x, (hl * wl, dl)),
            unvec(vec(dx49), (hl * wl, dl)),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# pooling as an indicator matrix, eqs. 15.50-15.59
# ---------------------------------------------------------------------------------------------
TIES = ("column-major", "row-major", "all")
"""Tie rules of :func:`max_pooling_matrix`: the book's window order, cnnkit's (PyTorch's), or every maximum."""


def _pool_geometry(
    in_shape: Sequence[int], window_hw: Sequence[int], stride: int | Sequence[int] | None
) -> tuple[int, int, int, int, int, int, int, int, int]:
    """(H^l, W^l, D^l, H, W, s_h, s_w, H^{l+1}, W^{l+1}) of an unpadded pooling; stride None = the window (eq. 15.50)."""
    if len(in_shape) == 2:
        in_shape = (in_shape[0], in_shape[1], 1)
    if len(in_shape) != 3 or len(window_hw) != 2:
        raise ShapeError(
            f"expected an input shape (H^l, W^l[, D^l]) and a window (H, W); got {tuple(in_shape)} and {tuple(window_hw)}"
        )
    hl, wl, dl = (int(s) for s in in_shape)
    h, w = (int(s) for s in window_hw)
    if stride is None:
        sh, sw = h, w
    elif isinstance(stride, int):
        sh = sw = int(stride)
    else:
        sh, sw = (int(s) for s in stride)
    if h < 1 or w < 1 or h > hl or w > wl:
        raise ShapeError(f"pooling window {h}x{w} must be at least 1x1 and fit inside the input {hl}x{wl}")
    if sh < 1 or sw < 1:
        raise ShapeError(f"pooling stride must be >= 1, got {(sh, sw)}")
    return hl, wl, dl, h, w, sh, sw, (hl - h) // sh + 1, (wl - w) // sw + 1


def max_pooling_matrix(
    x: Array, window_hw: Sequence[int], stride: int | Sequence[int] | None = None, ties: str = "column-major"
) -> Array:
    """S(x^l) of eq. 15.56 for max pooling: (H^{l+1} W^{l+1} D^l) x (H^l W^l D^l), with vec(y) = S(x^l) vec(x^l).

    x: one image (H^l, W^l, D^l) (or (H^l, W^l)); window (H, W); ``stride`` (s_h, s_w), by default the
    window (the book's setting, eq. 15.50). Output H^{l+1} = (H^l - H) // s_h + 1 (= H^l / H when H
    divides H^l), likewise W^{l+1}. Row r = i^{l+1} + H^{l+1} j^{l+1} + H^{l+1} W^{l+1} d (the vec order of
    y); column u = i^l + H^l j^l + H^l W^l d^l (the vec order of x^l). Entry (r, u) is 1 when eqs.
    15.53-15.55 hold: same channel (15.53); (i^l, j^l) in window (i^{l+1}, j^{l+1}), which is
    i^{l+1} s_h <= i^l < i^{l+1} s_h + H (eq. 15.54 for a general stride; floor(i^l / H) = i^{l+1} when
    s_h = H); and x^l at (i^l, j^l, d^l) is >= every element of the window (eq. 15.55, read with x^l
    in place of y: erratum E1).

    With a tied maximum several elements satisfy 15.55 (erratum E4), so ``ties`` picks one:

    * ``"column-major"`` (default): the first maximum in the book's order of a window's elements, the vec
      order, (0,0), (1,0), (0,1), (1,1) (the list in the example after eq. 15.59);
    * ``"row-major"``: the first maximum in row-major order, (0,0), (0,1), (1,0), (1,1): cnnkit's and
      PyTorch's rule, which :func:`cnnkit.ops.pool.max_pool2d_backward` follows;
    * ``"all"``: eqs. 15.53-15.55 literally; a row may then hold several 1s and eq. 15.57 fails (S vec(x^l)
      counts a tied maximum more than once).

    Dense: small cases only.

    Examples
    --------
    The book's example after eq. 15.59: the maximum of the first 2 x 2 subregion is at (0, 1), so only
    the column of (0, 1) (the third, in vec order) is non-zero.

    >>> import numpy as np
    >>> from cnnkit.textbook import max_pooling_matrix, split_row_index, unvec, vec
    >>> max_pooling_matrix(np.array([[1.0, 7.0], [3.0, 2.0]]), (2, 2))
    array([[0., 0., 1., 0.]])

    Fig. 15.5's input with 2 x 2 windows at stride 1: element 9, at (2, 2), column u = 2 + 3 * 2 = 8, is the
    maximum of the windows (1, 1) and (1, 2), so its column holds two 1s.

    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> S = max_pooling_matrix(A, (2, 2), stride=1)
    >>> S.shape, [split_row_index(int(r), 2) for r in np.flatnonzero(S[:, 8])]
    ((6, 12), [(1, 1), (1, 2)])
    >>> unvec(S @ vec(A), (2, 3))  # eq. 15.57
    array([[5., 6., 6.],
           [8., 9., 9.]])

    A tie at (1, 0) and (0, 1) (columns 1 and 2):

    >>> [max_pooling_matrix(np.array([[0.0, 5.0], [5.0, 0.0]]), (2, 2), ties=k)[0] for k in ("column-major", "row-major", "all")]
    [array([0., 1., 0., 0.]), array([0., 0., 1., 0.]), array([0., 1., 1., 0.])]
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    x = _as_image(x)
    hl, wl, dl, h, w, sh, sw, ho, wo = _pool_geometry(x.shape, tuple(window_hw), stride)
    if ties == "row-major":
        taps = [(i, j) for i in range(h) for j in range(w)]
    else:
        taps = [(i, j) for j in range(w) for i in range(h)]
    s = xp.zeros((ho * wo * dl, hl * wl * dl))
    for d in range(dl):
        for jo in range(wo):
            for io in range(ho):
                r = io + ho * jo + ho * wo * d
                window = [(io * sh + i, jo * sw + j) for i, j in taps]  # eqs. 15.53, 15.54
                top = max(x[il, jl, d] for il, jl in window)
                for il, jl in window:
                    if x[il, jl, d] >= top:  # eq. 15.55, with x^l where the book has y (E1)
                        s[r, il + hl * jl + hl * wl * d] = 1
                        if ties != "all":
                            break
    return s


def avg_pooling_matrix(in_shape: Sequence[int], window_hw: Sequence[int], stride: int | Sequence[int] | None = None) -> Array:
    """S of eq. 15.56 for average pooling (eq. 15.52): 1/(H W) at every element of each window; independent of x^l.

    Same rows, columns and geometry as :func:`max_pooling_matrix`; vec(y) = S vec(x^l) and
    ∂z/∂vec(x^l) = S^T ∂z/∂vec(y) (the book's "平均汇合可以用相似的思路处理": average pooling is handled the
    same way). Average pooling is linear, so here S is the Jacobian everywhere.

    Examples
    --------
    A 2 x 4 input in two 2 x 2 windows: row 0 averages columns 0-3 (the first window in vec order), row 1 columns 4-7.

    >>> from cnnkit.textbook import avg_pooling_matrix
    >>> avg_pooling_matrix((2, 4), (2, 2))
    array([[0.25, 0.25, 0.25, 0.25, 0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  , 0.25, 0.25, 0.25, 0.25]])
    """
    hl, wl, dl, h, w, sh, sw, ho, wo = _pool_geometry(tuple(in_shape), tuple(window_hw), stride)
    s = xp.zeros((ho * wo * dl, hl * wl * dl))
    for d in range(dl):
        for jo in range(wo):
            for io in range(ho):
                r = io + ho * jo + ho * wo * d
                for j in range(w):
                    for i in range(h):
                        s[r, (io * sh + i) + hl * (jo * sw + j) + hl * wl * d] = 1.0 / (h * w)
    return s


def _pooling_matrix(x: Array, window_hw: Sequence[int], stride: int | Sequence[int] | None, kind: str, ties: str) -> Array:
    if kind == "max":
        return max_pooling_matrix(x, window_hw, stride, ties)
    if kind == "avg":
        return avg_pooling_matrix(x.shape, window_hw, stride)
    raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")


def pool_forward_textbook(
    x: Array, window_hw: Sequence[int], stride: int | Sequence[int] | None = None, kind: str = "max", ties: str = "column-major"
) -> Array:
    """y from eq. 15.57, vec(y) = S(x^l) vec(x^l): (H^l, W^l, D^l) -> (H^{l+1}, W^{l+1}, D^l).

    ``kind`` is "max" (eq. 15.51, :func:`max_pooling_matrix`) or "avg" (eq. 15.52, :func:`avg_pooling_matrix`).

    Examples
    --------
    Seed 004 fig. 1.11: a 4 x 4 image in four 2 x 2 blocks.

    >>> import numpy as np
    >>> from cnnkit.textbook import pool_forward_textbook
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> pool_forward_textbook(x, (2, 2))[:, :, 0]
    array([[6., 8.],
           [3., 4.]])
    >>> pool_forward_textbook(x, (2, 2), kind="avg")[:, :, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]])
    """
    x = _as_image(x)
    s = _pooling_matrix(x, window_hw, stride, kind, ties)
    _, _, dl, _, _, _, _, ho, wo = _pool_geometry(x.shape, tuple(window_hw), stride)
    return unvec(s @ vec(x), (ho, wo, dl))


def pool_backward_textbook(
    x: Array,
    dy: Array,
    window_hw: Sequence[int],
    stride: int | Sequence[int] | None = None,
    kind: str = "max",
    ties: str = "column-major",
) -> Array:
    """∂z/∂x^l from eq. 15.59, ∂z/∂vec(x^l) = S(x^l)^T ∂z/∂vec(y): dy (H^{l+1}, W^{l+1}, D^l) -> dx like x.

    Examples
    --------
    The example after eq. 15.59: with 2 x 2 windows at stride 1 over fig. 15.5's input, 9 (at (2, 2)) is the
    maximum of two windows and receives both gradients; so does 6.

    >>> import numpy as np
    >>> from cnnkit.textbook import pool_backward_textbook
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]])
    >>> pool_backward_textbook(A, np.ones((2, 3)), (2, 2), stride=1)[:, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 2., 0.],
           [0., 1., 2., 0.]])
    """
    x = _as_image(x)
    _, _, dl, _, _, _, _, ho, wo = _pool_geometry(x.shape, tuple(window_hw), stride)
    dy = xp.asarray(dy)
    if dy.ndim == 2:
        dy = dy[:, :, None]
    if dy.shape != (ho, wo, dl):
        raise ShapeError(f"pool_backward_textbook: dy has shape {dy.shape}, expected the output shape {(ho, wo, dl)}")
    s = _pooling_matrix(x, window_hw, stride, kind, ties)
    return unvec(s.T @ vec(dy), x.shape)


# ---------------------------------------------------------------------------------------------
# two stacked linear convolutions as one (§15.7.1, erratum E5)
# ---------------------------------------------------------------------------------------------
def compose_kernels(f1: Array, f2: Array) -> Array:
    """The kernel K of one convolution equal to two stacked linear ones: (x * f1) * f2 = x * K.

    f1: (H1, W1, C_in, C_mid), f2: (H2, W2, C_mid, C_out) (2-D for one channel) -> K: (H1 + H2 - 1,
    W1 + W2 - 1, C_in, C_out), with

        K[u, v, c, o] = Σ_m Σ_{a + a' = u, b + b' = v} f1[a, b, c, m] f2[a', b', m, o],

    that is, for each (c, o), the sum over the middle channels m of the FULL 2-D *convolution* of
    f1[:, :, c, m] and f2[:, :, m, o]. Derivation: a layer computes the cross-correlation of eq. 15.16, so

        y2[i, j, o] = Σ_{a', b', m} y1[i + a', j + b', m] f2[a', b', m, o]
                    = Σ_{a', b', m} Σ_{a, b, c} x[i + a' + a, j + b' + b, c] f1[a, b, c, m] f2[a', b', m, o],

    and x[i + u, j + v, c] collects every pair with a + a' = u and b + b' = v: the offsets add, which is a
    convolution of the kernels, not a correlation. So a cross-correlation of cross-correlations is a
    cross-correlation with the full convolution of the kernels. Over the middle channels it is a matrix
    product, so the order matters (f1 first). Two 3 x 3 kernels give a 5 x 5 one (the receptive field of
    §15.7.1), but only some 5 x 5 kernels arise: see :func:`composition_jacobian` and erratum E5.

    Examples
    --------
    Two 3 x 3 box filters make the 5 x 5 "tent", (1, 2, 3, 2, 1)^T (1, 2, 3, 2, 1):

    >>> import numpy as np
    >>> from cnnkit.textbook import compose_kernels, conv_forward_textbook
    >>> compose_kernels(np.ones((3, 3)), np.ones((3, 3)))[:, :, 0, 0]
    array([[1., 2., 3., 2., 1.],
           [2., 4., 6., 4., 2.],
           [3., 6., 9., 6., 3.],
           [2., 4., 6., 4., 2.],
           [1., 2., 3., 2., 1.]])
    >>> rng = np.random.default_rng(0)
    >>> x, f1, f2 = rng.standard_normal((8, 7, 2)), rng.standard_normal((3, 3, 2, 4)), rng.standard_normal((3, 3, 4, 3))
    >>> bool(np.allclose(conv_forward_textbook(conv_forward_textbook(x, f1), f2), conv_forward_textbook(x, compose_kernels(f1, f2))))
    True
    """
    f1, f2 = xp.asarray(f1), xp.asarray(f2)
    if f1.ndim == 2:
        f1 = f1[:, :, None, None]
    if f2.ndim == 2:
        f2 = f2[:, :, None, None]
    if f1.ndim != 4 or f2.ndim != 4 or f1.shape[3] != f2.shape[2]:
        raise ShapeError(f"compose_kernels: expected f1 (H1, W1, C_in, C_mid) and f2 (H2, W2, C_mid, C_out); got {f1.shape} and {f2.shape}")
    h1, w1, c_in, _ = f1.shape
    h2, w2, _, c_out = f2.shape
    k = xp.zeros((h1 + h2 - 1, w1 + w2 - 1, c_in, c_out), dtype=xp.result_type(f1, f2, xp.float64))
    for a2 in range(h2):
        for b2 in range(w2):
            k[a2 : a2 + h1, b2 : b2 + w1] += f1 @ f2[a2, b2]  # every (a, b): K[a + a2, b + b2] += f1[a, b] f2[a2, b2]
    return k


def composition_jacobian(f1: Array, f2: Array) -> Array:
    """∂vec(K)/∂(vec(f1); vec(f2))^T of :func:`compose_kernels` at (f1, f2): (|K|) x (|f1| + |f2|).

    K is bilinear, so the columns are compose_kernels(E, f2) and compose_kernels(f1, E) for the unit kernels
    E. Its rank is the dimension of the set of reachable kernels K near (f1, f2). It is below the parameter
    count: (c f1, f2 / c) gives the same K, and with C middle channels so do (f1 A, A^{-1} f2) for every
    invertible C x C matrix A, which removes C^2 dimensions. For C_in = C_mid = C_out = C and 3 x 3 kernels
    the rank is at most 18 C^2 - C^2 = 17 C^2, fewer than the 25 C^2 entries of a 5 x 5 kernel: almost no
    5 x 5 kernel is a composition of two 3 x 3 ones (erratum E5).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import composition_jacobian
    >>> rng = np.random.default_rng(0)
    >>> J = composition_jacobian(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))
    >>> J.shape, int(np.linalg.matrix_rank(J))  # 18 parameters, 17 directions, 25 entries
    ((25, 18), 17)
    """
    f1, f2 = xp.asarray(f1, dtype=xp.float64), xp.asarray(f2, dtype=xp.float64)
    if f1.ndim == 2:
        f1 = f1[:, :, None, None]
    if f2.ndim == 2:
        f2 = f2[:, :, None, None]
    cols = []
    for f, first in ((f1, True), (f2, False)):
        for k in range(f.size):
            e = unvec(xp.eye(f.size)[k], f.shape)
            cols.append(vec(compose_kernels(e, f2) if first else compose_kernels(f1, e)))
    return xp.stack(cols, axis=1)


# ---------------------------------------------------------------------------------------------
# the convolution theorem (seed 004, §1.2.4)
# ---------------------------------------------------------------------------------------------
def dft_matrix(n: int) -> Array:
    """The n x n DFT matrix W[k, m] = exp(-2πi k m / n): the discrete form of seed 004's F[f](ξ) = ∫ f(x) e^{-2πi x·ξ} dx.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import dft_matrix
    >>> dft_matrix(2).real
    array([[ 1.,  1.],
           [ 1., -1.]])
    >>> bool(np.allclose(dft_matrix(5), np.fft.fft(np.eye(5))))
    True
    """
    k = xp.arange(int(n))
    return xp.exp(-2j * xp.pi * xp.outer(k, k) / n)


def dft2(a: Array) -> Array:
    """The 2-D DFT, F[a][k, l] = Σ_{m, n} a[m, n] exp(-2πi (k m / H + l n / W)) = W_H a W_W^T (:func:`dft_matrix`).

    By eq. 15.28, vec(F[a]) = (W_W ⊗ W_H) vec(a): a 2-D DFT is a Kronecker product of 1-D ones. Equals
    ``numpy.fft.fft2``.

    Examples
    --------
    A delta at the origin has the flat spectrum:

    >>> import numpy as np
    >>> from cnnkit.textbook import dft2
    >>> delta = np.zeros((2, 3)); delta[0, 0] = 1
    >>> dft2(delta).real
    array([[1., 1., 1.],
           [1., 1., 1.]])
    >>> a = np.random.default_rng(0).standard_normal((4, 6))
    >>> bool(np.allclose(dft2(a), np.fft.fft2(a)))
    True
    """
    a = xp.asarray(a)
    if a.ndim != 2:
        raise ShapeError(f"dft2: expected a matrix, got shape {a.shape}")
    return dft_matrix(a.shape[0]) @ a @ dft_matrix(a.shape[1]).T


def _image_and_kernel(f: Array, g: Array, what: str) -> tuple[Array, Array]:
    f, g = xp.asarray(f), xp.asarray(g)
    if f.ndim != 2 or g.ndim != 2:
        raise ShapeError(f"{what}: expected two matrices (an image and a kernel), got shapes {f.shape} and {g.shape}")
    return f, g


def convolve2d_circular_textbook(f: Array, g: Array) -> Array:
    """Circular (periodic) convolution, (f ⊛ g)[i, j] = Σ_{u, v} f[(i - u) mod H, (j - v) mod W] g[u, v].

    f: (H, W), g: (kh, kw) with kh <= H, kw <= W -> (H, W). Seed 004's discrete convolution
    F(x, y) = Σ_{u,v} f(x - u, y - v) g(u, v) with f periodic: the convolution the DFT turns into a product.

    Examples
    --------
    g = [[0, 1]] shifts the image one column to the right, the last column wrapping round to the first:

    >>> import numpy as np
    >>> from cnnkit.textbook import convolve2d_circular_textbook
    >>> convolve2d_circular_textbook(np.arange(6).reshape(2, 3), np.array([[0, 1]]))
    array([[2, 0, 1],
           [5, 3, 4]])
    """
    f, g = _image_and_kernel(f, g, "convolve2d_circular_textbook")
    h, w = f.shape
    kh, kw = g.shape
    if kh > h or kw > w:
        raise ShapeError(f"circular convolution needs a kernel no larger than the image ({kh}x{kw} > {h}x{w})")
    out = xp.zeros((h, w), dtype=xp.result_type(f, g))
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(f[(i - u) % h, (j - v) % w] * g[u, v] for u in range(kh) for v in range(kw))
    return out


def convolve2d_full_textbook(f: Array, g: Array) -> Array:
    """Ordinary ("full") convolution, (f * g)[i, j] = Σ_{u, v} f[i - u, j - v] g[u, v], f zero outside its support.

    f: (H, W), g: (kh, kw) -> (H + kh - 1, W + kw - 1): every position where the two overlap. Each kernel
    tap adds a shifted, weighted copy of the image.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import convolve2d_full_textbook
    >>> convolve2d_full_textbook(np.array([[1, 2, 3]]), np.array([[1, 1]]))
    array([[1, 3, 5, 3]])
    """
    f, g = _image_and_kernel(f, g, "convolve2d_full_textbook")
    h, w = f.shape
    kh, kw = g.shape
    out = xp.zeros((h + kh - 1, w + kw - 1), dtype=xp.result_type(f, g))
    for u in range(kh):
        for v in range(kw):
            out[u : u + h, v : v + w] += g[u, v] * f
    return out


def convolution_theorem(f: Array, g: Array, mode: str = "circular") -> Identity:
    """Seed 004's eq. 1.2, F[f] · F[g] = F[f * g], on arrays: both sides with the 2-D DFT (``numpy.fft.fft2``).

    f: (H, W), g: (kh, kw). ``mode``:

    * ``"circular"``: f * g is :func:`convolve2d_circular_textbook`, and g is zero-padded to H x W. The DFT
      of an N-point array treats it as periodic, so this is the exact discrete theorem.
    * ``"full"``: f * g is the ordinary convolution :func:`convolve2d_full_textbook`. Both arrays are
      zero-padded to (H + kh - 1) x (W + kw - 1) first: with that much padding the wrap-around of the
      circular convolution only meets zeros, so it equals the ordinary one.

    The product is elementwise. Returns an :class:`Identity` (lhs: F[f]·F[g], rhs: F[f * g]).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.textbook import convolution_theorem
    >>> rng = np.random.default_rng(0)
    >>> f, g = rng.standard_normal((5, 6)), rng.standard_normal((3, 2))
    >>> [(s.lhs.shape, s.holds()) for s in (convolution_theorem(f, g), convolution_theorem(f, g, "full"))]
    [((5, 6), True), ((7, 7), True)]
    """
    f, g = _image_and_kernel(f, g, "convolution_theorem")
    if mode == "circular":
        size = f.shape
        conv = convolve2d_circular_textbook(f, g)
    elif mode == "full":
        size = (f.shape[0] + g.shape[0] - 1, f.shape[1] + g.shape[1] - 1)
        conv = convolve2d_full_textbook(f, g)
    else:
        raise ValueError(f"mode must be 'circular' or 'full', got {mode!r}")
    lhs = xp.fft.fft2(f, s=size) * xp.fft.fft2(g, s=size)
    return Identity("1.2", "F[f]·F[g]", "F[f * g]", lhs, xp.fft.fft2(conv))
