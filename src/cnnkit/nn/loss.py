"""Loss layers: thin classes over :mod:`cnnkit.ops.loss`.

``value = loss.forward(prediction, target)`` (a Python float, the batch mean) then
``dprediction = loss.backward()`` (the gradient of that mean, the prediction's shape).
"""

from __future__ import annotations

from cnnkit.backend import Array
from cnnkit.nn.base import Loss
from cnnkit.ops.loss import (
    MAPE_EPSILON,
    bce_backward,
    bce_forward,
    bce_with_logits_backward,
    bce_with_logits_forward,
    l1_backward,
    l1_forward,
    l2_loss_backward,
    l2_loss_forward,
    mape_backward,
    mape_forward,
    mse_backward,
    mse_forward,
    msle_backward,
    msle_forward,
    multi_margin_backward,
    multi_margin_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)


class SoftmaxCrossEntropy(Loss):
    """Softmax (eq. 15.7) followed by cross entropy, fused and numerically stable.

    prediction: logits (..., K), e.g. (N, K) or (N, 1, 1, K) from a fully connected layer written as a
    convolution; target: integer labels of the leading shape ((N,) also for (N, 1, 1, K)) or float
    probability targets of the logits' shape. Value: mean over rows of -log softmax(x)_label.
    After ``forward``, ``probabilities`` holds softmax(logits) (the logits' shape), e.g. for accuracy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.probabilities: Array | None = None

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = softmax_cross_entropy_forward(prediction, target)
        self.probabilities = self._cache.probabilities
        return value

    def backward(self) -> Array:
        return softmax_cross_entropy_backward(self._saved())


CrossEntropyLoss = SoftmaxCrossEntropy
"""PyTorch's name for the same loss (logits in, integer labels or probabilities as targets)."""


class L2Loss(Loss):
    """z = 1/2 ||t - x||^2 per example (eq. 15.6), averaged over the batch (axis 0)."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = l2_loss_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return l2_loss_backward(self._saved())


class MSELoss(Loss):
    """Mean squared error over all elements (seed 003 §2.5.1; PyTorch's MSELoss with reduction="mean")."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = mse_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return mse_backward(self._saved())


class L1Loss(Loss):
    """Mean absolute error over all elements (PyTorch's L1Loss with reduction="mean")."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = l1_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return l1_backward(self._saved())


MAELoss = L1Loss
"""Mean absolute error: the same loss as :class:`L1Loss`."""


class MSLELoss(Loss):
    """Mean squared logarithmic error, mean of (log(1 + x) - log(1 + t))^2; needs x, t > -1."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = msle_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return msle_backward(self._saved())


class MAPELoss(Loss):
    """Mean absolute percentage error, 100 * mean of |t - x| / max(|t|, eps) (Keras' definition)."""

    def __init__(self, eps: float = MAPE_EPSILON) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = mape_forward(prediction, target, self.eps)
        return value

    def backward(self) -> Array:
        return mape_backward(self._saved())

    def __repr__(self) -> str:
        return f"MAPELoss(eps={self.eps})"


class HingeLoss(Loss):
    """Multiclass hinge (SVM) loss, PyTorch's MultiMarginLoss: per row
    sum_{j != y} max(0, margin - x_y + x_j)^p / K, averaged over rows; p is 1 (default) or 2.

    prediction: scores (..., K); target: integer labels of the leading shape.
    """

    def __init__(self, margin: float = 1.0, p: int = 1) -> None:
        super().__init__()
        if p not in (1, 2):
            raise ValueError(f"HingeLoss: p must be 1 or 2, got {p}")
        self.margin, self.p = float(margin), int(p)

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = multi_margin_forward(prediction, target, self.margin, self.p)
        return value

    def backward(self) -> Array:
        return multi_margin_backward(self._saved())

    def __repr__(self) -> str:
        return f"HingeLoss(margin={self.margin}, p={self.p})"


class BCEWithLogitsLoss(Loss):
    """Binary cross entropy (seed 003 §2.5.7) of sigmoid(logits) against targets in [0, 1], stable,
    mean over all elements."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = bce_with_logits_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return bce_with_logits_backward(self._saved())


class BCELoss(Loss):
    """Binary cross entropy (seed 003 §2.5.7) on probabilities in [0, 1], logs clamped at -100 (PyTorch)."""

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = bce_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return bce_backward(self._saved())
