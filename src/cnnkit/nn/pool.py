"""Pooling, unpooling and upsampling layers (thin classes over :mod:`cnnkit.ops.pool`), PyTorch's names.

All are parameterless and compute in the input's dtype. Input (N, H, W, C), channels never change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnkit import jit
from cnnkit.backend import Array, default_float
from cnnkit.errors import ShapeError, StateError
from cnnkit.nn.base import Layer, LayerInfo
from cnnkit.ops.geometry import IntPair, Padding, Window, check_rank, pair, positive_pair, window
from cnnkit.ops.pool import (
    PoolPadding,
    avg_pool2d_backward,
    avg_pool2d_forward,
    check_norm_type,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    global_max_pool2d_backward,
    global_max_pool2d_forward,
    lp_pool2d_backward,
    lp_pool2d_forward,
    max_pool2d_apply,
    max_pool2d_backward,
    max_pool2d_indices,
    max_pool2d_window,
    max_unpool2d_backward,
    max_unpool2d_forward,
    nearest_source_indices,
    pool_padding,
    resize_nearest2d_backward,
    resize_nearest2d_forward,
    scale_factor_pair,
    unpool_output_size,
    upsample_nearest2d_backward,
    upsample_nearest2d_forward,
)


def _stride(stride: IntPair | None, kernel: tuple[int, int]) -> tuple[int, int]:
    return kernel if stride is None else positive_pair(stride, "stride")


def _pool_padding(padding: Padding, kernel: tuple[int, int], what: str, allow_large_padding: bool = False) -> PoolPadding:
    """Validate at construction what the ops check again per call (0 <= padding <= kernel // 2 unless
    allow_large_padding); (ph, pw) for an int or a pair, ((top, bottom), (left, right)) when asymmetric, or a name."""
    return pool_padding(padding, kernel, allow_large_padding, what)


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively (a padding argument in a JSON configuration)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _image(in_shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ShapeError(f"{what} needs an H x W x C input, but the input has shape {tuple(in_shape)} (flattened?)")
    h, w, c = (int(v) for v in in_shape)
    return h, w, c


def _pool_info(layer: Any, in_shape: Sequence[int], dilation: tuple[int, int] = (1, 1)) -> LayerInfo:
    """Output shape, window and cost (one operation per window element) of a pooling layer."""
    h, w, c = _image(in_shape, type(layer).__name__)
    padding = getattr(layer, "padding", 0)
    win = window((h, w), layer.kernel_size, layer.stride, padding, dilation, layer.ceil_mode, what=type(layer).__name__)
    oh, ow = win.out
    return LayerInfo((oh, ow, c), 0, oh * ow * c * layer.kernel_size[0] * layer.kernel_size[1], window=win)


class MaxPool2d(Layer):
    """Max pooling, eq. 15.51 (forward) and eq. 15.59 (backward: each window's gradient to its maximum).

    (N, H, W, C) -> (N, H_out, W_out, C), H_out = floor((H + 2p - d(k-1) - 1)/s) + 1 (ceil with
    ``ceil_mode``). ``stride=None`` means stride = kernel_size. ``padding``: an int, (ph, pw),
    ((top, bottom), (left, right)), or ONNX's "same_upper"/"same_lower"/"valid"; at most kernel // 2
    (PyTorch's check) unless ``allow_large_padding=True`` (ONNX's pads; see
    :func:`~cnnkit.ops.pool.pool_padding`). After a forward, ``switches`` holds the
    position of each window's maximum as PyTorch's flat indices h*W + w (N, H_out, W_out, C) int64:
    what :class:`MaxUnpool2d` needs. ``forward`` always returns only y; ``return_indices`` is accepted
    for PyTorch compatibility and only records the wish (read ``switches``).

    Examples
    --------
    The seed's example after eq. 15.59: 2 x 2 windows at stride 1 over the image of fig. 15.5; 6 and 9 are
    each the maximum of two windows, so each collects two gradients.

    >>> import numpy as np
    >>> from cnnkit.nn import MaxPool2d
    >>> pool = MaxPool2d(kernel_size=2, stride=1)
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32).reshape(1, 3, 4, 1)  # NHWC
    >>> y = pool(A)
    >>> y[0, :, :, 0]
    array([[5., 6., 6.],
           [8., 9., 9.]], dtype=float32)
    >>> pool.backward(np.ones_like(y))[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 2., 0.],
           [0., 1., 2., 0.]], dtype=float32)
    >>> pool.switches[0, :, :, 0]  # where each maximum was, as h*W + w
    array([[ 5,  6,  6],
           [ 9, 10, 10]])
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
        allow_large_padding: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = _stride(stride, self.kernel_size)
        self.allow_large_padding = bool(allow_large_padding)
        self.padding = _pool_padding(padding, self.kernel_size, "MaxPool2d", self.allow_large_padding)
        self.dilation = positive_pair(dilation, "dilation")
        self.return_indices, self.ceil_mode = return_indices, ceil_mode
        self._in_shape: tuple[int, ...] | None = None
        self._last: Any = None  # the last forward's cache, kept for `switches` while an unpooling layer mirrors this one
        self.mirrored = False  # set by MaxUnpool2d(pool=self)
        self._win: tuple[tuple[Any, ...], Window] | None = None  # (geometry key, window) of the last input size

    def _window(self, shape: tuple[int, ...]) -> Window:
        """The resolved window for an input of this shape, memoised for the last input size and arguments."""
        key = (shape[1], shape[2], self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
               self.allow_large_padding)
        memo = self._win
        if memo is not None and memo[0] == key:
            return memo[1]
        win = max_pool2d_window(shape, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.dilation,
                                self.allow_large_padding)
        self._win = (key, win)
        return win

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return self._pool(x, keep, 0)

    def _pool(self, x: Array, keep: bool, relu: int) -> tuple[Array, Any]:
        """The forward with an optional fused ReLU (``relu`` 1 after, 2 before; see max_pool2d_apply)."""
        check_rank(x.shape, 4, "max_pool2d")
        if x.dtype.kind != "f":
            x = x.astype(default_float())
        y, cache = max_pool2d_apply(x, self._window(x.shape), keep or self.mirrored, relu)
        self._in_shape = tuple(x.shape)
        self._last = cache if self.mirrored else None
        return y, (cache if keep else None)

    def can_fuse_relu(self, x: Array, before: bool) -> bool:
        """Whether a ReLU next to this layer may run inside its kernel for the input ``x`` (``before``: the ReLU
        comes first, which needs a window without padding): not for a shared or mirrored layer, and only on
        the compiled path (numba, float32/float64)."""
        if self.shared or self.mirrored or not jit.usable(x) or x.ndim != 4:
            return False
        try:
            win = self._window(x.shape)
        except ShapeError:  # the layer's own forward reports it
            return False
        return not (before and any(win.pads))

    def backward(self, dy: Array) -> Array:
        return max_pool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """(H_out, W_out, C); one comparison per window element."""
        info = _pool_info(self, in_shape, self.dilation)
        if self.mirrored:  # a mirroring MaxUnpool2d restores this size
            self._in_shape = (1, *(int(v) for v in in_shape))
        return info

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": _jsonable(self.padding),
                "dilation": list(self.dilation), "return_indices": self.return_indices, "ceil_mode": self.ceil_mode,
                "allow_large_padding": self.allow_large_padding}

    @property
    def switches(self) -> Array:
        """Flat indices h*W + w of each window's maximum in the last forward's input, (N, H_out, W_out, C)."""
        cache = self._cache if self._cache is not None else self._last
        if cache is None:
            raise StateError("MaxPool2d.switches: no forward has kept them yet (run a training-mode forward, or "
                             "build the MaxUnpool2d with pool=this layer before the forward)")
        return max_pool2d_indices(cache)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of the last forward's input (None before any forward)."""
        return self._in_shape

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
            + (", allow_large_padding=True" if self.allow_large_padding else "")
        )


