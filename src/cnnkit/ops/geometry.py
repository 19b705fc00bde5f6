"""Window geometry shared by convolution and pooling: argument normalisation, padding, output size.

Output size (PyTorch's rule; seeds 002/004 "(N - F + 2P)/S + 1"):

    H_out = floor((H + pad_top + pad_bottom - dilation*(k - 1) - 1) / stride) + 1

With ``ceil_mode`` (pooling) the division rounds up, and a last window that would start inside the
bottom/right padding only is dropped, as PyTorch and Caffe do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnkit.errors import ShapeError

IntPair = int | Sequence[int]
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]

SAME_MODES = ("same", "same_upper", "same_lower")
"""The padding names that keep ``ceil(H/stride)`` outputs ("same" = "same_upper": the odd pixel after)."""


def pair(value: IntPair, name: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence of ints to ``(h, w)``.

    Examples
    --------
    >>> from cnnkit.ops.geometry import pair
    >>> pair(3, "stride"), pair([2, 1], "stride")
    ((3, 3), (2, 1))
    """
    if isinstance(value, bool):  # an int to Python, but not a size
        raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        out = (int(value), int(value))
    else:
        try:
            seq = tuple(int(v) for v in value)
        except TypeError:
            raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(seq) != 2:
            raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}")
        out = (seq[0], seq[1])
    return out


def positive_pair(value: IntPair, name: str) -> tuple[int, int]:
    """Like :func:`pair` but every entry must be >= 1.

    Examples
    --------
    >>> from cnnkit.ops.geometry import positive_pair
    >>> positive_pair((1, 2), "stride")
    (1, 2)
    >>> positive_pair(0, "stride")
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: stride must be >= 1, got 0
    """
    out = pair(value, name)
    if min(out) < 1:
        raise ShapeError(f"{name} must be >= 1, got {value!r}")
    return out


@dataclass(frozen=True)
class Window:
    """Geometry of a sliding window over an H x W input.

    ``pads`` is ``(top, bottom, left, right)``; ``out`` is ``(H_out, W_out)``.

    Examples
    --------
    >>> from cnnkit.ops.geometry import window
    >>> win = window((7, 7), 3, stride=2, dilation=2)
    >>> win.out, win.effective_kernel, win.pads
    ((2, 2), (5, 5), (0, 0, 0, 0))
    """

    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    out: tuple[int, int]

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """Spatial extent of a dilated kernel: ``dilation*(k-1)+1``."""
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return (dh * (kh - 1) + 1, dw * (kw - 1) + 1)

    @property
    def padded_hw(self) -> tuple[int, int]:
        t, b, l, r = self.pads
        return (self.in_hw[0] + t + b, self.in_hw[1] + l + r)


