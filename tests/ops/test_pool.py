"""Tests of cnnkit.ops.pool: gradient checks, the seeds' worked examples, PyTorch as oracle, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    lp_pool2d_backward,
    lp_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    max_unpool2d_backward,
    max_unpool2d_forward,
    unpool_output_size,
    upsample_nearest2d_backward,
    upsample_nearest2d_forward,
)
from tests.oracle import assert_close, nchw, nhwc, require_torch

GRAD_TOL = 1e-7


def op_grad_error(forward, backward, x: np.ndarray, seed: int = 0) -> float:
    """Max relative error between backward and centred differences of sum(r * forward(x))."""
    y, cache = forward(x)
    r = np.random.default_rng(seed).standard_normal(y.shape)
    dx = backward(r, cache)
    assert dx.shape == x.shape
    numeric = numerical_grad(lambda: float(np.sum(r * forward(x)[0])), x)
    return max_rel_error(dx, numeric)


def distinct_values(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float64 array without ties (values at least 0.01 apart), so max pooling is differentiable."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) * 0.01 - 0.005 * size).reshape(shape)


def geometry_ok(hw: tuple[int, int], k: int, s: int, p: int, d: int, ceil: bool) -> bool:
    if p > k // 2:
        return False
    span = min(hw) + 2 * p - d * (k - 1) - 1
    return span >= 0


# ---------------------------------------------------------------------------------------------
# numerical gradient checks (float64)
# ---------------------------------------------------------------------------------------------
MAX_GRID = [
    (hw, k, s, p, ceil, d)
    for hw, k, s, p, ceil, d in itertools.product([(7, 7), (6, 5)], [2, 3], [1, 2, 3], [0, 1], [False, True], [1, 2])
    if geometry_ok(hw, k, s, p, d, ceil)
]


@pytest.mark.parametrize("hw,k,s,p,ceil,d", MAX_GRID)
def test_max_pool_gradcheck(hw, k, s, p, ceil, d):
    x = distinct_values((2, *hw, 2), seed=k * 100 + s * 10 + p)
    err = op_grad_error(
        lambda a: max_pool2d_forward(a, k, s, p, ceil, d), max_pool2d_backward, x
    )
    assert err < GRAD_TOL


AVG_GRID = [
    (hw, k, s, p, ceil, cip)
    for hw, k, s, p, ceil, cip in itertools.product([(7, 7), (6, 5)], [2, 3], [1, 2, 3], [0, 1], [False, True], [True, False])
    if geometry_ok(hw, k, s, p, 1, ceil)
]


@pytest.mark.parametrize("hw,k,s,p,ceil,cip", AVG_GRID)
def test_avg_pool_gradcheck(hw, k, s, p, ceil, cip):
    x = np.random.default_rng(7).standard_normal((2, *hw, 2))
    err = op_grad_error(lambda a: avg_pool2d_forward(a, k, s, p, ceil, cip), avg_pool2d_backward, x)
    assert err < GRAD_TOL


@pytest.mark.parametrize(
    "norm,k,s,ceil", list(itertools.product([1, 2, 3, 2.5], [2, 3], [1, 2, 3], [False, True]))
)
def test_lp_pool_gradcheck(norm, k, s, ceil):
    x = np.random.default_rng(3).standard_normal((2, 7, 6, 2))
    err = op_grad_error(lambda a: lp_pool2d_forward(a, norm, k, s, ceil), lp_pool2d_backward, x)
    assert err < GRAD_TOL


def test_lp_pool_zero_window_has_zero_gradient():
    x = np.zeros((1, 4, 4, 1))
    x[0, 0, 0, 0] = 3.0
    y, cache = lp_pool2d_forward(x, 2, 2)
    assert y[0, 0, 0, 0] == 3.0 and np.all(y[0, 1:, :, 0] == 0)
    dx = lp_pool2d_backward(np.ones_like(y), cache)
    assert np.all(np.isfinite(dx))
    assert dx[0, 0, 0, 0] == 1.0 and np.count_nonzero(dx) == 1


@pytest.mark.parametrize(
    "k,s,p,hw,out", [(2, 2, 0, (6, 6), None), (3, 3, 1, (7, 8), (7, 8)), (2, 2, 0, (7, 7), (7, 7)), (2, 3, 1, (8, 8), (8, 8))]
)
def test_max_unpool_gradcheck(k, s, p, hw, out):
    """Switches of non-overlapping pooling (all distinct): unpooling is then linear with adjoint gather.
    (With repeated switches the forward keeps one value but, as in PyTorch, backward gathers for all.)"""
    x = distinct_values((2, *hw, 2), seed=11)
    pooled, pc = max_pool2d_forward(x, k, s, p)
    idx = max_pool2d_indices(pc)
    v = np.random.default_rng(1).standard_normal(pooled.shape)
    err = op_grad_error(
        lambda a: max_unpool2d_forward(a, idx, k, s, p, out), max_unpool2d_backward, v
    )
    assert err < GRAD_TOL


@pytest.mark.parametrize("scale", [1, 2, 3, (2, 3), (3, 1)])
def test_upsample_gradcheck(scale):
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 2))
    err = op_grad_error(lambda a: upsample_nearest2d_forward(a, scale), upsample_nearest2d_backward, x)
    assert err < GRAD_TOL


# ---------------------------------------------------------------------------------------------
# worked examples from the seeds
# ---------------------------------------------------------------------------------------------
SEED_X = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=np.float64)  # fig. 15.3/15.5 input


def test_seed_15_6_element_9_receives_two_gradients():
    """000 §15.6: 2x2 max pooling with stride 1 on the fig. 15.5 input; element 9 at (2, 2) is the maximum
    of the windows [[5, 6], [8, 9]] and [[6, 1], [9, 1]], i.e. outputs (1, 1) and (1, 2), so
    dz/dx(2,2) = dz/dy(1,1) + dz/dy(1,2)."""
    x = SEED_X[None, :, :, None]
    y, cache = max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 6, 6], [8, 9, 9]])
    dy = np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])[None, :, :, None]
    dx = max_pool2d_backward(dy, cache)[0, :, :, 0]
    assert dx[2, 2] == dy[0, 1, 1, 0] + dy[0, 1, 2, 0] == 110.0
    expected = np.zeros((3, 4))
    expected[1, 1], expected[1, 2], expected[2, 1], expected[2, 2] = 10.0, 20.0 + 30.0, 40.0, 110.0
    np.testing.assert_array_equal(dx, expected)
    # the column of S(x^l) for element 9 has two non-zeros: rows (1, 1) and (1, 2)
    idx = max_pool2d_indices(cache)[0, :, :, 0]
    assert idx[1, 1] == idx[1, 2] == 2 * 4 + 2
    np.testing.assert_array_equal(idx, [[5, 6, 6], [9, 10, 10]])


def test_seed_15_6_stride_2_routes_to_the_maximum_only():
    """000 §15.6: 2x2 pooling, stride 2, the first subregion's maximum at (0, 1): only that element gets
    dz/dy(0, 0); (0, 0), (1, 0), (1, 1) get 0 (and, stride = kernel, no element gets two gradients)."""
    x = np.array([[1.0, 7.0, 2.0, 0.0], [3.0, 4.0, 5.0, 6.0]])[None, :, :, None]
    y, cache = max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[7.0, 6.0]])
    dx = max_pool2d_backward(np.array([[[[2.5], [-1.0]]]]), cache)[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[0.0, 2.5, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]])


def test_seed_15_50_and_seed_002_pooling_sizes():
    """Eq. 15.50 H^{l+1} = H^l / H, and seed 002's (W1 - F)/S + 1 with D2 = D1: VGG's 2x2/2 pools
    224 -> 112 -> 56 -> 28 -> 14 -> 7, the overlapping F=3, S=2 pooling 55 -> 27 -> 13."""
    x = np.zeros((1, 224, 224, 3), dtype=np.float32)
    sizes = []
    for _ in range(5):
        x, _ = max_pool2d_forward(x, 2, 2)
        sizes.append(x.shape[1:])
    assert sizes == [(112, 112, 3), (56, 56, 3), (28, 28, 3), (14, 14, 3), (7, 7, 3)]
    assert avg_pool2d_forward(np.zeros((1, 55, 55, 2)), 3, 2)[0].shape == (1, 27, 27, 2)
    assert max_pool2d_forward(np.zeros((1, 27, 27, 2)), 3, 2)[0].shape == (1, 13, 13, 2)


def test_seed_004_pooling_gradients():
    """004 fig. 1.12: max pooling sends the whole gradient to the maximum at (0, 1); 3x3 average
    pooling gives every unit 1/9 of it."""
    x = np.array([[1.0, 8.0, 3.0], [4.0, 5.0, 6.0], [7.0, 2.0, 0.0]])[None, :, :, None]
    y, cache = max_pool2d_forward(x, 3)
    dx = max_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0]
    assert dx[0, 1] == 1.0 and np.count_nonzero(dx) == 1
    y, cache = avg_pool2d_forward(x, 3)
    assert y[0, 0, 0, 0] == pytest.approx(36.0 / 9)
    np.testing.assert_allclose(avg_pool2d_backward(np.ones_like(y), cache), np.full(x.shape, 1.0 / 9))


# ---------------------------------------------------------------------------------------------
# ties, the disjoint fast path and small behaviours
# ---------------------------------------------------------------------------------------------
def naive_max_pool_backward(x: np.ndarray, dy: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Loop reference: each window's gradient to its first maximum in row-major order (padding = -inf)."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf)
    dxp = np.zeros_like(xp)
    for b, i, j, ch in itertools.product(range(n), range(dy.shape[1]), range(dy.shape[2]), range(c)):
        win = xp[b, i * s : i * s + k, j * s : j * s + k, ch]
        a, bb = np.unravel_index(int(np.argmax(win)), win.shape)  # argmax returns the first maximum
        dxp[b, i * s + a, j * s + bb, ch] += dy[b, i, j, ch]
    return dxp[:, p : p + h, p : p + w, :]


def tied_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Few distinct values (lots of ties), like a ReLU output."""
    return np.maximum(np.random.default_rng(seed).integers(-2, 3, size=shape), 0).astype(np.float64)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0), (2, 3, 1)])
