"""Pooling with ONNX's geometry: asymmetric pads, "same_upper"/"same_lower", pads above kernel // 2,
ceil_mode with asymmetric pads, dilated average pooling (count_include_pad both ways), padded and dilated
L_p pooling. Float64 centred-difference gradient checks; onnx.reference and PyTorch (through F.pad and
F.unfold, since its pooling takes neither asymmetric pads nor dilated averages) as oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.geometry import resolve_padding, window
from cnnkit.ops.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    lp_pool2d_backward,
    lp_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    max_unpool2d_forward,
    pool_padding,
    unpool_output_size,
)
from tests.onnx_oracle import run_node, run_onnxruntime, to_nchw, to_nhwc
from tests.oracle import assert_close, nchw, nhwc, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

GRAD_TOL = 1e-7


def distinct(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float64 values at least 0.01 apart (no ties: max pooling is differentiable), some negative."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) * 0.01 - 0.004 * size).reshape(shape)


def grad_error(forward, backward, x: np.ndarray, seed: int = 0) -> float:
    y, cache = forward(x)
    r = np.random.default_rng(seed).standard_normal(y.shape)
    dx = backward(r, cache)
    assert dx.shape == x.shape
    return max_rel_error(dx, numerical_grad(lambda: float(np.sum(r * forward(x)[0])), x))


def onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    """(top, bottom, left, right) -> ONNX's [top, left, bottom, right]."""
    t, b, l, r = pads
    return [t, l, b, r]


def ceil_extra(size: int, k: int, s: int, d: int, before: int, after: int) -> int:
    """How far the last ceil_mode window hangs over the padded input (onnx.reference shifts its windows when >= 2)."""
    win = window((size, size), k, s, ((before, after), (before, after)), d, ceil_mode=True)
    return max(0, (win.out[0] - 1) * s + d * (k - 1) + 1 - (size + before + after))


# ---------------------------------------------------------------------------------------------
# padding arguments
# ---------------------------------------------------------------------------------------------
def test_same_lower_puts_the_odd_pixel_before() -> None:
    assert resolve_padding("same_upper", (9, 8), (4, 5), (1, 1), (1, 1)) == resolve_padding("same", (9, 8), (4, 5), (1, 1), (1, 1))
    assert resolve_padding("SAME_LOWER", (9, 8), (4, 5), (1, 1), (1, 1)) == (2, 1, 2, 2)
    assert resolve_padding("same_lower", (7, 7), (2, 3), (2, 2), (1, 1)) == (1, 0, 1, 1)  # totals 1 and 2
    assert window((7, 6), 3, 2, "same_lower").out == (4, 3)


def test_pool_padding_forms() -> None:
    assert pool_padding(1, 3) == (1, 1)
    assert pool_padding((1, 0), (3, 2)) == (1, 0)
    assert pool_padding(((1, 1), (0, 0)), 3) == (1, 0)  # symmetric given as pairs
    assert pool_padding([[0, 1], [1, 0]], 2) == ((0, 1), (1, 0))  # lists, as JSON gives them back
    assert pool_padding("Valid", 2) == "valid"
    with pytest.raises(ShapeError, match="same_upper"):  # pooling names the split
        pool_padding("same", 2)
    with pytest.raises(ShapeError, match=r"half the kernel.*allow_large_padding"):
        pool_padding(((0, 2), (0, 0)), 3)
    assert pool_padding(((0, 2), (0, 0)), 3, allow_large_padding=True) == ((0, 2), (0, 0))
    with pytest.raises(ShapeError, match=">= 0"):
        pool_padding(((0, -1), (0, 0)), 3, allow_large_padding=True)


