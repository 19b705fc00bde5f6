"""Window geometry: padding forms, 'same'/'valid', output size incl. ceil_mode, errors."""

from __future__ import annotations

import math

import pytest

from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import check_rank, out_size, pair, positive_pair, resolve_padding, window


def test_pair() -> None:
    assert pair(3, "k") == (3, 3)
    assert pair((2, 5), "k") == (2, 5)
    assert pair([1, 4], "k") == (1, 4)
    with pytest.raises(ShapeError, match="k must be an int or a pair"):
        pair((1, 2, 3), "k")
    with pytest.raises(ShapeError, match="stride"):
        pair(None, "stride")  # type: ignore[arg-type]  # a wrong argument on purpose
    assert positive_pair(1, "stride") == (1, 1)
    with pytest.raises(ShapeError, match=r"dilation must be >= 1, got \(1, 0\)"):
        positive_pair((1, 0), "dilation")


@pytest.mark.parametrize(
    "padding,expected",
    [
        (0, (0, 0, 0, 0)),
        (2, (2, 2, 2, 2)),
        ((1, 3), (1, 1, 3, 3)),
        ([0, 2], (0, 0, 2, 2)),
        (((0, 1), (2, 0)), (0, 1, 2, 0)),
        ([[3, 1], [0, 2]], (3, 1, 0, 2)),
        ((1, (0, 2)), (1, 1, 0, 2)),
        ("valid", (0, 0, 0, 0)),
        ("VALID", (0, 0, 0, 0)),
    ],
)
def test_resolve_explicit_padding(padding, expected) -> None:
    assert resolve_padding(padding, (7, 8), (3, 3), (1, 1), (1, 1)) == expected


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7])
def test_same_at_stride_1_is_the_seed_rule(k: int) -> None:
    """Seed 000 §15.5.1: floor((k-1)/2) before and floor(k/2) after (the odd pixel after)."""
    pads = resolve_padding("same", (6, 5), (k, k), (1, 1), (1, 1))
    assert pads == ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)
    assert window((6, 5), k, 1, "same").out == (6, 5)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 9, 10, 11])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_output_is_ceil_of_size_over_stride(size: int, k: int, stride: int, dilation: int) -> None:
    t, b, l, r = resolve_padding("same", (size, size + 1), (k, k), (stride, stride), (dilation, dilation))
    k_eff = dilation * (k - 1) + 1
    for before, after, n in [(t, b, size), (l, r, size + 1)]:
        total = max((math.ceil(n / stride) - 1) * stride + k_eff - n, 0)
        assert before + after == total
        assert after - before in (0, 1)  # the odd pixel goes after (TensorFlow's 'SAME')
        assert out_size(n, k, stride, dilation, before, after) == math.ceil(n / stride)
    assert window((size, size + 1), k, stride, "same", dilation).out == (math.ceil(size / stride), math.ceil((size + 1) / stride))


def test_same_with_dilation_at_stride_1() -> None:
    # k=3, dilation 2 -> extent 5 -> 2 before, 2 after; k=2, dilation 3 -> extent 4 -> 1 before, 2 after
    assert resolve_padding("same", (9, 9), (3, 2), (1, 1), (2, 3)) == (2, 2, 1, 2)


def test_same_no_padding_needed_when_stride_skips() -> None:
    # size 6, k 2, stride 2: 3 outputs exactly cover the input
    assert resolve_padding("same", (6, 6), (2, 2), (2, 2), (1, 1)) == (0, 0, 0, 0)
    # stride larger than the kernel: the total never goes negative
    assert resolve_padding("same", (7, 7), (1, 1), (3, 3), (1, 1)) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "size,k,stride,dilation,before,after,expected",
    [
        (5, 3, 1, 1, 0, 0, 3),
        (5, 3, 1, 1, 1, 1, 5),
        (5, 3, 2, 1, 1, 1, 3),
        (6, 3, 2, 1, 0, 0, 2),  # floor((6-3)/2)+1 = 2
        (7, 3, 1, 2, 0, 0, 3),  # extent 5
        (7, 3, 2, 2, 1, 0, 2),
        (4, 5, 1, 1, 0, 0, 0),  # impossible: reported as 0
        (4, 5, 1, 1, 1, 0, 1),
    ],
)
def test_out_size_floor(size: int, k: int, stride: int, dilation: int, before: int, after: int, expected: int) -> None:
    assert out_size(size, k, stride, dilation, before, after) == expected


