"""Locally connected (unshared) convolution op: slow reference loop, gradient checks, oracle, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.conv import conv2d_backward, conv2d_forward
from cnnkit.ops.geometry import window
from cnnkit.ops.local import locally_connected2d_backward, locally_connected2d_forward
from tests.oracle import assert_close, require_torch

# (in (H, W), kernel, stride, padding, dilation)
CONFIGS = [
    ((4, 4), 3, 1, 0, 1),
    ((5, 4), (2, 3), 2, 1, 1),
    ((5, 5), 3, (2, 1), ((1, 0), (0, 2)), 1),
    ((4, 5), 2, 1, "same", 1),
    ((6, 6), 3, 2, 2, 2),
    ((3, 3), 1, 1, 0, 1),
]


def _shapes(hw, k, s, pad, d, c_in, c_out):
    win = window(hw, k, s, pad, d)
    ho, wo = win.out
    kh, kw = win.kernel
    return win, (ho, wo, kh, kw, c_in, c_out), (ho, wo, c_out)


def _reference(x, w, b, win):
    """One kernel per output position, by a plain loop over positions."""
    n = x.shape[0]
    ho, wo, kh, kw, _c_in, c_out = w.shape
    t, bo, l, r = win.pads
    xp_ = np.pad(x, ((0, 0), (t, bo), (l, r), (0, 0)))
    (sh, sw), (dh, dw) = win.stride, win.dilation
    y = np.zeros((n, ho, wo, c_out))
    for i in range(ho):
        for j in range(wo):
            patch = xp_[:, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw, :]
            y[:, i, j, :] = patch.reshape(n, -1) @ w[i, j].reshape(-1, c_out)
            if b is not None:
                y[:, i, j, :] += b[i, j]
    return y


@pytest.mark.parametrize("hw,k,s,pad,d", CONFIGS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_reference_loop(hw, k, s, pad, d, with_bias, rng):
    win, wshape, bshape = _shapes(hw, k, s, pad, d, 3, 2)
    x = rng.standard_normal((2, *hw, 3))
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(bshape) if with_bias else None
    y, _ = locally_connected2d_forward(x, w, b, s, pad, d)
    np.testing.assert_allclose(y, _reference(x, w, b, win), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw,k,s,pad,d", CONFIGS)
def test_gradcheck(hw, k, s, pad, d, rng):
    _, wshape, bshape = _shapes(hw, k, s, pad, d, 2, 2)
    x = rng.standard_normal((2, *hw, 2))
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(bshape)
    y, cache = locally_connected2d_forward(x, w, b, s, pad, d)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(r * locally_connected2d_forward(x, w, b, s, pad, d)[0]))

    dx, dw, db = locally_connected2d_backward(r, cache)
    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8
    assert max_rel_error(dw, numerical_grad(f, w)) < 1e-8
    assert max_rel_error(db, numerical_grad(f, b)) < 1e-8
    dx2, dw2, db2 = locally_connected2d_backward(r, cache, need_dx=False)
    assert dx2 is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_shared_weights_reduce_to_conv(rng):
    """With the same kernel at every position the layer is conv2d (eq. 15.25); its weight gradient summed
    over positions is conv2d's (eq. 15.38) and the input gradients agree (eq. 15.49)."""
    x = rng.standard_normal((2, 6, 5, 3))
    kern = rng.standard_normal((3, 3, 3, 4))
    bias = rng.standard_normal(4)
    y_c, cc = conv2d_forward(x, kern, bias, stride=2, padding=1)
    ho, wo = y_c.shape[1:3]
    w = np.broadcast_to(kern, (ho, wo, *kern.shape)).copy()
    b = np.broadcast_to(bias, (ho, wo, 4)).copy()
    y, lc = locally_connected2d_forward(x, w, b, stride=2, padding=1)
    np.testing.assert_allclose(y, y_c, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx_c, dw_c, db_c = conv2d_backward(dy, cc)
    dx, dw, db = locally_connected2d_backward(dy, lc)
    np.testing.assert_allclose(dx, dx_c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw.sum(axis=(0, 1)), dw_c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db.sum(axis=(0, 1)), db_c, rtol=1e-12, atol=1e-12)


def _torch_local(torch, x, w, b, k, s, p, d):
    """Oracle: unfold (im2col) + one einsum with a kernel per position, differentiated by autograd."""
    ho, wo, kh, kw, c_in, c_out = w.shape
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    # torch's unfold column order is (c, i, j): move our (kh, kw, C_in) to (C_in, kh, kw)
    wt = torch.tensor(np.ascontiguousarray(w.reshape(ho * wo, kh, kw, c_in, c_out).transpose(0, 3, 1, 2, 4)), requires_grad=True)
    bt = torch.tensor(b.reshape(ho * wo, c_out), requires_grad=True)
    cols = torch.nn.functional.unfold(xt, (kh, kw), dilation=d, padding=p, stride=s)  # (N, C*kh*kw, P)
    y = torch.einsum("nkp,pko->npo", cols, wt.reshape(ho * wo, c_in * kh * kw, c_out)) + bt
    return xt, wt, bt, y


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), ((2, 3), (2, 1), (1, 0), 1), (3, 2, 2, 2)])
def test_oracle_unfold(dtype, k, s, p, d, rng):
    torch = require_torch()
    _, wshape, bshape = _shapes((7, 6), k, s, p, d, 3, 4)
    x = rng.standard_normal((2, 7, 6, 3)).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(bshape).astype(dtype)
    xt, wt, bt, yt = _torch_local(torch, x, w, b, k, s, p, d)
    dy = rng.standard_normal(yt.shape).astype(dtype)  # (N, P, C_out)
    yt.backward(torch.tensor(dy))
    ho, wo = wshape[:2]
    y, cache = locally_connected2d_forward(x, w, b, s, p, d)
    dx, dw, db = locally_connected2d_backward(dy.reshape(y.shape), cache)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    assert_close(y.reshape(2, ho * wo, 4), yt.detach().numpy(), dtype)
    assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1), dtype)
    assert_close(dw, wt.grad.numpy().transpose(0, 2, 3, 1, 4).reshape(wshape), dtype)
    assert_close(db, bt.grad.numpy().reshape(bshape), dtype)


def test_errors(rng):
    x = rng.standard_normal((1, 4, 4, 2))
    w = np.ones((2, 2, 3, 3, 2, 1))
    with pytest.raises(ShapeError, match=r"rank-4"):
        locally_connected2d_forward(np.ones((4, 4, 2)), w)
    with pytest.raises(ShapeError, match=r"\(H_out, W_out, kh, kw, C_in, C_out\)"):
        locally_connected2d_forward(x, np.ones((3, 3, 2, 1)))
    with pytest.raises(ShapeError, match=r"input has 3 channels"):
        locally_connected2d_forward(np.ones((1, 4, 4, 3)), w)
    with pytest.raises(ShapeError, match=r"gives a 3x3 output, but the weight .* has kernels for 2x2"):
        locally_connected2d_forward(np.ones((1, 5, 5, 2)), w)
    with pytest.raises(ShapeError, match=r"bias must have shape \(2, 2, 1\)"):
        locally_connected2d_forward(x, w, np.ones(1))
    _, cache = locally_connected2d_forward(x, w)
    with pytest.raises(ShapeError, match=r"expected \(1, 2, 2, 1\)"):
        locally_connected2d_backward(np.ones((1, 2, 2, 2)), cache)
    with pytest.raises(StateError):
        locally_connected2d_backward(np.ones((1, 2, 2, 1)), None)  # type: ignore[arg-type]  # a wrong argument on purpose
