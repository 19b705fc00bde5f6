"""Batch normalisation op: gradient checks, PyTorch oracle, worked numbers, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.norm import batch_norm_backward, batch_norm_forward
from tests.oracle import assert_close, require_torch

SHAPES = [(5, 3), (4, 1), (2, 3, 3, 2), (3, 2, 2, 1), (2, 4, 3)]


def _params(rng: np.random.Generator, c: int, dtype=np.float64):
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    return gamma, beta, rm, rv


def _gradcheck(x, gamma, beta, rm, rv, train, rng):
    y, _ = batch_norm_forward(x, gamma, beta, rm, rv, train)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        # copies of the running stats: the forward updates them in place
        rm2 = None if rm is None else rm.copy()
        rv2 = None if rv is None else rv.copy()
        return float(np.sum(r * batch_norm_forward(x, gamma, beta, rm2, rv2, train, 0.1, 1e-3)[0]))

    rm2 = None if rm is None else rm.copy()
    rv2 = None if rv is None else rv.copy()
    _, cache = batch_norm_forward(x, gamma, beta, rm2, rv2, train, 0.1, 1e-3)
    dx, dg, db = batch_norm_backward(r, cache)
    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-7
    if gamma is not None:
        assert max_rel_error(dg, numerical_grad(f, gamma)) < 1e-7
    else:
        assert dg is None
    if beta is not None:
        assert max_rel_error(db, numerical_grad(f, beta)) < 1e-7
    else:
        assert db is None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_train(shape, affine, rng):
    c = shape[-1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta, rm, rv = _params(rng, c)
    if not affine:
        gamma = beta = None
    _gradcheck(x, gamma, beta, rm, rv, True, rng)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_eval(shape, rng):
    x = rng.standard_normal(shape)
    gamma, beta, rm, rv = _params(rng, shape[-1])
    _gradcheck(x, gamma, beta, rm, rv, False, rng)


@pytest.mark.parametrize("shape", [(4, 2), (2, 2, 3, 3)])
def test_gradcheck_no_running_stats_uses_batch_stats(shape, rng):
    """Without running statistics (track_running_stats=False) evaluation also uses the batch: full backward."""
    x = rng.standard_normal(shape)
    gamma, beta, _, _ = _params(rng, shape[-1])
    _gradcheck(x, gamma, beta, None, None, False, rng)
    y_eval, _ = batch_norm_forward(x, gamma, beta, None, None, False)
    y_train, _ = batch_norm_forward(x, gamma, beta, None, None, True)
    np.testing.assert_array_equal(y_eval, y_train)


def test_worked_numbers():
    """One channel [1, 2, 3, 4]: mean 2.5, biased var 1.25, unbiased 5/3 into the running variance."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    rm, rv = np.zeros(1), np.ones(1)
    y, _ = batch_norm_forward(x, np.array([2.0]), np.array([0.5]), rm, rv, True, momentum=0.1, eps=1e-5)
    expected = 2.0 * (x - 2.5) / np.sqrt(1.25 + 1e-5) + 0.5
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    np.testing.assert_allclose(rm, [0.25], rtol=1e-14)  # 0.9*0 + 0.1*2.5
    np.testing.assert_allclose(rv, [0.9 + 0.1 * 5.0 / 3.0], rtol=1e-14)
    # evaluation: (x - rm) / sqrt(rv + eps) * gamma + beta
    y_eval, _ = batch_norm_forward(x, np.array([2.0]), np.array([0.5]), rm, rv, False, eps=1e-5)
    np.testing.assert_allclose(y_eval, 2.0 * (x - 0.25) / np.sqrt(rv + 1e-5) + 0.5, rtol=1e-14)
    # the output of a training step has per-channel mean beta and variance gamma^2 * var/(var+eps)
    np.testing.assert_allclose(y.mean(), 0.5, atol=1e-14)


