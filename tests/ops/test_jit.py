"""The compiled kernels (numba, optional) give the NumPy reference results."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnkit.ops import _jit
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row, row2im
from cnnkit.ops.pool import max_pool2d_backward, max_pool2d_forward, max_pool2d_indices

pytestmark = pytest.mark.skipif(not _jit.HAVE_NUMBA, reason="numba not installed (extra 'fast')")

GRID = list(itertools.product([(2, 2), (3, 3), (2, 3)], [1, 2, 3], [0, 1], [1, 2]))


@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row2im_kernel_matches_numpy(rng: np.random.Generator, kernel, stride, padding, dilation, dtype) -> None:  # noqa: ANN001
    shape = (2, 9, 8, 3)
    rows, win = im2row(rng.standard_normal(shape).astype(dtype), kernel, stride, padding, dilation)
    r = rng.standard_normal(rows.shape).astype(dtype)
    fast, ref = row2im(r, shape, win), row2im(r, shape, win, use_jit=False)
    assert fast.dtype == ref.dtype == dtype
    np.testing.assert_allclose(fast, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_maxpool_kernel_matches_numpy(rng: np.random.Generator, kernel, stride, padding, dilation, ceil_mode) -> None:  # noqa: ANN001
    if padding > min(kernel) // 2:
        pytest.skip("padding must be at most half the kernel")
    x = rng.integers(0, 4, size=(2, 9, 8, 3)).astype(np.float64)  # many ties: first maximum must win
    try:
        y_ref, c_ref = max_pool2d_forward(x, kernel, stride, padding, ceil_mode, dilation, use_jit=False)
    except ValueError:
        pytest.skip("window does not fit")
    y, c = max_pool2d_forward(x, kernel, stride, padding, ceil_mode, dilation)
    assert c.tap is not None and c_ref.tap is None
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(max_pool2d_backward(dy, c), max_pool2d_backward(dy, c_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(max_pool2d_indices(c), max_pool2d_indices(c_ref))


def test_tiling_pool_backward_writes_every_pixel(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 8, 8, 4)).astype(np.float32)
    y, c = max_pool2d_forward(x, 2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = max_pool2d_backward(dy, c)
    _, c_ref = max_pool2d_forward(x, 2, use_jit=False)
    np.testing.assert_array_equal(dx, max_pool2d_backward(dy, c_ref, accumulate=True))
    assert np.count_nonzero(dx) == dy.size


def test_window_geometry_unchanged_by_kernels() -> None:
    win = window((9, 8), 3, 2, 1)
    assert win.out == (5, 4)
