"""conv2d and conv_transpose2d: numerical gradients, adjointness, PyTorch oracle, worked examples, errors.

conv2d: forward eq. 15.25, dW eq. 15.38, dX eq. 15.49 (seed 000); transposed convolution: seed 002.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.conv import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose_out_size,
)
from cnnkit.ops.geometry import pair, window
from tests.oracle import assert_close, conv_weight_from_torch, conv_weight_to_torch, nchw, nhwc, require_torch

GRAD_TOL = 1e-7

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def check_conv2d_grads(rng: np.random.Generator, x_shape, c_out, kernel, stride, padding, dilation, groups, bias=True):
    kh, kw = pair(kernel, "kernel")
    c_in = x_shape[3]
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((kh, kw, c_in // groups, c_out))
    b = rng.standard_normal(c_out) if bias else None
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(r * conv2d_forward(x, w, b, stride, padding, dilation, groups)[0]))

    dx, dw, db = conv2d_backward(r, cache)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert max_rel_error(dx, numerical_grad(f, x)) < GRAD_TOL
    assert max_rel_error(dw, numerical_grad(f, w)) < GRAD_TOL
    if bias:
        assert db.shape == (c_out,)
        assert max_rel_error(db, numerical_grad(f, b)) < GRAD_TOL
    else:
        assert db is None


def torch_conv2d_nhwc(torch, x, w, b, stride, padding, dilation, groups):
    """PyTorch reference; asymmetric or 'same' padding is applied with F.pad first."""
    F = torch.nn.functional
    kh, kw = w.shape[:2]
    win = window(x.shape[1:3], (kh, kw), stride, padding, dilation)
    xt, wt = nchw(x), conv_weight_to_torch(w)
    bt = torch.tensor(b, requires_grad=True) if b is not None else None
    t, bo, l, r = win.pads
    xp_ = F.pad(xt, (l, r, t, bo))
    yt = F.conv2d(xp_, wt, bt, stride=win.stride, dilation=win.dilation, groups=groups)
    return xt, wt, bt, yt


# --------------------------------------------------------------------------------------------------
# numerical gradient checks, float64
# --------------------------------------------------------------------------------------------------
KERNELS = [1, 2, 3, (2, 3)]
STRIDES = [1, 2, 3]
PADDINGS = [0, 1, "same", ((0, 1), (2, 0))]
DILATIONS = [1, 2]


@pytest.mark.parametrize("kernel,stride,padding,dilation", list(itertools.product(KERNELS, STRIDES, PADDINGS, DILATIONS)))
def test_conv2d_gradcheck_geometry(rng: np.random.Generator, kernel, stride, padding, dilation) -> None:
    check_conv2d_grads(rng, (2, 5, 6, 3), 2, kernel, stride, padding, dilation, groups=1)


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    list(itertools.product([2, (2, 3)], [1, 2], [0, "same", ((0, 1), (2, 0))], [1, 2])),
)
@pytest.mark.parametrize("c_in,c_out,groups", [(4, 2, 2), (4, 6, 2), (4, 4, 4), (3, 6, 3)])
def test_conv2d_gradcheck_groups(rng: np.random.Generator, kernel, stride, padding, dilation, c_in, c_out, groups) -> None:
    """groups = 2 and depthwise (groups = C_in, with channel multiplier 1 and 2)."""
    check_conv2d_grads(rng, (2, 5, 6, c_in), c_out, kernel, stride, padding, dilation, groups)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_gradcheck_no_bias(rng: np.random.Generator, groups: int) -> None:
    check_conv2d_grads(rng, (2, 5, 6, 4), 4, 3, 2, 1, 1, groups, bias=False)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_need_dx_false(rng: np.random.Generator, groups: int) -> None:
    x, w, b = rng.standard_normal((2, 5, 6, 4)), rng.standard_normal((3, 2, 4 // groups, 4)), rng.standard_normal(4)
    y, cache = conv2d_forward(x, w, b, 2, "same", 1, groups)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache, need_dx=False)
    assert dx is None
    _, dw_full, db_full = conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_array_equal(db, db_full)


def test_conv2d_grouped_equals_split_convolutions(rng: np.random.Generator) -> None:
    g = 3
    x, w, b = rng.standard_normal((2, 5, 6, 6)), rng.standard_normal((2, 3, 2, 9)), rng.standard_normal(9)
    y, _ = conv2d_forward(x, w, b, 1, 1, 1, groups=g)
    parts = [conv2d_forward(x[..., 2 * k : 2 * k + 2], w[..., 3 * k : 3 * k + 3], b[3 * k : 3 * k + 3], 1, 1)[0] for k in range(g)]
    np.testing.assert_allclose(y, np.concatenate(parts, axis=-1), rtol=1e-12, atol=1e-12)


def test_conv2d_is_eq_15_16_direct_sum(rng: np.random.Generator) -> None:
    """Eq. 15.16 (cross-correlation, no kernel flip), with stride, padding and dilation, by loops."""
    x, w, b = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 2, 3, 4)), rng.standard_normal(4)
    stride, pads, dil = (2, 1), (1, 0, 2, 1), (1, 2)
    y, _ = conv2d_forward(x, w, b, stride, ((pads[0], pads[1]), (pads[2], pads[3])), dil)
    xp_ = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    ref = np.zeros_like(y)
    for io in range(y.shape[1]):
        for jo in range(y.shape[2]):
            for i in range(3):
                for j in range(2):
                    ref[:, io, jo, :] += xp_[:, io * stride[0] + i * dil[0], jo * stride[1] + j * dil[1], :] @ w[i, j]
    np.testing.assert_allclose(y, ref + b, rtol=1e-12, atol=1e-12)


def test_conv2d_accepts_non_contiguous_views(rng: np.random.Generator) -> None:
    """NHWC views of NCHW data, reversed and strided views give the same result as contiguous copies."""
    w = rng.standard_normal((3, 3, 2, 4))
    base = rng.standard_normal((2, 4, 6, 7)).transpose(0, 2, 3, 1)  # (2, 6, 7, 4), not C-contiguous
    x = base[:, ::-1, :, ::2]  # negative and non-unit strides
    y, cache = conv2d_forward(x, w, None, 2, 1)
    y_ref, cache_ref = conv2d_forward(np.ascontiguousarray(x), w, None, 2, 1)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape[::-1]).T  # a non-contiguous dy of shape y.shape
    (dx, dw, _), (dx_ref, dw_ref, _) = conv2d_backward(dy, cache), conv2d_backward(np.ascontiguousarray(dy), cache_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-13, atol=1e-13)
    xt = base[:, :3, :4]
    a, _ = conv_transpose2d_forward(xt, rng.standard_normal((2, 2, 4, 3)), None, 2)
    assert a.shape == (2, 6, 8, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_dtypes(rng: np.random.Generator, dtype) -> None:
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    w = rng.standard_normal((2, 2, 2, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    y, cache = conv2d_forward(x, w, b)
    assert y.dtype == dtype  # computes in the weight's dtype
    dx, dw, db = conv2d_backward(rng.standard_normal(y.shape).astype(np.float32), cache)
    assert dx.dtype == dw.dtype == db.dtype == dtype


# --------------------------------------------------------------------------------------------------
# transposed convolution
# --------------------------------------------------------------------------------------------------
def _tconv_cases():
    cases = []
    for kernel, stride, padding, output_padding, dilation in itertools.product([1, 2, 3, (2, 3)], [1, 2, 3], [0, 1], [0, 1], [1, 2]):
        if output_padding >= max(stride, dilation):
            continue  # invalid in PyTorch too
        cases.append(pytest.param(kernel, stride, padding, output_padding, dilation))
    return cases


TCONV_CASES = _tconv_cases()


@pytest.mark.parametrize("kernel,stride,padding,output_padding,dilation", TCONV_CASES)
def test_conv_transpose2d_gradcheck(rng: np.random.Generator, kernel, stride, padding, output_padding, dilation) -> None:
    kh, kw = pair(kernel, "kernel")
    x, w, b = rng.standard_normal((2, 3, 4, 3)), rng.standard_normal((kh, kw, 3, 2)), rng.standard_normal(2)
    args = (stride, padding, output_padding, dilation)
    y, cache = conv_transpose2d_forward(x, w, b, *args)
    s, p, op, d = (pair(v, "") for v in args)
    out_hw = tuple(conv_transpose_out_size(n, k, s[a], p[a], op[a], d[a]) for a, (n, k) in enumerate(zip((3, 4), (kh, kw))))
    assert y.shape == (2, *out_hw, 2)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(r * conv_transpose2d_forward(x, w, b, *args)[0]))

    dx, dw, db = conv_transpose2d_backward(r, cache)
    assert max_rel_error(dx, numerical_grad(f, x)) < GRAD_TOL
    assert max_rel_error(dw, numerical_grad(f, w)) < GRAD_TOL
    assert max_rel_error(db, numerical_grad(f, b)) < GRAD_TOL


@pytest.mark.parametrize("kernel,stride,padding,output_padding,dilation", TCONV_CASES)
def test_conv_transpose2d_is_adjoint_of_conv2d(rng: np.random.Generator, kernel, stride, padding, output_padding, dilation) -> None:
    """<conv2d(x; W'), y> == <x, conv_transpose2d(y; W)> with W' = W with its channel axes swapped."""
    kh, kw = pair(kernel, "kernel")
    y = rng.standard_normal((2, 3, 4, 3))  # the transposed conv's input = the conv's output
    w = rng.standard_normal((kh, kw, 3, 2))
    x_t, _ = conv_transpose2d_forward(y, w, None, stride, padding, output_padding, dilation)
    x = rng.standard_normal(x_t.shape)
    conv, _ = conv2d_forward(x, w.transpose(0, 1, 3, 2), None, stride, padding, dilation)
    if output_padding >= stride:  # the extra floor(op/stride) windows lie outside the transposed conv's range
        conv = conv[:, : y.shape[1], : y.shape[2]]
    assert conv.shape == y.shape
    assert np.sum(conv * y) == pytest.approx(np.sum(x * x_t), rel=1e-12, abs=1e-12)


def test_conv_transpose2d_stamps_weighted_kernels() -> None:
    """Seed 002: each input value weights a copy of the kernel; overlapping parts are summed."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    k = np.arange(1.0, 10.0).reshape(3, 3)
    y, _ = conv_transpose2d_forward(x, k[:, :, None, None], stride=2)
    assert y.shape == (1, 5, 5, 1)
    ref = np.zeros((5, 5))
    for i in range(2):
        for j in range(2):
            ref[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += x[0, i, j, 0] * k
    np.testing.assert_array_equal(y[0, :, :, 0], ref)
    assert ref[2, 2] == 1 * 9 + 2 * 7 + 3 * 3 + 4 * 1  # the overlap in the middle


def test_conv_transpose2d_backward_dtype(rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((1, 3, 3, 2)).astype(np.float32), rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    y, cache = conv_transpose2d_forward(x, w, None, 2)
    assert y.dtype == np.float32
    dx, dw, db = conv_transpose2d_backward(np.ones_like(y), cache)
    assert dx.dtype == dw.dtype == np.float32 and db is None


# --------------------------------------------------------------------------------------------------
# PyTorch oracle
# --------------------------------------------------------------------------------------------------
def _random_conv_configs(n: int, seed: int):
    g = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        groups = int(g.choice([1, 1, 2, 3]))
        c_in = groups * int(g.integers(1, 3))
        c_out = groups * int(g.integers(1, 3))
        kernel = (int(g.integers(1, 4)), int(g.integers(1, 4)))
        stride = (int(g.integers(1, 4)), int(g.integers(1, 3)))
        dilation = (int(g.integers(1, 3)), int(g.integers(1, 3)))
        padding = [
            0, 1, (1, 2), "same", "valid",
            ((int(g.integers(0, 3)), int(g.integers(0, 3))), (int(g.integers(0, 3)), int(g.integers(0, 3)))),
        ][int(g.integers(0, 6))]
        hw = (int(g.integers(4, 9)), int(g.integers(4, 9)))
        try:
            window(hw, kernel, stride, padding, dilation)
        except ShapeError:
            continue
        out.append((hw, c_in, c_out, kernel, stride, padding, dilation, groups))
    return out


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw,c_in,c_out,kernel,stride,padding,dilation,groups", _random_conv_configs(24, 7))
def test_conv2d_matches_pytorch(rng: np.random.Generator, dtype, hw, c_in, c_out, kernel, stride, padding, dilation, groups) -> None:
    torch = require_torch()
    x = rng.standard_normal((2, *hw, c_in)).astype(dtype)
    w = rng.standard_normal((*kernel, c_in // groups, c_out)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups)
    xt, wt, bt, yt = torch_conv2d_nhwc(torch, x, w, b, stride, padding, dilation, groups)
    assert y.dtype == dtype
    assert_close(y, nhwc(yt), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    dx, dw, db = conv2d_backward(dy, cache)
    assert_close(dx, nhwc(xt.grad), dtype)
    assert_close(dw, conv_weight_from_torch(wt.grad), dtype)
    assert_close(db, bt.grad.numpy(), dtype)


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), ((2, 5), 1), (3, 2), ((2, 3), (3, 2))])
def test_conv2d_same_matches_pytorch_padding_same(rng: np.random.Generator, kernel, dilation) -> None:
    """At stride 1, cnnkit's 'same' equals PyTorch's padding='same' (extra pixel bottom/right)."""
    torch = require_torch()
    kh, kw = pair(kernel, "k")
    x, w = rng.standard_normal((2, 6, 7, 3)), rng.standard_normal((kh, kw, 3, 2))
    y, _ = conv2d_forward(x, w, None, 1, "same", dilation)
    yt = torch.nn.functional.conv2d(nchw(x), conv_weight_to_torch(w), padding="same", dilation=dilation)
    assert y.shape == (2, 6, 7, 2)
    assert_close(y, nhwc(yt))


def _random_tconv_configs(n: int, seed: int):
    g = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        kernel = (int(g.integers(1, 5)), int(g.integers(1, 4)))
        stride = (int(g.integers(1, 4)), int(g.integers(1, 3)))
        dilation = (int(g.integers(1, 3)), int(g.integers(1, 3)))
        padding = (int(g.integers(0, 3)), int(g.integers(0, 2)))
        output_padding = tuple(int(g.integers(0, s)) for s in stride)  # < stride: the case cnnkit supports
        hw = (int(g.integers(2, 6)), int(g.integers(2, 6)))
        sizes = [conv_transpose_out_size(hw[a], kernel[a], stride[a], padding[a], output_padding[a], dilation[a]) for a in range(2)]
        if min(sizes) < 1:
            continue
        out.append((hw, int(g.integers(1, 4)), int(g.integers(1, 4)), kernel, stride, padding, output_padding, dilation))
    return out


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hw,c_in,c_out,kernel,stride,padding,output_padding,dilation", _random_tconv_configs(16, 11))
def test_conv_transpose2d_matches_pytorch(
    rng: np.random.Generator, dtype, hw, c_in, c_out, kernel, stride, padding, output_padding, dilation
) -> None:
    torch = require_torch()
    x = rng.standard_normal((2, *hw, c_in)).astype(dtype)
    w = rng.standard_normal((*kernel, c_in, c_out)).astype(dtype)  # PyTorch's (C_in, C_out, kh, kw) is w.transpose(2, 3, 0, 1)
    b = rng.standard_normal(c_out).astype(dtype)
    y, cache = conv_transpose2d_forward(x, w, b, stride, padding, output_padding, dilation)
    xt = nchw(x)
    wt = torch.tensor(np.ascontiguousarray(w.transpose(2, 3, 0, 1)), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, stride, padding, output_padding, 1, dilation)
    assert y.dtype == dtype
    assert_close(y, nhwc(yt), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    dx, dw, db = conv_transpose2d_backward(dy, cache)
    assert_close(dx, nhwc(xt.grad), dtype)
    assert_close(dw, wt.grad.detach().numpy().transpose(2, 3, 0, 1), dtype)
    assert_close(db, bt.grad.numpy(), dtype)


@pytest.mark.oracle
def test_conv_transpose2d_output_padding_below_dilation_matches_pytorch(rng: np.random.Generator) -> None:
    torch = require_torch()
    x, w = rng.standard_normal((1, 3, 3, 2)), rng.standard_normal((3, 3, 2, 2))
    yt = torch.nn.functional.conv_transpose2d(nchw(x), torch.tensor(w.transpose(2, 3, 0, 1).copy()), None, 1, 1, 1, 1, 2)
    y, _ = conv_transpose2d_forward(x, w, None, stride=1, padding=1, output_padding=1, dilation=2)
    assert_close(y, nhwc(yt))


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_conv2d_errors() -> None:
    x, w = np.zeros((2, 5, 6, 4)), np.zeros((3, 3, 4, 2))
    with pytest.raises(ShapeError, match=r"conv2d: expected a rank-4 array \(N, H, W, C\), got shape \(5, 6, 4\)"):
        conv2d_forward(np.zeros((5, 6, 4)), w)
    with pytest.raises(ShapeError, match=r"weight must be \(kh, kw, C_in/groups, C_out\), got shape \(3, 3, 4\)"):
        conv2d_forward(x, np.zeros((3, 3, 4)))
    with pytest.raises(ShapeError, match=r"input has 3 channels \(shape \(2, 5, 6, 3\)\).*weight \(3, 3, 4, 2\)"):
        conv2d_forward(np.zeros((2, 5, 6, 3)), w)
    with pytest.raises(ShapeError, match=r"groups=3 must divide both the input channels \(4\)"):
        conv2d_forward(x, np.zeros((3, 3, 1, 3)), groups=3)
    with pytest.raises(ShapeError, match=r"output channels \(3\)"):
        conv2d_forward(x, np.zeros((3, 3, 2, 3)), groups=2)
    with pytest.raises(ShapeError, match=r"groups=0"):
        conv2d_forward(x, w, groups=0)
    with pytest.raises(ShapeError, match=r"bias must have shape \(2,\), got \(3,\)"):
        conv2d_forward(x, w, np.zeros(3))
    with pytest.raises(ShapeError, match=r"kernel 8x8 .* input 5x6 padded to 7x8"):
        conv2d_forward(x, np.zeros((8, 8, 4, 2)), padding=1)
    with pytest.raises(ShapeError, match=r"extent 5x5"):
        conv2d_forward(np.zeros((1, 4, 4, 4)), w, dilation=2)
    _y, cache = conv2d_forward(x, w)
    with pytest.raises(ShapeError, match=r"dy has shape \(2, 3, 4, 3\), expected \(2, 3, 4, 2\)"):
        conv2d_backward(np.zeros((2, 3, 4, 3)), cache)
    with pytest.raises(ShapeError, match=r"expected \(2, 3, 4, 2\)"):
        conv2d_backward(np.zeros((2, 4, 3, 2)), cache)


def test_conv_transpose2d_errors() -> None:
    x = np.zeros((2, 3, 4, 3))
    with pytest.raises(ShapeError, match=r"rank-4.*got shape \(3, 4, 3\)"):
        conv_transpose2d_forward(np.zeros((3, 4, 3)), np.zeros((2, 2, 3, 2)))
    with pytest.raises(ShapeError, match=r"C_in = 3 \(input shape \(2, 3, 4, 3\)\); got weight shape \(2, 2, 2, 3\)"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 2, 3)))
    with pytest.raises(ShapeError, match=r"bias must have shape \(2,\)"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 3, 2)), np.zeros(3))
    with pytest.raises(ShapeError, match=r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 3, 2)), stride=2, output_padding=2)
    with pytest.raises(ShapeError, match=r"empty output"):
        conv_transpose2d_forward(np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 3, 2)), padding=1)
    with pytest.raises(ShapeError, match=r"stride/dilation must be >= 1"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 3, 2)), stride=0)
    _y, cache = conv_transpose2d_forward(x, np.zeros((2, 2, 3, 2)), stride=2)
    with pytest.raises(ShapeError, match=r"dy has shape \(2, 6, 8, 3\), expected \(2, 6, 8, 2\)"):
        conv_transpose2d_backward(np.zeros((2, 6, 8, 3)), cache)