def test_ties_go_to_the_first_maximum(k, s, p):
    x = tied_input((2, 7, 7, 3), seed=k + s + p)
    y, cache = max_pool2d_forward(x, k, s, p)
    dy = np.random.default_rng(0).integers(-9, 10, size=y.shape).astype(np.float64)  # exact sums in any order
    np.testing.assert_array_equal(max_pool2d_backward(dy, cache), naive_max_pool_backward(x, dy, k, s, p))


def test_all_equal_window_routes_to_its_top_left():
    x = np.ones((1, 4, 4, 1))
    y, cache = max_pool2d_forward(x, 2)
    dx = max_pool2d_backward(np.ones_like(y), cache)[0, :, :, 0]
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1.0
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_array_equal(max_pool2d_indices(cache)[0, :, :, 0], [[0, 2], [8, 10]])


def test_tied_maxima_match_torch():
    torch = require_torch()
    x = tied_input((2, 8, 7, 3), seed=42)
    for k, s, p, d in [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), (2, 1, 1, 1)]:
        y, cache = max_pool2d_forward(x, k, s, p, False, d)
        dy = np.random.default_rng(k * s).integers(-9, 10, size=y.shape).astype(np.float64)
        xt = nchw(x)
        yt, it = torch.nn.functional.max_pool2d(xt, k, s, p, d, return_indices=True)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        np.testing.assert_array_equal(y, nhwc(yt))
        np.testing.assert_array_equal(max_pool2d_indices(cache), nhwc(it))
        np.testing.assert_array_equal(max_pool2d_backward(dy, cache), nhwc(xt.grad))


