"""The layers on the CuPy backend against NumPy (forward and backward), gradient checks on the GPU, and one
training step of a small conv net. Parameterised by backend: ``numpy`` always runs (the reference path checks
itself), ``cupy`` only where CuPy and a CUDA device exist; elsewhere it is skipped. ``scripts/gpu_check.sh``
runs this file on a GPU machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from cnnkit import backend
from cnnkit.errors import MissingDependencyError


def _cupy_ready() -> str:
    """'' when the CuPy backend can be used here, else why not."""
    try:
        backend.use("cupy")
    except MissingDependencyError as e:
        return str(e)
    finally:
        backend.use("numpy")
    return ""


WHY_NOT = _cupy_ready()
BACKENDS = ["numpy", "fake", pytest.param("cupy", marks=pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "CuPy"))]
"""``fake``: NumPy in disguise (tests/test_backend.py), a CPU run of everything that is not NumPy's own path."""


def switch(to: str) -> None:
    if to == "fake":
        from tests.test_backend import fake_module

        backend.use_module(fake_module(), "fake")
    else:
        backend.use(to)


@pytest.fixture(params=BACKENDS)
def on(request: pytest.FixtureRequest) -> Iterator[str]:
    switch(request.param)
    try:
        yield request.param
    finally:
        backend.use("numpy")


def _layers() -> dict[str, Callable[[np.random.Generator], tuple[Any, tuple[int, ...]]]]:
    from cnnkit import nn

    f64 = np.float64
    return {
        "conv": lambda r: (nn.Conv2d(3, 4, 3, padding=1, rng=r, dtype=f64), (2, 6, 6, 3)),
        "conv-stride2": lambda r: (nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=r, dtype=f64), (2, 7, 7, 3)),
        "conv-5x5": lambda r: (nn.Conv2d(2, 3, 5, padding=2, rng=r, dtype=f64), (2, 8, 8, 2)),
        "conv-1x1": lambda r: (nn.Conv2d(3, 5, 1, rng=r, dtype=f64), (2, 4, 4, 3)),
        "maxpool": lambda r: (nn.MaxPool2d(2), (2, 6, 6, 3)),
        "maxpool-overlap": lambda r: (nn.MaxPool2d(3, 2, padding=1), (2, 7, 7, 3)),
        "avgpool": lambda r: (nn.AvgPool2d(2), (2, 6, 6, 3)),
        "relu": lambda r: (nn.ReLU(), (2, 5, 5, 3)),
        "batchnorm": lambda r: (nn.BatchNorm2d(3, dtype=f64), (4, 5, 5, 3)),
        "linear": lambda r: (nn.Linear(12, 5, rng=r, dtype=f64), (4, 12)),
        "flatten-linear": lambda r: (nn.Sequential(nn.Flatten(), nn.Linear(27, 4, rng=r, dtype=f64)), (2, 3, 3, 3)),
    }


LAYERS = list(_layers())


def _run(name: str, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Forward (train mode) and backward of a freshly built layer on the current backend, results on the host."""
    layer, _ = _layers()[name](np.random.default_rng(0))
    y = layer.forward(backend.asarray(x), train=True)
    dx = layer.backward(backend.asarray(dy))
    return backend.to_numpy(y), backend.to_numpy(dx), {k: backend.to_numpy(g) for k, g in layer.grads.items()}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_numpy(on: str, name: str) -> None:
    rng = np.random.default_rng(1)
    _, shape = _layers()[name](np.random.default_rng(0))
    x = rng.standard_normal(shape)
    backend.use("numpy")
    layer, _ = _layers()[name](np.random.default_rng(0))
    dy = rng.standard_normal(layer.forward(x, train=True).shape)
    ref = _run(name, x, dy)
    switch(on)
    got = _run(name, x, dy)
    assert type(got[0]) is np.ndarray
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-9, atol=1e-11)
    assert sorted(got[2]) == sorted(ref[2])
    for k in ref[2]:
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=1e-9, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("name", LAYERS)
def test_directional_gradient_check(on: str, name: str) -> None:
    """<analytic gradient, v> equals the centred difference of f = <r, y> along v (for x and every parameter)."""
    xp = backend.xp
    rng = np.random.default_rng(2)
    layer, shape = _layers()[name](np.random.default_rng(0))
    x = backend.asarray(rng.standard_normal(shape))
    y = layer.forward(x, train=True)
    r = backend.asarray(rng.standard_normal(y.shape))

    def f() -> float:
        return float(xp.sum(r * layer.forward(x, train=True)))

    layer.forward(x, train=True)
    dx = layer.backward(r)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    eps = 1e-6
    for what, target, g in [("x", x, dx), *((k, layer.params[k], grads[k]) for k in grads)]:
        v = backend.asarray(rng.standard_normal(target.shape))
        target += eps * v
        fp = f()
        target -= 2 * eps * v
        fm = f()
        target += eps * v
        numeric, analytic = (fp - fm) / (2 * eps), float(xp.sum(g * v))
        assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(analytic)), (what, numeric, analytic)


def test_softmax_cross_entropy_matches_numpy(on: str) -> None:
    from cnnkit.nn import SoftmaxCrossEntropy

    rng = np.random.default_rng(3)
    s, labels = rng.standard_normal((6, 5)), np.array([0, 4, 2, 2, 1, 3])
    ref_loss = SoftmaxCrossEntropy()
    ref_value = ref_loss.forward(s, labels)
    ref_grad = ref_loss.backward()
    switch(on)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(backend.asarray(s), backend.asarray(labels))
    assert isinstance(value, float) and value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), ref_grad, rtol=1e-10, atol=1e-12)


def test_training_step_and_checkpoint_match_numpy(on: str, tmp_path: Any) -> None:
    """fit() for two epochs on a small conv net, then the saved model file: the same numbers as NumPy."""
    import cnnkit
    from cnnkit.models.file import load_model, save_model
    from cnnkit.nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((16, 8, 8, 1)), rng.integers(0, 3, 16)

    def run() -> tuple[float, dict[str, np.ndarray]]:
        r = np.random.default_rng(0)
        f64 = np.float64
        net = Sequential(Conv2d(1, 4, 3, padding=1, rng=r, dtype=f64), BatchNorm2d(4, dtype=f64), ReLU(), MaxPool2d(2),
                         Flatten(), Linear(64, 3, rng=r, dtype=f64))
        history = cnnkit.fit(net, (x, y), epochs=2, batch_size=4, loss=SoftmaxCrossEntropy(),
                             optimizer=SGD(net, lr=0.05, momentum=0.9))
        path = tmp_path / f"{backend.name()}.npz"
        save_model(path, net, input_shape=(8, 8, 1))
        loaded = load_model(path).network
        return float(history.records[-1]["train_loss"]), {k: backend.to_numpy(v) for k, v in loaded.params.items()}

    ref_loss, ref_params = run()
    switch(on)
    loss, params = run()
    assert loss == pytest.approx(ref_loss, rel=1e-8)
    for k in ref_params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=1e-8, atol=1e-10, err_msg=k)
