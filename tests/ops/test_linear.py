"""Fully connected op and FC <-> conv conversion (seed 000 §15.5.8, seed 002)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.conv import conv2d_backward, conv2d_forward
from cnnkit.ops.linear import conv_to_fc, fc_to_conv, linear_backward, linear_forward
from tests.oracle import assert_close, nchw, require_torch


@pytest.mark.parametrize("n,fin,fout", [(1, 1, 1), (3, 5, 4), (4, 2, 7), (2, 12, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck(n, fin, fout, with_bias, rng):
    x = rng.standard_normal((n, fin))
    w = rng.standard_normal((fin, fout))
    b = rng.standard_normal(fout) if with_bias else None
    r = rng.standard_normal((n, fout))

    def f() -> float:
        return float(np.sum(r * linear_forward(x, w, b)[0]))

    _, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(r, cache)
    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8
    assert max_rel_error(dw, numerical_grad(f, w)) < 1e-8
    if with_bias:
        assert max_rel_error(db, numerical_grad(f, b)) < 1e-8
    else:
        assert db is None
    dx2, dw2, _ = linear_backward(r, cache, need_dx=False)
    assert dx2 is None
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_oracle(dtype, rng):
    torch = require_torch()
    x = rng.standard_normal((6, 9)).astype(dtype)
    w = rng.standard_normal((9, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((6, 4)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(w.T), requires_grad=True)  # PyTorch's (out, in)
    bt = torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    y, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dy, cache)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    assert_close(y, yt.detach().numpy(), dtype)
    assert_close(dx, xt.grad.numpy(), dtype)
    assert_close(dw, wt.grad.numpy().T, dtype)
    assert_close(db, bt.grad.numpy(), dtype)


def test_computes_in_weight_dtype(rng):
    x = rng.standard_normal((2, 3))  # float64 input
    w = rng.standard_normal((3, 2)).astype(np.float32)
    y, cache = linear_forward(x, w)
    assert y.dtype == np.float32
    dx, dw, _ = linear_backward(np.ones((2, 2)), cache)
    assert dx.dtype == dw.dtype == np.float32


# ---------------------------------------------------------------- FC <-> conv (§15.5.8)
@pytest.mark.parametrize("in_shape", [(1, 1, 3), (2, 3, 2), (4, 4, 1), (3, 2, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fc_as_conv_is_exact(in_shape, with_bias, rng):
    """An H x W x D^l kernel bank (H, W, D^l, D) on an H x W x D^l input = the FC layer (eq. of §15.5.8)."""
    h, w, c = in_shape
    out = 4
    x = rng.standard_normal((3, h, w, c))
    fc_w = rng.standard_normal((h * w * c, out))
    fc_b = rng.standard_normal(out) if with_bias else None
    y_fc, fc_cache = linear_forward(x.reshape(3, -1), fc_w, fc_b)

    k, kb = fc_to_conv(fc_w, fc_b, in_shape)
    assert k.shape == (h, w, c, out)
    y_conv, conv_cache = conv2d_forward(x, k, kb)
    assert y_conv.shape == (3, 1, 1, out)
    np.testing.assert_allclose(y_conv.reshape(3, out), y_fc, rtol=1e-12, atol=1e-12)

    # the learning rules agree too (so the FC layer needs no separate derivation, §15.5.8)
    dy = rng.standard_normal((3, out))
    dx_fc, dw_fc, db_fc = linear_backward(dy, fc_cache)
    dx_c, dw_c, db_c = conv2d_backward(dy.reshape(3, 1, 1, out), conv_cache)
    np.testing.assert_allclose(dx_c.reshape(3, -1), dx_fc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_to_fc(dw_c, None)[0], dw_fc, rtol=1e-12, atol=1e-12)
    if with_bias:
        np.testing.assert_allclose(db_c, db_fc, rtol=1e-12)

    # and back: conv_to_fc inverts fc_to_conv exactly
    w_back, b_back = conv_to_fc(k, kb)
    np.testing.assert_array_equal(w_back, fc_w)
    if with_bias:
        np.testing.assert_array_equal(b_back, fc_b)
    else:
        assert b_back is None


def test_conv_to_fc_is_exact(rng):
    """A convolution whose kernel covers its whole input is an FC layer on the NHWC-flattened input."""
    x = rng.standard_normal((2, 3, 2, 4))
    k = rng.standard_normal((3, 2, 4, 5))
    kb = rng.standard_normal(5)
    fc_w, fc_b = conv_to_fc(k, kb)
    assert fc_w.shape == (24, 5)
    y_conv, _ = conv2d_forward(x, k, kb)
    y_fc, _ = linear_forward(x.reshape(2, -1), fc_w, fc_b)
    np.testing.assert_allclose(y_fc, y_conv.reshape(2, 5), rtol=1e-12, atol=1e-12)
    k2, kb2 = fc_to_conv(fc_w, fc_b, (3, 2, 4))
    np.testing.assert_array_equal(k2, k)
    np.testing.assert_array_equal(kb2, kb)
    assert not np.shares_memory(k2, fc_w) and not np.shares_memory(fc_w, k)  # copies, not views


def test_vgg_fc6_shapes_from_seed(rng):
    """Seed 000 §15.7 / seed 002: the 7x7x512 -> 4096 FC layer is a conv with F=7, P=0, S=1 and a 1x1x4096
    output; here with 8 outputs instead of 4096 to stay small."""
    fc_w = rng.standard_normal((7 * 7 * 512, 8)).astype(np.float32)
    k, _ = fc_to_conv(fc_w, None, (7, 7, 512))
    assert k.shape == (7, 7, 512, 8)
    x = rng.standard_normal((1, 7, 7, 512)).astype(np.float32)
    y, _ = conv2d_forward(x, k)
    assert y.shape == (1, 1, 1, 8)
    np.testing.assert_allclose(y.reshape(1, 8), x.reshape(1, -1) @ fc_w, rtol=1e-4, atol=1e-3)


def test_converted_fc_slides_over_larger_input(rng):
    """Seed 002: after conversion one pass over a larger image gives the FC output at every window."""
    h, w, c, out = 3, 3, 2, 4
    fc_w, fc_b = rng.standard_normal((h * w * c, out)), rng.standard_normal(out)
    k, kb = fc_to_conv(fc_w, fc_b, (h, w, c))
    big = rng.standard_normal((2, 6, 5, c))
    y, _ = conv2d_forward(big, k, kb, stride=1)
    assert y.shape == (2, 4, 3, out)
    for i, j in [(0, 0), (3, 2), (1, 1)]:  # a few windows (a loop in a test is fine)
        patch = big[:, i : i + h, j : j + w, :].reshape(2, -1)
        np.testing.assert_allclose(y[:, i, j, :], patch @ fc_w + fc_b, rtol=1e-12, atol=1e-12)


@pytest.mark.oracle
def test_nchw_layout_converts_pytorch_fc(rng):
    """A PyTorch FC layer trained on NCHW-flattened features becomes an NHWC conv with layout='NCHW'."""
    torch = require_torch()
    h, w, c, out = 2, 3, 4, 5
    x = rng.standard_normal((3, h, w, c))
    wt = rng.standard_normal((out, c * h * w))  # torch (out, in), in = flatten of (C, H, W)
    bt = rng.standard_normal(out)
    y_t = torch.nn.functional.linear(torch.flatten(nchw(x), 1), torch.tensor(wt), torch.tensor(bt)).detach().numpy()
    k, kb = fc_to_conv(wt.T, bt, (h, w, c), layout="NCHW")
    y, _ = conv2d_forward(x, k, kb)
    assert_close(y.reshape(3, out), y_t)
    back, _ = conv_to_fc(k, kb, layout="nchw")
    np.testing.assert_array_equal(back, wt.T)


# ---------------------------------------------------------------- errors
def test_errors(rng):
    w = np.ones((4, 3))
    with pytest.raises(ShapeError, match=r"input has 5 features .* expects in_features = 4"):
        linear_forward(np.ones((2, 5)), w)
    with pytest.raises(ShapeError, match=r"rank-2 input .* got shape \(2, 2, 2, 1\)"):
        linear_forward(np.ones((2, 2, 2, 1)), w)
    with pytest.raises(ShapeError, match="weight must be"):
        linear_forward(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ShapeError, match=r"bias must have shape \(3,\)"):
        linear_forward(np.ones((2, 4)), w, np.ones(4))
    _, cache = linear_forward(np.ones((2, 4)), w)
    with pytest.raises(ShapeError, match=r"dy has shape \(2, 4\), expected \(2, 3\)"):
        linear_backward(np.ones((2, 4)), cache)
    with pytest.raises(StateError):
        linear_backward(np.ones((2, 3)), None)  # type: ignore[arg-type]  # a wrong argument on purpose
    with pytest.raises(ShapeError, match=r"\(12, out\) for in_shape \(2, 2, 3\)"):
        fc_to_conv(np.ones((10, 2)), None, (2, 2, 3))
    with pytest.raises(ShapeError, match="in_shape"):
        fc_to_conv(np.ones((10, 2)), None, (10,))
    with pytest.raises(ValueError, match="layout"):
        fc_to_conv(np.ones((12, 2)), None, (2, 2, 3), layout="CHWN")
    with pytest.raises(ShapeError, match="kernel"):
        conv_to_fc(np.ones((12, 2)), None)
    with pytest.raises(ShapeError, match=r"bias must have shape \(2,\)"):
        conv_to_fc(np.ones((1, 1, 3, 2)), np.ones(3))
