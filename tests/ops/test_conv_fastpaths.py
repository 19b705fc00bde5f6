"""Fast paths of conv2d give the reference result: batch chunking under a workspace cap, and the
reshape-only phi(x) of 1x1 kernels and of kernels covering the whole input."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.ops.conv import _is_reshape, conv2d_backward, conv2d_forward
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row, row2im


@pytest.mark.parametrize(
    "shape,kernel,stride,padding,groups",
    [
        ((5, 7, 6, 4), 3, 1, 1, 1),
        ((5, 7, 6, 4), (2, 3), 2, "same", 2),
        ((3, 4, 4, 6), 4, 1, 0, 1),  # window covers the input
        ((3, 5, 5, 6), 1, 1, 0, 3),  # 1x1
        ((4, 9, 9, 2), 3, 3, ((0, 1), (2, 0)), 1),
    ],
)
@pytest.mark.parametrize("limit", [1, 700, 4000])
def test_chunked_equals_whole_batch(rng: np.random.Generator, shape, kernel, stride, padding, groups, limit) -> None:
    x = rng.standard_normal(shape)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = rng.standard_normal((kh, kw, shape[3] // groups, 6))
    b = rng.standard_normal(6)
    y_ref, c_ref = conv2d_forward(x, w, b, stride, padding, 1, groups)
    y, c = conv2d_forward(x, w, b, stride, padding, 1, groups, workspace_limit=limit)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(conv2d_backward(dy, c), conv2d_backward(dy, c_ref)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    dx, dw, _db = conv2d_backward(dy, c, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw, conv2d_backward(dy, c_ref)[1], rtol=1e-12, atol=1e-12)


def test_chunking_really_happens(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 5, 5, 2)).astype(np.float32)
    _, cache = conv2d_forward(x, rng.standard_normal((3, 3, 2, 4)).astype(np.float32), workspace_limit=9 * 18 * 4 * 2)
    assert cache.rows is None and cache.chunk == 2


@pytest.mark.parametrize("shape,kernel", [((2, 4, 5, 3), (1, 1)), ((2, 4, 5, 3), (4, 5)), ((1, 1, 1, 7), (1, 1))])
def test_reshape_rows_match_im2row(rng: np.random.Generator, shape, kernel) -> None:
    x = rng.standard_normal(shape)
    win = window(shape[1:3], kernel)
    assert _is_reshape(win, shape)
    rows, _ = im2row(x, kernel)
    np.testing.assert_array_equal(x.reshape(rows.shape), rows)
    r = rng.standard_normal(rows.shape)
    np.testing.assert_array_equal(row2im(r, shape, win), r.reshape(shape))


def test_strided_or_padded_1x1_is_not_a_reshape() -> None:
    assert not _is_reshape(window((5, 5), 1, stride=2), (1, 5, 5, 1))
    assert not _is_reshape(window((5, 5), 1, padding=1), (1, 5, 5, 1))
    assert not _is_reshape(window((5, 5), 3), (1, 5, 5, 1))


def test_layer_evaluation_forward_runs_in_cache_sized_chunks(rng: np.random.Generator) -> None:
    """Conv2d's train=False forward chunks phi(x) at EVAL_CHUNK_BYTES and agrees with the training forward;
    training keeps phi(x) only while it is at most KEEP_ROWS_BYTES, else x (phi(x) rebuilt in backward)."""
    from cnnkit.nn import Conv2d
    from cnnkit.ops.conv import EVAL_CHUNK_BYTES, KEEP_ROWS_BYTES

    layer = Conv2d(8, 4, 3, padding=1, rng=rng, algo="im2row")
    per_image = 20 * 20 * 9 * 8 * 4  # phi(x) bytes of one 20x20x8 float32 image
    n = EVAL_CHUNK_BYTES // per_image + 3  # just over one chunk
    x = rng.standard_normal((n, 20, 20, 8)).astype(np.float32)
    y_eval = layer.forward(x, train=False, grad=True)  # keep the cache to look at it
    assert layer._cache.rows is None and layer._cache.chunk == EVAL_CHUNK_BYTES // per_image
    y_train = layer.forward(x, train=True)
    assert n * per_image > KEEP_ROWS_BYTES and layer._cache.rows is None and layer._cache.x is x
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-5, atol=1e-5)
    small = x[: KEEP_ROWS_BYTES // per_image]
    layer.forward(small, train=True)
    assert layer._cache.rows is not None and layer._cache.x is None
