"""The seed's worked examples of chapter 15 (§15.5.3-15.5.7) and the sizes worked in seeds 002/004.

cnnkit.textbook runs the equations literally (MATLAB order, one image, stride 1, no padding); these
tests pin it to the seed's numbers and check that it computes the same map as the fast NHWC path,
cnnkit.ops.conv.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import textbook as tb
from cnnkit.errors import ShapeError
from cnnkit.nn.conv import Conv2d
from cnnkit.ops.conv import conv2d_backward, conv2d_forward
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row as im2row_nhwc

# Fig. 15.3 / eq. 15.19
A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=np.float64)
B_SEED = np.array(
    [
        [1, 4, 2, 5, 3, 6],
        [4, 7, 5, 8, 6, 9],
        [2, 5, 3, 6, 1, 1],
        [5, 8, 6, 9, 1, 1],
    ],
    dtype=np.float64,
)
Y_SEED = np.array([[12, 16, 11], [24, 28, 17]], dtype=np.float64)


# --- §15.5.3 ------------------------------------------------------------------------------------
def test_vec_is_column_major() -> None:
    np.testing.assert_array_equal(tb.vec(np.array([[1, 2], [3, 4]])), [1, 3, 2, 4])


def test_unvec_inverts_vec(rng: np.random.Generator) -> None:
    for shape in [(2, 3), (3, 4, 2), (2, 2, 3, 2)]:
        a = rng.standard_normal(shape)
        np.testing.assert_array_equal(tb.unvec(tb.vec(a), shape), a)
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        tb.unvec(np.arange(5), (2, 2))


def test_im2col_matches_matlab_example() -> None:
    """B = im2col(A, [2 2]) of §15.5.3, exactly."""
    b = tb.im2col(A, (2, 2))
    assert b.shape == (4, 6)
    np.testing.assert_array_equal(b, B_SEED)
    # B^T is the im2row expansion phi(A)
    np.testing.assert_array_equal(tb.im2row(A, (2, 2)), B_SEED.T)


def test_eq_15_20_im2row_times_vectorised_kernel() -> None:
    out = tb.im2col(A, (2, 2)).T @ tb.vec(np.ones((2, 2)))
    np.testing.assert_array_equal(out, [12, 24, 16, 28, 11, 17])
    # "reshaped appropriately" (column-major) it is the convolution result of eq. 15.19
    np.testing.assert_array_equal(tb.unvec(out, (2, 3)), Y_SEED)


def test_eq_15_19_through_textbook_and_fast_path() -> None:
    y = tb.conv_forward_textbook(A, np.ones((2, 2)))
    assert y.shape == (2, 3, 1)
    np.testing.assert_array_equal(y[:, :, 0], Y_SEED)
    y_fast, _ = conv2d_forward(A[None, :, :, None], np.ones((2, 2, 1, 1)))  # NHWC, weight (kh, kw, C_in, C_out)
    assert y_fast.shape == (1, 2, 3, 1)
    np.testing.assert_array_equal(y_fast[0, :, :, 0], Y_SEED)


def test_fig_15_3_first_two_sums() -> None:
    """1x1 + 1x4 + 1x2 + 1x5 = 12, then one pixel down: 24."""
    y = tb.conv_forward_textbook(A, np.ones((2, 2)))
    assert y[0, 0, 0] == 1 + 4 + 2 + 5 == 12
    assert y[1, 0, 0] == 4 + 7 + 5 + 8 == 24


def test_window_order_of_b_columns() -> None:
    """Columns 2..6 of B are the windows at (1,0), (0,1), (1,1), (0,2), (1,2)."""
    expected = [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    for p, (io, jo) in enumerate(expected):
        assert tb.split_row_index(p, 2) == (io, jo)
        assert tb.row_index(io, jo, 2) == p
        np.testing.assert_array_equal(B_SEED[:, p], tb.vec(A[io : io + 2, jo : jo + 2]))


# --- index maps 15.21-15.24 and m^{-1} --------------------------------------------------------------
@pytest.mark.parametrize("in_shape,kernel", [((3, 4, 1), (2, 2)), ((4, 5, 3), (2, 3)), ((5, 3, 2), (3, 1))])
def test_index_maps_round_trip(in_shape: tuple, kernel: tuple) -> None:
    hl, wl, dl = in_shape
    h, w = kernel
    ho, wo = hl - h + 1, wl - w + 1
    for p in range(ho * wo):
        io, jo = tb.split_row_index(p, ho)
        assert 0 <= io < ho and 0 <= jo < wo
        assert tb.row_index(io, jo, ho) == p  # eq. 15.21
    for q in range(h * w * dl):
        i, j, d = tb.split_col_index(q, kernel)
        assert 0 <= i < h and 0 <= j < w and 0 <= d < dl
        assert tb.col_index(i, j, d, kernel) == q  # eq. 15.22
    # m is a function onto the input; m^{-1} collects exactly its preimages (one-to-many)
    preimages: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for p in range(ho * wo):
        for q in range(h * w * dl):
            il, jl, d = tb.m_map(p, q, in_shape, kernel)
            io, jo = tb.split_row_index(p, ho)
            i, j, _ = tb.split_col_index(q, kernel)
            assert (il, jl) == (io + i, jo + j)  # eqs. 15.23, 15.24
            preimages.setdefault((int(il), int(jl), int(d)), []).append((p, q))
    for il in range(hl):
        for jl in range(wl):
            for d in range(dl):
                s = tb.m_inverse(il, jl, d, in_shape, kernel)
                assert s == sorted(preimages.get((il, jl, d), []))
                assert len(s) <= h * w
                for p, q in s:
                    assert tuple(int(v) for v in tb.m_map(p, q, in_shape, kernel)) == (il, jl, d)


def test_fig_15_5_element_5_is_in_four_convolutions() -> None:
    """Fig. 15.5: the input element 5 takes part in p = 1, 2, 3, 4 (1-based); for p = 2 it is q = 3."""
    s = tb.m_inverse(1, 1, 0, A.shape, (2, 2))
    assert [p + 1 for p, _ in s] == [1, 2, 3, 4]
    assert {p + 1: q + 1 for p, q in s}[2] == 3
    for p, q in s:
        assert B_SEED[q, p] == 5
    # a corner element belongs to one window only
    assert tb.m_inverse(0, 0, 0, A.shape, (2, 2)) == [(0, 0)]


def test_indicator_matrix_eq_15_40(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 3, 2))
    m = tb.indicator_matrix(x.shape, (2, 2))
    assert m.shape == (3 * 2 * 2 * 2 * 2, 4 * 3 * 2)
    np.testing.assert_array_equal(m.sum(axis=1), 1)  # one non-zero per row: m is a function
    np.testing.assert_array_equal(m @ tb.vec(x), tb.vec(tb.im2row(x, (2, 2))))


# --- eq. 15.25 against the fast path ------------------------------------------------------------
def test_eq_15_25_vec_y_equals_vec_phi_f(rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 6, 3))
    f = rng.standard_normal((3, 2, 3, 4))
    y_mat = tb.im2row(x, (3, 2)) @ tb.filter_matrix(f)
    y = tb.conv_forward_textbook(x, f)
    assert y.shape == (3, 5, 4)
    np.testing.assert_allclose(tb.vec(y), tb.vec(y_mat), rtol=1e-12, atol=1e-12)
    # eq. 15.16 written out
    y16 = np.einsum("ijcd,abijc->abd", f, np.lib.stride_tricks.sliding_window_view(x, (3, 2), axis=(0, 1)).transpose(0, 1, 3, 4, 2))
    np.testing.assert_allclose(y, y16, rtol=1e-12, atol=1e-12)
    y_fast, _ = conv2d_forward(x[None], f)
    np.testing.assert_allclose(y_fast[0], y, rtol=1e-12, atol=1e-12)


def test_filter_matrix_columns_are_vectorised_kernels(rng: np.random.Generator) -> None:
    f = rng.standard_normal((2, 3, 2, 4))
    fm = tb.filter_matrix(f)
    assert fm.shape == (2 * 3 * 2, 4)
    for d in range(4):
        np.testing.assert_array_equal(fm[:, d], tb.vec(f[:, :, :, d]))
    np.testing.assert_array_equal(tb.unfilter_matrix(fm, f.shape), f)


def test_textbook_phi_is_fast_im2row_permuted(rng: np.random.Generator) -> None:
    """cnnkit's NHWC im2row holds the same entries as phi(x), rows and columns permuted."""
    x = rng.standard_normal((5, 4, 3))
    phi = tb.im2row(x, (2, 3))
    rows_fast, win = im2row_nhwc(x[None], (2, 3))
    r, c = tb.nhwc_order(win.out, (2, 3), 3)
    np.testing.assert_array_equal(phi[r][:, c], rows_fast)


