"""The seed's worked examples of chapter 15 (§15.5.3-15.7.1) and the sizes worked in seeds 002/004.

cnnkit.textbook runs the equations literally (MATLAB order, one image, stride 1, no padding); these
tests pin it to the seed's numbers and check that it computes the same map as the fast NHWC path,
cnnkit.ops.conv and cnnkit.ops.pool. They also evaluate every step of the derivations 15.31-15.49,
walk through table 15.1, and check pooling's (limited) translation invariance, the composition of two
stacked 3 x 3 convolutions, and the convolution theorem of seed 004 (with cnnkit.ops.fft).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import textbook as tb
from cnnkit.errors import ShapeError
from cnnkit.nn.conv import Conv2d
from cnnkit.ops.conv import conv2d_backward, conv2d_forward
from cnnkit.ops.fft import conv2d_fft, convolve2d, correlate2d
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row as im2row_nhwc
from cnnkit.ops.pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

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


# --- table 15.1, walked through for concrete layers -----------------------------------------------
@pytest.mark.parametrize(
    "in_shape,kshape",
    [
        ((3, 4, 1), (2, 2, 1, 1)),  # fig. 15.3: A (3 x 4) and one 2 x 2 kernel
        ((6, 5, 3), (3, 2, 3, 4)),  # three input channels, four kernels, a non-square kernel
    ],
)
def test_table_15_1_rows_against_the_arrays(rng: np.random.Generator, in_shape: tuple, kshape: tuple) -> None:
    """Every row of table 15.1 against the arrays the textbook path and the fast NHWC path build."""
    hl, wl, dl = in_shape
    h, w, _, d = kshape
    ho, wo = hl - h + 1, wl - w + 1
    sizes = tb.table_15_1(in_shape, kshape)
    assert list(sizes) == ["X", "F", "Y", "phi", "M", "dz/dY", "dz/dF", "dz/dX"]  # the table's order
    x, f = rng.standard_normal(in_shape), rng.standard_normal(kshape)
    # X (alias x^l): H^l W^l x D^l, column d^l = vec of channel d^l; cnnkit's NHWC image reshapes to the same size
    X = tb.unvec(tb.vec(x), sizes["X"])
    assert X.shape == (hl * wl, dl)
    for c in range(dl):
        np.testing.assert_array_equal(X[:, c], tb.vec(x[:, :, c]))
    assert x[None].reshape(-1, dl).shape == sizes["X"]
    # F (aliases f, w^l): H W D^l x D; cnnkit's conv weight (kh, kw, C_in, C_out) reshapes to the same size
    fmat = tb.filter_matrix(f)
    assert fmat.shape == sizes["F"] == (h * w * dl, d)
    weight = Conv2d(dl, d, (h, w), bias=False, rng=np.random.default_rng(0)).params["weight"]
    assert weight.reshape(-1, weight.shape[-1]).shape == sizes["F"]
    # Y (aliases y, x^{l+1}): H^{l+1} W^{l+1} x D^{l+1}, D^{l+1} = D
    y = tb.conv_forward_textbook(x, f)
    assert y.shape == (ho, wo, d)
    Y = tb.unvec(tb.vec(y), sizes["Y"])
    assert Y.shape == (ho * wo, d)
    y_fast, cache = conv2d_forward(x[None], f)
    assert y_fast[0].reshape(-1, d).shape == sizes["Y"]
    # phi(x^l): H^{l+1} W^{l+1} x H W D^l; phi(x^l) F has Y's size (eq. 15.25)
    phi = tb.im2row(x, (h, w))
    assert phi.shape == sizes["phi"] == im2row_nhwc(x[None], (h, w))[0].shape
    np.testing.assert_allclose(phi @ fmat, Y, rtol=1e-12, atol=1e-12)
    # M: H^{l+1} W^{l+1} H W D^l x H^l W^l D^l, as many rows as phi has entries and columns as x^l (eq. 15.40)
    m = tb.indicator_matrix(in_shape, (h, w))
    assert m.shape == sizes["M"] == (phi.size, x.size)
    # dz/dY (alias dz/dvec(y)), dz/dF (alias dz/dvec(f)), dz/dX (alias dz/dvec(x^l)) for z = 1/2 ||y - t||^2
    t = rng.standard_normal(y.shape)
    dY = tb.unvec(tb.vec(y - t), sizes["dz/dY"])
    assert dY.shape == Y.shape
    dx, df = tb.conv_backward_textbook(x, f, y - t)
    assert tb.filter_matrix(df).shape == sizes["dz/dF"] == fmat.shape
    assert tb.unvec(tb.vec(dx), sizes["dz/dX"]).shape == X.shape
    dx_fast, dw_fast, _ = conv2d_backward((y - t)[None], cache)
    assert dx_fast is not None
    assert dw_fast.reshape(-1, d).shape == sizes["dz/dF"] and dx_fast[0].reshape(-1, dl).shape == sizes["dz/dX"]
    np.testing.assert_allclose(tb.filter_matrix(df), phi.T @ dY, rtol=1e-12, atol=1e-12)  # eq. 15.38 in these sizes


def test_table_15_1_for_vgg16_conv1_1(rng: np.random.Generator) -> None:
    """Table 15.2 row 1, Conv 64;3x3;p=1,st=1 on 224 x 224 x 3: the padded 226 x 226 x 3 input in table 15.1's sizes."""
    sizes = tb.table_15_1((226, 226, 3), (3, 3, 3, 64))
    assert sizes["X"] == (226 * 226, 3) and sizes["F"] == (27, 64) and sizes["Y"] == (224 * 224, 64)
    assert sizes["phi"] == (50_176, 27) and sizes["M"] == (50_176 * 27, 226 * 226 * 3)  # M: 1.4M x 153k, never built
    x = rng.standard_normal((1, 224, 224, 3)).astype(np.float32)
    rows, win = im2row_nhwc(x, 3, padding=1)
    assert rows.shape == sizes["phi"] and win.out == (224, 224)  # one image: N H^{l+1} W^{l+1} = H^{l+1} W^{l+1} rows
    y, _ = conv2d_forward(x, rng.standard_normal((3, 3, 3, 64)).astype(np.float32), padding=1)
    assert y[0].reshape(-1, 64).shape == sizes["Y"]


