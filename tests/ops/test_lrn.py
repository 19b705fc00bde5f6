"""Local response normalisation op: the formula by hand, gradient checks, PyTorch oracle, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.lrn import local_response_norm_backward, local_response_norm_forward
from tests.oracle import assert_close, nchw, nhwc, require_torch


def _by_hand(x: np.ndarray, n: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """The definition, one channel at a time: window [c - n//2, c + (n-1)//2] clipped to the channels."""
    c = x.shape[-1]
    y = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - n // 2), min(c - 1, ch + (n - 1) // 2)
        s = np.sum(x[..., lo : hi + 1] ** 2, axis=-1) / n
        y[..., ch] = x[..., ch] / (k + alpha * s) ** beta
    return y


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("c", [1, 3, 7])
def test_forward_matches_the_definition(n, c, rng):
    x = rng.standard_normal((2, 3, 2, c)) * 3
    y, _ = local_response_norm_forward(x, n, alpha=0.7, beta=0.6, k=1.5)
    np.testing.assert_allclose(y, _by_hand(x, n, 0.7, 0.6, 1.5), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 4, 5])
@pytest.mark.parametrize("shape", [(2, 3, 3, 6), (4, 5), (1, 2, 2, 3)])
def test_gradient_check_float64(n, shape, rng):
    x, dy = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    _, cache = local_response_norm_forward(x, n, alpha=0.9, beta=0.75, k=2.0)
    dx = local_response_norm_backward(dy, cache)

    def f() -> float:
        return float(np.sum(dy * local_response_norm_forward(x, n, 0.9, 0.75, 2.0)[0]))

    assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8


def test_dtypes_and_integers():
    x32 = np.random.default_rng(0).standard_normal((2, 2, 2, 5)).astype(np.float32)
    y, cache = local_response_norm_forward(x32, 5)
    assert y.dtype == np.float32
    assert local_response_norm_backward(np.ones_like(y), cache).dtype == np.float32
    y, _ = local_response_norm_forward(np.ones((1, 1, 1, 3), np.int64), 3)
    assert np.issubdtype(y.dtype, np.floating)


def test_paper_alexnet_constants():
    """Krizhevsky et al.'s layer (k=2, n=5, alpha=1e-4 without the 1/n) is alpha=5e-4 in PyTorch's form."""
    x = np.arange(1.0, 8.0).reshape(1, 1, 1, 7) * 10
    y, _ = local_response_norm_forward(x, 5, alpha=5e-4, beta=0.75, k=2.0)
    a = x[0, 0, 0]
    paper = [a[i] / (2 + 1e-4 * np.sum(a[max(0, i - 2) : min(6, i + 2) + 1] ** 2)) ** 0.75 for i in range(7)]
    np.testing.assert_allclose(y[0, 0, 0], paper, rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="size must be a positive integer"):
        local_response_norm_forward(np.ones((1, 3)), 0)
    with pytest.raises(ValueError, match="k must be"):
        local_response_norm_forward(np.ones((1, 3)), 3, k=0.0)
    with pytest.raises(ValueError, match="beta must be"):
        local_response_norm_forward(np.ones((1, 3)), 3, beta=-1.0)
    with pytest.raises(ShapeError, match="channels last"):
        local_response_norm_forward(np.ones(3), 3)
    with pytest.raises(StateError, match="before forward"):
        local_response_norm_backward(np.ones((1, 3)), None)
    _, cache = local_response_norm_forward(np.ones((1, 3)), 3)
    with pytest.raises(ShapeError, match="dy has shape"):
        local_response_norm_backward(np.ones((1, 4)), cache)


@pytest.mark.oracle
@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 1.0), (5, 5e-4, 0.75, 2.0), (4, 0.3, 0.5, 1.2), (3, 1.0, 1.5, 0.5),
                                                  (11, 0.2, 0.75, 1.0)])
def test_oracle_against_torch(size, alpha, beta, k, rng):
    torch = require_torch()
    x = rng.standard_normal((2, 4, 3, 7)) * 4
    dy = rng.standard_normal(x.shape)
    xt = nchw(x)
    yt = torch.nn.LocalResponseNorm(size, alpha, beta, k)(xt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    y, cache = local_response_norm_forward(x, size, alpha, beta, k)
    assert_close(y, nhwc(yt))
    assert_close(local_response_norm_backward(dy, cache), nhwc(xt.grad))
