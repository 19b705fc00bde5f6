"""Channel padding: zero channels appended to a tensor (ResNet's parameter-free "option A" shortcut)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer, LayerInfo


class ChannelPad(Layer):
    """Append ``pad`` channels of zeros on the last axis: (N, ..., C) -> (N, ..., C + pad).

    He et al.'s CIFAR ResNets (option A) widen the identity shortcut this way where a stage doubles the
    channels (after subsampling with stride 2, here a 1x1 max pooling at stride 2): no parameters.
    Backward keeps the gradient of the first C channels. PyTorch: ``F.pad(x, (0, 0, 0, 0, 0, pad))`` on NCHW.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import ChannelPad
    >>> pad = ChannelPad(2)
    >>> y = pad(np.ones((1, 1, 1, 3), np.float32))
    >>> y[0, 0, 0], pad.backward(np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5))[0, 0, 0]
    (array([1., 1., 1., 0., 0.], dtype=float32), array([0., 1., 2.], dtype=float32))
    >>> pad.describe((16, 16, 16)).out_shape
    (16, 16, 18)
    """

    def __init__(self, pad: int) -> None:
        super().__init__()
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ShapeError(f"ChannelPad: pad must be an integer >= 0, got {pad!r}")
        self.pad = pad

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        if x.ndim < 2:
            raise ShapeError(f"ChannelPad needs (N, ..., C) inputs, got shape {tuple(x.shape)}")
        y = xp.zeros((*x.shape[:-1], x.shape[-1] + self.pad), dtype=x.dtype)
        y[..., : x.shape[-1]] = x
        return y, int(x.shape[-1])

    def backward(self, dy: Array) -> Array:
        c = self._saved()
        return xp.ascontiguousarray(dy[..., :c])

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """(..., C + pad); copying is not counted as arithmetic."""
        shape = tuple(int(v) for v in in_shape)
        if not shape:
            raise ShapeError("ChannelPad needs inputs with a channel axis")
        return LayerInfo((*shape[:-1], shape[-1] + self.pad), 0, 0)

    def config(self) -> dict[str, Any]:
        return {"pad": self.pad}

    def extra_repr(self) -> str:
        return f"{self.pad}"