# --- Kronecker products 15.26-15.30 ---------------------------------------------------------------
def test_kron_block_definition_eq_15_26(rng: np.random.Generator) -> None:
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 2))
    k = tb.kron(a, b)
    assert k.shape == (8, 6)
    np.testing.assert_allclose(k, np.kron(a, b), rtol=1e-14)
    np.testing.assert_allclose(k[4:8, 2:4], a[1, 1] * b)


def test_kron_transpose_eq_15_27(rng: np.random.Generator) -> None:
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(tb.kron(a, b).T, tb.kron(a.T, b.T), rtol=1e-14)


@pytest.mark.parametrize("m,n,p,q", [(2, 3, 3, 4), (1, 4, 4, 1), (3, 3, 3, 3)])
def test_vec_axb_eq_15_28(rng: np.random.Generator, m: int, n: int, p: int, q: int) -> None:
    a, x, b = rng.standard_normal((m, n)), rng.standard_normal((n, p)), rng.standard_normal((p, q))
    np.testing.assert_allclose(tb.vec(a @ x @ b), tb.vec_product_matrix(a, b) @ tb.vec(x), rtol=1e-12, atol=1e-12)
    # "used in both directions": vec(X) solves it back when the Kronecker matrix is invertible
    if m == n and p == q:
        k = tb.vec_product_matrix(a, b)
        np.testing.assert_allclose(np.linalg.solve(k, tb.vec(a @ x @ b)), tb.vec(x), rtol=1e-8, atol=1e-8)