@pytest.mark.parametrize(
    "shape,k,s,p,ceil",
    [
        ((3, 8, 6, 4), 2, 2, 0, False),  # windows tile the input exactly: no zero fill, direct writes
        ((3, 9, 9, 4), 3, 3, 0, False),
        ((3, 7, 7, 4), 2, 2, 0, False),  # disjoint, last row/column uncovered
        ((3, 7, 7, 4), 2, 2, 0, True),  # disjoint, ceil_mode overhang
        ((3, 8, 8, 4), 2, 3, 1, False),  # stride > kernel, padded
        ((3, 6, 6, 4), 2, 2, 1, False),  # tiles the padded input
    ],
)
def test_disjoint_fast_path_equals_reference(shape, k, s, p, ceil):
    for x in (tied_input(shape, seed=1), distinct_values(shape, seed=2)):
        y, cache = max_pool2d_forward(x, k, s, p, ceil)
        dy = np.random.default_rng(3).standard_normal(y.shape)
        fast = max_pool2d_backward(dy, cache)
        reference = max_pool2d_backward(dy, cache, accumulate=True)
        np.testing.assert_array_equal(fast, reference)
        if not ceil:
            np.testing.assert_array_equal(fast, naive_max_pool_backward(x, dy, k, s, p))


def test_dtypes_follow_the_input():
    x32 = np.random.default_rng(0).standard_normal((1, 4, 4, 2)).astype(np.float32)
    for fwd, bwd in [
        (lambda a: max_pool2d_forward(a, 2), max_pool2d_backward),
        (lambda a: avg_pool2d_forward(a, 2), avg_pool2d_backward),
        (lambda a: lp_pool2d_forward(a, 2, 2), lp_pool2d_backward),
        (lambda a: upsample_nearest2d_forward(a, 2), upsample_nearest2d_backward),
    ]:
        y, cache = fwd(x32)
        assert y.dtype == np.float32
        assert bwd(np.ones(y.shape), cache).dtype == np.float32
    y, _ = max_pool2d_forward(np.arange(16).reshape(1, 4, 4, 1), 2)  # integers are promoted to float32
    assert y.dtype == np.float32 and y[0, :, :, 0].tolist() == [[5, 7], [13, 15]]


