"""Dropout layer: evaluation identity, statistics, gradient check with a reseeded generator, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.dropout import Dropout


class _Reseeded:
    """Wraps Dropout so every forward draws the same mask (what check_layer needs)."""

    def __init__(self, p: float) -> None:
        self.layer = Dropout(p)
        self.params, self.grads = self.layer.params, self.layer.grads

    def forward(self, x, train=False, grad=None):
        self.layer.rng = np.random.default_rng(11)
        return self.layer.forward(x, train, grad=grad)

    def backward(self, dy):
        return self.layer.backward(dy)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 3, 2)])
@pytest.mark.parametrize("p", [0.3, 0.7])
def test_gradcheck(shape, p, rng):
    errors = check_layer(_Reseeded(p), rng.standard_normal(shape), train=True)
    assert errors["x"] < 1e-8


def test_eval_identity_and_train_statistics():
    layer = Dropout(0.4, rng=np.random.default_rng(0)).eval()  # layer(x) follows the mode: evaluation
    x = np.ones((40, 10, 10, 5), dtype=np.float32)
    assert layer(x) is x
    y = layer.forward(x, train=True)
    assert y.dtype == np.float32
    assert abs(float(np.mean(y == 0)) - 0.4) < 0.01
    assert abs(float(y.mean(dtype=np.float64)) - 1.0) < 0.02
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)  # same mask and scale
    assert layer.params == {} and layer.grads == {}
    assert repr(layer) == "Dropout(p=0.4)"


def test_seeded_layers_agree(rng):
    x = rng.standard_normal((3, 8))
    a = Dropout(0.5, rng=np.random.default_rng(1)).forward(x, train=True)
    b = Dropout(0.5, rng=np.random.default_rng(1)).forward(x, train=True)
    np.testing.assert_array_equal(a, b)
    assert Dropout().p == 0.5


def test_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.2)
    with pytest.raises(StateError):
        Dropout(0.5).backward(np.ones(3))
