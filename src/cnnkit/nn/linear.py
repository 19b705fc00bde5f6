"""Fully connected layer and Flatten (thin classes over :mod:`cnnkit.ops.linear`); seed 000 §15.5.8."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer, LayerInfo
from cnnkit.nn.init import as_rng, uniform_fan_in
from cnnkit.ops.linear import linear_backward, linear_forward


class Linear(Layer):
    """y = x W + b for x (N, in_features) -> (N, out_features): the fully connected layer of §15.5.8.

    ``params["weight"]``: (in_features, out_features) (PyTorch's weight transposed);
    ``params["bias"]``: (out_features,). Both start U(-1/sqrt(in_features), 1/sqrt(in_features)) as in
    PyTorch. Images (N, H, W, C) must go through :class:`Flatten` first (NHWC order), or the layer can
    be turned into a convolution with :func:`cnnkit.ops.linear.fc_to_conv`.
    ``need_input_grad=False`` skips dx (backward returns None).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> fc = Linear(4, 3, rng=np.random.default_rng(0))
    >>> fc.params["weight"].shape  # (in_features, out_features): PyTorch's (3, 4) transposed
    (4, 3)
    >>> y = fc(np.ones((2, 4), np.float32))
    >>> y.shape, fc.backward(np.ones_like(y)).shape, fc.grads["bias"]  # dL/db sums dy over the batch
    ((2, 3), (2, 4), array([2., 2., 2.], dtype=float32))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: Any = None,
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ShapeError(f"Linear: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.need_input_grad = need_input_grad
        rng = as_rng(rng)
        self.params["weight"] = uniform_fan_in((self.in_features, self.out_features), self.in_features, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((self.out_features,), self.in_features, rng, dtype)
        self._init_grads()

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return linear_forward(x, self.params["weight"], self.params.get("bias"))

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """(in_features,) -> (out_features,) per example; 2 FLOPs per multiply-add."""
        shape = tuple(int(v) for v in in_shape)
        if shape != (self.in_features,):
            hint = " (an image needs a Flatten first)" if len(shape) == 3 else ""
            raise ShapeError(f"Linear expects {self.in_features} input features but the input has shape {shape}{hint}")
        return LayerInfo((self.out_features,), self.num_params(), 2 * self.in_features * self.out_features, flattens=True)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": "bias" in self.params,
                "need_input_grad": self.need_input_grad}

    def backward(self, dy: Array) -> Array | None:
        dx, dw, db = linear_backward(dy, self._saved(), need_dx=self.need_input_grad)
        self._set_grad("weight", dw)
        if db is not None:
            self._set_grad("bias", db)
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={'bias' in self.params}"


class Flatten(Layer):
    """Flatten axes ``start_dim..end_dim`` into one (default (N, ...) -> (N, prod)); backward reshapes back.

    The order is the memory order of the input, so an (N, H, W, C) image flattens NHWC: feature
    index (h*W + w)*C + c, unlike PyTorch's NCHW flatten (c*H + h)*W + w. ``order="nchw"`` flattens an
    (N, H, W, C) input in PyTorch's (and ONNX's) order instead, so that the fully connected layer of a
    network imported from them keeps its weights as they are.

    Examples
    --------
    An NHWC image flattens with its channels innermost:

    >>> import numpy as np
    >>> from cnnkit.nn import Flatten
    >>> a = np.array([[1, 2], [3, 4]], np.float32)
    >>> x = np.stack([a, 10 * a], axis=-1)[None]  # (N=1, H=2, W=2, C=2)
    >>> flat = Flatten()
    >>> flat(x)
    array([[ 1., 10.,  2., 20.,  3., 30.,  4., 40.]], dtype=float32)
    >>> flat.backward(np.ones((1, 8), np.float32)).shape
    (1, 2, 2, 2)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, order: str = "nhwc") -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        if order not in ("nhwc", "nchw"):
            raise ValueError(f"Flatten: order must be 'nhwc' or 'nchw', got {order!r}")
        if order == "nchw" and (self.start_dim, self.end_dim) != (1, -1):
            raise ValueError("Flatten: order='nchw' flattens whole examples (start_dim=1, end_dim=-1)")
        self.order = order

    def _axes(self, shape: tuple[int, ...]) -> tuple[int, int]:
        nd = len(shape)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= s < nd and 0 <= e < nd) or s > e:
            raise ShapeError(
                f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not select axes of an input of shape {shape}"
            )
        return s, e

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        shape = tuple(x.shape)
        if self.order == "nchw" and x.ndim == 4:
            return xp.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(shape[0], -1), shape
        s, e = self._axes(shape)
        return x.reshape((*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :])), shape

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        shape = (1, *(int(v) for v in in_shape))  # the axes count the batch
        s, e = self._axes(shape)
        out = (*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :])
        return LayerInfo(out[1:], 0, 0, flattens=True)

    def config(self) -> dict[str, Any]:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim, "order": self.order}

    def backward(self, dy: Array) -> Array:
        shape = self._saved()
        if dy.size != math.prod(shape):
            raise ShapeError(f"Flatten backward: dy has shape {tuple(dy.shape)}, expected {math.prod(shape)} entries for {shape}")
        if self.order == "nchw" and len(shape) == 4:
            n, h, w, c = shape
            return xp.ascontiguousarray(dy.reshape(n, c, h, w).transpose(0, 2, 3, 1))
        return dy.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}" + (", order='nchw'" if self.order != "nhwc" else "")


class Identity(Layer):
    """y = x (PyTorch's ``nn.Identity``, ONNX's ``Identity``): a placeholder, e.g. a removed classifier.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((2, 3), np.float32)
    >>> layer = Identity()
    >>> layer(x) is x, layer.backward(x) is x
    (True, True)
    """

    elementwise = True

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return x, True

    def backward(self, dy: Array) -> Array:
        self._saved()
        return dy

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        return LayerInfo(tuple(int(v) for v in in_shape), 0, 0, elementwise=True)

    def config(self) -> dict[str, Any]:
        return {}