def test_forward_output_can_be_modified_in_place():
    """The cache keeps its own copy of y (an in-place op after pooling must not break backward)."""
    x = distinct_values((1, 4, 4, 2), seed=0)
    y, cache = max_pool2d_forward(x, 2)
    dy = np.ones_like(y)
    expected = max_pool2d_backward(dy, cache)
    y[...] = 0.0
    np.testing.assert_array_equal(max_pool2d_backward(dy, cache), expected)


def test_avg_pool_divisor_override():
    x = np.ones((1, 4, 4, 1))
    y, cache = avg_pool2d_forward(x, 2, divisor_override=2)
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 1), 2.0))
    np.testing.assert_array_equal(avg_pool2d_backward(np.ones_like(y), cache), np.full(x.shape, 0.5))


def test_unpool_default_size_and_values():
    x = np.array([[1.0, 7.0, 2.0, 0.0], [3.0, 4.0, 5.0, 6.0]])[None, :, :, None]
    pooled, cache = max_pool2d_forward(x, 2)
    up, ucache = max_unpool2d_forward(pooled, max_pool2d_indices(cache), 2)
    np.testing.assert_array_equal(up[0, :, :, 0], [[0.0, 7.0, 0.0, 0.0], [0.0, 0.0, 0.0, 6.0]])
    np.testing.assert_array_equal(max_unpool2d_backward(np.arange(8.0).reshape(1, 2, 4, 1), ucache)[0, :, :, 0], [[1.0, 7.0]])
    assert unpool_output_size((3, 3), 2) == (6, 6)
    assert unpool_output_size((3, 3), 3, 2, 1) == (5, 5)
    assert unpool_output_size((3, 3), 2, output_size=(1, 7, 7, 4)) == (7, 7)


# ---------------------------------------------------------------------------------------------
# PyTorch oracle
# ---------------------------------------------------------------------------------------------
def _torch_dy(dy: np.ndarray):
    torch = require_torch()
    return torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))