class AvgPool2d(Layer):
    """Average pooling, eq. 15.52, with PyTorch's divisor (count_include_pad, ceil_mode, divisor_override).

    (N, H, W, C) -> (N, H_out, W_out, C), H_out = floor((H + 2p - d(k-1) - 1)/s) + 1 (ceil with ``ceil_mode``);
    ``stride=None`` means stride = kernel_size. ``padding`` as in :class:`MaxPool2d` (asymmetric,
    "same_upper"/"same_lower", ``allow_large_padding``); ``dilation`` spaces the taps (ONNX's
    AveragePool; PyTorch has none), each tap counting on its own in the divisor.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import AvgPool2d
    >>> pool = AvgPool2d(kernel_size=2)  # stride defaults to the kernel size
    >>> y = pool(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
    >>> y[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    >>> pool.backward(np.ones_like(y))[0, :2, :2, 0]  # each of the 2 x 2 inputs gets dy / 4
    array([[0.25, 0.25],
           [0.25, 0.25]], dtype=float32)
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        dilation: IntPair = 1,
        allow_large_padding: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = _stride(stride, self.kernel_size)
        self.allow_large_padding = bool(allow_large_padding)
        self.padding = _pool_padding(padding, self.kernel_size, "AvgPool2d", self.allow_large_padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override
        self.dilation = positive_pair(dilation, "dilation")

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return avg_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override,
            self.dilation, self.allow_large_padding,
        )

    def backward(self, dy: Array) -> Array:
        return avg_pool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """(H_out, W_out, C); one addition per window element."""
        return _pool_info(self, in_shape, self.dilation)

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": _jsonable(self.padding),
                "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad,
                "divisor_override": self.divisor_override, "dilation": list(self.dilation),
                "allow_large_padding": self.allow_large_padding}

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}"
            + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")
            + (", allow_large_padding=True" if self.allow_large_padding else "")
        )


class LPPool2d(Layer):
    """L_p pooling: y = (sum over the window of |x|^p)^(1/p) (seed 002's L2-norm pooling for p = 2).

    Equals PyTorch's LPPool2d for p = 2 (and any p on non-negative inputs) except with ceil_mode on
    windows that hang over the edge, which PyTorch rescales by kh*kw / (taps inside); PyTorch also
    uses x^p without the absolute value.

    (N, H, W, C) -> (N, H_out, W_out, C), H_out = floor((H + pads - d(k-1) - 1)/s) + 1 (ceil with
    ``ceil_mode``); ``stride=None`` means stride = kernel_size. ``padding`` (zeros, as in ONNX's LpPool;
    the forms of :class:`MaxPool2d`, with ``allow_large_padding``) and ``dilation`` are ONNX's; PyTorch's
    LPPool2d has neither.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import LPPool2d
    >>> x = np.array([[3, 4, 1, 1], [0, 0, 1, 1]], np.float32).reshape(1, 2, 4, 1)
    >>> LPPool2d(2, kernel_size=2)(x)[0, :, :, 0]  # sqrt(9 + 16), sqrt(1 + 1 + 1 + 1)
    array([[5., 2.]], dtype=float32)
    """

    def __init__(
        self,
        norm_type: float,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        ceil_mode: bool = False,
        padding: Padding = 0,
        dilation: IntPair = 1,
        allow_large_padding: bool = False,
    ) -> None:
        super().__init__()
        self.norm_type = check_norm_type(norm_type)
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = _stride(stride, self.kernel_size)
        self.ceil_mode = ceil_mode
        self.allow_large_padding = bool(allow_large_padding)
        self.padding = _pool_padding(padding, self.kernel_size, "LPPool2d", self.allow_large_padding)
        self.dilation = positive_pair(dilation, "dilation")

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return lp_pool2d_forward(
            x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode, self.padding, self.dilation, self.allow_large_padding
        )

    def backward(self, dy: Array) -> Array:
        return lp_pool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """(H_out, W_out, C); a power, a sum and a root per window (counted as 3 FLOPs per element)."""
        info = _pool_info(self, in_shape, self.dilation)
        return LayerInfo(info.out_shape, 0, 3 * (info.flops or 0), window=info.window)

    def config(self) -> dict[str, Any]:
        return {"norm_type": self.norm_type, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "ceil_mode": self.ceil_mode, "padding": _jsonable(self.padding), "dilation": list(self.dilation),
                "allow_large_padding": self.allow_large_padding}

    def extra_repr(self) -> str:
        extra = "".join(
            [
                f", padding={self.padding}" if self.padding != (0, 0) else "",
                f", dilation={self.dilation}" if self.dilation != (1, 1) else "",
                ", allow_large_padding=True" if self.allow_large_padding else "",
            ]
        )
        return f"norm_type={self.norm_type:g}, kernel_size={self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode}{extra}"


class MaxUnpool2d(Layer):
    """Max unpooling (seed 002 去汇聚层): each value goes back to its switch in a zero map.

    ``forward(x, train=None, indices=None, output_size=None)``: the switches are ``indices`` when given,
    otherwise ``pool.switches`` of the :class:`MaxPool2d` this layer mirrors (SegNet/DeconvNet style),
    so that it works inside a Sequential. With ``pool`` and no ``output_size`` the output takes the
    pool's last input size (which recovers odd sizes); otherwise the size is
    (H_in - 1)*stride - 2*padding + kernel, or ``output_size`` as in PyTorch. Without ``pool`` the
    geometry is ``kernel_size``/``stride``/``padding``; with it, they default to the pool's.

    Examples
    --------
    Mirroring a MaxPool2d inside a Sequential: every maximum goes back to its switch, zeros elsewhere.

    >>> import numpy as np
    >>> from cnnkit.nn import MaxPool2d, MaxUnpool2d, Sequential
    >>> pool = MaxPool2d(2)
    >>> net = Sequential(pool, MaxUnpool2d(pool=pool))
    >>> x = np.array([[1, 2, 0, 1], [3, 4, 0, 5], [0, 0, 6, 0], [7, 0, 0, 0]], np.float32).reshape(1, 4, 4, 1)
    >>> net(x)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 4., 0., 5.],
           [0., 0., 6., 0.],
           [7., 0., 0., 0.]], dtype=float32)
    >>> MaxUnpool2d(2)(pool(x), indices=pool.switches).shape  # PyTorch's form: switches given
    (1, 4, 4, 1)
    """

    def __init__(
        self,
        kernel_size: IntPair | None = None,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        pool: MaxPool2d | None = None,
    ) -> None:
        super().__init__()
        if pool is not None and not isinstance(pool, MaxPool2d):
            raise TypeError(f"MaxUnpool2d: pool must be a MaxPool2d, got {type(pool).__name__}")
        if pool is not None and kernel_size is None:
            self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        elif kernel_size is not None:
            self.kernel_size = positive_pair(kernel_size, "kernel_size")
            self.stride = _stride(stride, self.kernel_size)
            self.padding = pair(padding, "padding")
        else:
            raise ValueError("MaxUnpool2d needs kernel_size or the MaxPool2d it mirrors (pool=...)")
        self.pool = pool
        if pool is not None:
            pool.mirrored = True

    def forward(  # PyTorch's extra arguments: the switches and the output size
        self,
        x: Array,
        train: bool | None = None,
        indices: Array | None = None,
        output_size: Sequence[int] | None = None,
        *,
        grad: bool | None = None,
    ) -> Array:
        self._call = (indices, output_size)
        try:
            return super().forward(x, train, grad=grad)
        finally:
            self._call = (None, None)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        indices, output_size = self._call
        strict = True
        if indices is None:
            if self.pool is None:
                raise StateError("MaxUnpool2d.forward: give indices=..., or build the layer with pool=<its MaxPool2d>")
            indices = self.pool.switches
            if output_size is None and self.pool.input_shape is not None:
                output_size, strict = self.pool.input_shape[1:3], False
            if tuple(indices.shape) != tuple(x.shape):
                raise ShapeError(
                    f"MaxUnpool2d: input {tuple(x.shape)} does not match the shape {tuple(indices.shape)} of the "
                    f"switches of its MaxPool2d's last forward"
                )
        return max_unpool2d_forward(x, indices, self.kernel_size, self.stride, self.padding, output_size, strict_size=strict)

    def __call__(  # as forward
        self,
        x: Array,
        train: bool | None = None,
        indices: Array | None = None,
        output_size: Sequence[int] | None = None,
        *,
        grad: bool | None = None,
    ) -> Array:
        return self.forward(x, train, indices, output_size, grad=grad)

    def backward(self, dy: Array) -> Array:
        return max_unpool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """The mirrored pool's input size when known, else (H - 1)*stride - 2*padding + kernel."""
        h, w, c = _image(in_shape, "MaxUnpool2d")
        if self.pool is not None and self.pool.input_shape is not None:
            oh, ow = self.pool.input_shape[1:3]
        else:
            oh, ow = unpool_output_size((h, w), self.kernel_size, self.stride, self.padding)
        return LayerInfo((oh, ow, c), 0, 0)

    def config(self) -> dict[str, Any]:
        """The geometry, and the mirrored MaxPool2d (stored as a reference to it by the architecture file)."""
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": _jsonable(self.padding),
                "pool": self.pool}

    def extra_repr(self) -> str:
        mirrored = ", pool=<MaxPool2d>" if self.pool is not None else ""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{mirrored}"


