"""Convolution layers: Conv2d and ConvTranspose2d (thin classes over :mod:`cnnkit.ops.conv`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.backend import Array
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer, LayerInfo
from cnnkit.nn.init import as_rng, uniform_fan_in
from cnnkit.ops import conv_algos
from cnnkit.ops.conv import (
    DEFAULT_WORKSPACE_LIMIT,
    EVAL_CHUNK_BYTES,
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose_out_size,
    conv_transpose_pads,
)
from cnnkit.ops.geometry import IntPair, Padding, pair, positive_pair, window
from cnnkit.ops.workspace import Workspace


def _image(in_shape: Sequence[int], channels: int, what: str) -> tuple[int, int]:
    """(H, W) of an H x W x C example whose C must be ``channels``; ShapeError otherwise."""
    if len(in_shape) != 3:
        raise ShapeError(f"a convolution needs an H x W x C input, but the input has shape {tuple(in_shape)} (flattened?)")
    h, w, c = (int(v) for v in in_shape)
    if c != channels:
        raise ShapeError(f"{what} expects {channels} input channels but {c} arrive (input {tuple(in_shape)})")
    return h, w


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively (a padding argument in a JSON configuration)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


class Conv2d(Layer):
    """2-D convolution, eq. 15.25 (forward), 15.38 (dW) and 15.49 (dX).

    Input (N, H, W, in_channels) -> output (N, H_out, W_out, out_channels).
    ``params["weight"]``: (kh, kw, in_channels/groups, out_channels); ``params["bias"]``: (out_channels,).
    ``padding`` accepts an int, (ph, pw), ((top, bottom), (left, right)), "same" (= ONNX's "same_upper": the
    odd pixel after), "same_lower" (before) or "valid".
    Weights start U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as in PyTorch; pass ``rng`` for reproducibility.
    ``need_input_grad=False`` (e.g. the first layer of a network) skips computing dX; backward then returns None.
    ``workspace_limit`` (bytes, default 512 MiB) caps the im2row matrix phi(x); larger batches run in chunks.
    Evaluation forwards (``train=False``) always run in cache-sized chunks (``EVAL_CHUNK_BYTES``, 16 MiB), which
    is faster for large inputs; the results are identical (tests/ops/test_conv_fastpaths.py).
    ``algo``: how the convolution is computed (:mod:`cnnkit.ops.conv_algos`). ``"auto"`` (default) times the
    algorithms that apply the first time a shape is seen, separately for training and evaluation, and uses the
    fastest (``CNNKIT_CONV_ALGO`` overrides it; ``im2row`` forces the reference); a name forces that algorithm
    where it applies. The choice is not part of :meth:`config`: a saved network plans again where it is loaded.

    Examples
    --------
    The seed's worked convolution (fig. 15.3, eq. 15.19): a 3 x 4 image and one 2 x 2 kernel of ones.

    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d
    >>> conv = Conv2d(1, 1, kernel_size=2, bias=False, rng=np.random.default_rng(0))
    >>> conv.params["weight"][...] = 1  # (kh, kw, in_channels, out_channels)
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32).reshape(1, 3, 4, 1)  # NHWC
    >>> y = conv(A)
    >>> y[0, :, :, 0]
    array([[12., 16., 11.],
           [24., 28., 17.]], dtype=float32)
    >>> conv.backward(np.ones_like(y)).shape, conv.grads["weight"][:, :, 0, 0]  # dL/dF: eq. 15.38
    ((1, 3, 4, 1), array([[21., 18.], [39., 30.]], dtype=float32))
    >>> Conv2d(3, 16, 3, stride=2, padding=1, rng=np.random.default_rng(0))(np.zeros((8, 32, 32, 3), np.float32)).shape
    (8, 16, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: Any = None,
        need_input_grad: bool = True,
        workspace_limit: int = DEFAULT_WORKSPACE_LIMIT,
        algo: str = "auto",
    ) -> None:
        super().__init__()
        if algo != "auto":
            conv_algos.get(algo)  # ValueError for an unknown name
        self.algo = algo
        self._plans: dict[tuple[Any, ...], str] = {}
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ShapeError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride, self.dilation = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
        self.padding, self.groups, self.need_input_grad = padding, groups, need_input_grad
        self.workspace_limit = workspace_limit
        # reusable memory for the phi(x) a training forward keeps for backward (temporaries are shared by all
        # layers: cnnkit.ops.workspace.transient)
        self._ws = {"train": Workspace()}
        kh, kw = self.kernel_size
        fan_in = kh * kw * in_channels // groups
        rng = as_rng(rng)
        self.params["weight"] = uniform_fan_in((kh, kw, in_channels // groups, out_channels), fan_in, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((out_channels,), fan_in, rng, dtype)
        self._init_grads()

    def _algorithm(self, x: Array, mode: str) -> str:
        """The algorithm for this input as ``mode`` ("train", "train-nodx" or "eval"): the planner's, remembered."""
        if self.algo != "auto":
            return self.algo
        key = (x.shape, x.dtype.str, mode, conv_algos.planner.blas_threads(), conv_algos.planner.forced())
        name = self._plans.get(key)
        if name is None:
            weight = self.params["weight"]
            g = conv_algos.geometry(x.shape, weight.shape, self.stride, self.padding, self.dilation, self.groups, weight.dtype)
            name = self._plans[key] = conv_algos.planner.choose(g, mode)
        return name

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        # evaluation runs in cache-sized chunks (a chunked cache rebuilds phi(x) if backward follows)
        limit = self.workspace_limit if train else min(self.workspace_limit, EVAL_CHUNK_BYTES)
        mode = ("train" if self.need_input_grad else "train-nodx") if keep else "eval"
        x = x.astype(self.params["weight"].dtype, copy=False)
        ws = None if self.shared else self._ws["train"]  # each use of a shared layer keeps its own phi(x)
        return conv2d_forward(
            x, self.params["weight"], self.params.get("bias"), self.stride, self.padding, self.dilation, self.groups, limit, ws,
            algo=self._algorithm(x, mode), keep_rows=None if keep else False,
        )

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """Output (H_out, W_out, out_channels); 2 FLOPs per multiply-add of eq. 15.25's product; phi(x)'s size."""
        h, w = _image(in_shape, self.in_channels, "the kernel")
        win = window((h, w), self.kernel_size, self.stride, self.padding, self.dilation, what="Conv2d")
        taps = self.kernel_size[0] * self.kernel_size[1] * self.in_channels // self.groups
        oh, ow = win.out
        return LayerInfo((oh, ow, self.out_channels), self.num_params(), 2 * oh * ow * taps * self.out_channels,
                         oh * ow * taps * self.groups, win)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
            "stride": list(self.stride), "padding": _jsonable(self.padding), "dilation": list(self.dilation),
            "groups": self.groups, "bias": "bias" in self.params, "need_input_grad": self.need_input_grad,
        }

    def backward(self, dy: Array) -> Array | None:
        dx, dw, db = conv2d_backward(dy, self._saved(), need_dx=self.need_input_grad)
        self._set_grad("weight", dw)
        if db is not None:
            self._set_grad("bias", db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, dilation={self.dilation}, groups={self.groups}, bias={'bias' in self.params}"
        )


class ConvTranspose2d(Layer):
    """Transposed convolution, the adjoint of Conv2d (seed 002, "transposed convolution").

    Input (N, H, W, in_channels) -> (N, H_out, W_out, out_channels) with
    H_out = (H-1)*stride - (top + bottom) + dilation*(k-1) + output_padding + 1 (top = bottom = padding
    for an int or (ph, pw) padding).
    ``params["weight"]``: (kh, kw, in_channels, out_channels // groups) (PyTorch's and ONNX's
    (in_channels, out_channels // groups, kh, kw) in the seed's order); ``params["bias"]``: (out_channels,).
    ``padding``: an int, (ph, pw), or ((top, bottom), (left, right)) for ONNX's asymmetric pads (they crop
    the full output). ``groups`` splits the channels into independent transposed convolutions, as in
    PyTorch; it comes after ``dilation`` so that existing positional calls keep their meaning.

    Examples
    --------
    With a 2 x 2 kernel of ones at stride 2, every input pixel spreads into its own 2 x 2 block.

    >>> import numpy as np
    >>> from cnnkit.nn import ConvTranspose2d
    >>> up = ConvTranspose2d(1, 1, kernel_size=2, stride=2, bias=False, rng=np.random.default_rng(0))
    >>> up.params["weight"][...] = 1
    >>> up(np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1))[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]], dtype=float32)
    >>> deconv = ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=np.random.default_rng(0))
    >>> deconv(np.zeros((1, 5, 5, 3), np.float32)).shape  # (5-1)*2 - 2*1 + (3-1) + 1 + 1 = 10
    (1, 10, 10, 4)
    >>> grouped = ConvTranspose2d(4, 6, 3, stride=2, padding=((0, 1), (1, 1)), groups=2, rng=np.random.default_rng(0))
    >>> grouped.params["weight"].shape, grouped(np.zeros((1, 5, 5, 4), np.float32)).shape  # (5-1)*2 - 1 + 2 + 1 = 10, 9
    ((3, 3, 4, 3), (1, 10, 9, 6))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | Sequence[Sequence[int]] = 0,
        output_padding: IntPair = 0,
        bias: bool = True,
        dilation: IntPair = 1,
        groups: int = 1,
        *,
        rng: np.random.Generator | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(groups, bool) or int(groups) != groups or groups < 1 or in_channels % groups or out_channels % groups:
            raise ShapeError(
                f"ConvTranspose2d: groups={groups!r} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, int(groups)
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride, self.dilation = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
        t, b, l, r = conv_transpose_pads(padding)
        self.padding: tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = (t, l) if (t, l) == (b, r) else ((t, b), (l, r))
        self.output_padding = pair(output_padding, "output_padding")
        kh, kw = self.kernel_size
        og = out_channels // self.groups
        fan_in = kh * kw * og  # PyTorch computes fan_in from weight dim 1 (out_channels // groups)
        rng = as_rng(rng)
        self.params["weight"] = uniform_fan_in((kh, kw, in_channels, og), fan_in, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((out_channels,), fan_in, rng, dtype)
        self._init_grads()

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return conv_transpose2d_forward(
            x, self.params["weight"], self.params.get("bias"), self.stride, self.padding, self.output_padding, self.dilation,
            self.groups,
        )

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """Output (H_out, W_out, out_channels) by the formula above; 2 FLOPs per multiply-add."""
        h, w = _image(in_shape, self.in_channels, "the transposed kernel")
        t, b, l, r = conv_transpose_pads(self.padding)
        out = [
            conv_transpose_out_size(n, k, s, before, op, d, after)
            for n, s, (before, after), d, k, op in zip(
                (h, w), self.stride, ((t, b), (l, r)), self.dilation, self.kernel_size, self.output_padding
            )
        ]
        if min(out) < 1:
            raise ShapeError(f"ConvTranspose2d: input {tuple(in_shape)} gives an empty output {tuple(out)}")
        kh, kw = self.kernel_size
        macs = h * w * kh * kw * self.in_channels * (self.out_channels // self.groups)
        return LayerInfo((out[0], out[1], self.out_channels), self.num_params(), 2 * macs)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
            "stride": list(self.stride), "padding": _jsonable(self.padding), "output_padding": list(self.output_padding),
            "bias": "bias" in self.params, "dilation": list(self.dilation), "groups": self.groups,
        }

    def backward(self, dy: Array) -> Array:
        dx, dw, db = conv_transpose2d_backward(dy, self._saved())
        self._set_grad("weight", dw)
        if db is not None:
            self._set_grad("bias", db)
        return dx

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, output_padding={self.output_padding}, dilation={self.dilation}{groups}"
        )