MAX_ORACLE = [  # (shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 9, 9, 3), 3, 2, 1, 1, False),
    ((2, 9, 9, 3), 3, 2, 1, 1, True),
    ((3, 7, 7, 2), 2, 2, 0, 1, True),
    ((2, 8, 11, 4), (2, 3), (1, 2), (1, 1), 1, False),
    ((2, 10, 10, 2), 3, 1, 1, 2, False),
    ((2, 10, 9, 2), (3, 2), (2, 3), (1, 0), (2, 3), True),
    ((1, 6, 6, 5), 1, 2, 0, 1, False),
    ((2, 12, 12, 3), 4, 3, 2, 1, True),
]


@pytest.mark.parametrize("shape,k,s,p,d,ceil", MAX_ORACLE)
def test_max_pool_matches_torch(shape, k, s, p, d, ceil):
    torch = require_torch()
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    y, cache = max_pool2d_forward(x, k, s, p, ceil, d)
    dy = rng.standard_normal(y.shape)
    xt = nchw(x)
    yt, it = torch.nn.functional.max_pool2d(xt, k, s, p, d, ceil, return_indices=True)
    yt.backward(_torch_dy(dy))
    assert_close(y, nhwc(yt))
    np.testing.assert_array_equal(max_pool2d_indices(cache), nhwc(it))
    assert_close(max_pool2d_backward(dy, cache), nhwc(xt.grad))


AVG_ORACLE = [  # (shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ((2, 9, 9, 3), 3, 2, 1, False, True, None),
    ((2, 9, 9, 3), 3, 2, 1, True, True, None),
    ((2, 9, 9, 3), 3, 2, 1, True, False, None),
    ((2, 8, 7, 2), 2, 2, 1, True, True, None),
    ((2, 7, 8, 2), (3, 2), (2, 1), (1, 1), True, False, None),
    ((2, 10, 10, 2), 4, 3, 2, True, True, None),
    ((2, 6, 6, 2), 3, 1, 1, False, True, 5),
    ((1, 7, 7, 4), 7, None, 0, False, True, None),
]


@pytest.mark.parametrize("shape,k,s,p,ceil,cip,div", AVG_ORACLE)
def test_avg_pool_matches_torch(shape, k, s, p, ceil, cip, div):
    torch = require_torch()
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.standard_normal(shape)
    y, cache = avg_pool2d_forward(x, k, s, p, ceil, cip, div)
    dy = rng.standard_normal(y.shape)
    xt = nchw(x)
    yt = torch.nn.functional.avg_pool2d(xt, k, s, p, ceil, cip, div)
    yt.backward(_torch_dy(dy))
    assert_close(y, nhwc(yt))
    assert_close(avg_pool2d_backward(dy, cache), nhwc(xt.grad))


@pytest.mark.parametrize(
    "norm,positive,shape,k,s",
    [
        (2, False, (2, 8, 8, 3), 2, None),
        (2, False, (2, 9, 7, 3), 3, 2),
        (2, False, (2, 7, 9, 2), (2, 3), (1, 2)),
        (3, True, (2, 8, 8, 3), 2, None),
        (3, True, (2, 9, 9, 2), 3, 2),
        (1.5, True, (2, 6, 6, 2), 2, 1),
    ],
)
def test_lp_pool_matches_torch(norm, positive, shape, k, s):
    torch = require_torch()
    rng = np.random.default_rng(int(norm * 10) + sum(shape))
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.1
    y, cache = lp_pool2d_forward(x, norm, k, s)
    dy = rng.standard_normal(y.shape)
    xt = nchw(x)
    yt = torch.nn.functional.lp_pool2d(xt, norm, k, s)
    yt.backward(_torch_dy(dy))
    assert_close(y, nhwc(yt))
    assert_close(lp_pool2d_backward(dy, cache), nhwc(xt.grad))


def test_lp_pool_ceil_mode_differs_from_torch_only_by_its_rescaling():
    """With ceil_mode PyTorch computes (kh*kw * mean over the taps inside)^(1/p) for a window that hangs
    over the edge; cnnkit keeps the plain sum. y_torch^p * (taps inside) / (kh*kw) == y^p."""
    torch = require_torch()
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 2))
    y, _ = lp_pool2d_forward(x, 2, 3, 2, ceil_mode=True)
    yt = nhwc(torch.nn.functional.lp_pool2d(nchw(x), 2, 3, 2, ceil_mode=True))
    assert y.shape == yt.shape == (2, 3, 3, 2)
    inside = np.minimum(np.arange(3) * 2 + 3, 7) - np.arange(3) * 2  # taps inside per axis: 3, 3, 1
    count = (inside[:, None] * inside[None, :])[None, :, :, None]
    assert_close(yt**2 * count / 9.0, y**2)