class Upsample(Layer):
    """Nearest-neighbour upsampling (seed 002 最近距离去池化), and nearest resizing to any size or scale.

    ``Upsample(scale_factor)`` with integer factors copies each pixel into an sh x sw block:
    (N, H, W, C) -> (N, H*sh, W*sw, C). At integer factors PyTorch's ``mode="nearest"`` (asymmetric
    coordinates, rounded down) and ONNX Resize's default (half_pixel, halves rounded down) agree; at other
    factors and at arbitrary sizes they differ, so those need the convention named:

    - ``coordinate_transformation_mode`` and/or ``nearest_mode`` (ONNX Resize's names; a missing one takes
      ONNX's default, half_pixel or round_prefer_floor): ``coordinate_transformation_mode="asymmetric",
      nearest_mode="floor"`` is PyTorch's ``mode="nearest"``;
    - or ``mode="nearest-exact"``: PyTorch's, half_pixel with halves rounded up (round_prefer_ceil).

    Then ``scale_factor`` may be any positive numbers (H_out = floor(sh*H)) and ``size=(H_out, W_out)`` (or
    an int) may replace it; see :func:`~cnnkit.ops.pool.resize_nearest2d_forward`. The backward
    scatter-adds dy to the source pixels. Other modes (bilinear, ...) raise ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Upsample
    >>> up = Upsample(scale_factor=2)
    >>> y = up(np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1))
    >>> y[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]], dtype=float32)
    >>> up.backward(np.ones_like(y))[0, :, :, 0]  # each pixel collects its block's gradients
    array([[4., 4.],
           [4., 4.]], dtype=float32)

    ONNX's test_resize_upsample_sizes_nearest_floor_align_corners, first row:

    >>> resize = Upsample(size=(8, 8), coordinate_transformation_mode="align_corners", nearest_mode="floor")
    >>> resize(np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1))[0, 0, :, 0]
    array([1., 1., 1., 2., 2., 3., 3., 4.], dtype=float32)
    """

    def __init__(
        self,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        size: int | Sequence[int] | None = None,
        coordinate_transformation_mode: str | None = None,
        nearest_mode: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("nearest", "nearest-exact"):
            raise ValueError(f"Upsample: only mode='nearest' (or PyTorch's 'nearest-exact') is supported, got mode={mode!r}")
        if (scale_factor is None) == (size is None):
            raise ValueError("Upsample: give exactly one of scale_factor and size")
        self.mode = mode
        if mode == "nearest-exact":
            coordinate_transformation_mode = coordinate_transformation_mode or "half_pixel"
            nearest_mode = nearest_mode or "round_prefer_ceil"
        elif coordinate_transformation_mode is not None or nearest_mode is not None:
            coordinate_transformation_mode = coordinate_transformation_mode or "half_pixel"
            nearest_mode = nearest_mode or "round_prefer_floor"
        self.coordinate_transformation_mode, self.nearest_mode = coordinate_transformation_mode, nearest_mode
        self.size: tuple[int, int] | None = None
        self.scale_factor: tuple[int, int] | tuple[float, float] | None = None
        if coordinate_transformation_mode is None:  # today's integer upsampling (PyTorch's nearest = ONNX's default here)
            if size is not None:
                raise ValueError(
                    "Upsample: size=... resizes by non-integer factors in general, where conventions differ: name one, "
                    "e.g. coordinate_transformation_mode='asymmetric', nearest_mode='floor' (PyTorch's 'nearest') or "
                    "mode='nearest-exact'"
                )
            try:
                self.scale_factor = scale_factor_pair(scale_factor)  # type: ignore[arg-type]  # checked: not None
            except ValueError as exc:
                raise ValueError(
                    f"{exc}; for other scale factors name the convention, e.g. coordinate_transformation_mode='asymmetric', "
                    f"nearest_mode='floor' (PyTorch's 'nearest') or mode='nearest-exact'"
                ) from None
            return
        assert nearest_mode is not None  # set with the coordinate mode above
        nearest_source_indices(1, 1, 1.0, coordinate_transformation_mode, nearest_mode)  # validates both names
        if size is not None:
            sizes = pair(size, "size")
            if min(sizes) < 1:
                raise ValueError(f"Upsample: size must be positive, got {size!r}")
            self.size = sizes
        else:
            values = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) else tuple(scale_factor)  # type: ignore[arg-type]
            if len(values) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")) for v in values
            ):
                raise ValueError(f"Upsample: scale_factor must be positive numbers, one or (sh, sw), got {scale_factor!r}")
            self.scale_factor = (float(values[0]), float(values[1]))

    @property
    def _legacy(self) -> bool:
        """True for today's integer-factor upsampling (no coordinate convention named)."""
        return self.coordinate_transformation_mode is None

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        assert self.scale_factor is not None
        sh, sw = self.scale_factor
        return (int(sh * h), int(sw * w)) if self._legacy else (math.floor(sh * h), math.floor(sw * w))

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        if self._legacy:
            assert self.scale_factor is not None
            return upsample_nearest2d_forward(x, self.scale_factor)  # type: ignore[arg-type]  # ints here
        assert self.coordinate_transformation_mode is not None and self.nearest_mode is not None
        return resize_nearest2d_forward(x, self.size, self.scale_factor, self.coordinate_transformation_mode, self.nearest_mode)

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        h, w, c = _image(in_shape, "Upsample")
        oh, ow = self._out_hw(h, w)
        if min(oh, ow) < 1:
            raise ShapeError(f"Upsample: scale_factor {self.scale_factor} leaves no output for an input {h}x{w}")
        return LayerInfo((oh, ow, c), 0, 0)

    def config(self) -> dict[str, Any]:
        return {
            "scale_factor": None if self.scale_factor is None else list(self.scale_factor), "mode": self.mode,
            "size": None if self.size is None else list(self.size),
            "coordinate_transformation_mode": self.coordinate_transformation_mode, "nearest_mode": self.nearest_mode,
        }

    def backward(self, dy: Array) -> Array:
        if self._legacy:
            return upsample_nearest2d_backward(dy, self._saved())
        return resize_nearest2d_backward(dy, self._saved())

    def extra_repr(self) -> str:
        if self._legacy:
            return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
        target = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return (
            f"{target}, mode={self.mode!r}, coordinate_transformation_mode={self.coordinate_transformation_mode!r}, "
            f"nearest_mode={self.nearest_mode!r}"
        )