def resolve_padding(
    padding: Padding,
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Turn a padding argument into explicit ``(top, bottom, left, right)``.

    Accepted forms: an int ``p`` (all sides), ``(ph, pw)`` (symmetric per axis),
    ``((top, bottom), (left, right))`` (asymmetric), ``"valid"`` (no padding) and ``"same"``:
    the output is ``ceil(H/stride)`` and the total padding ``max((H_out-1)*stride + k_eff - H, 0)``
    is split with the odd pixel after; at stride 1 that is the seed's floor((k-1)/2) before and
    floor(k/2) after. ``"same_upper"`` is ``"same"`` under ONNX's name (auto_pad SAME_UPPER);
    ``"same_lower"`` (SAME_LOWER) puts the odd pixel before instead. The names are case-insensitive.
    The effective (dilated) kernel k_eff = dilation*(k-1) + 1 enters the total, as ONNX's
    specification of auto_pad says.

    Examples
    --------
    "same" at stride 1 pads floor((k-1)/2) before and floor(k/2) after (seed 000 §15.5.1):

    >>> from cnnkit.ops.geometry import resolve_padding
    >>> resolve_padding("same", (9, 8), (4, 5), (1, 1), (1, 1))
    (1, 2, 2, 2)
    >>> resolve_padding("same_lower", (9, 8), (4, 5), (1, 1), (1, 1))  # the odd pixel before
    (2, 1, 2, 2)
    >>> resolve_padding(((0, 1), (2, 3)), (9, 8), (3, 3), (1, 1), (1, 1))
    (0, 1, 2, 3)
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode not in SAME_MODES:
            raise ShapeError(
                f"padding must be an int, a pair, ((top, bottom), (left, right)), 'same', 'same_upper', 'same_lower' "
                f"or 'valid'; got {padding!r}"
            )
        pads: list[int] = []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            k_eff = d * (k - 1) + 1
            out = -(-size // s)
            total = max((out - 1) * s + k_eff - size, 0)
            small, large = total // 2, total - total // 2
            pads += [large, small] if mode == "same_lower" else [small, large]
        return (pads[0], pads[1], pads[2], pads[3])
    if isinstance(padding, bool):  # an int to Python, but not a padding
        raise ShapeError(f"padding must be an int, a pair, ((top, bottom), (left, right)) or 'same'; got {padding!r}")
    if isinstance(padding, int):
        p = int(padding)
        result = (p, p, p, p)
    else:
        try:
            items: list[Any] = list(padding)  # entries checked below
        except TypeError:
            raise ShapeError(f"padding must be an int, a pair, ((top, bottom), (left, right)) or 'same'; got {padding!r}") from None
        if len(items) != 2:
            raise ShapeError(f"padding must have 2 entries (height, width); got {padding!r}")
        if all(isinstance(v, (int,)) and not isinstance(v, bool) for v in items):
            result = (int(items[0]), int(items[0]), int(items[1]), int(items[1]))
        else:
            (t, b), (l, r) = pair(items[0], "padding[0]"), pair(items[1], "padding[1]")
            result = (t, b, l, r)
    if min(result) < 0:
        raise ShapeError(f"padding must be >= 0, got {padding!r}")
    return result


def out_size(size: int, k: int, stride: int, dilation: int, before: int, after: int, ceil_mode: bool = False) -> int:
    """One spatial output size; may be <= 0 for impossible geometry (callers raise).

    Examples
    --------
    >>> from cnnkit.ops.geometry import out_size
    >>> out_size(227, 11, 4, 1, 0, 0)  # seed 002, AlexNet: (227 - 11)/4 + 1
    55
    >>> out_size(5, 2, 2, 1, 0, 0), out_size(5, 2, 2, 1, 0, 0, ceil_mode=True)
    (2, 3)
    """
    span = size + before + after - dilation * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    # The last window must start inside the input or the leading padding (PyTorch/Caffe rule).
    if (out - 1) * stride >= size + before:
        out -= 1
    return out


def window(
    in_hw: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    what: str = "window",
) -> Window:
    """Resolve and validate the geometry of a sliding window; raise :class:`ShapeError` if impossible.

    Examples
    --------
    >>> from cnnkit.ops.geometry import window
    >>> window((32, 32), 5, stride=1, padding=2).out  # seed 002: P = (F-1)/2 keeps 32 x 32
    (32, 32)
    >>> window((2, 2), 3)
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: window: kernel 3x3 (dilation 1x1, extent 3x3) does not fit the input 2x2 ...
    """
    kernel = positive_pair(kernel_size, "kernel_size")
    strides = positive_pair(stride, "stride")
    dil = positive_pair(dilation, "dilation")
    pads = resolve_padding(padding, in_hw, kernel, strides, dil)
    outs = (
        out_size(in_hw[0], kernel[0], strides[0], dil[0], pads[0], pads[1], ceil_mode),
        out_size(in_hw[1], kernel[1], strides[1], dil[1], pads[2], pads[3], ceil_mode),
    )
    if min(outs) < 1:
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dil))
        padded = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
        raise ShapeError(
            f"{what}: kernel {kernel[0]}x{kernel[1]} (dilation {dil[0]}x{dil[1]}, extent "
            f"{k_eff[0]}x{k_eff[1]}) does not fit the input {in_hw[0]}x{in_hw[1]} padded to "
            f"{padded[0]}x{padded[1]} (pads top,bottom,left,right = {pads}); expected a padded input "
            f"at least as large as the kernel extent"
        )
    return Window(in_hw, kernel, strides, dil, pads, outs)


def check_rank(x_shape: tuple[int, ...], rank: int, what: str, layout: str = "(N, H, W, C)") -> None:
    """Raise :class:`ShapeError` unless ``len(x_shape) == rank``.

    Examples
    --------
    >>> from cnnkit.ops.geometry import check_rank
    >>> check_rank((2, 8, 8, 3), 4, "conv2d")
    >>> check_rank((8, 8), 4, "conv2d")
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: conv2d: expected a rank-4 array (N, H, W, C), got shape (8, 8)
    """
    if len(x_shape) != rank:
        raise ShapeError(f"{what}: expected a rank-{rank} array {layout}, got shape {tuple(x_shape)}")