def test_running_stats_updated_in_place(rng):
    x = rng.standard_normal((6, 3))
    rm, rv = np.zeros(3), np.ones(3)
    ids = (id(rm), id(rv))
    batch_norm_forward(x, None, None, rm, rv, True, momentum=0.5)
    assert (id(rm), id(rv)) == ids
    np.testing.assert_allclose(rm, 0.5 * x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(rv, 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-13)
    before = rm.copy()
    batch_norm_forward(x, None, None, rm, rv, False)
    np.testing.assert_array_equal(rm, before)  # evaluation leaves them alone


def test_nhwc_equals_flattened_rows(rng):
    """(N, H, W, C) normalises each channel over N, H, W: the same as the (N*H*W, C) matrix."""
    x = rng.standard_normal((2, 3, 4, 5))
    gamma, beta, _, _ = _params(rng, 5)
    y4, _ = batch_norm_forward(x, gamma, beta, None, None, True)
    y2, _ = batch_norm_forward(x.reshape(-1, 5), gamma, beta, None, None, True)
    np.testing.assert_allclose(y4.reshape(-1, 5), y2, rtol=1e-14, atol=1e-14)


def test_non_contiguous_input(rng):
    x = rng.standard_normal((2, 5, 4, 3)).transpose(0, 2, 1, 3)  # (2, 4, 5, 3), not contiguous
    gamma, beta, _, _ = _params(rng, 3)
    y, cache = batch_norm_forward(x, gamma, beta, None, None, True)
    yc, cache_c = batch_norm_forward(np.ascontiguousarray(x), gamma, beta, None, None, True)
    np.testing.assert_allclose(y, yc, rtol=1e-14, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    for a, b in zip(batch_norm_backward(dy, cache), batch_norm_backward(dy, cache_c)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("m", [1024, 1023, 6])  # wide rows (M divisible by a power of two) and plain rows
def test_matches_plain_numpy_formula(m, rng):
    x = rng.standard_normal((m, 3)).T.copy().T * 3 + 1  # (m, 3) transposed view: not C-contiguous
    gamma, beta, _, _ = _params(rng, 3)
    y, cache = batch_norm_forward(x, gamma, beta, None, None, True)
    mu, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(y, gamma * (x - mu) / np.sqrt(var + 1e-5) + beta, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(x.shape)
    dx, dg, db = batch_norm_backward(dy, cache)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    expected = gamma / np.sqrt(var + 1e-5) / m * (m * dy - dy.sum(0) - xhat * (dy * xhat).sum(0))
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, (dy * xhat).sum(0), rtol=1e-10)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-12)


def test_float32_large_offset_is_accurate(rng):
    """Two-pass (centred) variance: a mean far from zero does not destroy float32 precision."""
    x64 = rng.standard_normal((64, 4, 4, 3)) * 0.1 + 1000.0
    gamma, beta, _, _ = _params(rng, 3)
    y64, c64 = batch_norm_forward(x64, gamma, beta, None, None, True)
    y32, c32 = batch_norm_forward(x64.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), None, None, True)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=5e-3)
    dy = rng.standard_normal(y64.shape)
    dx64 = batch_norm_backward(dy, c64)[0]
    dx32 = batch_norm_backward(dy.astype(np.float32), c32)[0]
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, dx64, atol=5e-2 * np.abs(dx64).max())


def test_dtype_follows_gamma(rng):
    x = rng.standard_normal((4, 2)).astype(np.float32)
    g, b, rm, rv = _params(rng, 2)
    y, cache = batch_norm_forward(x, g, b, rm, rv, True)
    assert y.dtype == np.float64
    dx, dg, db = batch_norm_backward(np.ones((4, 2), np.float32), cache)
    assert dx.dtype == dg.dtype == db.dtype == np.float64
    y, _ = batch_norm_forward(x, None, None, None, None, True)
    assert y.dtype == np.float32


# ---------------------------------------------------------------- PyTorch oracle
def _torch_bn_steps(x_list, dy_list, gamma, beta, momentum, eps):
    torch = require_torch()
    c = gamma.shape[0]
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    outs = []
    for x, dy in zip(x_list, dy_list):
        xt = torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)  # channels to axis 1
        g.grad = b.grad = None
        y = torch.nn.functional.batch_norm(xt, rm, rv, g, b, training=True, momentum=momentum, eps=eps)
        y.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
        y_np, dx_np = np.moveaxis(y.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)
        outs.append((y_np, dx_np, g.grad.numpy().copy(), b.grad.numpy().copy()))
    return outs, rm.numpy(), rv.numpy()