class GlobalAvgPool2d(Layer):
    """Global average pooling (Network-in-Network, ResNet, GoogLeNet heads): (N, H, W, C) -> (N, 1, 1, C).

    PyTorch's ``AdaptiveAvgPool2d(1)`` and ONNX's ``GlobalAveragePool``; follow it with ``Flatten`` for (N, C).

    Examples
    --------
    >>> import numpy as np
    >>> pool = GlobalAvgPool2d()
    >>> pool(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))[0, 0, 0]
    array([3., 4.], dtype=float32)
    """

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return global_avg_pool2d_forward(x)

    def backward(self, dy: Array) -> Array:
        return global_avg_pool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        h, w, c = _image(in_shape, "GlobalAvgPool2d")
        return LayerInfo((1, 1, c), 0, h * w * c, window=window((h, w), (h, w)))

    def config(self) -> dict[str, Any]:
        return {}


class GlobalMaxPool2d(Layer):
    """Global max pooling: (N, H, W, C) -> (N, 1, 1, C), the gradient to each channel's first maximum.

    PyTorch's ``AdaptiveMaxPool2d(1)`` and ONNX's ``GlobalMaxPool``.

    Examples
    --------
    >>> import numpy as np
    >>> GlobalMaxPool2d()(np.array([[1, 5], [3, 2]], np.float32).reshape(1, 2, 2, 1)).ravel()
    array([5.], dtype=float32)
    """

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return global_max_pool2d_forward(x)

    def backward(self, dy: Array) -> Array:
        return global_max_pool2d_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        h, w, c = _image(in_shape, "GlobalMaxPool2d")
        return LayerInfo((1, 1, c), 0, h * w * c, window=window((h, w), (h, w)))

    def config(self) -> dict[str, Any]:
        return {}
