"""Loss layers: thin classes over :mod:`cnnkit.ops.loss`.

``value = loss.forward(prediction, target)`` (a Python float, the batch mean) then
``dprediction = loss.backward()`` (the gradient of that mean, the prediction's shape). The classification
losses with class weights (SoftmaxCrossEntropy, NLLLoss) also sum or return per-example losses
(``reduction=``); their ``backward(dy)`` then takes the gradient of what ``forward`` returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.nn.base import Loss
from cnnkit.ops.loss import (
    MAPE_EPSILON,
    REDUCTIONS,
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
    nll_loss_backward,
    nll_loss_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)


def _class_options_repr(loss: Any) -> str:
    parts = []
    if loss.weight is not None:
        parts.append(f"weight={loss.weight.tolist()}")
    if loss.ignore_index is not None:
        parts.append(f"ignore_index={loss.ignore_index}")
    if loss.reduction != "mean":
        parts.append(f"reduction={loss.reduction!r}")
    return f"{type(loss).__name__}({', '.join(parts)})"


def _class_options(weight: Array | Sequence[float] | None, ignore_index: int | None, reduction: str, what: str) -> Array | None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or int(ignore_index) != ignore_index):
        raise ValueError(f"{what}: ignore_index must be an integer or None, got {ignore_index!r}")
    if weight is None:
        return None
    w = xp.asarray(weight)
    if w.ndim != 1 or w.dtype.kind not in "fiu":
        raise ValueError(f"{what}: weight must be a vector of numbers, one per class, got shape {tuple(w.shape)}")
    return w


class SoftmaxCrossEntropy(Loss):
    """Softmax (eq. 15.7) followed by cross entropy, fused and numerically stable.

    prediction: logits (..., K), e.g. (N, K), (N, 1, 1, K) from a fully connected layer written as a
    convolution, or (N, H, W, K) for a class per pixel (classes last, NHWC); target: integer labels of the
    leading shape ((N,) also for (N, 1, 1, K)) or float probability targets of the logits' shape.
    Value: mean over rows of -log softmax(x)_label. After ``forward``, ``probabilities`` holds
    softmax(logits) (the logits' shape), e.g. for accuracy.

    PyTorch's CrossEntropyLoss options: ``weight`` (K,) per class; ``ignore_index`` (None: every label
    counts and must lie in [0, K); PyTorch's default is -100); ``reduction``: "mean" (default: divided by
    the sum of the weights of the examples kept), "sum" or "none". ``forward`` returns a float for "mean"
    and "sum" and an array of the labels' shape for "none" (so it is typed ``Any``: the trainers, which
    expect a float, need "mean" or "sum"); ``backward(dy=None)`` takes the gradient of that value (a number,
    or an array of the per-example losses' shape; 1 and ones by default).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import SoftmaxCrossEntropy
    >>> loss = SoftmaxCrossEntropy()
    >>> logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # (N, K)
    >>> round(loss.forward(logits, np.array([2, 0])), 4)  # mean of -log 0.6652 and -log 1/3
    0.7531
    >>> loss.backward().round(4)  # (softmax(x) - onehot(label)) / N
    array([[ 0.045 ,  0.1224, -0.1674],
           [-0.3333,  0.1667,  0.1667]])
    >>> loss.probabilities.argmax(axis=-1)
    array([2, 0])

    Per-example losses, one label ignored:

    >>> per_example = SoftmaxCrossEntropy(ignore_index=-1, reduction="none")
    >>> per_example.forward(logits, np.array([2, -1])).round(4)
    array([0.4076, 0.    ])
    >>> per_example.backward().round(4)  # the ignored example gets no gradient
    array([[ 0.09  ,  0.2447, -0.3348],
           [ 0.    ,  0.    ,  0.    ]])
    """

    def __init__(
        self, weight: Array | Sequence[float] | None = None, ignore_index: int | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.weight = _class_options(weight, ignore_index, reduction, "SoftmaxCrossEntropy")
        self.ignore_index, self.reduction = ignore_index, reduction
        self.probabilities: Array | None = None

    def forward(self, prediction: Array, target: Array) -> Any:  # a float, or an array for reduction="none"
        value, self._cache = softmax_cross_entropy_forward(prediction, target, self.weight, self.ignore_index, self.reduction)
        self.probabilities = self._cache.probabilities
        return value

    def backward(self, dy: Array | float | None = None) -> Array:
        return softmax_cross_entropy_backward(self._saved(), dy)

    def __repr__(self) -> str:
        return _class_options_repr(self)


CrossEntropyLoss = SoftmaxCrossEntropy
"""PyTorch's name for the same loss (logits in, integer labels or probabilities as targets)."""


class NLLLoss(Loss):
    """Negative log-likelihood of log-probabilities (after a LogSoftmax): per example -w_label x_label.

    prediction: log-probabilities (..., K), classes last ((N, K) or (N, H, W, K)); target: integer labels
    of the leading shape. PyTorch's NLLLoss and ONNX's NegativeLogLikelihoodLoss: ``weight``,
    ``ignore_index`` and ``reduction`` as in :class:`SoftmaxCrossEntropy`, and so is what ``forward``
    returns and ``backward(dy=None)`` takes. LogSoftmax followed by NLLLoss equals SoftmaxCrossEntropy.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import NLLLoss
    >>> loss = NLLLoss(weight=np.array([1.0, 3.0]))
    >>> x = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    >>> round(loss.forward(x, np.array([0, 1])), 4)  # (log 2 + 3 log 10) / (1 + 3)
    1.9002
    >>> loss.backward()  # -w_label / (sum of w) at each label
    array([[-0.25,  0.  ],
           [ 0.  , -0.75]])
    """

    def __init__(
        self, weight: Array | Sequence[float] | None = None, ignore_index: int | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.weight = _class_options(weight, ignore_index, reduction, "NLLLoss")
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, prediction: Array, target: Array) -> Any:  # a float, or an array for reduction="none"
        value, self._cache = nll_loss_forward(prediction, target, self.weight, self.ignore_index, self.reduction)
        return value

    def backward(self, dy: Array | float | None = None) -> Array:
        return nll_loss_backward(self._saved(), dy)

    def __repr__(self) -> str:
        return _class_options_repr(self)


class L2Loss(Loss):
    """z = 1/2 ||t - x||^2 per example (eq. 15.6), averaged over the batch (axis 0).

    prediction and target: (N, ...), the same shape.

    Examples
    --------
    Eq. 15.6 for two examples: 1/2 (1 + 4) and 0, averaged over the batch.

    >>> import numpy as np
    >>> from cnnkit.nn import L2Loss
    >>> loss = L2Loss()
    >>> loss.forward(np.array([[1.0, 2.0], [0.0, 0.0]]), np.zeros((2, 2)))
    1.25
    >>> loss.backward()  # (x - t) / N
    array([[0.5, 1. ],
           [0. , 0. ]])
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = l2_loss_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return l2_loss_backward(self._saved())


class MSELoss(Loss):
    """Mean squared error over all elements (seed 003 §2.5.1; PyTorch's MSELoss with reduction="mean").

    prediction and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import MSELoss
    >>> loss = MSELoss()
    >>> loss.forward(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((2, 2)))  # (0 + 1 + 4 + 9) / 4
    3.5
    >>> loss.backward()  # 2 (x - t) / 4
    array([[0. , 0.5],
           [1. , 1.5]])
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = mse_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return mse_backward(self._saved())


class L1Loss(Loss):
    """Mean absolute error over all elements (PyTorch's L1Loss with reduction="mean").

    prediction and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import L1Loss
    >>> loss = L1Loss()
    >>> loss.forward(np.array([[1.0, 2.0], [3.0, -1.0]]), np.ones((2, 2)))  # (0 + 1 + 2 + 2) / 4
    1.25
    >>> loss.backward()  # sign(x - t) / 4
    array([[ 0.  ,  0.25],
           [ 0.25, -0.25]])
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = l1_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return l1_backward(self._saved())


MAELoss = L1Loss
"""Mean absolute error: the same loss as :class:`L1Loss`."""


class MSLELoss(Loss):
    """Mean squared logarithmic error, mean of (log(1 + x) - log(1 + t))^2; needs x, t > -1.

    prediction and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import MSLELoss
    >>> loss = MSLELoss()
    >>> round(loss.forward(np.array([[0.0, 3.0]]), np.array([[0.0, 1.0]])), 4)  # (log 4 - log 2)^2 / 2
    0.2402
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = msle_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return msle_backward(self._saved())


class MAPELoss(Loss):
    """Mean absolute percentage error, 100 * mean of |t - x| / max(|t|, eps) (Keras' definition).

    prediction and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import MAPELoss
    >>> round(MAPELoss().forward(np.array([110.0, 45.0]), np.array([100.0, 50.0])), 6)  # both 10% off
    10.0
    """

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

    Examples
    --------
    Scores (1, 2, 0.5) with true class 0: margins max(0, 1 - 1 + 2) = 2 and max(0, 1 - 1 + 0.5) = 0.5, over K = 3.

    >>> import numpy as np
    >>> from cnnkit.nn import HingeLoss
    >>> loss = HingeLoss(margin=1.0)
    >>> round(loss.forward(np.array([[1.0, 2.0, 0.5]]), np.array([0])), 4)
    0.8333
    >>> loss.backward().round(4)
    array([[-0.6667,  0.3333,  0.3333]])
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
    mean over all elements.

    logits and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import BCEWithLogitsLoss
    >>> loss = BCEWithLogitsLoss()
    >>> round(loss.forward(np.array([0.0, 100.0]), np.array([1.0, 1.0])), 4)  # (log 2 + 0) / 2, no overflow
    0.3466
    >>> loss.backward()  # (sigmoid(x) - t) / 2
    array([-0.25,  0.  ])
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = bce_with_logits_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return bce_with_logits_backward(self._saved())


class BCELoss(Loss):
    """Binary cross entropy (seed 003 §2.5.7) on probabilities in [0, 1], logs clamped at -100 (PyTorch).

    prediction and target: the same shape, the batch on axis 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import BCELoss
    >>> loss = BCELoss()
    >>> round(loss.forward(np.array([0.5, 0.9]), np.array([1.0, 0.0])), 4)  # -(log 0.5 + log 0.1) / 2
    1.4979
    >>> loss.backward().round(4)  # (p - t) / (p (1 - p) numel)
    array([-1.,  5.])
    """

    def forward(self, prediction: Array, target: Array) -> float:
        value, self._cache = bce_forward(prediction, target)
        return value

    def backward(self) -> Array:
        return bce_backward(self._saved())