@pytest.mark.parametrize(
    "shape,k,s,p,out",
    [
        ((2, 8, 8, 3), 2, 2, 0, None),
        ((2, 7, 7, 3), 2, 2, 0, (7, 7)),
        ((2, 9, 9, 2), 3, 2, 1, None),  # overlapping windows: repeated switches
        ((2, 9, 10, 2), 3, 3, 1, (9, 10)),
    ],
)
def test_max_unpool_matches_torch(shape, k, s, p, out):
    torch = require_torch()
    rng = np.random.default_rng(sum(shape) + 2)
    x = rng.standard_normal(shape)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    pooled_t, idx_t = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
    pooled, idx = nhwc(pooled_t).copy(), nhwc(idx_t).copy()
    _, pc = max_pool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(max_pool2d_indices(pc), idx)
    y, cache = max_unpool2d_forward(pooled, idx, k, s, p, out)
    vt = nchw(pooled)
    yt = torch.nn.functional.max_unpool2d(vt, idx_t, k, s, p, output_size=out)
    dy = rng.standard_normal(y.shape)
    yt.backward(_torch_dy(dy))
    assert_close(y, nhwc(yt))
    assert_close(max_unpool2d_backward(dy, cache), nhwc(vt.grad))


@pytest.mark.parametrize("scale", [2, (2, 3), (1, 4)])
def test_upsample_matches_torch(scale):
    torch = require_torch()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 5, 3))
    y, cache = upsample_nearest2d_forward(x, scale)
    dy = rng.standard_normal(y.shape)
    xt = nchw(x)
    sf = (float(scale), float(scale)) if isinstance(scale, int) else tuple(float(v) for v in scale)
    yt = torch.nn.functional.interpolate(xt, scale_factor=sf, mode="nearest")
    yt.backward(_torch_dy(dy))
    assert_close(y, nhwc(yt))
    assert_close(upsample_nearest2d_backward(dy, cache), nhwc(xt.grad))


