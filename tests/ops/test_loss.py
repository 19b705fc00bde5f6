"""Tests of cnnkit.ops.loss: numerical gradients, PyTorch oracle, stability, validation."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops import loss as L
from tests.oracle import assert_close, require_torch


def _grad_error(fwd, bwd, pred: np.ndarray, target: np.ndarray, eps: float = 1e-6, **kw) -> float:
    value, cache = fwd(pred, target, **kw)
    assert isinstance(value, float)
    g = bwd(cache)
    assert g.shape == pred.shape and g.dtype == pred.dtype
    return max_rel_error(g, numerical_grad(lambda: fwd(pred, target, **kw)[0], pred, eps))


def _labels(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    return rng.integers(0, k, size=shape)


# ------------------------------------------------------------------------------ classification
CE_SHAPES = [((5, 4), (5,)), ((3, 1, 1, 6), (3,)), ((3, 1, 1, 6), (3, 1, 1)), ((2, 2, 3, 3), (2, 2, 3)), ((7,), ())]


@pytest.mark.parametrize("x_shape,l_shape", CE_SHAPES, ids=str)
def test_softmax_cross_entropy_gradcheck(x_shape, l_shape, rng: np.random.Generator) -> None:
    x = 2 * rng.standard_normal(x_shape)
    labels = _labels(rng, l_shape, x_shape[-1])
    err = _grad_error(L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, x, labels)
    assert err < 1e-8


@pytest.mark.parametrize("x_shape", [(5, 4), (2, 2, 3, 3)], ids=str)
def test_softmax_cross_entropy_soft_targets_gradcheck(x_shape, rng: np.random.Generator) -> None:
    x = 2 * rng.standard_normal(x_shape)
    t = rng.uniform(size=x_shape)
    t /= t.sum(axis=-1, keepdims=True)
    assert _grad_error(L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, x, t) < 1e-8
    t[0] *= 2.5  # unnormalised targets: the gradient is p * sum(t) - t
    assert _grad_error(L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, x, t) < 1e-8


HINGE_CASES = [{"margin": 1.0, "p": 1}, {"margin": 1.0, "p": 2}, {"margin": 0.5, "p": 1}, {"margin": 2.0, "p": 2}]


@pytest.mark.parametrize("kw", HINGE_CASES, ids=str)
@pytest.mark.parametrize("x_shape,l_shape", [((6, 5), (6,)), ((2, 1, 1, 4), (2,)), ((2, 2, 2, 3), (2, 2, 2))], ids=str)
def test_multi_margin_gradcheck(x_shape, l_shape, kw, rng: np.random.Generator) -> None:
    x = rng.standard_normal(x_shape)
    labels = _labels(rng, l_shape, x_shape[-1])
    # keep every margin term clear of its kink at 0
    rows, flat = x.reshape(-1, x_shape[-1]), labels.reshape(-1)
    a = kw["margin"] - rows[np.arange(len(flat)), flat][:, None] + rows
    rows += np.where(np.abs(a) < 0.02, 0.05, 0.0)
    assert _grad_error(L.multi_margin_forward, L.multi_margin_backward, x, labels, **kw) < 1e-8


def test_bce_gradcheck(rng: np.random.Generator) -> None:
    x = 3 * rng.standard_normal((4, 2, 2, 3))
    t = rng.uniform(size=x.shape)
    assert _grad_error(L.bce_with_logits_forward, L.bce_with_logits_backward, x, t) < 1e-8
    p = rng.uniform(0.05, 0.95, size=x.shape)
    assert _grad_error(L.bce_forward, L.bce_backward, p, t) < 1e-8


# ------------------------------------------------------------------------------ regression
REGRESSION = {
    "l2": (L.l2_loss_forward, L.l2_loss_backward),
    "mse": (L.mse_forward, L.mse_backward),
    "l1": (L.l1_forward, L.l1_backward),
    "msle": (L.msle_forward, L.msle_backward),
    "mape": (L.mape_forward, L.mape_backward),
}


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3, 2), (5,)], ids=str)
@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_gradcheck(name: str, shape, rng: np.random.Generator) -> None:
    fwd, bwd = REGRESSION[name]
    if name == "msle":
        p, t = rng.uniform(-0.5, 3.0, size=shape), rng.uniform(-0.5, 3.0, size=shape)
    else:
        p, t = rng.standard_normal(shape), rng.standard_normal(shape)
        t += np.where(t >= 0, 0.2, -0.2)  # mape divides by |t|: keep the value (and rounding noise) moderate
    p = np.where(np.abs(p - t) < 0.02, p + 0.05, p)  # |.| kinks of l1 and mape
    # mape's value is ~100x the others: a larger step keeps its rounding noise down (it is piecewise linear)
    assert _grad_error(fwd, bwd, p, t, eps=1e-5 if name == "mape" else 1e-6) < 1e-8


def test_l2_is_eq_15_6_averaged_over_the_batch() -> None:
    """z = 1/2 ||t - x||^2 per example (eq. 15.6): examples (1, 2) vs (0, 0) and (3, 0) vs (0, 4)."""
    x = np.array([[1.0, 2.0], [3.0, 0.0]])
    t = np.array([[0.0, 0.0], [0.0, 4.0]])
    value, cache = L.l2_loss_forward(x, t)
    assert value == pytest.approx((0.5 * 5 + 0.5 * 25) / 2)
    np.testing.assert_allclose(L.l2_loss_backward(cache), (x - t) / 2)


def test_regression_worked_numbers() -> None:
    p = np.array([[1.0, 2.0], [4.0, 0.0]])
    t = np.array([[2.0, 2.0], [2.0, 1.0]])
    assert L.mse_forward(p, t)[0] == pytest.approx((1 + 0 + 4 + 1) / 4)
    assert L.l1_forward(p, t)[0] == pytest.approx((1 + 0 + 2 + 1) / 4)
    assert L.mape_forward(p, t)[0] == pytest.approx(100 * (0.5 + 0 + 1 + 1) / 4)
    expected = np.mean((np.log(1 + p) - np.log(1 + t)) ** 2)
    assert L.msle_forward(p, t)[0] == pytest.approx(expected)
    # mape: |t| is floored at eps = 1e-7
    assert L.mape_forward(np.array([1e-7]), np.array([0.0]))[0] == pytest.approx(100.0)


# ------------------------------------------------------------------------------ PyTorch oracle
def _t(torch, a: np.ndarray, grad: bool = False):
    return torch.tensor(np.ascontiguousarray(a), requires_grad=grad)


def _compare(value: float, g: np.ndarray, tv, tx, dtype) -> None:
    tv.backward()
    assert_close(value, tv.item(), dtype)
    assert_close(g, tx.grad.numpy(), dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape,l_shape", CE_SHAPES[:4], ids=str)
def test_cross_entropy_oracle(x_shape, l_shape, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = (3 * rng.standard_normal(x_shape)).astype(dtype)
    labels = _labels(rng, l_shape, x_shape[-1])
    value, cache = L.softmax_cross_entropy_forward(x, labels)
    g = L.softmax_cross_entropy_backward(cache)
    k = x_shape[-1]
    tx = _t(torch, x, True)
    tv = torch.nn.functional.cross_entropy(tx.reshape(-1, k), torch.tensor(labels.reshape(-1)))
    _compare(value, g, tv, tx, dtype)
    assert_close(cache.probabilities, torch.softmax(tx, -1).detach().numpy(), dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_probability_targets_oracle(dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = (3 * rng.standard_normal((6, 5))).astype(dtype)
    t = rng.uniform(size=(6, 5)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    value, cache = L.softmax_cross_entropy_forward(x, t)
    tx = _t(torch, x, True)
    _compare(value, L.softmax_cross_entropy_backward(cache), torch.nn.functional.cross_entropy(tx, _t(torch, t)), tx, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", HINGE_CASES, ids=str)
def test_multi_margin_oracle(kw, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((8, 5)).astype(dtype)
    labels = _labels(rng, (8,), 5)
    value, cache = L.multi_margin_forward(x, labels, **kw)
    tx = _t(torch, x, True)
    tv = torch.nn.functional.multi_margin_loss(tx, torch.tensor(labels), p=kw["p"], margin=kw["margin"])
    _compare(value, L.multi_margin_backward(cache), tv, tx, dtype)


def _torch_regression(torch, name: str, tp, tt):
    F = torch.nn.functional
    if name == "l2":
        return 0.5 * ((tt - tp) ** 2).sum() / tp.shape[0]
    if name == "mse":
        return F.mse_loss(tp, tt)
    if name == "l1":
        return F.l1_loss(tp, tt)
    if name == "msle":
        return ((torch.log1p(tp) - torch.log1p(tt)) ** 2).mean()
    return 100 * ((tt - tp).abs() / tt.abs().clamp_min(1e-7)).mean()


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_oracle(name: str, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    fwd, bwd = REGRESSION[name]
    shape = (4, 3, 2, 2)
    if name == "msle":
        p, t = rng.uniform(-0.9, 5, size=shape), rng.uniform(-0.9, 5, size=shape)
    else:
        p, t = rng.standard_normal(shape), rng.standard_normal(shape)
    p, t = p.astype(dtype), t.astype(dtype)
    p.reshape(-1)[0] = t.reshape(-1)[0]  # a zero residual: sign(0) = 0 in both
    value, cache = fwd(p, t)
    tp = _t(torch, p, True)
    _compare(value, bwd(cache), _torch_regression(torch, name, tp, _t(torch, t)), tp, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_oracle(dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    F = torch.nn.functional
    x = (4 * rng.standard_normal((5, 2, 2, 3))).astype(dtype)
    x.reshape(-1)[:2] = [-200.0, 200.0]
    t = rng.uniform(size=x.shape).astype(dtype)
    value, cache = L.bce_with_logits_forward(x, t)
    tx = _t(torch, x, True)
    _compare(value, L.bce_with_logits_backward(cache), F.binary_cross_entropy_with_logits(tx, _t(torch, t)), tx, dtype)
    p = rng.uniform(size=x.shape).astype(dtype)
    p.reshape(-1)[:2] = [0.0, 1.0]  # clamped logs
    value, cache = L.bce_forward(p, t)
    tp = _t(torch, p, True)
    tv = F.binary_cross_entropy(tp, _t(torch, t))
    tv.backward()
    assert_close(value, tv.item(), dtype)
    # gradients at p = 0 and 1 are ~1e10: compare relative to their size; PyTorch's floor 1e-12 on p (1 - p)
    # is a float32 constant (1e-12 * (1 - 4e-9)), hence 1e-8 rather than 1e-9 there
    np.testing.assert_allclose(L.bce_backward(cache), tp.grad.numpy(), rtol=1e-8 if dtype == np.float64 else 2e-4)


# ------------------------------------------------------------------------------ stability
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_huge_logits(dtype) -> None:
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    labels = np.array([0, 0, 1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, cache = L.softmax_cross_entropy_forward(x, labels)
        g = L.softmax_cross_entropy_backward(cache)
    # per row: 0, 2e4, log 2, log 3
    expected = (0.0 + 2e4 + np.log(2.0) + np.log(3.0)) / 4
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-6)
    onehot = np.eye(3)[labels]
    p = np.array([[1, 0, 0], [0, 0, 1], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.all(np.isfinite(g)) and g.dtype == dtype
    np.testing.assert_allclose(g, (p - onehot) / 4, atol=1e-6)


@pytest.mark.oracle
def test_cross_entropy_huge_logits_oracle() -> None:
    torch = require_torch()
    x = np.array([[1e4, -1e4, 3.0], [-1e4, 1e4, -1e4]])
    labels = np.array([1, 1])
    value, cache = L.softmax_cross_entropy_forward(x, labels)
    tx = _t(torch, x, True)
    _compare(value, L.softmax_cross_entropy_backward(cache), torch.nn.functional.cross_entropy(tx, torch.tensor(labels)), tx, np.float64)


def test_multi_margin_worked_number() -> None:
    """Scores (1, 3, 2), label 0, margin 1: (max(0, 1-1+3) + max(0, 1-1+2)) / 3 = 5/3 (p=1), 13/3 (p=2)."""
    x, y = np.array([[1.0, 3.0, 2.0]]), np.array([0])
    assert L.multi_margin_forward(x, y)[0] == pytest.approx(5 / 3)
    assert L.multi_margin_forward(x, y, p=2)[0] == pytest.approx(13 / 3)
    _, c = L.multi_margin_forward(x, y)
    np.testing.assert_allclose(L.multi_margin_backward(c), [[-2 / 3, 1 / 3, 1 / 3]])


# ------------------------------------------------------------------------------ validation
def test_label_validation() -> None:
    x = np.zeros((4, 3))
    with pytest.raises(ShapeError, match=r"\(4, 3\).*\(4,\).*\(5,\)"):
        L.softmax_cross_entropy_forward(x, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        L.softmax_cross_entropy_forward(x, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        L.multi_margin_forward(x, np.array([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="integers"):
        L.multi_margin_forward(x, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        L.softmax_cross_entropy_forward(x, np.ones((2, 2)))
    with pytest.raises(ShapeError, match=r"\(2, 1, 1, 3\).*\(2,\)"):
        L.softmax_cross_entropy_forward(np.zeros((2, 1, 1, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="p must be"):
        L.multi_margin_forward(x, np.zeros(4, dtype=int), p=3)


@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_shape_validation(name: str) -> None:
    fwd, _ = REGRESSION[name]
    with pytest.raises(ShapeError, match=r"\(4, 1\).*\(4,\)"):
        fwd(np.ones((4, 1)), np.ones(4))


def test_msle_and_bce_domain() -> None:
    with pytest.raises(ValueError, match=r"prediction.*> -1"):
        L.msle_forward(np.array([0.5, -1.0]), np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match=r"target.*> -1"):
        L.msle_forward(np.array([0.5, 1.0]), np.array([0.0, -2.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.bce_forward(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
