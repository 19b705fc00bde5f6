"""Inverted dropout op: statistics, mask reuse in backward (gradient check), PyTorch behaviour, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.dropout import dropout_backward, dropout_forward
from tests.oracle import require_torch


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_statistics(p):
    """About a fraction p is zeroed, the survivors are scaled by 1/(1-p), and the mean is preserved."""
    x = np.ones((50, 20, 20, 10), dtype=np.float32)  # 200k entries
    y, cache = dropout_forward(x, p, True, np.random.default_rng(7))
    assert y.dtype == np.float32 and y.shape == x.shape
    n = x.size
    zero_frac = float(np.mean(y == 0))
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(zero_frac - p) < 5 * sigma
    np.testing.assert_allclose(np.unique(y), [0.0, 1.0 / (1 - p)], rtol=1e-6)
    # E[y] = x: deviation of the mean within 5 standard errors (std of one entry is sqrt(p/(1-p)))
    assert abs(float(y.mean(dtype=np.float64)) - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    np.testing.assert_array_equal(cache.keep, y != 0)


def test_identity_at_evaluation_and_p0(rng):
    x = rng.standard_normal((3, 4, 4, 2))
    for train, p in ((False, 0.5), (False, 0.0), (True, 0.0)):
        y, cache = dropout_forward(x, p, train, rng)
        assert y is x  # no copy, like PyTorch
        dy = rng.standard_normal(x.shape)
        np.testing.assert_array_equal(dropout_backward(dy, cache), dy)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 3, 4), (17,)])
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_gradcheck_backward_uses_forward_mask(shape, p, rng):
    """With the generator reseeded before every forward the function is deterministic; the analytic
    backward (which reuses the cached mask) matches centred differences exactly."""
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape)

    def f() -> float:
        return float(np.sum(r * dropout_forward(x, p, True, np.random.default_rng(99))[0]))

    y, cache = dropout_forward(x, p, True, np.random.default_rng(99))
    dx = dropout_backward(r, cache)
    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8
    np.testing.assert_allclose(dx, r * (y != 0) / (1 - p), rtol=1e-15)


def test_backward_mask_differs_between_forwards():
    x = np.ones((1000,))
    rng = np.random.default_rng(3)
    _, c1 = dropout_forward(x, 0.5, True, rng)
    _, c2 = dropout_forward(x, 0.5, True, rng)
    assert not np.array_equal(c1.keep, c2.keep)
    dy = np.ones(1000)
    np.testing.assert_array_equal(dropout_backward(dy, c1) != 0, c1.keep)


def test_reproducible_with_seed(rng):
    x = rng.standard_normal((4, 6))
    a, _ = dropout_forward(x, 0.3, True, np.random.default_rng(5))
    b, _ = dropout_forward(x, 0.3, True, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_dtypes(rng):
    x64 = rng.standard_normal((10, 10))
    y, cache = dropout_forward(x64, 0.5, True, rng)
    assert y.dtype == np.float64
    assert dropout_backward(np.ones((10, 10), np.float32), cache).dtype == np.float64
    y, _ = dropout_forward(np.ones((3, 3), dtype=np.int64), 0.5, True, rng)
    assert y.dtype == np.float32


@pytest.mark.oracle
def test_p_one_gives_zeros_like_pytorch(rng):
    torch = require_torch()
    x = rng.standard_normal((3, 4))
    yt = torch.nn.functional.dropout(torch.tensor(x), p=1.0, training=True)
    y, cache = dropout_forward(x, 1.0, True, rng)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), cache), 0.0)


@pytest.mark.oracle
def test_same_scaling_as_pytorch(rng):
    """PyTorch's kept entries are x/(1-p) too; compare on the union of both masks' kept positions."""
    torch = require_torch()
    x = rng.standard_normal((200, 50)).astype(np.float32)
    p = 0.25
    yt = torch.nn.functional.dropout(torch.tensor(x), p=p, training=True).numpy()
    y, _ = dropout_forward(x, p, True, rng)
    kept_t, kept = yt != 0, y != 0
    np.testing.assert_allclose(yt[kept_t], x[kept_t] / (1 - p), rtol=1e-6)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - kept_t.mean()) < 0.02
    with pytest.raises(ValueError):
        torch.nn.functional.dropout(torch.tensor(x), p=1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout_forward(x, 1.5, True, rng)


def test_errors(rng):
    with pytest.raises(ValueError, match=re.escape("between 0 and 1, got -0.1")):
        dropout_forward(np.ones(3), -0.1, True, rng)
    _, cache = dropout_forward(np.ones((2, 3)), 0.5, True, rng)
    with pytest.raises(ShapeError, match=r"dy has shape \(3, 2\), expected \(2, 3\)"):
        dropout_backward(np.ones((3, 2)), cache)
    with pytest.raises(StateError):
        dropout_backward(np.ones((2, 3)), None)  # type: ignore[arg-type]  # a wrong argument on purpose
