"""Locally connected layer (thin class over :mod:`cnnkit.ops.local`); seed 002 "局部连接层"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.backend import Array
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer, LayerInfo
from cnnkit.nn.conv import _jsonable
from cnnkit.nn.init import as_rng, uniform_fan_in
from cnnkit.ops.geometry import IntPair, Padding, positive_pair, window
from cnnkit.ops.local import locally_connected2d_backward, locally_connected2d_forward


class LocallyConnected2d(Layer):
    """A convolution whose kernel is not shared: one kernel (and bias) per output position.

    Input (N, H, W, in_channels) with (H, W) = ``in_size`` fixed at construction -> output
    (N, H_out, W_out, out_channels), H_out from conv2d's geometry (stride, padding incl. "same", dilation).
    ``params["weight"]``: (H_out, W_out, kh, kw, in_channels, out_channels);
    ``params["bias"]``: (H_out, W_out, out_channels). Both start U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = kh*kw*in_channels, like Conv2d.

    Examples
    --------
    The seed's 3 x 4 image (eq. 15.19) with every kernel of ones, then the top-left output's kernel doubled:
    only that output changes, because no kernel is shared.

    >>> import numpy as np
    >>> from cnnkit.nn import LocallyConnected2d
    >>> lc = LocallyConnected2d(1, 1, kernel_size=2, in_size=(3, 4), bias=False, rng=np.random.default_rng(0))
    >>> lc.params["weight"].shape  # (H_out, W_out, kh, kw, in_channels, out_channels)
    (2, 3, 2, 2, 1, 1)
    >>> lc.params["weight"][...] = 1
    >>> lc.params["weight"][0, 0] = 2
    >>> A = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float32).reshape(1, 3, 4, 1)
    >>> lc(A)[0, :, :, 0]
    array([[24., 16., 11.],
           [24., 28., 17.]], dtype=float32)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        in_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        bias: bool = True,
        *,
        dilation: IntPair = 1,
        rng: np.random.Generator | None = None,
        dtype: Any = None,
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ShapeError(
                f"LocallyConnected2d: in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.in_size = positive_pair(in_size, "in_size")
        self.stride, self.dilation = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
        self.padding, self.need_input_grad = padding, need_input_grad
        win = window(self.in_size, self.kernel_size, self.stride, padding, self.dilation, what="LocallyConnected2d")
        self.out_size = win.out
        kh, kw = self.kernel_size
        fan_in = kh * kw * self.in_channels
        rng = as_rng(rng)
        shape = (*win.out, kh, kw, self.in_channels, self.out_channels)
        self.params["weight"] = uniform_fan_in(shape, fan_in, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((*win.out, self.out_channels), fan_in, rng, dtype)
        self._init_grads()

    def _check(self, shape: tuple[int, ...]) -> None:
        """``shape`` with its batch axis."""
        if shape[1:] != (*self.in_size, self.in_channels):
            raise ShapeError(
                f"LocallyConnected2d: expected an input (N, {self.in_size[0]}, {self.in_size[1]}, {self.in_channels}), "
                f"got shape {shape}"
            )

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        self._check(tuple(x.shape))
        return locally_connected2d_forward(x, self.params["weight"], self.params.get("bias"), self.stride, self.padding, self.dilation)

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        self._check((1, *(int(v) for v in in_shape)))
        kh, kw = self.kernel_size
        oh, ow = self.out_size
        win = window(self.in_size, self.kernel_size, self.stride, self.padding, self.dilation, what="LocallyConnected2d")
        return LayerInfo((oh, ow, self.out_channels), self.num_params(), 2 * oh * ow * kh * kw * self.in_channels * self.out_channels,
                         oh * ow * kh * kw * self.in_channels, win)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
            "in_size": list(self.in_size), "stride": list(self.stride),
            "padding": _jsonable(self.padding),
            "bias": "bias" in self.params, "dilation": list(self.dilation), "need_input_grad": self.need_input_grad,
        }

    def backward(self, dy: Array) -> Array | None:
        dx, dw, db = locally_connected2d_backward(dy, self._saved(), need_dx=self.need_input_grad)
        self._set_grad("weight", dw)
        if db is not None:
            self._set_grad("bias", db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, in_size={self.in_size}, "
            f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}, bias={'bias' in self.params}"
        )
