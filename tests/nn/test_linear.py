"""Linear and Flatten layers: gradient checks, PyTorch oracle, initialisation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.linear import Flatten, Linear
from tests.oracle import assert_close, require_torch


@pytest.mark.parametrize("fin,fout,n", [(1, 1, 2), (5, 3, 4), (3, 6, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(fin, fout, n, bias, rng):
    layer = Linear(fin, fout, bias=bias, rng=rng, dtype=np.float64)
    errors = check_layer(layer, rng.standard_normal((n, fin)))
    assert set(errors) == ({"x", "weight", "bias"} if bias else {"x", "weight"})
    assert max(errors.values()) < 1e-8


def test_gradcheck_flatten_then_linear(rng):
    flat, lin = Flatten(), Linear(12, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 2, 3, 2))

    class Seq:  # the two layers as one, for check_layer
        params, grads = lin.params, lin.grads

        def forward(self, x, train=False, grad=None):
            return lin.forward(flat.forward(x, train, grad=grad), train, grad=grad)

        def backward(self, dy):
            return flat.backward(lin.backward(dy))

    assert max(check_layer(Seq(), x).values()) < 1e-8


def test_init_and_contract(rng):
    lin = Linear(16, 5, rng=rng)
    w, b = lin.params["weight"], lin.params["bias"]
    assert w.shape == (16, 5) and b.shape == (5,) and w.dtype == np.float32
    assert np.abs(w).max() <= 0.25 and np.abs(b).max() <= 0.25  # U(-1/sqrt(16), 1/sqrt(16))
    assert np.abs(w).max() > 0.2  # really spread over the range
    assert set(lin.grads) == {"weight", "bias"}
    a = Linear(4, 2, rng=np.random.default_rng(3)).params["weight"]
    np.testing.assert_array_equal(a, Linear(4, 2, rng=np.random.default_rng(3)).params["weight"])
    assert repr(lin) == "Linear(in_features=16, out_features=5, bias=True)"
    lin.forward(rng.standard_normal((2, 16)).astype(np.float32))
    g = lin.grads["weight"]
    lin.backward(np.ones((2, 5), np.float32))
    assert lin.grads["weight"] is g
    no_dx = Linear(3, 2, need_input_grad=False, rng=rng)
    no_dx.forward(np.ones((1, 3), np.float32))
    assert no_dx.backward(np.ones((1, 2), np.float32)) is None


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_oracle_nn_linear(dtype, rng):
    torch = require_torch()
    ours = Linear(7, 3, rng=rng, dtype=dtype)
    ref = torch.nn.Linear(7, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(ours.params["weight"].T))
        ref.bias.copy_(torch.tensor(ours.params["bias"]))
    x = rng.standard_normal((4, 7)).astype(dtype)
    dy = rng.standard_normal((4, 3)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(dy))
    assert_close(ours.forward(x, train=True), yt.detach().numpy(), dtype)
    assert_close(ours.backward(dy), xt.grad.numpy(), dtype)
    assert_close(ours.grads["weight"], ref.weight.grad.numpy().T, dtype)
    assert_close(ours.grads["bias"], ref.bias.grad.numpy(), dtype)


@pytest.mark.oracle
def test_flatten_matches_torch_on_same_memory_order(rng):
    torch = require_torch()
    x = rng.standard_normal((2, 3, 4, 5))
    for start, end in [(1, -1), (0, -1), (2, 3), (1, 2)]:
        f = Flatten(start, end)
        y = f.forward(x)
        np.testing.assert_array_equal(y, torch.flatten(torch.tensor(x), start, end).numpy())
        np.testing.assert_array_equal(f.backward(y), x)


def test_flatten_nhwc_order(rng):
    x = rng.standard_normal((2, 2, 3, 4))
    y = Flatten()(x)
    assert y.shape == (2, 24)
    assert y[1, (1 * 3 + 2) * 4 + 3] == x[1, 1, 2, 3]  # index (h*W + w)*C + c


def test_errors(rng):
    lin = Linear(4, 2, rng=rng)
    with pytest.raises(StateError):
        lin.backward(np.ones((1, 2)))
    with pytest.raises(ShapeError, match=r"input has 3 features .* in_features = 4"):
        lin.forward(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"rank-2 input .*Flatten"):
        lin.forward(np.ones((2, 1, 1, 4)))
    with pytest.raises(ShapeError, match="in_features and out_features"):
        Linear(0, 2)
    f = Flatten()
    with pytest.raises(StateError):
        f.backward(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="do not select axes"):
        Flatten(2, 1).forward(np.ones((2, 3, 4)))
    with pytest.raises(ShapeError, match="do not select axes"):
        Flatten(1).forward(np.ones(3))
    f.forward(np.ones((2, 3, 2)))
    with pytest.raises(ShapeError, match="expected 12 entries"):
        f.backward(np.ones((2, 5)))
