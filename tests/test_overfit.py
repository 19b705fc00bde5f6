"""A small CNN memorises a small batch (loss near 0) with every optimiser."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy
from cnnkit.optim import SGD, Adagrad, Adam, RMSProp

OPTIMISERS = {
    "sgd": lambda m: SGD(m, lr=0.05, momentum=0.9),
    "sgd-nesterov-wd": lambda m: SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda m: Adam(m, lr=0.01),
    "rmsprop": lambda m: RMSProp(m, lr=0.003),
    "adagrad": lambda m: Adagrad(m, lr=0.1),
}


def _net(rng: np.random.Generator) -> Sequential:
    return Sequential(
        Conv2d(1, 8, 3, padding=1, rng=rng), BatchNorm2d(8), ReLU(), MaxPool2d(2),  # (N, 4, 4, 8)
        Conv2d(8, 16, 3, rng=rng), ReLU(),  # (N, 2, 2, 16)
        Flatten(), Linear(64, 10, rng=rng),
    )


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_small_network_overfits_a_batch(name: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 10, size=16)
    net, loss = _net(rng), SoftmaxCrossEntropy()
    opt = OPTIMISERS[name](net)
    first = loss.forward(net.forward(x, train=True), labels)
    for _ in range(150):
        value = loss.forward(net.forward(x, train=True), labels)
        net.backward(loss.backward())
        opt.step()
    assert first > 1.5
    assert value < 0.05, f"{name}: loss {value:.4f} after 150 steps (started at {first:.3f})"
    assert np.all(np.argmax(net.forward(x, train=True).reshape(16, 10), axis=1) == labels)