def test_float32_matches_torch():
    torch = require_torch()
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 12, 12, 8)).astype(np.float32)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    ops = [
        (lambda a: max_pool2d_forward(a, 3, 2, 1), max_pool2d_backward, lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1)),
        (lambda a: avg_pool2d_forward(a, 3, 2, 1, True, False), avg_pool2d_backward,
         lambda t: torch.nn.functional.avg_pool2d(t, 3, 2, 1, True, False)),
        (lambda a: lp_pool2d_forward(a, 2, 2), lp_pool2d_backward, lambda t: torch.nn.functional.lp_pool2d(t, 2, 2)),
        (lambda a: upsample_nearest2d_forward(a, 2), upsample_nearest2d_backward,
         lambda t: torch.nn.functional.interpolate(t, scale_factor=2.0, mode="nearest")),
    ]
    for fwd, bwd, tfn in ops:
        xt.grad = None
        y, cache = fwd(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        yt = tfn(xt)
        yt.backward(_torch_dy(dy))
        assert y.dtype == np.float32
        assert_close(y, nhwc(yt), dtype=np.float32)
        assert_close(bwd(dy, cache), nhwc(xt.grad), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_wrong_rank_is_rejected():
    x = np.zeros((4, 4, 3))
    for call in (
        lambda: max_pool2d_forward(x, 2),
        lambda: avg_pool2d_forward(x, 2),
        lambda: lp_pool2d_forward(x, 2, 2),
        lambda: upsample_nearest2d_forward(x, 2),
        lambda: max_unpool2d_forward(x, np.zeros((4, 4, 3), dtype=np.int64), 2),
    ):
        with pytest.raises(ShapeError, match=r"\(4, 4, 3\)"):
            call()


def test_kernel_larger_than_padded_input():
    x = np.zeros((1, 3, 3, 1))
    with pytest.raises(ShapeError, match="3x3"):
        max_pool2d_forward(x, 5, padding=0)
    with pytest.raises(ShapeError, match="does not fit"):
        avg_pool2d_forward(x, (6, 2), padding=(1, 0))  # 6 rows > 3 + 2*1
    with pytest.raises(ShapeError, match="does not fit"):
        max_pool2d_forward(x, 2, dilation=3)


def test_padding_larger_than_half_the_kernel():
    x = np.zeros((1, 6, 6, 1))
    with pytest.raises(ShapeError, match="half the kernel"):
        max_pool2d_forward(x, 3, padding=2)
    with pytest.raises(ShapeError, match="half the kernel"):
        avg_pool2d_forward(x, 2, padding=(0, 2))
    with pytest.raises(ShapeError, match="padding"):
        max_pool2d_forward(x, 2, padding="same")
    with pytest.raises(ShapeError, match="stride"):
        max_pool2d_forward(x, 2, stride=0)


def test_backward_with_wrong_dy_shape():
    x = np.zeros((2, 4, 4, 3))
    for fwd, bwd in [
        (lambda a: max_pool2d_forward(a, 2), max_pool2d_backward),
        (lambda a: avg_pool2d_forward(a, 2), avg_pool2d_backward),
        (lambda a: lp_pool2d_forward(a, 2, 2), lp_pool2d_backward),
        (lambda a: upsample_nearest2d_forward(a, 2), upsample_nearest2d_backward),
    ]:
        _, cache = fwd(x)
        with pytest.raises(ShapeError, match=r"dy has shape \(2, 3, 3, 3\)"):
            bwd(np.zeros((2, 3, 3, 3)), cache)


def test_unpool_errors():
    x = np.ones((1, 2, 2, 1))
    with pytest.raises(ShapeError, match="indices have shape"):
        max_unpool2d_forward(x, np.zeros((1, 2, 3, 1), dtype=np.int64), 2)
    with pytest.raises(ShapeError, match="integers"):
        max_unpool2d_forward(x, np.zeros((1, 2, 2, 1)), 2)
    with pytest.raises(ShapeError, match=r"expected \[0, 16\)"):
        max_unpool2d_forward(x, np.full((1, 2, 2, 1), 16, dtype=np.int64), 2)
    with pytest.raises(ShapeError, match="output_size"):
        max_unpool2d_forward(x, np.zeros((1, 2, 2, 1), dtype=np.int64), 2, output_size=(6, 4))


def test_lp_and_upsample_argument_errors():
    x = np.ones((1, 4, 4, 1))
    for p in (0, 0.5, float("inf"), "two"):
        with pytest.raises(ValueError, match="norm_type"):
            lp_pool2d_forward(x, p, 2)
    for scale in (1.5, 0, (2, 2, 2), "x", -1):
        with pytest.raises(ValueError, match="scale"):
            upsample_nearest2d_forward(x, scale)
    assert upsample_nearest2d_forward(x, 2.0)[0].shape == (1, 8, 8, 1)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("use_jit", [False, True])
def test_max_pool_backward_ignores_later_in_place_changes_to_the_output(use_jit: bool, accumulate: bool) -> None:
    """An in-place ReLU after max pooling overwrites y; the gradient must still go to each window's maximum."""
    from cnnkit.ops.activation import relu_forward
    from cnnkit.ops.pool import max_pool2d_backward, max_pool2d_forward, max_pool2d_indices

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32) - 1.0  # many windows with a negative maximum
    y, cache = max_pool2d_forward(x, 3, stride=2, use_jit=use_jit)
    _, cache_ref = max_pool2d_forward(x, 3, stride=2, use_jit=use_jit)
    idx_before = max_pool2d_indices(cache_ref).copy()
    relu_forward(y, inplace=True)  # y changes under the cache
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(max_pool2d_backward(dy, cache, accumulate), max_pool2d_backward(dy, cache_ref, accumulate))
    np.testing.assert_array_equal(max_pool2d_indices(cache), idx_before)
    assert float(max_pool2d_backward(np.ones_like(y), cache, accumulate).sum()) == y.size
