"""Containers: Sequential, Residual and Concat (DAG networks, exercise 15.4)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.container import Concat, Residual, Sequential
from cnnkit.nn.conv import Conv2d


def _conv(cin: int, cout: int, k: int, rng: np.random.Generator, **kw) -> Conv2d:
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


# -- weight sharing: one layer object at several places ------------------------------------------------

def _shared_networks(rng: np.random.Generator) -> list[Sequential]:
    from cnnkit.nn import Flatten, Linear, ReLU, Tanh

    conv = _conv(2, 2, 3, rng, padding=1)
    lin = Linear(4, 4, rng=rng, dtype=np.float64)
    block = Sequential(_conv(2, 2, 1, rng), Tanh())
    return [
        Sequential(conv, ReLU(), conv),  # the same convolution twice in a chain
        Sequential(Residual(conv, shortcut=conv)),  # both paths of a residual block
        Sequential(Concat(conv, Sequential(conv, Tanh())), _conv(4, 2, 1, rng)),  # two branches
        Sequential(block, block, Residual(block)),  # a whole block three times
        Sequential(_conv(2, 1, 2, rng), Flatten(), lin, Tanh(), lin),  # tied fully connected layers
    ]


@pytest.mark.parametrize("case", range(5))
def test_shared_layers_get_the_summed_gradient(rng: np.random.Generator, case: int) -> None:
    net = _shared_networks(rng)[case]
    x = rng.standard_normal((2, 3, 3, 2))
    errors = check_layer(net, x, train=True)
    assert max(errors.values()) < 1e-7, errors


def test_shared_parameters_are_listed_once(rng: np.random.Generator) -> None:
    conv = _conv(2, 2, 3, rng, padding=1)
    net = Sequential(conv, Residual(conv))
    assert list(net.params) == ["0.weight", "0.bias"]
    assert set(net.grads) == set(net.params)
    assert conv.shared
    assert [type(m).__name__ for m in net.modules()] == ["Sequential", "Conv2d", "Residual"]


def test_shared_layer_gradient_equals_two_tied_copies(rng: np.random.Generator) -> None:
    """A layer used twice gets what two separate layers holding the same weights get, summed."""
    from cnnkit.nn import ReLU

    conv = _conv(2, 2, 3, rng, padding=1)
    shared = Sequential(conv, ReLU(), conv)
    a, b = _conv(2, 2, 3, rng, padding=1), _conv(2, 2, 3, rng, padding=1)
    for layer in (a, b):
        for k in conv.params:
            layer.params[k][...] = conv.params[k]
    separate = Sequential(a, ReLU(), b)
    x = rng.standard_normal((2, 4, 4, 2))
    y1, y2 = shared.forward(x, train=True), separate.forward(x, train=True)
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape)
    np.testing.assert_allclose(shared.backward(dy), separate.backward(dy), rtol=1e-12)
    for k in conv.params:
        np.testing.assert_allclose(conv.grads[k], a.grads[k] + b.grads[k], rtol=1e-12)
    # a second backward pass overwrites (it does not add to the first pass's gradients)
    shared.forward(x, train=True)
    shared.backward(dy)
    for k in conv.params:
        np.testing.assert_allclose(conv.grads[k], a.grads[k] + b.grads[k], rtol=1e-12)


@pytest.mark.parametrize("block", ["residual", "concat-first", "concat-last"])
def test_branch_without_input_gradient_gives_none(rng: np.random.Generator, block: str) -> None:
    """A branch whose first layer skips dX makes the block's input gradient 'not computed' (None), never partial."""
    skip = Conv2d(2, 2, 1, rng=rng, need_input_grad=False)
    other = _conv(2, 2, 1, rng)
    net = {"residual": Residual(skip), "concat-first": Concat(skip, other), "concat-last": Concat(other, skip)}[block]
    y = net.forward(rng.standard_normal((1, 3, 3, 2)).astype(np.float32), train=True)
    assert net.backward(np.ones_like(y)) is None
    assert np.any(skip.grads["weight"] != 0)
