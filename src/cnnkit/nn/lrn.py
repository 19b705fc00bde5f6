"""Local response normalisation layer (a thin class over :mod:`cnnkit.ops.lrn`), PyTorch's name and defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.backend import Array
from cnnkit.nn.base import Layer, LayerInfo, elementwise_info
from cnnkit.ops.lrn import check_lrn_arguments, local_response_norm_backward, local_response_norm_forward


class LocalResponseNorm(Layer):
    """y_c = x_c / (k + alpha/n * sum of x_j^2 over the n = ``size`` channels around c)^beta (AlexNet, GoogLeNet).

    PyTorch's ``nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0)`` on channels-last inputs
    (N, H, W, C) or (N, C); parameterless, computes in the input's dtype. AlexNet's paper writes alpha
    without the 1/n: its layer (n = 5, alpha = 1e-4, beta = 0.75, k = 2) is ``LocalResponseNorm(5, 5e-4, 0.75, 2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import LocalResponseNorm
    >>> lrn = LocalResponseNorm(3, alpha=1.0, beta=1.0, k=1.0)
    >>> y = lrn(np.array([[[[1.0, 2.0, 3.0]]]]))
    >>> np.round(y[0, 0, 0], 4)
    array([0.375 , 0.3529, 0.5625])
    >>> lrn.backward(np.ones_like(y)).shape, lrn.describe((2, 2, 3)).flops  # (size + 4) operations per element
    ((1, 1, 1, 3), 84)
    """

    elementwise = True

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = check_lrn_arguments(size, alpha, beta, k)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return local_response_norm_forward(x, self.size, self.alpha, self.beta, self.k)

    def backward(self, dy: Array) -> Array:
        return local_response_norm_backward(dy, self._saved())

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """The input's shape; a square, ``size`` additions, a scale, a power and a product per element."""
        return elementwise_info(self, in_shape, self.size + 4)

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha:g}, beta={self.beta:g}, k={self.k:g}"