@pytest.mark.oracle
@pytest.mark.parametrize("shape", [(3, 4, 5, 3), (6, 4), (2, 1, 1, 2)])
def test_oracle_train_steps_and_running_stats(shape, rng):
    torch = require_torch()
    c = shape[-1]
    momentum, eps = 0.3, 1e-3
    gamma, beta, _, _ = _params(rng, c)
    xs = [rng.standard_normal(shape) * (1 + k) + k for k in range(3)]
    dys = [rng.standard_normal(shape) for _ in range(3)]
    ref, rm_t, rv_t = _torch_bn_steps(xs, dys, gamma, beta, momentum, eps)
    rm, rv = np.zeros(c), np.ones(c)
    for x, dy, (y_t, dx_t, dg_t, db_t) in zip(xs, dys, ref):
        y, cache = batch_norm_forward(x, gamma, beta, rm, rv, True, momentum, eps)
        dx, dg, db = batch_norm_backward(dy, cache)
        assert_close(y, y_t)
        assert_close(dx, dx_t)
        assert_close(dg, dg_t)
        assert_close(db, db_t)
    assert_close(rm, rm_t)
    assert_close(rv, rv_t)
    # evaluation with the accumulated statistics
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    xt = torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, torch.tensor(rm_t), torch.tensor(rv_t), g, b, training=False, eps=eps)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
    y, cache = batch_norm_forward(x, gamma, beta, rm, rv, False, momentum, eps)
    dx, dg, db = batch_norm_backward(dy, cache)
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1))
    assert_close(dg, g.grad.numpy())
    assert_close(db, b.grad.numpy())


@pytest.mark.oracle
@pytest.mark.parametrize("train", [True, False])
def test_oracle_float32(train, rng):
    torch = require_torch()
    shape, eps = (8, 5, 5, 4), 1e-5
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma, beta, rm, rv = (a.astype(np.float32) for a in _params(rng, 4))
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    xt = torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, g, b, training=train, momentum=0.1, eps=eps)
    yt.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
    y, cache = batch_norm_forward(x, gamma, beta, rm, rv, train, 0.1, eps)
    dx, dg, db = batch_norm_backward(dy, cache)
    assert y.dtype == dx.dtype == np.float32
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1), np.float32)
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1), np.float32)
    np.testing.assert_allclose(dg, g.grad.numpy(), rtol=2e-4, atol=2e-3)
    np.testing.assert_allclose(db, b.grad.numpy(), rtol=2e-4, atol=2e-3)
    assert_close(rm, rm_t.numpy(), np.float32)
    assert_close(rv, rv_t.numpy(), np.float32)


# ---------------------------------------------------------------- errors
def test_errors(rng):
    x = rng.standard_normal((4, 3))
    g = np.ones(3)
    with pytest.raises(ShapeError, match=r"gamma must have shape \(3,\)"):
        batch_norm_forward(x, np.ones(2), None, None, None, True)
    with pytest.raises(ShapeError, match=r"running_var must have shape \(3,\)"):
        batch_norm_forward(x, g, None, np.zeros(3), np.ones(4), True)
    with pytest.raises(ShapeError, match="channels last"):
        batch_norm_forward(np.ones(3), g, None, None, None, True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_forward(np.ones((1, 1, 1, 3)), g, None, None, None, True)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        batch_norm_forward(x, g, None, np.zeros(3), None, True)
    _, cache = batch_norm_forward(x, g, None, None, None, True)
    with pytest.raises(ShapeError, match=r"dy has shape \(4, 2\), expected \(4, 3\)"):
        batch_norm_backward(np.ones((4, 2)), cache)
    with pytest.raises(StateError):
        batch_norm_backward(np.ones((4, 3)), None)  # type: ignore[arg-type]  # a wrong argument on purpose
