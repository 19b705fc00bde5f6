"""Activation layers: thin classes over :mod:`cnnkit.ops.activation`, with PyTorch's names and arguments.

All act element-wise on any shape except PReLU (one slope per channel, the last axis of NHWC, or slopes of any
broadcasting shape) and
Softmax/LogSoftmax (over the last axis). Parameterless layers compute in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnkit.backend import Array, default_float, xp
from cnnkit.nn.base import Layer
from cnnkit.ops.activation import (
    elu_backward,
    elu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax_backward,
    log_softmax_forward,
    prelu_backward,
    prelu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    softplus_backward,
    softplus_forward,
    tanh_backward,
    tanh_forward,
)


def _check_last_axis(dim: int, x: Array, what: str) -> None:
    ndim = xp.ndim(x)
    if dim not in (-1, ndim - 1):
        raise ValueError(
            f"{what}: only the last (channel) axis is supported, dim=-1 or {ndim - 1} for an input of shape "
            f"{tuple(xp.shape(x))}; got dim={dim}"
        )


class ReLU(Layer):
    """y = max{0, x} (eq. 15.13); backward passes dy where x > 0 (eqs. 15.14-15.15). Any shape.

    ``inplace=True`` overwrites the input with the output (saves one array per layer).

    Examples
    --------
    Eq. 15.13 forward; backward (eqs. 15.14-15.15) lets dy through where x > 0 only.

    >>> import numpy as np
    >>> from cnnkit.nn import ReLU
    >>> relu = ReLU()  # a new layer is in training mode, so the forward keeps what backward needs
    >>> x = np.array([[-2.0, 0.0], [3.0, -1.0]], np.float32).reshape(1, 2, 2, 1)  # NHWC
    >>> relu(x)[0, :, :, 0]
    array([[0., 0.],
           [3., 0.]], dtype=float32)
    >>> relu.backward(np.full_like(x, 5.0))[0, :, :, 0]
    array([[0., 0.],
           [5., 0.]], dtype=float32)
    """

    elementwise = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return relu_forward(x, self.inplace)

    def backward(self, dy: Array) -> Array:
        return relu_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""

    def config(self) -> dict[str, Any]:
        return {"inplace": self.inplace}


class Sigmoid(Layer):
    """Logistic sigmoid 1 / (1 + exp(-x)), derivative y (1 - y) (seed 000 §15.4). Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Sigmoid
    >>> sig = Sigmoid()
    >>> sig(np.array([0.0, 3.0], np.float32)).round(4)
    array([0.5   , 0.9526], dtype=float32)
    >>> sig.backward(np.ones(2, np.float32)).round(4)  # y (1 - y)
    array([0.25  , 0.0452], dtype=float32)
    """

    elementwise = True

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return sigmoid_forward(x)

    def backward(self, dy: Array) -> Array:
        return sigmoid_backward(dy, self._saved())

    def config(self) -> dict[str, Any]:
        return {}


class Tanh(Layer):
    """Hyperbolic tangent, derivative 1 - y^2. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Tanh
    >>> tanh = Tanh()
    >>> tanh(np.array([-1.0, 0.0, 1.0], np.float32)).round(4)
    array([-0.7616,  0.    ,  0.7616], dtype=float32)
    >>> tanh.backward(np.ones(3, np.float32)).round(4)  # 1 - y^2
    array([0.42, 1.  , 0.42], dtype=float32)
    """

    elementwise = True

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return tanh_forward(x)

    def backward(self, dy: Array) -> Array:
        return tanh_backward(dy, self._saved())

    def config(self) -> dict[str, Any]:
        return {}


class LeakyReLU(Layer):
    """y = x for x > 0, negative_slope * x otherwise. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import LeakyReLU
    >>> act = LeakyReLU(negative_slope=0.1)
    >>> act(np.array([-2.0, 3.0], np.float32))
    array([-0.2,  3. ], dtype=float32)
    >>> act.backward(np.ones(2, np.float32))
    array([0.1, 1. ], dtype=float32)
    """

    elementwise = True

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = float(negative_slope), inplace

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return leaky_relu_forward(x, self.negative_slope, self.inplace)

    def backward(self, dy: Array) -> Array:
        return leaky_relu_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope, "inplace": self.inplace}


class PReLU(Layer):
    """Parametric ReLU: y = x for x > 0, a x otherwise, with learnable slopes a.

    ``params["weight"]``: (num_parameters,), filled with ``init``; num_parameters is 1 (one slope shared
    by all channels) or C, the number of channels on the input's last axis (NHWC, or (N, C)).
    ``shape=`` gives the slopes any shape that broadcasts to one example (ONNX's PRelu slope in NHWC order),
    e.g. (H, W, C) for a slope per element or (W, 1) for one per column; ``num_parameters`` is then the number
    of slopes (leave it at 1 or give that number), and the gradient of each slope sums over the axes it
    broadcasts along.

    Examples
    --------
    One slope per channel of an NHWC input; backward also gives dL/da, summed over the negative inputs.

    >>> import numpy as np
    >>> from cnnkit.nn import PReLU
    >>> act = PReLU(num_parameters=2)  # slopes start at 0.25
    >>> x = np.array([[-4.0, 2.0], [-2.0, -8.0]], np.float32).reshape(1, 1, 2, 2)  # (N, H, W, C=2)
    >>> act(x)[0, 0]
    array([[-1. ,  2. ],
           [-0.5, -2. ]], dtype=float32)
    >>> _ = act.backward(np.ones_like(x))
    >>> act.grads["weight"]  # channel 0: -4 - 2; channel 1: -8
    array([-6., -8.], dtype=float32)

    One slope per element of an (H, W, C) = (1, 2, 2) example:

    >>> per_element = PReLU(shape=(1, 2, 2), init=0.5)
    >>> per_element(x)[0, 0]
    array([[-2.,  2.],
           [-1., -4.]], dtype=float32)
    >>> _ = per_element.backward(np.ones_like(x))
    >>> per_element.grads["weight"][0]  # each slope: its own input where negative
    array([[-4.,  0.],
           [-2., -8.]], dtype=float32)
    """

    elementwise = True

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, *, shape: Sequence[int] | None = None, dtype: Any = None
    ) -> None:
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"PReLU: num_parameters must be >= 1, got {num_parameters}")
        if shape is not None:
            dims = tuple(int(v) for v in shape)
            if any(d < 1 for d in dims):
                raise ValueError(f"PReLU: shape must have positive sizes, got {tuple(shape)}")
            count = math.prod(dims)
            if num_parameters not in (1, count):
                raise ValueError(f"PReLU: shape {dims} holds {count} slopes but num_parameters={num_parameters}")
            num_parameters = count
        self.shape: tuple[int, ...] | None = dims if shape is not None else None
        self.num_parameters = int(num_parameters)
        weight_shape = self.shape if self.shape is not None else (self.num_parameters,)
        self.params["weight"] = xp.full(weight_shape, init, dtype=dtype or default_float())
        self._init_grads()

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return prelu_forward(x, self.params["weight"], broadcast=self.shape is not None)

    def backward(self, dy: Array) -> Array:
        dx, dw = prelu_backward(dy, self._saved())
        self._set_grad("weight", dw)
        return dx

    def extra_repr(self) -> str:
        if self.shape is not None:
            return f"shape={self.shape}"
        return f"num_parameters={self.num_parameters}"

    def config(self) -> dict[str, Any]:
        return {"num_parameters": self.num_parameters, "shape": None if self.shape is None else list(self.shape)}


class ELU(Layer):
    """y = x for x > 0, alpha (exp(x) - 1) otherwise. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import ELU
    >>> ELU(alpha=1.0)(np.array([-1.0, 0.0, 2.0], np.float32)).round(4)
    array([-0.6321,  0.    ,  2.    ], dtype=float32)
    """

    elementwise = True

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return elu_forward(x, self.alpha)

    def backward(self, dy: Array) -> Array:
        return elu_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Softplus(Layer):
    """y = log(1 + exp(beta x)) / beta, linear (y = x) where beta x > threshold. Any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Softplus
    >>> Softplus()(np.array([-1.0, 0.0, 30.0], np.float32)).round(4)  # 30 > threshold: y = x
    array([ 0.3133,  0.6931, 30.    ], dtype=float32)
    """

    elementwise = True

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if beta == 0:
            raise ValueError("Softplus: beta must be non-zero")
        self.beta, self.threshold = float(beta), float(threshold)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return softplus_forward(x, self.beta, self.threshold)

    def backward(self, dy: Array) -> Array:
        return softplus_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


class Softmax(Layer):
    """Softmax over the last axis (eq. 15.7): (..., K) -> (..., K), rows summing to 1.

    Only the last axis is supported (``dim=-1``), the class/channel axis of cnnkit's channel-last layout.

    Examples
    --------
    Eq. 15.7 turns scores into a probability mass function over the classes (last axis).

    >>> import numpy as np
    >>> from cnnkit.nn import Softmax
    >>> p = Softmax()(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32))  # (N, K) scores
    >>> p.round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]], dtype=float32)
    >>> p.sum(axis=-1)
    array([1., 1.], dtype=float32)
    """

    elementwise = True

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = int(dim)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        _check_last_axis(self.dim, x, "Softmax")
        return softmax_forward(x)

    def backward(self, dy: Array) -> Array:
        return softmax_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim}


class LogSoftmax(Layer):
    """log softmax over the last axis, the logarithm of eq. 15.7: (..., K) -> (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import LogSoftmax
    >>> y = LogSoftmax()(np.array([[1.0, 2.0, 3.0]], np.float32))
    >>> y.round(4), round(float(np.exp(y).sum()), 4)
    (array([[-2.4076, -1.4076, -0.4076]], dtype=float32), 1.0)
    """

    elementwise = True

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = int(dim)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        _check_last_axis(self.dim, x, "LogSoftmax")
        return log_softmax_forward(x)

    def backward(self, dy: Array) -> Array:
        return log_softmax_backward(dy, self._saved())

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim}
