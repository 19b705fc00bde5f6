"""Tests of the activation layers in cnnkit.nn.activation: layer gradient checks, PyTorch modules as oracle."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn import activation as nn_act
from cnnkit.nn.base import Layer
from tests.oracle import assert_close, nchw, nhwc, require_torch

# name -> (cnnkit layer factory, torch module factory given torch.nn); torch gets NCHW, so its dim is 1
LAYERS = {
    "ReLU": (lambda: nn_act.ReLU(), lambda nn: nn.ReLU()),
    "Sigmoid": (lambda: nn_act.Sigmoid(), lambda nn: nn.Sigmoid()),
    "Tanh": (lambda: nn_act.Tanh(), lambda nn: nn.Tanh()),
    "LeakyReLU": (lambda: nn_act.LeakyReLU(0.2), lambda nn: nn.LeakyReLU(0.2)),
    "ELU": (lambda: nn_act.ELU(0.7), lambda nn: nn.ELU(0.7)),
    "Softplus": (lambda: nn_act.Softplus(beta=2.0, threshold=3.0), lambda nn: nn.Softplus(beta=2.0, threshold=3.0)),
    "Softmax": (lambda: nn_act.Softmax(), lambda nn: nn.Softmax(dim=1)),  # torch's channel axis is 1
    "LogSoftmax": (lambda: nn_act.LogSoftmax(dim=3), lambda nn: nn.LogSoftmax(dim=1)),
}


def _x(rng: np.random.Generator, shape: tuple[int, ...] = (2, 3, 3, 4)) -> np.ndarray:
    x = 1.5 * rng.standard_normal(shape)
    return x + np.where(x >= 0, 0.05, -0.05)  # clear of the kinks at 0


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradcheck(name: str, rng: np.random.Generator) -> None:
    layer = LAYERS[name][0]()
    x = _x(rng)
    if name == "Softplus":  # clear of the threshold switch at beta x = 3
        x = np.where(np.abs(2 * x - 3) < 0.05, x + 0.1, x)
    errors = check_layer(layer, x, rng=rng)
    assert errors["x"] < 1e-7 and list(errors) == ["x"]


@pytest.mark.parametrize("num_parameters", [1, 4])
def test_prelu_layer_gradcheck(num_parameters: int, rng: np.random.Generator) -> None:
    layer = nn_act.PReLU(num_parameters, dtype=np.float64)
    layer.params["weight"][...] = rng.uniform(-0.3, 0.6, size=num_parameters)
    errors = check_layer(layer, _x(rng), rng=rng)
    assert errors["x"] < 1e-7 and errors["weight"] < 1e-7


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_oracle(name: str, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    make, make_torch = LAYERS[name]
    x = (2 * rng.standard_normal((2, 3, 4, 5))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = make()
    y = layer.forward(x, train=True)
    dx = layer.backward(dy)
    tx = nchw(x)
    ty = make_torch(torch.nn)(tx)
    ty.backward(nchw(dy).detach())
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, nhwc(ty), dtype)
    assert_close(dx, nhwc(tx.grad), dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("num_parameters", [1, 5])
def test_prelu_oracle(num_parameters: int, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    layer = nn_act.PReLU(num_parameters, init=0.1, dtype=dtype)
    tmod = torch.nn.PReLU(num_parameters, init=0.1).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        w = rng.uniform(-0.3, 0.6, size=num_parameters).astype(dtype)
        layer.params["weight"][...] = w
        tmod.weight.copy_(torch.tensor(w))
    x = (2 * rng.standard_normal((2, 3, 4, 5))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = nchw(x)
    ty = tmod(tx)
    ty.backward(nchw(dy).detach())
    assert_close(y, nhwc(ty), dtype)
    assert_close(dx, nhwc(tx.grad), dtype)
    assert_close(layer.grads["weight"], tmod.weight.grad.numpy(), dtype)


def test_prelu_parameters() -> None:
    layer = nn_act.PReLU(3)
    assert layer.params["weight"].shape == (3,) and layer.params["weight"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["weight"], 0.25)
    g = layer.grads["weight"]
    x = np.arange(-12, 12, dtype=np.float32).reshape(2, 2, 2, 3)
    y = layer(x)
    assert y.dtype == np.float32
    layer.backward(np.ones_like(y))
    assert layer.grads["weight"] is g  # written in place
    np.testing.assert_allclose(g, x.reshape(-1, 3).clip(max=0).sum(axis=0))
    x64 = x.astype(np.float64)
    assert layer(x64).dtype == np.float32  # computes in the parameters' dtype
    layer.astype(np.float64)
    assert layer(x).dtype == np.float64
    with pytest.raises(ValueError):
        nn_act.PReLU(0)


ALL = [*(make for make, _ in LAYERS.values()), lambda: nn_act.PReLU(), lambda: nn_act.ReLU(inplace=True)]


@pytest.mark.parametrize("make", ALL)
def test_backward_before_forward_raises(make) -> None:
    layer = make()
    assert isinstance(layer, Layer)
    with pytest.raises(StateError, match="before forward"):
        layer.backward(np.ones((2, 3)))
    assert type(layer).__name__ in repr(layer)


def test_inplace_relu_layer(rng: np.random.Generator) -> None:
    x = _x(rng).astype(np.float32)
    ref = nn_act.ReLU()
    layer = nn_act.ReLU(inplace=True)
    y_ref = ref(x.copy())
    dx_ref = ref.backward(np.ones_like(x))
    x2 = x.copy()
    y = layer(x2)
    assert y is x2
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), dx_ref)
    assert "inplace=True" in repr(layer)


def test_softmax_axis_check() -> None:
    x = np.zeros((2, 3, 3, 4))
    assert nn_act.Softmax(dim=3)(x).shape == x.shape
    with pytest.raises(ValueError, match="last"):
        nn_act.Softmax(dim=1)(x)
    with pytest.raises(ValueError, match="last"):
        nn_act.LogSoftmax(dim=0)(x)
