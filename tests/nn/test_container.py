"""Containers: Sequential, Residual and Concat (DAG networks, exercise 15.4)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.container import Concat, Residual, Sequential
from cnnkit.nn.conv import Conv2d


def _conv(cin: int, cout: int, k: int, rng: np.random.Generator, **kw) -> Conv2d:  # noqa: ANN003
    return Conv2d(cin, cout, k, rng=rng, dtype=np.float64, **kw)


def test_dag_network_gradients(rng: np.random.Generator) -> None:
    net = Sequential(
        _conv(2, 3, 3, rng, padding=1),
        Residual(Sequential(_conv(3, 3, 3, rng, padding="same"))),
        Residual(_conv(3, 4, 1, rng), shortcut=_conv(3, 4, 1, rng, bias=False)),
        Concat(_conv(4, 2, 1, rng), _conv(4, 3, 3, rng, padding=1)),
    )
    errors = check_layer(net, rng.standard_normal((2, 5, 5, 2)))
    assert max(errors.values()) < 1e-7, errors


def test_dotted_names_share_arrays(rng: np.random.Generator) -> None:
    inner = _conv(1, 2, 3, rng)
    net = Sequential(inner, Residual(Sequential(_conv(2, 2, 1, rng))))
    assert list(net.params) == ["0.weight", "0.bias", "1.body.0.weight", "1.body.0.bias"]
    assert set(net.grads) == set(net.params)
    assert net.params["0.weight"] is inner.params["weight"]
    x = rng.standard_normal((1, 4, 4, 1))
    before = net(x).copy()
    net.params["0.bias"][...] += 1.0  # in-place assignment through the container changes the layer
    assert not np.allclose(net(x), before)
    assert net[0] is inner and len(net) == 2


def test_residual_shape_mismatch_names_shapes(rng: np.random.Generator) -> None:
    block = Residual(_conv(2, 3, 1, rng))
    with pytest.raises(ShapeError, match=r"\(1, 4, 4, 3\).*\(1, 4, 4, 2\)"):
        block(rng.standard_normal((1, 4, 4, 2)))


def test_concat_spatial_mismatch(rng: np.random.Generator) -> None:
    block = Concat(_conv(2, 3, 1, rng), _conv(2, 3, 3, rng))
    with pytest.raises(ShapeError, match="branch 1"):
        block(rng.standard_normal((1, 4, 4, 2)))


def test_backward_before_forward(rng: np.random.Generator) -> None:
    with pytest.raises(StateError):
        Sequential(_conv(1, 1, 1, rng)).backward(np.zeros((1, 1, 1, 1)))


def test_first_layer_without_input_gradient(rng: np.random.Generator) -> None:
    net = Sequential(Conv2d(1, 2, 3, rng=rng, need_input_grad=False), _conv(2, 1, 1, rng))
    y = net.forward(rng.standard_normal((2, 5, 5, 1)), train=True)
    assert net.backward(np.ones_like(y)) is None
    assert np.any(net.grads["0.weight"] != 0)


def test_astype_and_zero_grad(rng: np.random.Generator) -> None:
    net = Sequential(Conv2d(1, 2, 3, rng=rng), Conv2d(2, 1, 1, rng=rng))
    assert net.dtype == np.float32
    net.astype(np.float64)
    assert all(v.dtype == np.float64 for v in net.params.values())
    y = net.forward(rng.standard_normal((1, 4, 4, 1)))
    assert y.dtype == np.float64
    net.backward(np.ones_like(y))
    net.zero_grad()
    assert all(not g.any() for g in net.grads.values())
    assert "Sequential(" in repr(net) and "Conv2d(1, 2" in repr(net)