def test_table_15_1_errors() -> None:
    with pytest.raises(ShapeError, match="channels"):
        tb.table_15_1((4, 4, 3), (2, 2, 2, 1))
    assert tb.table_15_1((4, 4), (2, 2)) == tb.table_15_1((4, 4, 1), (2, 2, 1, 1))


# --- the derivations 15.31-15.38 and 15.41-15.49, one identity at a time --------------------------------
# What each equation says: (left-hand side, right-hand side, shape of both) for H^l W^l D^l = 4 x 5 x 2 and
# f 2 x 3 x 2 x 3, so H^{l+1} W^{l+1} = 9, H W D^l = 12, D = 3. Left-hand derivatives are central differences
# of z = 1/2 ||y - t||^2 (exact for a quadratic) or the linear maps applied to unit vectors; never the chain rule.
DZ_DF_STEPS = {
    "15.31": ("∂z/∂vec(F)^T", "∂z/∂vec(Y)^T ∂vec(y)/∂vec(F)^T", (1, 36)),  # chain rule, probed Jacobian
    "15.32": ("∂vec(y)/∂vec(F)^T", "I ⊗ φ(x^l)", (27, 36)),  # y = (I ⊗ φ) vec(F) (eq. 15.29), I is D x D
    "15.33": ("∂z/∂vec(F)^T", "∂z/∂vec(y)^T (I ⊗ φ(x^l))", (1, 36)),  # 15.31 with 15.32
    "15.34": ("∂z/∂vec(F)", "(I ⊗ φ(x^l))^T ∂z/∂vec(y)", (36, 1)),  # 15.33 transposed
    "15.35": ("(I ⊗ φ(x^l))^T ∂z/∂vec(y)", "(I ⊗ φ(x^l)^T) vec(∂z/∂Y)", (36, 1)),  # eq. 15.27
    "15.36": ("(I ⊗ φ(x^l)^T) vec(∂z/∂Y)", "vec(φ(x^l)^T ∂z/∂Y I)", (36, 1)),  # eq. 15.28, right to left
    "15.37": ("vec(φ(x^l)^T ∂z/∂Y I)", "vec(φ(x^l)^T ∂z/∂Y)", (36, 1)),  # drop I
    "15.38": ("∂z/∂F", "φ(x^l)^T ∂z/∂Y", (12, 3)),  # the rule, as an HWD^l x D matrix
}
DZ_DX_STEPS = {
    "15.41": ("∂vec(y)/∂vec(x^l)^T", "(F^T ⊗ I) M", (27, 40)),  # eqs. 15.30 and 15.40, I is H^{l+1}W^{l+1} square
    "15.42": ("∂z/∂vec(x^l)^T", "∂z/∂vec(y)^T (F^T ⊗ I) M", (1, 40)),  # chain rule with 15.41
    "15.43": ("∂z/∂vec(y)^T (F^T ⊗ I)", "((F ⊗ I) ∂z/∂vec(y))^T", (1, 108)),  # eq. 15.27
    "15.44": ("((F ⊗ I) ∂z/∂vec(y))^T", "((F ⊗ I) vec(∂z/∂Y))^T", (1, 108)),  # vec(y) = vec(Y)
    "15.45": ("((F ⊗ I) vec(∂z/∂Y))^T", "vec(I ∂z/∂Y F^T)^T", (1, 108)),  # eq. 15.28, right to left
    "15.46": ("vec(I ∂z/∂Y F^T)^T", "vec(∂z/∂Y F^T)^T", (1, 108)),  # drop I
    "15.47": ("∂z/∂vec(x^l)^T", "vec(∂z/∂Y F^T)^T M", (1, 40)),  # 15.42 with 15.43-15.46
    "15.48": ("∂z/∂vec(x^l)", "M^T vec(∂z/∂Y F^T)", (40, 1)),  # 15.47 transposed
    "15.49": ("[∂z/∂X]_(i^l, j^l, d^l)", "Σ_{(p, q) ∈ m^{-1}(i^l, j^l, d^l)} [∂z/∂Y F^T]_(p, q)", (20, 2)),  # M^T as sums
}


