"""PReLU with slopes that broadcast (ONNX's PRelu): per element (H, W, C), per row, scalar; gradient checks
summing over the broadcast axes, onnx.reference's PRelu as oracle (NCHW), and the strict default kept."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.activation import prelu_backward, prelu_forward
from tests.onnx_oracle import run_node, to_nchw, to_nhwc
from tests.oracle import assert_close, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

W_SHAPES = [(3, 4, 5), (4, 5), (4, 1), (3, 1, 5), (1, 1, 5), (5,), (1,), (), (2, 3, 4, 5), (1, 3, 1, 1)]


def _x(rng: np.random.Generator, shape=(2, 3, 4, 5)) -> np.ndarray:
    x = 1.5 * rng.standard_normal(shape)
    return x + np.where(x >= 0, 0.05, -0.05)  # clear of the kink at 0


@pytest.mark.parametrize("w_shape", W_SHAPES, ids=str)
def test_gradcheck(w_shape, rng: np.random.Generator) -> None:
    x = _x(rng)
    w = rng.uniform(-0.5, 0.7, size=w_shape)
    y, cache = prelu_forward(x, w, broadcast=True)
    np.testing.assert_array_equal(y, np.where(x > 0, x, x * w))
    r = rng.standard_normal(y.shape)
    dx, dw = prelu_backward(r, cache)
    assert dx.shape == x.shape and dw.shape == w.shape

    def f() -> float:
        return float(np.sum(r * prelu_forward(x, w, broadcast=True)[0]))

    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8
    assert max_rel_error(dw, numerical_grad(f, w)) < 1e-8


@pytest.mark.parametrize("w_shape", [(3, 4, 5), (5,), (1, 1, 5), (4, 1)], ids=str)
def test_matches_onnx_reference(w_shape, rng: np.random.Generator) -> None:
    """ONNX's slope lives in NCHW: an NHWC slope (..., H, W, C) is (..., C, H, W) there, with the same rank."""
    x = _x(rng)
    w = rng.uniform(-0.5, 0.7, size=w_shape)
    y, _ = prelu_forward(x, w, broadcast=True)
    w4 = w.reshape((1,) * (4 - w.ndim) + w.shape)  # rank 4 NHWC, then to NCHW
    (ref,) = run_node("PRelu", {"x": to_nchw(x), "slope": to_nchw(w4)})
    assert_close(y, to_nhwc(ref))


@pytest.mark.oracle
def test_per_channel_broadcast_matches_torch(rng: np.random.Generator) -> None:
    """A (1, 1, C) slope is PyTorch's per-channel PReLU; the gradient sums over N, H, W."""
    torch = require_torch()
    x = _x(rng)
    w = rng.uniform(0.1, 0.4, size=(1, 1, 5))
    y, cache = prelu_forward(x, w, broadcast=True)
    dy = rng.standard_normal(y.shape)
    dx, dw = prelu_backward(dy, cache)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    wt = torch.tensor(w.reshape(5), requires_grad=True)
    yt = torch.nn.functional.prelu(xt, wt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
    assert_close(dw.reshape(5), wt.grad.numpy())


def test_strict_by_default_and_errors(rng: np.random.Generator) -> None:
    x = _x(rng)
    with pytest.raises(ShapeError, match="broadcast=True"):  # an NCHW-shaped slope is refused unless asked
        prelu_forward(x, np.ones((3, 4, 5)))
    with pytest.raises(ShapeError, match="does not broadcast"):
        prelu_forward(x, np.ones((4, 4)), broadcast=True)
    with pytest.raises(ShapeError, match="does not broadcast"):
        prelu_forward(x, np.ones((1, 2, 3, 4, 5)), broadcast=True)  # would change the input's shape
    # (1,) and (C,) give the same result either way
    for w in (np.array([0.3]), rng.uniform(size=5)):
        np.testing.assert_array_equal(prelu_forward(x, w)[0], prelu_forward(x, w, broadcast=True)[0])
