"""Tests of cnnkit.ops.activation: numerical gradients, PyTorch oracle, seed formulas, stability."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops import activation as A
from tests.oracle import assert_close, require_torch

# name -> (forward(x, **kw), backward, kwargs variants)
ELEMENTWISE = {
    "relu": (A.relu_forward, A.relu_backward, [{}]),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, [{}]),
    "tanh": (A.tanh_forward, A.tanh_backward, [{}]),
    "leaky_relu": (A.leaky_relu_forward, A.leaky_relu_backward, [{}, {"negative_slope": 0.2}, {"negative_slope": -0.5}]),
    "elu": (A.elu_forward, A.elu_backward, [{}, {"alpha": 0.5}, {"alpha": -0.3}]),
    "softplus": (A.softplus_forward, A.softplus_backward, [{}, {"beta": 2.0, "threshold": 1.5}, {"beta": 0.5}]),
    "softmax": (A.softmax_forward, A.softmax_backward, [{}]),
    "log_softmax": (A.log_softmax_forward, A.log_softmax_backward, [{}]),
}
CASES = [(name, kw) for name, (_, _, kws) in ELEMENTWISE.items() for kw in kws]
SHAPES = [(2, 3, 3, 4), (5, 7), (6,)]


def _away_from_kinks(x: np.ndarray, gap: float = 0.05) -> np.ndarray:
    """Push entries out of (-gap, gap) so centred differences never straddle a kink at 0."""
    return x + np.where(x >= 0, gap, -gap)


def _input(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.5) -> np.ndarray:
    return _away_from_kinks(scale * rng.standard_normal(shape))


def _check_op_grad(fwd, bwd, x: np.ndarray, rng: np.random.Generator, **kw) -> float:
    y, cache = fwd(x, **kw)
    r = rng.standard_normal(y.shape)
    dx = bwd(r, cache)
    num = numerical_grad(lambda: float(np.sum(r * fwd(x, **kw)[0])), x)
    return max_rel_error(dx, num)


# ------------------------------------------------------------------------------ gradient checks
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_gradcheck(name: str, kw: dict, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    fwd, bwd, _ = ELEMENTWISE[name]
    x = _input(rng, shape)
    if name == "softplus":  # keep clear of the threshold switch, where the two branches differ by ~1e-9
        b, t = kw.get("beta", 1.0), kw.get("threshold", 20.0)
        x = np.where(np.abs(b * x - t) < 0.05, x + 0.1 / b, x)
    assert _check_op_grad(fwd, bwd, x, rng, **kw) < 1e-7


@pytest.mark.parametrize(
    "x_shape,w_shape", [((2, 3, 3, 4), (4,)), ((2, 3, 3, 4), (1,)), ((5, 3), (3,)), ((5, 3), (1,)), ((7,), (1,))], ids=str
)
def test_prelu_gradcheck(x_shape, w_shape, rng: np.random.Generator) -> None:
    x = _input(rng, x_shape)
    w = rng.uniform(-0.5, 0.7, size=w_shape)
    y, cache = A.prelu_forward(x, w)
    r = rng.standard_normal(y.shape)
    dx, dw = A.prelu_backward(r, cache)
    assert dw.shape == w_shape and dx.shape == x_shape

    def f() -> float:
        return float(np.sum(r * A.prelu_forward(x, w)[0]))

    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-7
    assert max_rel_error(dw, numerical_grad(f, w)) < 1e-7


# ------------------------------------------------------------------------------ PyTorch oracle
def _torch_fn(name: str, kw: dict):
    torch = require_torch()
    F = torch.nn.functional
    return {
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "leaky_relu": lambda t: F.leaky_relu(t, kw.get("negative_slope", 0.01)),
        "elu": lambda t: F.elu(t, kw.get("alpha", 1.0)),
        "softplus": lambda t: F.softplus(t, kw.get("beta", 1.0), kw.get("threshold", 20.0)),
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "log_softmax": lambda t: torch.log_softmax(t, dim=-1),
    }[name]


def _torch_pair(name: str, kw: dict, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    torch = require_torch()
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_fn(name, kw)(tx)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_oracle(name: str, kw: dict, dtype, rng: np.random.Generator) -> None:
    fwd, bwd, _ = ELEMENTWISE[name]
    x = (3 * rng.standard_normal((2, 4, 3, 5))).astype(dtype)
    x[0, 0, 0, :3] = 0.0  # the kink itself: PyTorch's conventions at x == 0
    if name == "softplus":  # both sides of the linear-region threshold
        x[1, 0, 0, :] = np.array([15.0, 25.0, -30.0, 40.0, 9.0]) / kw.get("beta", 1.0)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = fwd(x, **kw)
    dx = bwd(dy, cache)
    assert y.dtype == dtype and dx.dtype == dtype
    ty, tdx = _torch_pair(name, kw, x, dy)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape,w_shape", [((2, 3, 4, 5), (5,)), ((2, 3, 4, 5), (1,)), ((6, 3), (3,))], ids=str)
def test_prelu_oracle(x_shape, w_shape, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = (2 * rng.standard_normal(x_shape)).astype(dtype)
    x.reshape(-1)[:2] = 0.0
    w = rng.uniform(-0.5, 0.7, size=w_shape).astype(dtype)
    dy = rng.standard_normal(x_shape).astype(dtype)
    y, cache = A.prelu_forward(x, w)
    dx, dw = A.prelu_backward(dy, cache)
    # torch's channel axis is 1: NHWC -> NCHW
    perm = (0, 3, 1, 2) if len(x_shape) == 4 else (0, 1)
    inv = (0, 2, 3, 1) if len(x_shape) == 4 else (0, 1)
    tx = torch.tensor(np.ascontiguousarray(x.transpose(perm)), requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.prelu(tx, tw)
    ty.backward(torch.tensor(np.ascontiguousarray(dy.transpose(perm))))
    assert y.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    assert_close(y, ty.detach().numpy().transpose(inv), dtype)
    assert_close(dx, tx.grad.numpy().transpose(inv), dtype)
    assert_close(dw, tw.grad.numpy(), dtype)


# ------------------------------------------------------------------------------ seed formulas
def test_relu_eqs_15_13_to_15_15() -> None:
    """y = max{0, x} (15.13); dz/dx = dz/dy where x > 0, else 0 (15.14-15.15), 0 at x == 0."""
    x = np.array([[-2.0, -0.5, 0.0], [0.5, 3.0, -1e-12]])
    y, cache = A.relu_forward(x)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.0], [0.5, 3.0, 0.0]])
    dy = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(A.relu_backward(dy, cache), [[0.0, 0.0, 0.0], [4.0, 5.0, 0.0]])


def test_sigmoid_derivative_bound() -> None:
    """Seed 000 §15.4: dy/dx = y (1 - y), so 0 < dy/dx <= 1/4, with 1/4 at x = 0; saturated for |x| > 6."""
    x = np.linspace(-10, 10, 2001)
    y, cache = A.sigmoid_forward(x)
    d = A.sigmoid_backward(np.ones_like(x), cache)
    assert np.all(d > 0) and np.all(d <= 0.25)
    assert d[1000] == 0.25 and y[1000] == 0.5
    assert np.all(d[np.abs(x) > 6] < 0.0025)


def test_softmax_eq_15_7() -> None:
    """x_i^{l+1} = exp(x_i) / sum_j exp(x_j): worked numbers for (1, 2, 3) and rows of a pmf."""
    y, _ = A.softmax_forward(np.array([1.0, 2.0, 3.0]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(y, e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(y, [0.09003057317038046, 0.24472847105479767, 0.6652409557748219], rtol=1e-14)
    z, _ = A.softmax_forward(np.random.default_rng(0).standard_normal((3, 2, 2, 10)))
    np.testing.assert_allclose(z.sum(axis=-1), 1.0, rtol=1e-14)
    assert np.all(z > 0)


def test_log_softmax_matches_log_of_softmax(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(A.log_softmax_forward(x)[0], np.log(A.softmax_forward(x)[0]), rtol=1e-13)


# ------------------------------------------------------------------------------ stability, dtypes, errors
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_inputs_stay_finite(dtype) -> None:
    x = np.array([[-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s, sc = A.sigmoid_forward(x)
        np.testing.assert_array_equal(s[0, [0, 1, 3, 5, 6]], np.array([0.0, 0.0, 0.5, 1.0, 1.0], dtype=dtype))
        sp, spc = A.softplus_forward(x)
        np.testing.assert_array_equal(sp[0, [0, 5, 6]], np.array([0.0, 800.0, 1e4], dtype=dtype))
        e, ec = A.elu_forward(x)
        assert e[0, 0] == -1.0 and e[0, 6] == dtype(1e4)
        p, pc = A.softmax_forward(x)
        np.testing.assert_allclose(p[0], [0, 0, 0, 0, 0, 0, 1], atol=1e-30)
        lp, lpc = A.log_softmax_forward(x)
        assert lp[0, 6] == 0.0 and lp[0, 0] == dtype(-2e4)
        dy = np.ones_like(x)
        for out, bwd, cache in [(s, A.sigmoid_backward, sc), (sp, A.softplus_backward, spc), (e, A.elu_backward, ec),
                                (p, A.softmax_backward, pc), (lp, A.log_softmax_backward, lpc)]:
            g = bwd(dy, cache)
            assert np.all(np.isfinite(out)) and np.all(np.isfinite(g)) and g.dtype == dtype
        np.testing.assert_allclose(A.softmax_backward(dy, pc), 0.0, atol=1e-30)


def test_softmax_shift_invariance(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 5))
    np.testing.assert_allclose(A.softmax_forward(x + 1e4)[0], A.softmax_forward(x)[0], rtol=1e-10)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_dtype_preserved_and_int_input(name: str) -> None:
    fwd, bwd, _ = ELEMENTWISE[name]
    for dtype in (np.float32, np.float64):
        x = np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)
        y, cache = fwd(x)
        assert y.dtype == dtype and bwd(np.ones(y.shape), cache).dtype == dtype
    y, _ = fwd(np.arange(-3, 3).reshape(2, 3))
    assert y.dtype == np.float32


def test_inplace_relu_and_leaky_relu(rng: np.random.Generator) -> None:
    x = _input(rng, (2, 3, 3, 4)).astype(np.float32)
    ref_y, ref_c = A.relu_forward(x)
    ref_dx = A.relu_backward(np.ones_like(x), ref_c)
    x2 = x.copy()
    y, c = A.relu_forward(x2, inplace=True)
    assert y is x2
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(A.relu_backward(np.ones_like(x), c), ref_dx)
    ref_y, ref_c = A.leaky_relu_forward(x, 0.1)
    x3 = x.copy()
    y, c = A.leaky_relu_forward(x3, 0.1, inplace=True)
    assert y is x3
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(A.leaky_relu_backward(np.ones_like(x), c), A.leaky_relu_backward(np.ones_like(x), ref_c))
    with pytest.raises(ValueError, match="negative_slope > 0"):
        A.leaky_relu_forward(x.copy(), -0.1, inplace=True)


def test_errors() -> None:
    x = np.ones((2, 3, 3, 4))
    with pytest.raises(ShapeError, match=r"\(5,\).*\(2, 3, 3, 4\)|\(2, 3, 3, 4\).*\(5,\)"):
        A.prelu_forward(x, np.ones(5))
    with pytest.raises(ShapeError, match="weight"):
        A.prelu_forward(x, np.ones((1, 4)))
    _, cache = A.relu_forward(x)
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(2, 3, 3, 4\)"):
        A.relu_backward(np.ones((2, 3)), cache)
    with pytest.raises(ShapeError, match="0-d"):
        A.softmax_forward(np.float64(1.0))
    with pytest.raises(ValueError, match="beta"):
        A.softplus_forward(x, beta=0)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [0.5, 0.99, 1.01, 3.0], ids=lambda s: f"bound*{s}")
def test_softmax_either_side_of_the_shift_bound(scale: float, dtype, rng: np.random.Generator) -> None:
    """Inputs within log(max float)/4 skip the row-maximum shift (A.row_shift); both paths match PyTorch."""
    bound = np.log(float(np.finfo(dtype).max)) / 4
    x = rng.uniform(-1, 1, size=(6, 7)).astype(dtype)
    x[0, 0], x[1, 1] = 1, -1
    x *= dtype(bound * scale)
    assert (A.row_shift(x) is None) == (scale < 1)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for name in ("softmax", "log_softmax"):
        fwd, bwd, _ = ELEMENTWISE[name]
        y, cache = fwd(x)
        ty, tdx = _torch_pair(name, {}, x, dy)
        assert_close(y, ty, dtype)
        assert_close(bwd(dy, cache), tdx, dtype)