@pytest.fixture(scope="module")
def derivation_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gen = np.random.default_rng(1515)
    return gen.standard_normal((4, 5, 2)), gen.standard_normal((2, 3, 2, 3)), gen.standard_normal((3, 3, 3))


@pytest.fixture(scope="module")
def dz_df_steps(derivation_case: tuple) -> dict[str, tb.Identity]:
    return {s.eq: s for s in tb.filter_gradient_derivation(*derivation_case)}


@pytest.fixture(scope="module")
def dz_dx_steps(derivation_case: tuple) -> dict[str, tb.Identity]:
    return {s.eq: s for s in tb.input_gradient_derivation(*derivation_case)}


@pytest.mark.parametrize("eq", list(DZ_DF_STEPS))
def test_derivation_of_dz_df_eqs_15_31_to_15_38(dz_df_steps: dict[str, tb.Identity], eq: str) -> None:
    lhs_text, rhs_text, shape = DZ_DF_STEPS[eq]
    step = dz_df_steps[eq]
    assert (step.lhs_text, step.rhs_text) == (lhs_text, rhs_text)
    assert step.lhs.shape == step.rhs.shape == shape
    np.testing.assert_allclose(step.lhs, step.rhs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("eq", list(DZ_DX_STEPS))
def test_derivation_of_dz_dx_eqs_15_41_to_15_49(dz_dx_steps: dict[str, tb.Identity], eq: str) -> None:
    lhs_text, rhs_text, shape = DZ_DX_STEPS[eq]
    step = dz_dx_steps[eq]
    assert (step.lhs_text, step.rhs_text) == (lhs_text, rhs_text)
    assert step.lhs.shape == step.rhs.shape == shape
    np.testing.assert_allclose(step.lhs, step.rhs, rtol=1e-9, atol=1e-9)


def test_derivations_end_at_the_fast_backward(derivation_case: tuple, dz_df_steps: dict, dz_dx_steps: dict) -> None:
    """The finite-difference left-hand sides are the gradients conv2d_backward computes."""
    x, f, t = derivation_case
    y, cache = conv2d_forward(x[None], f)
    dx, dw, _ = conv2d_backward(y - t[None], cache)
    assert dx is not None
    np.testing.assert_allclose(dz_df_steps["15.38"].lhs, tb.filter_matrix(dw), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dz_dx_steps["15.48"].lhs[:, 0], tb.vec(dx[0]), rtol=1e-9, atol=1e-9)


def test_derivations_on_the_seed_example() -> None:
    """Fig. 15.3's A and 2 x 2 kernel with target 0: every step holds, and dz/dF = phi(A)^T Y = B Y."""
    steps = tb.filter_gradient_derivation(A, np.ones((2, 2)), np.zeros((2, 3))) + tb.input_gradient_derivation(
        A, np.ones((2, 2)), np.zeros((2, 3))
    )
    assert all(s.holds() for s in steps)
    np.testing.assert_allclose(steps[7].rhs[:, 0], B_SEED @ tb.vec(Y_SEED))
    with pytest.raises(ShapeError, match="target"):
        tb.filter_gradient_derivation(A, np.ones((2, 2)), np.zeros((3, 2)))


def test_matrix_derivative_fact_used_for_eq_15_32(rng: np.random.Generator) -> None:
    """Before eq. 15.33: ∂(Xa)/∂a^T = X (eq. 15.3 for the linear map a -> Xa). The text's other form, ∂(X a^T)/∂a,
    is not defined for a column vector a (X a^T is then an outer product, a matrix): erratum E25."""
    X = rng.standard_normal((4, 3))
    jac = np.stack([X @ e for e in np.eye(3)], axis=1)  # column k: the map applied to e_k, eq. 15.3
    np.testing.assert_allclose(jac, X, rtol=1e-14)
    a = rng.standard_normal((3, 1))
    with pytest.raises(ValueError):
        _ = X @ a.T  # (4 x 3) (1 x 3): X a^T needs X with one column
    assert (rng.standard_normal((4, 1)) @ a.T).shape == (4, 3)  # and then it is a matrix, not a vector


# --- pooling as an indicator matrix S(x^l), eqs. 15.56-15.59 ----------------------------------------------
def test_max_pooling_matrix_book_example_after_eq_15_59() -> None:
    """2 x 2 pooling at stride 2; the first subregion's maximum is at (0, 1)."""
    x = np.array([[1.0, 7.0, 0.0, 2.0], [3.0, 2.0, 5.0, 1.0]])  # subregions [[1, 7], [3, 2]] and [[0, 2], [5, 1]]
    s = tb.max_pooling_matrix(x, (2, 2))
    assert s.shape == (2, 8)  # (H^{l+1} W^{l+1} D^{l+1}) x (H^l W^l D^l), eq. 15.56
    u = {(i, j): i + 2 * j for j in range(4) for i in range(2)}  # column of (i^l, j^l) in vec order
    assert s[:, u[0, 1]].tolist() == [1, 0]  # the column of (0, 1) has one non-zero, in row (0, 0)
    for ij in [(0, 0), (1, 0), (1, 1)]:
        assert not s[:, u[ij]].any()  # "the columns indexed by (0,0), (1,0), (1,1) are all zero vectors"
    assert (s.sum(axis=0) <= 1).all()  # stride = window: a column has at most one non-zero
    dy = np.array([[10.0, 20.0]])
    dx = tb.pool_backward_textbook(x, dy, (2, 2))[:, :, 0]
    assert dx[0, 1] == 10 and dx[1, 2] == 20 and np.count_nonzero(dx) == 2  # [dz/dvec(x)]_(0,1) = [dz/dvec(y)]_(0,0)


def test_max_pooling_matrix_element_9_is_in_two_windows(rng: np.random.Generator) -> None:
    """Fig. 15.5's input, 2 x 2 pooling at stride 1: the column of 9 (at (2, 2)) has rows (1, 1) and (1, 2)."""
    s = tb.max_pooling_matrix(A, (2, 2), stride=1)
    rows = np.flatnonzero(s[:, 2 + 3 * 2])
    assert [tb.split_row_index(int(r), 2) for r in rows] == [(1, 1), (1, 2)]
    dy = rng.standard_normal((2, 3))
    dx = tb.pool_backward_textbook(A, dy, (2, 2), stride=1)[:, :, 0]
    assert dx[2, 2] == pytest.approx(dy[1, 1] + dy[1, 2])  # the book's last equation of §15.6


@pytest.mark.parametrize(
    "in_shape,kernel,stride",
    [
        ((4, 6, 3), (2, 2), None),  # the book: stride = window, H divides H^l (eq. 15.50)
        ((6, 6, 2), (3, 2), None),  # a non-square window
        ((5, 7, 2), (2, 2), None),  # H does not divide H^l: the last row/column is dropped (floor)
        ((5, 6, 2), (3, 3), (2, 2)),  # overlapping windows, stride 2
        ((4, 5, 1), (2, 3), (1, 2)),  # a different stride per axis
    ],
)
@pytest.mark.parametrize("use_jit", [True, False])
def test_max_pooling_matrix_is_the_fast_max_pool(rng: np.random.Generator, in_shape: tuple, kernel: tuple, stride, use_jit: bool) -> None:
    """vec(y) = S(x) vec(x) (eq. 15.57) is max_pool2d_forward, and S(x)^T vec(dy) (eq. 15.59) max_pool2d_backward."""
    x = rng.standard_normal(in_shape)  # no ties
    y_fast, cache = max_pool2d_forward(x[None], kernel, stride, use_jit=use_jit)
    s = tb.max_pooling_matrix(x, kernel, stride)
    assert s.shape == (y_fast[0].size, x.size)
    np.testing.assert_array_equal(s.sum(axis=1), 1)  # one non-zero per row (no ties)
    np.testing.assert_array_equal(s @ tb.vec(x), tb.vec(y_fast[0]))  # eq. 15.57, vec() reorders NHWC to MATLAB
    np.testing.assert_array_equal(tb.pool_forward_textbook(x, kernel, stride), y_fast[0])
    dy = rng.standard_normal(y_fast.shape)
    dx_fast = max_pool2d_backward(dy, cache)
    np.testing.assert_allclose(s.T @ tb.vec(dy[0]), tb.vec(dx_fast[0]), rtol=1e-12, atol=1e-12)  # eq. 15.59
    np.testing.assert_allclose(tb.pool_backward_textbook(x, dy[0], kernel, stride), dx_fast[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "in_shape,kernel,stride",
    [((4, 6, 3), (2, 2), None), ((6, 6, 2), (3, 2), None), ((5, 6, 2), (3, 3), (2, 2)), ((4, 5, 1), (2, 3), (1, 2))],
)
def test_avg_pooling_matrix_is_the_fast_avg_pool(rng: np.random.Generator, in_shape: tuple, kernel: tuple, stride) -> None:
    x = rng.standard_normal(in_shape)
    y_fast, cache = avg_pool2d_forward(x[None], kernel, stride)
    s = tb.avg_pooling_matrix(in_shape, kernel, stride)
    np.testing.assert_allclose(s.sum(axis=1), 1)  # every row averages: H W entries of 1/(H W)
    assert set(np.unique(s)) == {0.0, 1.0 / (kernel[0] * kernel[1])}
    np.testing.assert_allclose(s @ tb.vec(x), tb.vec(y_fast[0]), rtol=1e-12, atol=1e-12)  # eq. 15.52 as eq. 15.57
    np.testing.assert_allclose(tb.pool_forward_textbook(x, kernel, stride, kind="avg"), y_fast[0], rtol=1e-12, atol=1e-12)
    # independent of x: the Jacobian of a linear map, the same S for any input
    np.testing.assert_array_equal(s, tb.avg_pooling_matrix(in_shape, kernel, stride))
    dy = rng.standard_normal(y_fast.shape)
    dx_fast = avg_pool2d_backward(dy, cache)
    np.testing.assert_allclose(s.T @ tb.vec(dy[0]), tb.vec(dx_fast[0]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.pool_backward_textbook(x, dy[0], kernel, stride, kind="avg"), dx_fast[0], rtol=1e-12, atol=1e-12)


def test_max_pooling_ties(rng: np.random.Generator) -> None:
    """Erratum E4: with a tied maximum S(x) needs a rule. The book lists a window's elements (0,0), (1,0), (0,1),
    (1,1) (column-major, its vec order); cnnkit and PyTorch take the first maximum in row-major order."""
    x = np.maximum(rng.integers(-2, 3, size=(6, 8, 2)), 0).astype(np.float64)  # after ReLU: many tied windows
    x[0:2, 0:2, 0] = [[0.0, 5.0], [5.0, 0.0]]  # a tie where the two orders disagree
    y_fast, cache = max_pool2d_forward(x[None], 2)
    dy = rng.standard_normal(y_fast.shape)
    dx_fast = max_pool2d_backward(dy, cache)[0]
    s_row = tb.max_pooling_matrix(x, (2, 2), ties="row-major")
    s_col = tb.max_pooling_matrix(x, (2, 2), ties="column-major")
    for s in (s_row, s_col):  # either rule gives the same y (eq. 15.57)...
        np.testing.assert_array_equal(s @ tb.vec(x), tb.vec(y_fast[0]))
    np.testing.assert_array_equal(tb.unvec(s_row.T @ tb.vec(dy[0]), x.shape), dx_fast)  # ...cnnkit's is row-major
    dx_col = tb.unvec(s_col.T @ tb.vec(dy[0]), x.shape)
    assert dx_col[1, 0, 0] == dy[0, 0, 0, 0] and dx_col[0, 1, 0] == 0  # the book's order picks (1, 0)
    assert dx_fast[0, 1, 0] == dy[0, 0, 0, 0] and dx_fast[1, 0, 0] == 0  # cnnkit's picks (0, 1)
    # eqs. 15.53-15.55 taken literally mark every tied maximum: rows with several 1s, and eq. 15.57 fails
    s_all = tb.max_pooling_matrix(x, (2, 2), ties="all")
    assert s_all.sum(axis=1).max() > 1
    assert not np.array_equal(s_all @ tb.vec(x), tb.vec(y_fast[0]))


def test_pooling_matrix_errors() -> None:
    with pytest.raises(ValueError, match="ties"):
        tb.max_pooling_matrix(A, (2, 2), ties="random")
    with pytest.raises(ValueError, match="kind"):
        tb.pool_forward_textbook(A, (2, 2), kind="median")
    with pytest.raises(ShapeError, match="fit inside"):
        tb.avg_pooling_matrix((3, 4), (4, 2))
    with pytest.raises(ShapeError, match=r"\(1, 2, 1\)"):
        tb.pool_backward_textbook(A, np.ones((2, 2)), (2, 2))


# --- pooling's translation invariance (seed 004 §1.4) and its limit ---------------------------------------
def _bright(i: int, j: int, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    img = np.zeros(shape)
    img[i, j] = 1.0
    return img


def test_max_pool_invariant_to_moves_inside_a_window() -> None:
    """A bright pixel moving within its 2 x 2 window leaves the pooled map unchanged; one more step changes it."""
    pooled = {(i, j): max_pool2d_forward(_bright(i, j)[None, :, :, None], 2)[0][0, :, :, 0] for i in range(4) for j in range(4)}
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:  # all four positions of the top-left window
        np.testing.assert_array_equal(pooled[i, j], [[1, 0], [0, 0]])
        np.testing.assert_array_equal(tb.pool_forward_textbook(_bright(i, j), (2, 2))[:, :, 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(pooled[0, 2], [[0, 1], [0, 0]])  # (0, 1) -> (0, 2) crosses into the next window
    np.testing.assert_array_equal(pooled[2, 1], [[0, 0], [1, 0]])  # (1, 1) -> (2, 1) likewise, downwards
    # a one-pixel shift to the right is absorbed exactly when the pixel does not cross a window boundary (j even)
    for i in range(4):
        for j in range(3):
            assert np.array_equal(pooled[i, j], pooled[i, j + 1]) == (j % 2 == 0)


def test_pooled_values_are_invariant_but_the_switches_move() -> None:
    """y stays the same inside the window, but S(x) does not: the gradient follows the pixel (eq. 15.59)."""
    a, b = _bright(0, 0), _bright(1, 1)
    sa, sb = tb.max_pooling_matrix(a, (2, 2)), tb.max_pooling_matrix(b, (2, 2))
    np.testing.assert_array_equal(sa @ tb.vec(a), sb @ tb.vec(b))
    assert not np.array_equal(sa, sb)
    dy = np.ones((2, 2))
    assert tb.pool_backward_textbook(a, dy, (2, 2))[0, 0, 0] == 1 and tb.pool_backward_textbook(b, dy, (2, 2))[1, 1, 0] == 1


def test_pooling_is_invariant_to_any_permutation_inside_the_windows(rng: np.random.Generator) -> None:
    """Max and average are symmetric functions of a window: shuffling each 2 x 2 block changes neither."""
    x = rng.standard_normal((1, 6, 8, 2))
    blocks = x.reshape(1, 3, 2, 4, 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(1, 3, 4, 2, 4)  # (.., C, 4 taps)
    shuffled = rng.permuted(blocks, axis=-1).reshape(1, 3, 4, 2, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(x.shape)
    assert not np.array_equal(shuffled, x)
    np.testing.assert_array_equal(np.sort(shuffled.reshape(-1)), np.sort(x.reshape(-1)))
    np.testing.assert_array_equal(max_pool2d_forward(shuffled, 2)[0], max_pool2d_forward(x, 2)[0])
    np.testing.assert_allclose(avg_pool2d_forward(shuffled, 2)[0], avg_pool2d_forward(x, 2)[0], rtol=1e-12, atol=1e-12)
    # shifting the whole image by one pixel is not such a permutation: the pooled map changes
    assert not np.allclose(max_pool2d_forward(np.roll(x, 1, axis=2), 2)[0], max_pool2d_forward(x, 2)[0])


# --- two stacked linear 3 x 3 convolutions and one 5 x 5 (§15.7.1, erratum E5) ------------------------
def test_two_stacked_3x3_convolutions_are_one_5x5(rng: np.random.Generator) -> None:
    """(x * f1) * f2 = x * K with K = compose_kernels(f1, f2), for several channels, on both paths."""
    x = rng.standard_normal((9, 8, 3))
    f1, f2 = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal((3, 3, 4, 2))
    k = tb.compose_kernels(f1, f2)
    assert k.shape == (5, 5, 3, 2)
    y1, _ = conv2d_forward(x[None], f1)
    y2, _ = conv2d_forward(y1, f2)
    y, _ = conv2d_forward(x[None], k)
    assert y.shape == y2.shape == (1, 5, 4, 2)
    np.testing.assert_allclose(y, y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.conv_forward_textbook(x, k), y2[0], rtol=1e-12, atol=1e-12)
    # unequal kernel sizes too: (H1 + H2 - 1) x (W1 + W2 - 1)
    g1, g2 = rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((3, 1, 2, 2))
    two = tb.conv_forward_textbook(tb.conv_forward_textbook(x, g1), g2)
    np.testing.assert_allclose(tb.conv_forward_textbook(x, tb.compose_kernels(g1, g2)), two, rtol=1e-12, atol=1e-12)


def test_composed_kernel_is_the_full_convolution_of_the_kernels(rng: np.random.Generator) -> None:
    """K[:, :, c, o] = sum over m of the full 2-D *convolution* (kernel flipped) of f1[:, :, c, m] and f2[:, :, m, o].

    Layers cross-correlate, and offsets add: a cross-correlation of cross-correlations is a cross-correlation
    with the full convolution of the kernels. The full cross-correlation of the kernels is not it."""
    f1, f2 = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal((3, 3, 4, 2))
    k = tb.compose_kernels(f1, f2)
    by_pairs = np.zeros_like(k)
    for c in range(3):
        for o in range(2):
            by_pairs[:, :, c, o] = sum(tb.convolve2d_full_textbook(f1[:, :, c, m], f2[:, :, m, o]) for m in range(4))
    np.testing.assert_allclose(k, by_pairs, rtol=1e-12, atol=1e-12)
    # the same with cnnkit.ops.fft: the input channels of f1 as a batch, its output channels as the channels
    full = convolve2d(f1.transpose(2, 0, 1, 3), f2, "full")  # (C_in, 5, 5, C_out), summed over m
    np.testing.assert_allclose(k, full.transpose(1, 2, 0, 3), rtol=1e-12, atol=1e-12)
    wrong = correlate2d(f1.transpose(2, 0, 1, 3), f2, "full").transpose(1, 2, 0, 3)
    assert not np.allclose(k, wrong)  # composing by correlation is wrong for non-symmetric kernels


def test_composition_reaches_only_a_17_c2_dimensional_set(rng: np.random.Generator) -> None:
    """The rank argument: 3 x 3 then 3 x 3 with C channels has 18 C^2 parameters, and (f1 A, A^{-1} f2) gives the
    same K, so the Jacobian has rank 17 C^2 < 25 C^2: the reachable 5 x 5 kernels form a set of measure zero."""
    for c in (1, 2):
        f1, f2 = rng.standard_normal((3, 3, c, c)), rng.standard_normal((3, 3, c, c))
        jac = tb.composition_jacobian(f1, f2)
        assert jac.shape == (25 * c * c, 18 * c * c)
        assert np.linalg.matrix_rank(jac) == 17 * c * c < 25 * c * c
        # the scaling direction (f1, -f2) is in the null space (K is bilinear)
        np.testing.assert_allclose(jac @ np.concatenate([tb.vec(f1), -tb.vec(f2)]), 0, atol=1e-12)


def _shift_matrix(g: np.ndarray) -> np.ndarray:
    """The 25 x 9 matrix of h -> compose_kernels(g, h) = compose_kernels(h, g) for one-channel 3 x 3 kernels."""
    m = np.zeros((5, 5, 3, 3))
    for a in range(3):
        for b in range(3):
            m[a : a + 3, b : b + 3, a, b] = g  # tap (a, b) of h adds a copy of g shifted by (a, b)
    return m.reshape(25, 9, order="F")  # rows vec(K), columns vec(h)


def _fit_composition(target: np.ndarray, starts: int = 6, iters: int = 300) -> float:
    """Best relative residual ||compose(f1, f2) - K|| / ||K|| of alternating least squares over single-channel 3 x 3 kernels.

    K is linear in f2 for fixed f1 and in f1 for fixed f2 (the two blocks of composition_jacobian), so each
    half-step is an exact least-squares solve and the residual never increases."""
    gen = np.random.default_rng(7)
    best = np.inf
    for _ in range(starts):
        f1, f2 = gen.standard_normal((3, 3)), gen.standard_normal((3, 3))
        for _ in range(iters):
            f2 = tb.unvec(np.linalg.lstsq(_shift_matrix(f1), tb.vec(target), rcond=None)[0], (3, 3))
            f1 = tb.unvec(np.linalg.lstsq(_shift_matrix(f2), tb.vec(target), rcond=None)[0], (3, 3))
        best = min(best, float(np.linalg.norm(tb.compose_kernels(f1, f2)[:, :, 0, 0] - target) / np.linalg.norm(target)))
    return best


def test_a_generic_5x5_kernel_is_not_two_3x3_kernels(rng: np.random.Generator) -> None:
    """Erratum E5: 18 numbers cannot reach every 25-entry kernel. The fit that recovers a composed kernel fails
    on a random one and on 1 + u^4 + v^4."""
    f1, f2 = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    jac = tb.composition_jacobian(f1, f2)  # the fit's linear maps are the two blocks of the Jacobian
    np.testing.assert_array_equal(_shift_matrix(f2), jac[:, :9])
    np.testing.assert_array_equal(_shift_matrix(f1), jac[:, 9:])
    composed = tb.compose_kernels(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))[:, :, 0, 0]
    assert _fit_composition(composed) < 1e-6  # the fit works when there is something to find
    assert _fit_composition(rng.standard_normal((5, 5))) > 0.1
    # K(u, v) = sum K[a, b] u^a v^b; composing multiplies these polynomials, so a composition is a product of
    # two polynomials of degree <= 2 in each variable. 1 + u^4 + v^4 is irreducible (its projective curve
    # X^4 + Y^4 + W^4 = 0 is smooth), and a constant factor would leave degree 4 > 2: no composition, even
    # with complex kernels.
    fermat = np.zeros((5, 5))
    fermat[0, 0] = fermat[4, 0] = fermat[0, 4] = 1.0
    assert _fit_composition(fermat) > 0.1


# --- the convolution theorem (seed 004 §1.2.4) ---------------------------------------------------------------
def test_dft2_is_numpy_fft2_and_a_kronecker_product(rng: np.random.Generator) -> None:
    a = rng.standard_normal((4, 6))
    np.testing.assert_allclose(tb.dft2(a), np.fft.fft2(a), rtol=1e-10, atol=1e-10)
    # eq. 15.28: vec(W_H a W_W^T) = (W_W ⊗ W_H) vec(a)
    np.testing.assert_allclose(tb.kron(tb.dft_matrix(6), tb.dft_matrix(4)) @ tb.vec(a), tb.vec(tb.dft2(a)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,kshape", [((5, 6), (3, 2)), ((4, 4), (4, 4)), ((7, 3), (1, 3))])
def test_convolution_theorem_circular_and_full(rng: np.random.Generator, shape: tuple, kshape: tuple) -> None:
    """F[f] F[g] = F[f * g]: exactly for circular convolution, and for ordinary convolution after zero padding."""
    f, g = rng.standard_normal(shape), rng.standard_normal(kshape)
    circ = tb.convolution_theorem(f, g, "circular")
    full = tb.convolution_theorem(f, g, "full")
    assert circ.lhs.shape == shape and full.lhs.shape == (shape[0] + kshape[0] - 1, shape[1] + kshape[1] - 1)
    np.testing.assert_allclose(circ.lhs, circ.rhs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(full.lhs, full.rhs, rtol=1e-9, atol=1e-9)
    # the textbook sums are cnnkit.ops.fft's direct and FFT convolutions
    x, w = f[None, :, :, None], g[:, :, None, None]
    np.testing.assert_allclose(tb.convolve2d_circular_textbook(f, g), convolve2d(x, w, "circular")[0, :, :, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.convolve2d_full_textbook(f, g), convolve2d(x, w, "full")[0, :, :, 0], rtol=1e-12, atol=1e-12)
    for mode in ("circular", "full"):
        np.testing.assert_allclose(conv2d_fft(x, w, mode, convolve=True), convolve2d(x, w, mode), rtol=1e-9, atol=1e-9)


def test_without_padding_the_product_gives_the_circular_convolution(rng: np.random.Generator) -> None:
    """Unpadded DFTs wrap around: their product is the circular convolution, not the ordinary one."""
    f, g = rng.standard_normal((5, 6)), rng.standard_normal((3, 3))
    back = np.fft.ifft2(np.fft.fft2(f) * np.fft.fft2(g, s=f.shape)).real
    np.testing.assert_allclose(back, tb.convolve2d_circular_textbook(f, g), rtol=1e-10, atol=1e-10)
    full = tb.convolve2d_full_textbook(f, g)
    assert not np.allclose(back, full[:5, :6])  # the first rows/columns got the wrapped-around tail added
    wrapped = full[:5, :6].copy()
    wrapped[:2] += full[5:, :6]
    wrapped[:, :2] += full[:5, 6:]
    wrapped[:2, :2] += full[5:, 6:]
    np.testing.assert_allclose(back, wrapped, rtol=1e-10, atol=1e-10)


def test_correlation_theorem_for_what_layers_compute(rng: np.random.Generator) -> None:
    """Layers cross-correlate (eq. 15.16): the DFT turns circular correlation into F[f] conj(F[g]) (g real), and
    over channels the products add, y_o = sum_c x_c ⋆ w_co."""
    x, w = rng.standard_normal((1, 6, 5, 3)), rng.standard_normal((3, 2, 3, 2))
    corr = conv2d_fft(x, w, "circular")  # (1, 6, 5, 2)
    np.testing.assert_allclose(corr, correlate2d(x, w, "circular"), rtol=1e-9, atol=1e-9)
    for o in range(2):
        spectrum = sum(np.fft.fft2(x[0, :, :, c]) * np.conj(np.fft.fft2(w[:, :, c, o], s=(6, 5))) for c in range(3))
        np.testing.assert_allclose(np.fft.fft2(corr[0, :, :, o]), spectrum, rtol=1e-9, atol=1e-9)
    # the positions where no window wraps are the layer's unpadded output
    y, _ = conv2d_forward(x, w)
    np.testing.assert_allclose(corr[:, : y.shape[1], : y.shape[2]], y, rtol=1e-9, atol=1e-9)


def test_convolution_theorem_errors() -> None:
    with pytest.raises(ValueError, match="mode"):
        tb.convolution_theorem(A, np.ones((2, 2)), "same")
    with pytest.raises(ShapeError, match="no larger"):
        tb.convolve2d_circular_textbook(np.ones((2, 2)), np.ones((3, 1)))
    with pytest.raises(ShapeError, match="matrix"):
        tb.dft2(np.ones((2, 2, 2)))