@pytest.mark.parametrize(
    "size,k,stride,pad,expected",
    [
        (6, 3, 2, 0, 3),  # ceil((6-3)/2)+1 = 3; the last window starts at 4 < 6
        (5, 3, 2, 0, 2),  # exact division: same as floor
        (7, 2, 2, 0, 4),  # PyTorch MaxPool2d(2, 2, ceil_mode=True) on 7 -> 4
        (5, 2, 2, 1, 3),  # ceil((5+2-2)/2)+1 = 4, but window 3 would start at 6 >= 5+1 (padding only): 3
        (4, 2, 2, 1, 3),  # ceil(4/2)+1 = 3; the last window starts at 4 < 4+1: kept
        (9, 3, 3, 1, 4),  # ceil(8/3)+1 = 4; last starts at 9 < 10: kept
        (8, 3, 3, 1, 3),  # ceil(7/3)+1 = 4; last starts at 9 >= 9: dropped
    ],
)
def test_out_size_ceil_mode(size: int, k: int, stride: int, pad: int, expected: int) -> None:
    assert out_size(size, k, stride, 1, pad, pad, ceil_mode=True) == expected
    assert out_size(size, k, stride, 1, pad, pad) == (size + 2 * pad - k) // stride + 1


@pytest.mark.oracle
def test_ceil_mode_matches_pytorch_pooling() -> None:
    from tests.oracle import require_torch

    torch = require_torch()
    for size in range(3, 12):
        for k in (2, 3):
            for stride in (1, 2, 3):
                for pad in range(k // 2 + 1):
                    x = torch.zeros(1, 1, size, size)
                    pool = torch.nn.functional.max_pool2d(x, k, stride, pad, ceil_mode=True)
                    assert out_size(size, k, stride, 1, pad, pad, ceil_mode=True) == pool.shape[-1], (size, k, stride, pad)


def test_window_fields() -> None:
    win = window((7, 8), (3, 2), (2, 1), ((1, 0), (0, 2)), (1, 2))
    assert win.kernel == (3, 2) and win.stride == (2, 1) and win.dilation == (1, 2)
    assert win.pads == (1, 0, 0, 2)
    assert win.effective_kernel == (3, 3)
    assert win.padded_hw == (8, 10)
    assert win.out == ((8 - 3) // 2 + 1, 10 - 3 + 1)


def test_errors_name_the_shapes() -> None:
    with pytest.raises(ShapeError, match=r"kernel 5x5.*input 4x4 padded to 4x4"):
        window((4, 4), 5)
    with pytest.raises(ShapeError, match=r"dilation 2x2, extent 5x5"):
        window((4, 6), 3, dilation=2, what="conv2d")
    with pytest.raises(ShapeError, match=r"^conv2d: "):
        window((4, 6), 3, dilation=2, what="conv2d")
    with pytest.raises(ShapeError, match="padding must be >= 0"):
        resolve_padding(-1, (5, 5), (3, 3), (1, 1), (1, 1))
    with pytest.raises(ShapeError, match="padding must be >= 0"):
        resolve_padding(((0, -1), (0, 0)), (5, 5), (3, 3), (1, 1), (1, 1))
    with pytest.raises(ShapeError, match="'full'"):
        resolve_padding("full", (5, 5), (3, 3), (1, 1), (1, 1))
    with pytest.raises(ShapeError, match="2 entries"):
        resolve_padding((1, 2, 3), (5, 5), (3, 3), (1, 1), (1, 1))
    with pytest.raises(ShapeError, match="padding"):
        resolve_padding(1.5, (5, 5), (3, 3), (1, 1), (1, 1))  # type: ignore[arg-type]  # a wrong argument on purpose
    with pytest.raises(ShapeError, match="kernel_size must be >= 1"):
        window((5, 5), 0)
    with pytest.raises(ShapeError, match="stride must be >= 1"):
        window((5, 5), 3, stride=(1, 0))


def test_check_rank() -> None:
    check_rank((2, 3, 4, 5), 4, "conv2d")
    with pytest.raises(ShapeError, match=r"conv2d: expected a rank-4 array \(N, H, W, C\), got shape \(3, 4, 5\)"):
        check_rank((3, 4, 5), 4, "conv2d")
