"""Tests of the loss layers in cnnkit.nn.loss: check_loss gradients, PyTorch oracle, the Loss contract."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import StateError
from cnnkit.gradcheck import check_loss
from cnnkit.nn import loss as nn_loss
from cnnkit.nn.base import Loss
from tests.oracle import assert_close, require_torch


def _targets(name: str, x: np.ndarray, rng: np.random.Generator):
    """A (prediction, target) pair suited to the loss ``name``, clear of every kink."""
    k = x.shape[-1]
    if name in ("SoftmaxCrossEntropy", "HingeLoss", "HingeLoss2"):
        return x, rng.integers(0, k, size=x.shape[:-1])
    if name == "MSLELoss":
        return rng.uniform(-0.5, 2.0, size=x.shape), rng.uniform(-0.5, 2.0, size=x.shape)
    if name == "BCELoss":
        return rng.uniform(0.05, 0.95, size=x.shape), rng.uniform(size=x.shape)
    if name == "BCEWithLogitsLoss":
        return x, rng.uniform(size=x.shape)
    t = rng.standard_normal(x.shape)
    t += np.where(t >= 0, 0.3, -0.3)
    return np.where(np.abs(x - t) < 0.02, x + 0.05, x), t


LOSSES = {
    "SoftmaxCrossEntropy": nn_loss.SoftmaxCrossEntropy,
    "L2Loss": nn_loss.L2Loss,
    "MSELoss": nn_loss.MSELoss,
    "L1Loss": nn_loss.L1Loss,
    "MSLELoss": nn_loss.MSLELoss,
    "MAPELoss": nn_loss.MAPELoss,
    "HingeLoss": nn_loss.HingeLoss,
    "HingeLoss2": lambda: nn_loss.HingeLoss(margin=0.5, p=2),
    "BCEWithLogitsLoss": nn_loss.BCEWithLogitsLoss,
    "BCELoss": nn_loss.BCELoss,
}


@pytest.mark.parametrize("shape", [(5, 4), (3, 1, 1, 4)], ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_check_loss(name: str, shape, rng: np.random.Generator) -> None:
    loss = LOSSES[name]()
    x, t = _targets(name, 2 * rng.standard_normal(shape), rng)
    if name.startswith("Hinge"):  # clear of the hinge kinks
        margin = loss.margin
        rows, flat = x.reshape(-1, shape[-1]), t.reshape(-1)
        a = margin - rows[np.arange(len(flat)), flat][:, None] + rows
        rows += np.where(np.abs(a) < 0.02, 0.05, 0.0)
    assert check_loss(loss, x, t, eps=1e-5 if name == "MAPELoss" else 1e-6) < 1e-8


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_contract(name: str, rng: np.random.Generator) -> None:
    loss = LOSSES[name]()
    assert isinstance(loss, Loss)
    with pytest.raises(StateError, match="before forward"):
        loss.backward()
    x, t = _targets(name, rng.standard_normal((4, 3)).astype(np.float32), rng)
    x = x.astype(np.float32)
    value = loss(x, t)
    assert type(value) is float and np.isfinite(value)
    g = loss.backward()
    assert g.shape == x.shape and g.dtype == np.float32
    assert repr(loss).startswith(type(loss).__name__)


def test_cross_entropy_probabilities_and_alias(rng: np.random.Generator) -> None:
    assert nn_loss.CrossEntropyLoss is nn_loss.SoftmaxCrossEntropy
    assert nn_loss.MAELoss is nn_loss.L1Loss
    loss = nn_loss.SoftmaxCrossEntropy()
    assert loss.probabilities is None
    x = rng.standard_normal((6, 1, 1, 5))
    labels = rng.integers(0, 5, size=6)
    loss(x, labels)
    p = loss.probabilities
    assert p.shape == x.shape
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(p.reshape(6, 5).argmax(axis=1), x.reshape(6, 5).argmax(axis=1))


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layers_oracle(dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    F = torch.nn.functional
    x = (2 * rng.standard_normal((6, 5))).astype(dtype)
    labels = rng.integers(0, 5, size=6)
    t = rng.standard_normal((6, 5)).astype(dtype)
    cases = [
        (nn_loss.SoftmaxCrossEntropy(), labels, lambda a: F.cross_entropy(a, torch.tensor(labels))),
        (nn_loss.HingeLoss(), labels, lambda a: F.multi_margin_loss(a, torch.tensor(labels))),
        (nn_loss.HingeLoss(2.0, p=2), labels, lambda a: F.multi_margin_loss(a, torch.tensor(labels), p=2, margin=2.0)),
        (nn_loss.MSELoss(), t, lambda a: F.mse_loss(a, torch.tensor(t))),
        (nn_loss.L1Loss(), t, lambda a: F.l1_loss(a, torch.tensor(t))),
        (nn_loss.L2Loss(), t, lambda a: 0.5 * ((a - torch.tensor(t)) ** 2).sum() / a.shape[0]),
    ]
    for loss, target, tfn in cases:
        value = loss.forward(x, target)
        g = loss.backward()
        tx = torch.tensor(x, requires_grad=True)
        tv = tfn(tx)
        tv.backward()
        assert_close(value, tv.item(), dtype)
        assert_close(g, tx.grad.numpy(), dtype)


def test_cross_entropy_layer_huge_logits() -> None:
    loss = nn_loss.SoftmaxCrossEntropy()
    x = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=np.float32)
    value = loss(x, np.array([1, 1]))
    g = loss.backward()
    assert value == pytest.approx(1e4)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0.5, -0.5], [0.0, 0.0]], atol=1e-7)