def test_large_padding_needs_the_flag_in_the_ops() -> None:
    x = np.zeros((1, 5, 5, 1))
    for fwd in (max_pool2d_forward, avg_pool2d_forward):
        with pytest.raises(ShapeError, match="allow_large_padding"):
            fwd(x, 3, 1, 2)
        assert fwd(x, 3, 1, 2, allow_large_padding=True)[0].shape == (1, 7, 7, 1)
    with pytest.raises(ShapeError, match="allow_large_padding"):
        lp_pool2d_forward(x, 2, 3, 1, padding=((0, 2), (0, 0)))
    # "same_*" with dilation can exceed kernel // 2: the check runs on the resolved pads
    with pytest.raises(ShapeError, match=r"'same_upper' on an input 5x5"):
        max_pool2d_forward(x, 3, 1, "same_upper", dilation=2)
    assert max_pool2d_forward(x, 3, 1, "same_upper", dilation=2, allow_large_padding=True)[0].shape == (1, 5, 5, 1)


def test_windows_of_padding_only() -> None:
    """Only possible with allow_large_padding (or dilation): max gives -inf (no gradient), the average
    without count_include_pad 0/0 = NaN (ONNX's reference), L_p pooling 0; the input's gradient stays finite."""
    x = np.array([[[[5.0], [-3.0]]]])  # (1, 1, 2, 1)
    pads = ((0, 0), (3, 0))
    y, c = max_pool2d_forward(x, (1, 2), (1, 2), pads, allow_large_padding=True)
    np.testing.assert_array_equal(y[0, 0, :, 0], [-np.inf, 5.0])
    np.testing.assert_array_equal(max_pool2d_backward(np.ones_like(y), c)[0, 0, :, 0], [1.0, 0.0])
    for cip, expected in ((False, [np.nan, 5.0]), (True, [0.0, 2.5])):
        y, c = avg_pool2d_forward(x, (1, 2), (1, 2), pads, count_include_pad=cip, allow_large_padding=True)
        np.testing.assert_array_equal(y[0, 0, :, 0], expected)
        dx = avg_pool2d_backward(np.ones_like(y), c)
        np.testing.assert_array_equal(dx[0, 0, :, 0], [1.0, 0.0] if not cip else [0.5, 0.0])
    y, c = lp_pool2d_forward(x, 2, (1, 2), (1, 2), padding=pads, allow_large_padding=True)
    np.testing.assert_array_equal(y[0, 0, :, 0], [0.0, 5.0])
    np.testing.assert_array_equal(lp_pool2d_backward(np.ones_like(y), c)[0, 0, :, 0], [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# gradient checks (float64)
# ---------------------------------------------------------------------------------------------
GEOMETRIES = [  # (kernel, stride, padding, dilation, ceil_mode, allow_large_padding)
    (3, 2, ((0, 1), (1, 0)), 1, False, False),
    (3, 2, ((1, 0), (0, 1)), 1, True, False),
    ((3, 2), (2, 1), ((1, 1), (1, 0)), (1, 2), True, False),
    (2, 1, "same_upper", 1, False, False),
    (3, 2, "same_lower", 1, False, False),
    (2, 3, "same_lower", 2, False, True),
    (3, 2, ((0, 2), (2, 1)), 1, True, True),
    (2, 2, ((2, 0), (0, 3)), 2, False, True),
]


@pytest.mark.parametrize("k,s,p,d,ceil,large", GEOMETRIES)
def test_max_pool_gradcheck(k, s, p, d, ceil, large) -> None:
    x = distinct((2, 6, 7, 2), seed=1)
    fwd = lambda a: max_pool2d_forward(a, k, s, p, ceil, d, allow_large_padding=large)  # noqa: E731
    assert grad_error(fwd, max_pool2d_backward, x) < GRAD_TOL


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("k,s,p,d,ceil,large", GEOMETRIES)
def test_avg_pool_gradcheck(k, s, p, d, ceil, large, cip) -> None:
    x = np.random.default_rng(2).standard_normal((2, 6, 7, 2))
    fwd = lambda a: avg_pool2d_forward(a, k, s, p, ceil, cip, None, d, large)  # noqa: E731
    y, _ = fwd(x)
    assert np.all(np.isfinite(y))  # no window of padding alone in these geometries
    assert grad_error(fwd, avg_pool2d_backward, x) < GRAD_TOL


@pytest.mark.parametrize("norm", [1.5, 2, 3])
@pytest.mark.parametrize("k,s,p,d,ceil,large", GEOMETRIES[::2])
def test_lp_pool_gradcheck(k, s, p, d, ceil, large, norm) -> None:
    x = np.random.default_rng(3).standard_normal((2, 6, 7, 2))
    x += np.where(x >= 0, 0.1, -0.1)  # clear of |x|'s kink at 0
    fwd = lambda a: lp_pool2d_forward(a, norm, k, s, ceil, p, d, large)  # noqa: E731
    assert grad_error(fwd, lp_pool2d_backward, x) < GRAD_TOL


# ---------------------------------------------------------------------------------------------
# onnx.reference
# ---------------------------------------------------------------------------------------------
ONNX_EXPLICIT = [  # (shape, kernel, stride, pads (t, b, l, r), dilation, ceil_mode)
    ((2, 7, 8, 3), (3, 3), (2, 2), (0, 1, 1, 0), (1, 1), False),
    ((2, 7, 8, 3), (3, 2), (2, 1), (1, 0, 0, 1), (1, 1), True),
    ((1, 9, 9, 2), (3, 3), (2, 2), (1, 1, 0, 1), (2, 1), True),
    ((1, 8, 7, 2), (2, 3), (1, 2), (0, 1, 1, 1), (2, 2), False),
    ((1, 8, 8, 2), (2, 2), (2, 2), (0, 0, 1, 0), (2, 2), True),  # a dilated window hanging over the bottom (ceil_mode)
    ((1, 6, 6, 2), (3, 3), (3, 3), (1, 1, 1, 1), (1, 1), True),  # test_averagepool_2d_ceil_last_window_starts_on_pad
    ((1, 5, 6, 2), (3, 3), (1, 1), (2, 2, 0, 2), (1, 1), False),  # pads above kernel // 2 (ONNX allows them)
    ((1, 7, 7, 1), (5, 5), (3, 3), (2, 1, 1, 0), (1, 1), True),
]


def _explicit_ok(shape, k, s, pads, d) -> None:
    """Cases where onnx.reference's ceil_mode padding does not shift the windows (see test_ceil_mode_overhang_of_two)."""
    t, b, l, r = pads
    assert ceil_extra(shape[1], k[0], s[0], d[0], t, b) <= 1 and ceil_extra(shape[2], k[1], s[1], d[1], l, r) <= 1


def onnx_max_pool(x_nchw: np.ndarray, **attrs) -> np.ndarray:
    """MaxPool by onnx.reference, or by onnxruntime where the reference is known to be wrong: at unit strides and
    dilations it reads explicit pads as (top, bottom, left, right) instead of ONNX's [top, left, bottom, right],
    and with auto_pad SAME_LOWER at a stride > 1 it takes floor(H/stride) outputs and splits the pads as SAME_UPPER."""
    unit = all(v == 1 for v in attrs.get("strides", [1, 1])) and all(v == 1 for v in attrs.get("dilations", [1, 1]))
    pads = attrs.get("pads", [0, 0, 0, 0])
    misread = unit and pads[1] != pads[2]
    same_lower = attrs.get("auto_pad") == "SAME_LOWER" and not unit
    run = run_onnxruntime if misread or same_lower else run_node
    return run("MaxPool", {"x": x_nchw}, **attrs)[0]


@pytest.mark.parametrize("shape,k,s,pads,d,ceil", ONNX_EXPLICIT)
def test_max_pool_matches_onnx_reference(shape, k, s, pads, d, ceil) -> None:
    _explicit_ok(shape, k, s, pads, d)
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    t, b, l, r = pads
    y, _ = max_pool2d_forward(x, k, s, ((t, b), (l, r)), ceil, d, allow_large_padding=True)
    ref = onnx_max_pool(to_nchw(x), kernel_shape=list(k), strides=list(s), pads=onnx_pads(pads), dilations=list(d), ceil_mode=int(ceil))
    assert_close(y, to_nhwc(ref))


@pytest.mark.parametrize("cip", [0, 1])
@pytest.mark.parametrize("shape,k,s,pads,d,ceil", ONNX_EXPLICIT)
def test_avg_pool_matches_onnx_reference(shape, k, s, pads, d, ceil, cip) -> None:
    _explicit_ok(shape, k, s, pads, d)
    x = np.random.default_rng(sum(shape) + 1).standard_normal(shape)
    t, b, l, r = pads
    y, _ = avg_pool2d_forward(x, k, s, ((t, b), (l, r)), ceil, bool(cip), None, d, allow_large_padding=True)
    (ref,) = run_node("AveragePool", {"x": to_nchw(x)}, kernel_shape=list(k), strides=list(s), pads=onnx_pads(pads),
                      dilations=list(d), ceil_mode=int(ceil), count_include_pad=cip)
    assert_close(y, to_nhwc(ref))


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("shape,k,s,pads,d,ceil", [g for g in ONNX_EXPLICIT if not g[5]])
def test_lp_pool_matches_onnx_reference(shape, k, s, pads, d, ceil, p) -> None:
    """Without ceil_mode's partial windows (where onnx.reference rescales, see lp_pool2d_forward)."""
    x = np.random.default_rng(sum(shape) + p).standard_normal(shape)
    t, b, l, r = pads
    y, _ = lp_pool2d_forward(x, p, k, s, ceil, ((t, b), (l, r)), d, allow_large_padding=True)
    (ref,) = run_node("LpPool", {"x": to_nchw(x)}, kernel_shape=list(k), strides=list(s), pads=onnx_pads(pads),
                      dilations=list(d), p=p)
    assert_close(y, to_nhwc(ref))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("shape,k,s", [((1, 5, 5, 2), (2, 2), (1, 1)), ((2, 7, 8, 2), (3, 2), (2, 3)), ((1, 6, 5, 1), (4, 3), (2, 2))])
def test_auto_pad_matches_onnx_reference(shape, k, s, auto_pad) -> None:
    x = np.random.default_rng(7).standard_normal(shape)
    padding = auto_pad.lower()
    attrs = dict(kernel_shape=list(k), strides=list(s), auto_pad=auto_pad)
    assert_close(max_pool2d_forward(x, k, s, padding)[0], to_nhwc(onnx_max_pool(to_nchw(x), **attrs)))
    for cip in (0, 1):
        (ref,) = run_node("AveragePool", {"x": to_nchw(x)}, count_include_pad=cip, **attrs)
        assert_close(avg_pool2d_forward(x, k, s, padding, count_include_pad=bool(cip))[0], to_nhwc(ref))
    (ref,) = run_node("LpPool", {"x": to_nchw(x)}, p=2, **attrs)
    assert_close(lp_pool2d_forward(x, 2, k, s, padding=padding)[0], to_nhwc(ref))


def test_onnx_worked_examples() -> None:
    """The expected outputs written in onnx/backend/test/case/node/averagepool.py and maxpool.py."""
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    # test_averagepool_2d_ceil: kernel 3, stride 2, ceil_mode
    np.testing.assert_allclose(avg_pool2d_forward(x, 3, 2, ceil_mode=True)[0][0, :, :, 0], [[6, 7.5], [12, 13.5]])
    # test_averagepool_2d_dilations: kernel 2, dilation 2, stride 1, ceil_mode
    np.testing.assert_allclose(avg_pool2d_forward(x, 2, 1, 0, True, dilation=2)[0][0, :, :, 0], [[6, 7], [10, 11]])
    # test_maxpool_2d_dilations
    np.testing.assert_allclose(max_pool2d_forward(x, 2, 1, 0, False, 2)[0][0, :, :, 0], [[11, 12], [15, 16]])
    # test_averagepool_2d_ceil_last_window_starts_on_pad (count_include_pad: the divisor is 9)
    x3 = np.array([[[0.8580, 0.0786], [0.2692, 0.1537]], [[0.8816, 0.4353], [0.5772, 0.6623]],
                   [[0.9067, 0.9483], [0.5970, 0.7630]]], np.float32).transpose(1, 2, 0)[None]
    y, _ = avg_pool2d_forward(x3, 3, 3, 1, ceil_mode=True, count_include_pad=True)
    np.testing.assert_allclose(y.ravel(), [0.1511, 0.2841, 0.3572], atol=1e-4)
    # test_maxpool_2d_same_lower on 5 x 5 with kernel 2: the first row and column pad
    x5 = np.arange(1, 26, dtype=np.float64).reshape(1, 5, 5, 1)
    y, _ = max_pool2d_forward(x5, 2, 1, "same_lower")
    np.testing.assert_array_equal(y[0, 0, :, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y[0, 1, :, 0], [6, 7, 8, 9, 10])


def test_ceil_mode_overhang_of_two() -> None:
    """A last ceil_mode window hanging 2+ pixels over the padded input: onnx.reference splits that overhang
    and pads the start too, shifting every window; onnxruntime and PyTorch do not, nor does cnnkit."""
    torch = require_torch()
    x = np.arange(1, 26, dtype=np.float64).reshape(1, 5, 5, 1)
    assert ceil_extra(5, 3, 4, 1, 0, 0) == 2
    for cip in (True, False):
        y, _ = avg_pool2d_forward(x, 3, 4, 0, True, cip)
        yt = torch.nn.functional.avg_pool2d(nchw(x), 3, 4, 0, True, cip)
        assert_close(y, nhwc(yt))
        np.testing.assert_array_equal(y[0, :, :, 0], [[7, 10], [22, 25]])
        (ref,) = run_node("AveragePool", {"x": to_nchw(x)}, kernel_shape=[3, 3], strides=[4, 4], ceil_mode=1, count_include_pad=int(cip))
        assert not np.allclose(to_nhwc(ref), y)  # the reference's shifted windows


def test_max_pool_indices_with_asymmetric_pads_unpool() -> None:
    """Switches count from the unpadded input; unpooling with the asymmetric pads restores the input size."""
    x = distinct((1, 6, 7, 2), seed=4)
    pads = ((1, 0), (0, 1))
    y, cache = max_pool2d_forward(x, 2, 2, pads)
    idx = max_pool2d_indices(cache)
    assert y.shape == (1, 3, 4, 2)
    flat = x.reshape(1, -1, 2)
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.reshape(1, -1, 2), axis=1).reshape(y.shape), y)
    assert unpool_output_size((3, 4), 2, 2, pads) == (5, 7)  # (3-1)*2 - 1 + 2, (4-1)*2 - 1 + 2
    up, _ = max_unpool2d_forward(y, idx, 2, 2, pads, output_size=(6, 7))
    assert up.shape == x.shape
    with pytest.raises(ShapeError, match="same_upper"):
        unpool_output_size((3, 4), 2, 2, "same_upper")
    assert unpool_output_size((3, 4), 2, 2, "same_upper", output_size=(6, 7), strict=False) == (6, 7)


# ---------------------------------------------------------------------------------------------
# PyTorch oracle: asymmetric pads applied with F.pad, dilated windows through F.unfold
# ---------------------------------------------------------------------------------------------
def _torch_windows(torch, xt, k, s, pads, d, fill):
    """(N, C, kh*kw, L) windows of x padded by (t, b, l, r) with ``fill``, by F.unfold."""
    F = torch.nn.functional
    t, b, l, r = pads
    xp_ = F.pad(xt, (l, r, t, b), value=fill)
    n, c = xt.shape[:2]
    cols = F.unfold(xp_, k, dilation=d, stride=s)  # (N, C*kh*kw, L)
    return cols.reshape(n, c, k[0] * k[1], -1), xp_


TORCH_CASES = [  # (shape, kernel, stride, pads (t, b, l, r), dilation)
    ((2, 7, 8, 3), (3, 3), (2, 2), (0, 1, 1, 0), (1, 1)),
    ((2, 8, 7, 2), (2, 3), (1, 2), (1, 0, 2, 0), (2, 1)),
    ((1, 9, 9, 2), (3, 3), (1, 1), (2, 3, 0, 1), (2, 2)),
]


@pytest.mark.oracle
@pytest.mark.parametrize("shape,k,s,pads,d", TORCH_CASES)
def test_pooling_matches_torch_with_asymmetric_pads_and_dilation(shape, k, s, pads, d) -> None:
    torch = require_torch()
    rng = np.random.default_rng(sum(shape) + sum(pads))
    x = rng.standard_normal(shape)
    t, b, l, r = pads
    padding = ((t, b), (l, r))
    cases = []
    # max: pad with -inf, then the window maximum
    cases.append((lambda a: max_pool2d_forward(a, k, s, padding, False, d, allow_large_padding=True), max_pool2d_backward,
                  lambda xt: _torch_windows(torch, xt, k, s, pads, d, -np.inf)[0].amax(dim=2)))
    # average counting the padding: the window mean
    cases.append((lambda a: avg_pool2d_forward(a, k, s, padding, False, True, None, d, True), avg_pool2d_backward,
                  lambda xt: _torch_windows(torch, xt, k, s, pads, d, 0.0)[0].mean(dim=2)))

    # average over the input pixels only: window sum / window count of ones
    def avg_exclusive(xt):
        sums = _torch_windows(torch, xt, k, s, pads, d, 0.0)[0].sum(dim=2)
        counts = _torch_windows(torch, torch.ones_like(xt), k, s, pads, d, 0.0)[0].sum(dim=2)
        return sums / counts

    cases.append((lambda a: avg_pool2d_forward(a, k, s, padding, False, False, None, d, True), avg_pool2d_backward, avg_exclusive))
    # L_3 pooling: (sum |x|^3)^(1/3) over the zero-padded window
    cases.append((lambda a: lp_pool2d_forward(a, 3, k, s, False, padding, d, True), lp_pool2d_backward,
                  lambda xt: (_torch_windows(torch, xt, k, s, pads, d, 0.0)[0].abs() ** 3).sum(dim=2) ** (1 / 3)))
    for fwd, bwd, tfn in cases:
        y, cache = fwd(x)
        xt = nchw(x)
        cols = tfn(xt)  # (N, C, L)
        yt = cols.reshape(shape[0], shape[3], y.shape[1], y.shape[2])
        dy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        assert_close(y, nhwc(yt))
        assert_close(bwd(dy, cache), nhwc(xt.grad))


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["same_upper", "same_lower"])
def test_same_padding_matches_torch_padded_pooling(mode) -> None:
    torch = require_torch()
    F = torch.nn.functional
    x = np.random.default_rng(5).standard_normal((2, 7, 6, 2))
    for k, s in itertools.product([2, 3], [1, 2]):
        t, b, l, r = resolve_padding(mode, (7, 6), (k, k), (s, s), (1, 1))
        y, cache = max_pool2d_forward(x, k, s, mode)
        xt = nchw(x)
        yt = F.max_pool2d(F.pad(xt, (l, r, t, b), value=-np.inf), k, s)
        dy = np.random.default_rng(k + s).standard_normal(y.shape)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        assert y.shape[1:3] == (-(-7 // s), -(-6 // s))
        assert_close(y, nhwc(yt))
        assert_close(max_pool2d_backward(dy, cache), nhwc(xt.grad))
