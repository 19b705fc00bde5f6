"""im2row against a slow loop reference, and row2im as its adjoint (seed 000 eqs. 15.21-15.24, 15.49)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row, pad_nhwc, row2im, windows_view

# (kernel, stride, padding, dilation)
GRID = [
    (1, 1, 0, 1),
    (2, 1, 0, 1),
    (3, 1, 1, 1),
    ((2, 3), 1, 0, 1),
    (3, 2, 0, 1),
    (3, 2, 1, 1),
    (2, 3, 0, 1),
    ((3, 2), (2, 1), (1, 0), 1),
    (3, 1, 0, 2),
    (2, (1, 2), "same", (2, 1)),
    (3, 2, "same", 1),
    (2, 1, ((0, 1), (2, 0)), 1),
    ((1, 3), 3, ((1, 1), (0, 2)), (1, 2)),
    (4, 1, "same", 1),
]


def slow_im2row(x: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
    """Loop reference: row (n, i_out, j_out), column (i, j, c), zero outside the input."""
    n, h, w, c = x.shape
    win = window((h, w), kernel, stride, padding, dilation)
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
    t, _, l, _ = win.pads
    ho, wo = win.out
    out = np.zeros((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for b in range(n):
        for io in range(ho):
            for jo in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        r, s = io * sh + i * dh - t, jo * sw + j * dw - l
                        if 0 <= r < h and 0 <= s < w:
                            out[b, io, jo, i, j, :] = x[b, r, s, :]
    return out.reshape(n * ho * wo, kh * kw * c)


@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
def test_im2row_matches_loop_reference(rng: np.random.Generator, kernel, stride, padding, dilation) -> None:
    x = rng.standard_normal((2, 5, 6, 3))
    rows, win = im2row(x, kernel, stride, padding, dilation)
    ref = slow_im2row(x, kernel, stride, padding, dilation)
    assert rows.shape == ref.shape == (2 * win.out[0] * win.out[1], win.kernel[0] * win.kernel[1] * 3)
    np.testing.assert_array_equal(rows, ref)
    assert rows.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2row_keeps_dtype(dtype) -> None:
    x = np.ones((1, 4, 4, 2), dtype=dtype)
    rows, _ = im2row(x, 3, padding=1)
    assert rows.dtype == dtype


def test_im2row_pad_value() -> None:
    x = np.zeros((1, 2, 2, 1))
    rows, _ = im2row(x, 3, padding=1, pad_value=-7.0)
    # on a 2x2 input padded by 1, every 3x3 window holds the 4 real pixels and 5 padding pixels
    assert np.all((rows == -7.0).sum(axis=1) == 5)


@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
def test_row2im_is_adjoint_of_im2row(rng: np.random.Generator, kernel, stride, padding, dilation) -> None:
    """<im2row(x), r> == <x, row2im(r)> for random x and r (eq. 15.49 is the transpose of eq. 15.40)."""
    x = rng.standard_normal((2, 5, 6, 3))
    rows, win = im2row(x, kernel, stride, padding, dilation)
    r = rng.standard_normal(rows.shape)
    back = row2im(r, x.shape, win)
    assert back.shape == x.shape
    assert np.sum(rows * r) == pytest.approx(np.sum(x * back), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
def test_row2im_counts_window_membership(kernel, stride, padding, dilation) -> None:
    """row2im of all-ones rows counts, per pixel, how many windows copied it (|m^{-1}|)."""
    x_shape = (1, 5, 6, 2)
    rows, win = im2row(np.ones(x_shape), kernel, stride, padding, dilation)
    counts = row2im(np.ones_like(rows), x_shape, win)
    ref = np.zeros(x_shape)
    # scatter each (index-labelled) entry of the loop reference back by its label
    labels = np.arange(1, np.prod(x_shape) + 1, dtype=np.float64).reshape(x_shape)
    lab_rows = slow_im2row(labels, kernel, stride, padding, dilation)
    vals, n = np.unique(lab_rows[lab_rows > 0], return_counts=True)
    ref.reshape(-1)[vals.astype(int) - 1] = n
    np.testing.assert_array_equal(counts, ref)


def test_row2im_accepts_6d_rows(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 6, 3))
    rows, win = im2row(x, 3, 2, 1)
    a = row2im(rows, x.shape, win)
    b = row2im(rows.reshape(2, win.out[0], win.out[1], 3, 3, 3), x.shape, win)
    np.testing.assert_array_equal(a, b)


def test_windows_view_is_read_only_and_shaped(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 5, 6, 3))
    win = window((5, 6), (2, 3), (2, 1), 1, (1, 2))
    padded = pad_nhwc(x, win.pads)
    v = windows_view(padded, win)
    assert v.shape == (2, win.out[0], win.out[1], 2, 3, 3)
    assert not v.flags.writeable
    assert np.shares_memory(v, padded)  # a view, no copy
    (sh, sw), (dh, dw) = win.stride, win.dilation
    for io, jo, i, j in [(0, 0, 0, 0), (1, 2, 1, 2), (win.out[0] - 1, win.out[1] - 1, 1, 2)]:
        np.testing.assert_array_equal(v[1, io, jo, i, j], padded[1, io * sh + i * dh, jo * sw + j * dw])


def test_pad_nhwc() -> None:
    x = np.ones((1, 2, 3, 2))
    assert pad_nhwc(x, (0, 0, 0, 0)) is x
    p = pad_nhwc(x, (1, 0, 2, 1), value=5.0)
    assert p.shape == (1, 3, 6, 2)
    assert p[0, 0, 0, 0] == 5.0 and p[0, 1, 2, 0] == 1.0


def test_im2row_errors() -> None:
    with pytest.raises(ShapeError, match=r"im2row: expected a rank-4 array \(N, H, W, C\), got shape \(5, 6, 3\)"):
        im2row(np.zeros((5, 6, 3)), 3)
    with pytest.raises(ShapeError, match=r"im2row: kernel 7x7 .* input 5x6"):
        im2row(np.zeros((1, 5, 6, 3)), 7)
    rows, win = im2row(np.zeros((1, 5, 6, 3)), 3)
    with pytest.raises(ShapeError, match=r"row2im: got rows of shape \(12, 27\).*expected.*\(12, 18\)"):
        row2im(rows, (1, 5, 6, 2), win)