def test_conv_kronecker_forms_eq_15_29_15_30(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 5, 2))
    f = rng.standard_normal((2, 3, 2, 3))
    vec_y = tb.vec(tb.conv_forward_textbook(x, f))
    phi, fm = tb.im2row(x, (2, 3)), tb.filter_matrix(f)
    k29 = tb.conv_matrix_of_filters(x, (2, 3), 3)
    assert k29.shape == (3 * 3 * 3, 2 * 3 * 2 * 3)
    np.testing.assert_allclose(k29 @ tb.vec(fm), vec_y, rtol=1e-12, atol=1e-12)  # eq. 15.29
    k30 = tb.conv_matrix_of_rows(f, (3, 3))
    np.testing.assert_allclose(k30 @ tb.vec(phi), vec_y, rtol=1e-12, atol=1e-12)  # eq. 15.30
    jac = tb.conv_jacobian_x(f, x.shape)  # eq. 15.41
    np.testing.assert_allclose(jac @ tb.vec(x), vec_y, rtol=1e-12, atol=1e-12)


# --- backward, eqs. 15.38, 15.48, 15.49 -----------------------------------------------------------
@pytest.mark.parametrize("in_shape,kshape", [((3, 4, 1), (2, 2, 1, 1)), ((5, 4, 3), (3, 2, 3, 2)), ((4, 4, 2), (1, 1, 2, 3))])
def test_textbook_gradients_equal_fast_backward(rng: np.random.Generator, in_shape: tuple, kshape: tuple) -> None:
    x, f = rng.standard_normal(in_shape), rng.standard_normal(kshape)
    y = tb.conv_forward_textbook(x, f)
    dy = rng.standard_normal(y.shape)
    dx, df = tb.conv_backward_textbook(x, f, dy)
    _, cache = conv2d_forward(x[None], f)
    dx_fast, df_fast, db = conv2d_backward(dy[None], cache)
    assert db is None
    np.testing.assert_allclose(dx, dx_fast[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df, df_fast, rtol=1e-12, atol=1e-12)
    # eq. 15.48: dX = M^T vec(dY F^T), with the explicit indicator matrix
    dy_mat = tb.unvec(tb.vec(dy), (y.shape[0] * y.shape[1], y.shape[2]))
    m = tb.indicator_matrix(in_shape, kshape[:2])
    np.testing.assert_allclose(tb.unvec(m.T @ tb.vec(dy_mat @ tb.filter_matrix(f).T), in_shape), dx, rtol=1e-12, atol=1e-12)
    # and the Jacobian of eq. 15.41 transposed
    np.testing.assert_allclose(tb.conv_jacobian_x(f, in_shape).T @ tb.vec(dy), tb.vec(dx), rtol=1e-12, atol=1e-12)


def test_textbook_backward_on_seed_example() -> None:
    """With dL/dy = all ones, dL/dA counts how many windows cover each pixel (fig. 15.5)."""
    dx, df = tb.conv_backward_textbook(A, np.ones((2, 2)), np.ones((2, 3, 1)))
    np.testing.assert_array_equal(dx[:, :, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [1, 2, 2, 1]])
    # dF = phi(A)^T 1 = the sum of each window position over the 6 windows
    np.testing.assert_array_equal(tb.vec(df), B_SEED.sum(axis=1))


def test_textbook_errors() -> None:
    with pytest.raises(ShapeError, match="3x4"):
        tb.im2row(A, (4, 2))
    with pytest.raises(ShapeError, match=r"D\^l=1"):
        tb.conv_forward_textbook(A, np.ones((2, 2, 3, 1)))
    with pytest.raises(ShapeError, match=r"\(2, 3, 1\)"):
        tb.conv_backward_textbook(A, np.ones((2, 2)), np.ones((3, 2, 1)))
    with pytest.raises(ShapeError, match="outside"):
        tb.m_inverse(3, 0, 0, A.shape, (2, 2))


# --- worked sizes of seeds 002 and 004 ------------------------------------------------------------
def _out(in_size: int, k: int, stride: int = 1, padding=0) -> tuple[int, int]:
    return window((in_size, in_size), k, stride, padding).out


@pytest.mark.parametrize(
    "in_size,k,stride,padding,expected",
    [
        (7, 3, 1, 0, 5),  # seed 002: 7x7, 3x3, stride 1, no padding -> 5x5
        (7, 3, 2, 0, 3),  # ... stride 2 -> 3x3
        (5, 3, 1, 1, 5),  # seed 002 1-D example: W=5, F=3, P=1, S=1 -> (5-3+2)/1+1 = 5
        (5, 3, 2, 1, 3),  # ... S=2 -> (5-3+2)/2+1 = 3; seed 004 fig. 1.8/1.9 (5x5 padded to 7x7, stride 2)
        (227, 11, 4, 0, 55),  # seed 002 AlexNet: (227-11)/4+1 = 55
        (5, 3, 1, 0, 3),  # seed 004 fig. 1.6: 5x5 with 3x3 -> 3x3
        (4, 3, 1, 0, 2),  # seed 004 fig. 1.7: 4x4 with 3x3 -> 2x2
        (4, 3, 1, 2, 6),  # seed 004 fig. 1.7: two layers of zero padding ("full") -> 6x6
        (32, 5, 1, 2, 32),  # seed 002: P=(F-1)/2 keeps the size (F=5, P=2)
        (32, 3, 1, 1, 32),  # F=3, P=1
        (224, 3, 1, 1, 224),  # seed 002 VGG CONV3: 224x224 stays 224x224
        (12, 7, 1, 0, 6),  # seed 002: FC-as-conv on the 384x384 image: (12-7)/1+1 = 6
        (7, 7, 1, 0, 1),  # seed 002: 7x7x512 with F=7 -> 1x1
        (384, 224, 32, 0, 6),  # seed 002: a 224 window sliding at stride 32 over 384: (384-224)/32+1 = 6
    ],
)
def test_seed_output_sizes(in_size: int, k: int, stride: int, padding: int, expected: int) -> None:
    assert _out(in_size, k, stride, padding) == (expected, expected)


@pytest.mark.parametrize(
    "in_size,k,stride,padding,exact",
    [
        (5, 3, 3, 1, 4 / 3 + 1),  # seed 002: S=3 "cannot be used" since 4 is not divisible by 3
        (10, 3, 2, 0, 4.5),  # seed 002: (10-3+0)/2+1 = 4.5 is not an integer
        (224, 11, 4, 0, 54.25),  # seed 002: the AlexNet paper's 224 does not work
        (224, 11, 4, 3, 55.75),  # seed 002: neither with 3 extra zero padding
    ],
)
def test_seed_invalid_sizes_floor_like_pytorch(in_size: int, k: int, stride: int, padding: int, exact: float) -> None:
    """The seed calls these settings invalid; cnnkit (like PyTorch and Caffe) floors and drops the rest."""
    assert (in_size - k + 2 * padding) / stride + 1 == pytest.approx(exact)
    assert _out(in_size, k, stride, padding) == (int(exact), int(exact))


def test_seed_002_alexnet_im2col_sizes(rng: np.random.Generator) -> None:
    """227x227x3 with 11x11x3 filters at stride 4: X_col is 363x3025 (our rows are its transpose)."""
    x = rng.standard_normal((1, 227, 227, 3)).astype(np.float32)
    rows, win = im2row_nhwc(x, 11, stride=4)
    assert win.out == (55, 55)
    assert rows.shape == (3025, 363) and 11 * 11 * 3 == 363 and 55 * 55 == 3025
    w = rng.standard_normal((11, 11, 3, 96)).astype(np.float32)
    y, _ = conv2d_forward(x, w, stride=4)
    assert y.shape == (1, 55, 55, 96)  # [55x55x96]


def test_seed_parameter_counts() -> None:
    gen = np.random.default_rng(0)
    # seed 002: a 5x5 filter on [32x32x3] has 5*5*3 = 75 weights plus one bias
    one = Conv2d(3, 1, 5, rng=gen)
    assert one.params["weight"].size == 75 and one.params["bias"].size == 1
    # 3x3 on [16x16x20]: 3*3*20 = 180 connections per neuron
    assert Conv2d(20, 1, 3, rng=gen).params["weight"].size == 180
    # AlexNet conv1: 96*11*11*3 = 34,848 weights, 34,944 parameters with the 96 biases
    alex = Conv2d(3, 96, 11, stride=4, rng=gen)
    assert alex.params["weight"].size == 34_848
    assert sum(p.size for p in alex.params.values()) == 34_944
    # seed 004 fig. 1.10: three 3x3 kernels over 3 channels = 27 parameters, 28 with the bias
    assert sum(p.size for p in Conv2d(3, 1, 3, rng=gen).params.values()) == 28
    # seed 002 VGG: CONV3-64 on RGB has (3*3*3)*64 = 1,728 weights, CONV3-128 after 64: 73,728
    assert Conv2d(3, 64, 3, padding=1, rng=gen).params["weight"].size == 1_728
    assert Conv2d(64, 128, 3, padding=1, rng=gen).params["weight"].size == 73_728
    # three stacked 3x3 layers (27 C^2) versus one 7x7 layer (49 C^2), C channels, no bias
    c = 4
    assert 3 * Conv2d(c, c, 3, bias=False, rng=gen).params["weight"].size == 27 * c * c
    assert Conv2d(c, c, 7, bias=False, rng=gen).params["weight"].size == 49 * c * c


def test_seed_002_conv_with_12_filters_keeps_32x32(rng: np.random.Generator) -> None:
    """[32x32x3] through 12 filters (with the size-keeping padding) is [32x32x12]."""
    layer = Conv2d(3, 12, 5, padding=2, rng=rng)
    assert layer(np.zeros((1, 32, 32, 3), dtype=np.float32)).shape == (1, 32, 32, 12)
    assert Conv2d(3, 12, 5, padding="same", rng=rng)(np.zeros((1, 32, 32, 3), dtype=np.float32)).shape == (1, 32, 32, 12)


def test_seed_002_one_by_one_conv_is_a_depth_dot_product(rng: np.random.Generator) -> None:
    """A 1x1 convolution on [32x32x3] is a 3-D dot product at every pixel."""
    x, w = rng.standard_normal((1, 32, 32, 3)), rng.standard_normal((1, 1, 3, 5))
    y, _ = conv2d_forward(x, w)
    np.testing.assert_allclose(y, x @ w[0, 0], rtol=1e-12, atol=1e-12)


def test_seed_002_dilation_gap_example(rng: np.random.Generator) -> None:
    """Seed 002: w[0]*x[0] + w[1]*x[2] + w[2]*x[4] (a gap of 1, PyTorch's dilation=2)."""
    x, w = rng.standard_normal((1, 1, 9, 1)), rng.standard_normal((1, 3, 1, 1))
    y, _ = conv2d_forward(x, w, dilation=2)
    assert y.shape == (1, 1, 5, 1)
    xs, ws = x[0, 0, :, 0], w[0, :, 0, 0]
    assert y[0, 0, 0, 0] == pytest.approx(ws[0] * xs[0] + ws[1] * xs[2] + ws[2] * xs[4])
    assert y[0, 0, 4, 0] == pytest.approx(ws[0] * xs[4] + ws[1] * xs[6] + ws[2] * xs[8])


def test_seed_002_fc_as_conv(rng: np.random.Generator) -> None:
    """A filter as large as the input (F = input size) is a fully connected layer (small stand-in for 7x7x512)."""
    x, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 3, 4, 6))
    y, _ = conv2d_forward(x, w)
    assert y.shape == (2, 1, 1, 6)
    np.testing.assert_allclose(y[:, 0, 0], x.reshape(2, -1) @ w.reshape(-1, 6), rtol=1e-12, atol=1e-12)


def test_seed_000_same_padding_rule() -> None:
    """§15.5.1: pad floor((H-1)/2) above, floor(H/2) below (and the same for W) keeps the size."""
    for k in range(1, 7):
        win = window((9, 8), (k, k + 1), 1, "same")
        assert win.pads == ((k - 1) // 2, k // 2, k // 2, (k + 1) // 2)
        assert win.out == (9, 8)
