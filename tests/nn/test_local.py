"""LocallyConnected2d layer: gradient checks over a geometry grid, shapes, init, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.local import LocallyConnected2d
from cnnkit.ops.local import locally_connected2d_forward


@pytest.mark.parametrize(
    "k,in_size,stride,padding",
    [(3, (4, 4), 1, 0), (2, (5, 4), 2, 1), ((3, 2), (4, 5), (1, 2), "same"), (1, (3, 3), 1, 0)],
)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(k, in_size, stride, padding, bias, rng):
    layer = LocallyConnected2d(2, 3, k, in_size, stride, padding, bias, rng=rng, dtype=np.float64)
    errors = check_layer(layer, rng.standard_normal((2, *in_size, 2)))
    assert set(errors) == ({"x", "weight", "bias"} if bias else {"x", "weight"})
    assert max(errors.values()) < 1e-8


def test_shapes_init_and_contract(rng):
    layer = LocallyConnected2d(3, 4, 3, (8, 6), stride=2, padding=1, rng=rng)
    assert layer.out_size == (4, 3)
    w, b = layer.params["weight"], layer.params["bias"]
    assert w.shape == (4, 3, 3, 3, 3, 4) and b.shape == (4, 3, 4) and w.dtype == np.float32
    bound = 1 / np.sqrt(27)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    x = rng.standard_normal((2, 8, 6, 3)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 4, 3, 4) and y.dtype == np.float32
    ref, _ = locally_connected2d_forward(x, w, b, 2, 1)
    np.testing.assert_array_equal(y, ref)
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and set(layer.grads) == {"weight", "bias"}
    assert "in_size=(8, 6)" in repr(layer)
    dil = LocallyConnected2d(1, 1, 3, (7, 7), dilation=2, rng=rng)
    assert dil.out_size == (3, 3)
    no_dx = LocallyConnected2d(1, 1, 2, (3, 3), need_input_grad=False, rng=rng)
    no_dx.forward(np.ones((1, 3, 3, 1), np.float32))
    assert no_dx.backward(np.ones((1, 2, 2, 1), np.float32)) is None


def test_errors(rng):
    layer = LocallyConnected2d(2, 2, 3, (5, 5), rng=rng)
    with pytest.raises(StateError):
        layer.backward(np.ones((1, 3, 3, 2)))
    with pytest.raises(ShapeError, match=r"expected an input \(N, 5, 5, 2\), got shape \(1, 6, 5, 2\)"):
        layer.forward(np.ones((1, 6, 5, 2)))
    with pytest.raises(ShapeError, match=r"got shape \(5, 5, 2\)"):
        layer.forward(np.ones((5, 5, 2)))
    with pytest.raises(ShapeError, match="does not fit"):
        LocallyConnected2d(1, 1, 5, (3, 3))
    with pytest.raises(ShapeError, match="in_channels and out_channels"):
        LocallyConnected2d(0, 1, 1, (3, 3))
