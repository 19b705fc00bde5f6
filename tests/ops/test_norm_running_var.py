"""Batch normalisation's running variance in training: the unbiased batch variance (PyTorch, the default)
or the biased one (ONNX's BatchNormalization, running_var_unbiased=False), by hand, against PyTorch and
against onnx.reference (training_mode=1; ONNX's momentum m is 1 - momentum here)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.ops.norm import batch_norm_backward, batch_norm_forward
from tests.onnx_oracle import run_node, to_nchw, to_nhwc
from tests.oracle import assert_close, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()


def test_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)  # mean 2.5, biased var 1.25, unbiased 5/3
    for unbiased, batch_var in ((True, 5 / 3), (False, 1.25)):
        mean, var = np.zeros(1), np.ones(1)
        y, _ = batch_norm_forward(x, None, None, mean, var, True, 0.1, 1e-5, running_var_unbiased=unbiased)
        np.testing.assert_allclose(mean, [0.25])
        np.testing.assert_allclose(var, [0.9 + 0.1 * batch_var])
        np.testing.assert_allclose(y[:, 0], (x[:, 0] - 2.5) / np.sqrt(1.25 + 1e-5))  # normalised with the biased one both ways


@pytest.mark.parametrize("unbiased", [True, False])
def test_only_the_running_variance_differs(unbiased: bool, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 3, 3, 2))
    g, b = rng.standard_normal(2), rng.standard_normal(2)
    rm0, rv0 = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
    rm, rv = rm0.copy(), rv0.copy()
    y, cache = batch_norm_forward(x, g, b, rm, rv, True, 0.2, 1e-5, running_var_unbiased=unbiased)
    y_ref, cache_ref = batch_norm_forward(x, g, b, rm0.copy(), rv0.copy(), True, 0.2, 1e-5)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(x.shape)
    for a, c in zip(batch_norm_backward(dy, cache), batch_norm_backward(dy, cache_ref)):
        np.testing.assert_array_equal(a, c)
    m = x.size // 2
    var = x.reshape(-1, 2).var(axis=0)
    np.testing.assert_allclose(rv, 0.8 * rv0 + 0.2 * var * (m / (m - 1) if unbiased else 1.0), rtol=1e-12)


@pytest.mark.oracle
def test_default_matches_torch(rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((5, 4, 3, 2))
    rm, rv = np.zeros(2), np.ones(2)
    batch_norm_forward(x, np.ones(2), np.zeros(2), rm, rv, True, 0.1)
    bn = torch.nn.BatchNorm2d(2, dtype=torch.float64)
    bn.train()
    bn(torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    assert_close(rm, bn.running_mean.numpy())
    assert_close(rv, bn.running_var.numpy())


def test_biased_matches_onnx_reference(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 4, 5, 2))
    scale, bias = rng.standard_normal(2), rng.standard_normal(2)
    mean, var = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
    y_ref, mean_ref, var_ref = run_node(
        "BatchNormalization", {"x": to_nchw(x), "scale": scale, "bias": bias, "mean": mean, "var": var},
        n_outputs=3, opset=15, epsilon=1e-5, momentum=0.75, training_mode=1,  # attributes are float32: exact values
    )
    rm, rv = mean.copy(), var.copy()
    y, _ = batch_norm_forward(x, scale, bias, rm, rv, True, 1 - 0.75, 1e-5, running_var_unbiased=False)
    assert_close(y, to_nhwc(y_ref))
    assert_close(rm, mean_ref)
    assert_close(rv, var_ref)
