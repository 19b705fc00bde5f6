"""Losses as pure forward/backward pairs: ``<name>_forward(prediction, target) -> (value, cache)`` and
``<name>_backward(cache) -> dprediction``.

``value`` is a Python float, the mean over the batch (see each loss for what one example is), and
the backward returns the gradient of that mean with the prediction's shape and dtype. The two
classification losses with class weights also take ``reduction="sum"`` (a float) or ``"none"`` (an
array of per-example losses); their backward then takes ``dy``, the gradient of that value. Everything is
computed in the prediction's dtype (non-float predictions become float32).

Regression losses (prediction and target of the same shape, batch on axis 0):

* :func:`l2_loss_forward`:   z = 1/2 ||t - x||^2 per example (eq. 15.6), averaged over the batch.
* :func:`mse_forward`:       mean of (x - t)^2 over all elements (seed 003 §2.5.1; PyTorch's MSELoss).
* :func:`l1_forward`:        mean of |x - t| over all elements (L1 / mean absolute error, PyTorch's L1Loss).
* :func:`msle_forward`:      mean of (log(1 + x) - log(1 + t))^2 (mean squared logarithmic error).
* :func:`mape_forward`:      100 * mean of |t - x| / max(|t|, eps) (mean absolute percentage error).

Classification losses (scores of shape (..., K), the last axis holding the K classes):

* :func:`softmax_cross_entropy_forward`: -log softmax(x)_label (eq. 15.7 feeding the cross entropy of
  seed 000 §15.2), fused and stable; integer labels or probability targets; class weights,
  ignore_index and reduction "mean"/"sum"/"none" as PyTorch's CrossEntropyLoss.
* :func:`nll_loss_forward`: -x_label on log-probabilities (PyTorch's NLLLoss, ONNX's
  NegativeLogLikelihoodLoss), with the same options.
* :func:`multi_margin_forward`: multiclass hinge (SVM) loss, PyTorch's MultiMarginLoss.
* :func:`bce_with_logits_forward` / :func:`bce_forward`: the binary cross entropy of seed 003 §2.5.7,
  -(t log p + (1 - t) log(1 - p)), from logits (stable) or from probabilities.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.activation import as_float, row_shift, row_sum, stable_sigmoid

MAPE_EPSILON = 1e-7
"""Floor on |t| in MAPE's denominator (Keras' epsilon)."""

BCE_EPSILON = 1e-12
"""Floor on p (1 - p) in the backward of the probability-space BCE (PyTorch's value)."""


def _same_shape(prediction: Array, target: Array, what: str) -> tuple[Array, Array]:
    """Validate a regression pair; return both as float arrays in the prediction's dtype."""
    p = as_float(prediction)
    t = xp.asarray(target)
    if p.shape != t.shape:
        raise ShapeError(
            f"{what}: prediction has shape {tuple(p.shape)} but target has shape {tuple(t.shape)}; "
            f"they must be equal"
        )
    if p.ndim == 0 or p.shape[0] == 0:
        raise ShapeError(f"{what}: needs a non-empty batch on axis 0, got prediction shape {tuple(p.shape)}")
    return p, t.astype(p.dtype, copy=False)


# ------------------------------------------------------------------------------------ regression
@dataclass
class DiffCache:
    """The residual x - t and the constant the gradient is scaled by.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mse_forward
    >>> value, cache = mse_forward(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    >>> cache.diff, cache.scale  # scale 2 / numel
    (array([[1., 2.]]), 1.0)
    """

    diff: Array
    scale: float


def l2_loss_forward(prediction: Array, target: Array) -> tuple[float, DiffCache]:
    """z = 1/2 ||t - x||^2 for each example (eq. 15.6), averaged over the batch (axis 0).

    prediction, target: (N, ...). Value = sum((x - t)^2) / (2 N).

    Examples
    --------
    Eq. 15.6 for two examples: 1/2 ||(3, 4)||^2 = 12.5 and 0, averaged.

    >>> import numpy as np
    >>> from cnnkit.ops.loss import l2_loss_forward
    >>> value, cache = l2_loss_forward(np.array([[3.0, 4.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    >>> value
    6.25
    """
    p, t = _same_shape(prediction, target, "l2_loss")
    diff = p - t
    n = p.shape[0]
    value = 0.5 * float(xp.vdot(diff.reshape(-1), diff.reshape(-1))) / n
    return value, DiffCache(diff, 1.0 / n)


def l2_loss_backward(cache: DiffCache) -> Array:
    """d/dx of the batch mean of eq. 15.6: (x - t) / N.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import l2_loss_backward, l2_loss_forward
    >>> value, cache = l2_loss_forward(np.array([[3.0, 4.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    >>> l2_loss_backward(cache)  # (x - t) / N
    array([[1.5, 2. ],
           [0. , 0. ]])
    """
    return cache.diff * cache.diff.dtype.type(cache.scale)


def mse_forward(prediction: Array, target: Array) -> tuple[float, DiffCache]:
    """Mean squared error over all elements (= the batch mean of each example's mean); seed 003 §2.5.1.

    prediction, target: any equal shapes with a batch axis first.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mse_forward
    >>> value, cache = mse_forward(np.array([[3.0, 4.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    >>> value  # (9 + 16 + 0 + 0) / 4
    6.25
    """
    p, t = _same_shape(prediction, target, "mse")
    diff = p - t
    value = float(xp.vdot(diff.reshape(-1), diff.reshape(-1))) / diff.size
    return value, DiffCache(diff, 2.0 / diff.size)


def mse_backward(cache: DiffCache) -> Array:
    """2 (x - t) / numel.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mse_backward, mse_forward
    >>> value, cache = mse_forward(np.array([[3.0, 4.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    >>> mse_backward(cache)  # 2 (x - t) / 4
    array([[1.5, 2. ],
           [0. , 0. ]])
    """
    return cache.diff * cache.diff.dtype.type(cache.scale)


def l1_forward(prediction: Array, target: Array) -> tuple[float, DiffCache]:
    """Mean absolute error (the L1 loss averaged over all elements, PyTorch's L1Loss; seed 003 §2.5).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import l1_forward
    >>> value, cache = l1_forward(np.array([[3.0, -4.0], [1.0, 1.0]]), np.zeros((2, 2)))
    >>> value  # (3 + 4 + 1 + 1) / 4
    2.25
    """
    p, t = _same_shape(prediction, target, "l1")
    diff = p - t
    value = float(xp.abs(diff).mean())
    return value, DiffCache(diff, 1.0 / diff.size)


def l1_backward(cache: DiffCache) -> Array:
    """sign(x - t) / numel (0 where x == t, as in PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import l1_backward, l1_forward
    >>> value, cache = l1_forward(np.array([[3.0, -4.0], [0.0, 1.0]]), np.zeros((2, 2)))
    >>> l1_backward(cache)  # sign(x - t) / 4, 0 where x == t
    array([[ 0.25, -0.25],
           [ 0.  ,  0.25]])
    """
    g = xp.sign(cache.diff)
    g *= cache.scale
    return g


@dataclass
class MSLECache:
    """What MSLE's backward needs: the log residual log(1 + x) - log(1 + t) and the prediction x.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import msle_forward
    >>> value, cache = msle_forward(np.array([[np.e - 1]]), np.array([[0.0]]))
    >>> np.round(cache.diff, 4), cache.prediction.shape
    (array([[1.]]), (1, 1))
    """

    diff: Array  # log1p(x) - log1p(t)
    prediction: Array


def msle_forward(prediction: Array, target: Array) -> tuple[float, MSLECache]:
    """Mean squared logarithmic error: mean of (log(1 + x) - log(1 + t))^2 over all elements (seed 003 §2.5).

    Both prediction and target must be > -1 (ValueError otherwise); Keras' definition without its
    clipping of negative values to epsilon.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import msle_forward
    >>> value, cache = msle_forward(np.array([[np.e - 1, 0.0]]), np.array([[0.0, 0.0]]))
    >>> round(value, 4)  # ((1 - 0)^2 + 0) / 2
    0.5
    >>> msle_forward(np.array([[-2.0]]), np.array([[0.0]]))
    Traceback (most recent call last):
    ...
    ValueError: msle: every prediction value must be > -1 (log(1 + value) is taken); got min -2.0
    """
    p, t = _same_shape(prediction, target, "msle")
    for name, a in (("prediction", p), ("target", t)):
        if a.size and not bool(xp.all(a > -1)):
            raise ValueError(f"msle: every {name} value must be > -1 (log(1 + value) is taken); got min {float(a.min())}")
    diff = xp.log1p(p) - xp.log1p(t)
    value = float(xp.vdot(diff.reshape(-1), diff.reshape(-1))) / diff.size
    return value, MSLECache(diff, p)


def msle_backward(cache: MSLECache) -> Array:
    """2 (log(1 + x) - log(1 + t)) / ((1 + x) numel).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import msle_backward, msle_forward
    >>> value, cache = msle_forward(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]))
    >>> np.round(msle_backward(cache), 4)  # 2 log(2) / (2 * 2), 0
    array([[0.3466, 0.    ]])
    """
    g = cache.diff * (2.0 / cache.diff.size)
    g /= 1 + cache.prediction
    return g


@dataclass
class MAPECache:
    """What MAPE's backward needs: the residual x - t and the denominators max(|t|, eps).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mape_forward
    >>> value, cache = mape_forward(np.array([[1.0, 1.0]]), np.array([[2.0, -4.0]]))
    >>> cache.diff, cache.denom
    (array([[-1.,  5.]]), array([[2., 4.]]))
    """

    diff: Array  # x - t
    denom: Array  # max(|t|, eps)


def mape_forward(prediction: Array, target: Array, eps: float = MAPE_EPSILON) -> tuple[float, MAPECache]:
    """Mean absolute percentage error: 100 * mean of |t - x| / max(|t|, eps) (Keras' definition; seed 003 §2.5).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mape_forward
    >>> value, cache = mape_forward(np.array([[90.0, 330.0]]), np.array([[100.0, 300.0]]))
    >>> round(value, 4)  # 100 * (10/100 + 30/300) / 2
    10.0
    """
    p, t = _same_shape(prediction, target, "mape")
    diff = p - t
    denom = xp.maximum(xp.abs(t), eps)
    value = 100.0 * float((xp.abs(diff) / denom).mean())
    return value, MAPECache(diff, denom)


def mape_backward(cache: MAPECache) -> Array:
    """100 sign(x - t) / (max(|t|, eps) numel).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import mape_backward, mape_forward
    >>> value, cache = mape_forward(np.array([[90.0, 330.0]]), np.array([[100.0, 300.0]]))
    >>> np.round(mape_backward(cache), 4)  # 100 sign(x - t) / (|t| * 2)
    array([[-0.5   ,  0.1667]])
    """
    g = xp.sign(cache.diff)
    g *= 100.0 / cache.diff.size
    g /= cache.denom
    return g


# ---------------------------------------------------------------------------------- classification
REDUCTIONS = ("mean", "sum", "none")
"""The reductions of the classification losses with class weights (PyTorch's and ONNX's names)."""


def _flat_labels(scores: Array, labels: Array, what: str, ignore_index: int | None = None) -> tuple[Array, Array]:
    """Scores (..., K) -> (M, K) and integer labels of the leading shape -> (M,), validated.

    Labels may have exactly the leading shape scores.shape[:-1], or be (N,) when every leading axis
    after the first has size 1 (a fully connected layer written as a convolution gives (N, 1, 1, K)).
    Labels equal to ``ignore_index`` are exempt from the range check (they may lie outside [0, K)).
    """
    if scores.ndim < 1 or scores.shape[-1] < 1:
        raise ShapeError(f"{what}: scores must have shape (..., K) with K >= 1 classes, got {tuple(scores.shape)}")
    labels = xp.asarray(labels)
    lead = tuple(scores.shape[:-1])
    ok = labels.shape == lead or (
        labels.ndim == 1 and len(lead) >= 1 and lead[0] == labels.shape[0] and all(d == 1 for d in lead[1:])
    )
    if not ok:
        raise ShapeError(
            f"{what}: scores have shape {tuple(scores.shape)}, so integer labels must have shape {lead}"
            + (f" or ({lead[0]},)" if len(lead) > 1 and all(d == 1 for d in lead[1:]) else "")
            + f"; got labels of shape {tuple(labels.shape)}"
        )
    if labels.dtype.kind not in "iub":
        raise ValueError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    k = scores.shape[-1]
    flat = labels.reshape(-1).astype(xp.intp, copy=False)
    checked = flat if ignore_index is None else flat[flat != ignore_index]
    if checked.size and (int(checked.min()) < 0 or int(checked.max()) >= k):
        raise ValueError(
            f"{what}: labels must lie in [0, {k}) for {k} classes (scores shape {tuple(scores.shape)}"
            + ("" if ignore_index is None else f", ignore_index={ignore_index}")
            + f"); got values in [{int(checked.min())}, {int(checked.max())}]"
        )
    rows = scores.reshape(-1, k)  # (M, K), M = prod of the leading axes
    if rows.shape[0] == 0:
        raise ShapeError(f"{what}: empty batch, scores shape {tuple(scores.shape)}")
    return rows, flat


def _check_class_options(
    weight: Array | None, ignore_index: int | None, reduction: str, k: int, dtype: xp.dtype, what: str
) -> Array | None:
    """Validate weight (K,), ignore_index and reduction; return the weight in ``dtype``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or int(ignore_index) != ignore_index):
        raise ValueError(f"{what}: ignore_index must be an integer or None, got {ignore_index!r}")
    if weight is None:
        return None
    w = xp.asarray(weight)
    if w.shape != (k,):
        raise ShapeError(f"{what}: weight must have one entry per class, shape ({k},), got {tuple(w.shape)}")
    return w.astype(dtype, copy=False)


def _row_coefficients(
    flat: Array, weight: Array | None, ignore_index: int | None, reduction: str, dtype: xp.dtype
) -> tuple[Array, Array, Array, float]:
    """Per row: the weight w_i of its label (0 where ignored), a safe label (0 where ignored), the mask of
    kept rows, and the reduction's scale (1/sum of w_i for "mean", 1 otherwise; NaN when nothing is kept)."""
    keep = xp.ones(flat.shape, dtype=bool) if ignore_index is None else flat != ignore_index
    safe = xp.where(keep, flat, 0)
    if weight is None:
        w = keep.astype(dtype)
    else:
        w = weight[safe] * keep
    if reduction != "mean":
        return w, safe, keep, 1.0
    total = float(w.sum())
    return w, safe, keep, (1.0 / total if total != 0 else math.nan)


def _reduce(per_row: Array, scale: float, reduction: str, shape: tuple[int, ...]) -> float | Array:
    """The loss value: the per-row losses with the labels' shape ("none"), their sum, or their weighted mean."""
    if reduction == "none":
        return per_row.reshape(shape)
    return float(per_row.sum()) * scale if not math.isnan(scale) else math.nan


def _upstream(dy: Array | float | None, reduction: str, shape: tuple[int, ...], dtype: xp.dtype, what: str) -> Array | float:
    """The gradient of whatever the forward returned: 1 by default; a scalar for "mean"/"sum", an array of
    the value's (labels') shape for "none". Returned as a float, or as an (M,) array."""
    if dy is None:
        return 1.0
    if reduction != "none":
        d = xp.asarray(dy)
        if d.size != 1:
            raise ShapeError(
                f"{what} backward: the loss is a scalar (reduction={reduction!r}), so dy must be one number, got shape {d.shape}"
            )
        return float(d.reshape(()))
    d = xp.asarray(dy)
    if tuple(d.shape) != tuple(shape):
        raise ShapeError(f"{what} backward: dy has shape {tuple(d.shape)}, expected the loss's shape {tuple(shape)} (reduction='none')")
    return d.astype(dtype, copy=False).reshape(-1)


@dataclass
class SoftmaxCrossEntropyCache:
    """What the fused softmax cross entropy's backward needs: the probabilities and the labels or targets.

    With class weights, ignore_index or another reduction, ``coefficients`` holds each row's factor
    w_i / (sum of w) ("mean") or w_i ("sum", "none") and ``value_shape`` the shape of the per-example losses.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import softmax_cross_entropy_forward
    >>> value, cache = softmax_cross_entropy_forward(np.zeros((2, 4)), np.array([0, 3]))
    >>> cache.probabilities[0], cache.labels, cache.target
    (array([0.25, 0.25, 0.25, 0.25]), array([0, 3]), None)
    """

    probabilities: Array  # softmax of the logits, the logits' shape (..., K)
    labels: Array | None  # (M,) integer labels (0 where ignored), or None with probability targets
    target: Array | None  # (M, K) probability targets (times the class weights), or None with integer labels
    coefficients: Array | None = None  # (M,) per-row factor of the gradient; None: the plain mean, 1/M each
    reduction: str = "mean"
    value_shape: tuple[int, ...] = ()  # the per-example losses' shape (the labels' shape, or the leading axes)


def softmax_cross_entropy_forward(
    logits: Array,
    labels: Array,
    weight: Array | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> tuple[float | Array, SoftmaxCrossEntropyCache]:
    """Softmax (eq. 15.7) and cross entropy fused: the mean over rows of -log softmax(x)_label.

    logits: (..., K), e.g. (N, K), (N, 1, 1, K) or a spatial (N, H, W, K) (classes last, NHWC); labels:
    integers of the leading shape (or (N,) for (N, 1, 1, K)), or float probability targets of the logits'
    shape (the C-dimensional t of seed 000 §15.2; the loss is then -sum_k t_k log softmax(x)_k). Every row
    of the leading axes is one example. Computed as log-sum-exp with the row maximum subtracted whenever
    exp could overflow, so logits of +-1e4 stay finite.

    Options (PyTorch's CrossEntropyLoss, ONNX's SoftmaxCrossEntropyLoss): ``weight`` (K,) scales each
    example's loss by the weight of its label (with probability targets: -sum_k w_k t_k log p_k);
    labels equal to ``ignore_index`` contribute nothing and may lie outside [0, K) (integer labels only);
    ``reduction`` "mean" (default) divides the sum by the sum of the weights of the kept examples (their
    count without weights; NaN when none is kept, as PyTorch; the number of rows with probability targets),
    "sum" adds, "none" returns the per-example losses as an array of the labels' shape.
    The value is a Python float for "mean" and "sum".

    Examples
    --------
    Equal scores give probability 1/K to each class, so the loss is log K; huge logits stay finite.

    >>> import numpy as np
    >>> from cnnkit.ops.loss import softmax_cross_entropy_forward
    >>> value, cache = softmax_cross_entropy_forward(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(value, 4), round(float(np.log(4)), 4)
    (1.3863, 1.3863)
    >>> value, cache = softmax_cross_entropy_forward(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([0, 0]))
    >>> value  # (0 + 1e4) / 2
    5000.0

    Weights and an ignored label: the weighted mean divides by the weights of the examples kept (2 + 1).

    >>> x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    >>> value, cache = softmax_cross_entropy_forward(x, np.array([0, 1, -100]), weight=np.array([2.0, 1.0]), ignore_index=-100)
    >>> round(value, 4)  # (2 log 2 + 1 log 2) / 3
    0.6931
    >>> softmax_cross_entropy_forward(x, np.array([0, 1, -100]), ignore_index=-100, reduction="none")[0].round(4)
    array([0.6931, 0.6931, 0.    ])
    """
    x = as_float(logits)
    lab = xp.asarray(labels)
    if x.ndim < 1:
        raise ShapeError(f"softmax_cross_entropy: logits must have shape (..., K), got {tuple(x.shape)}")
    k = x.shape[-1]
    w_class = _check_class_options(weight, ignore_index, reduction, k, x.dtype, "softmax_cross_entropy")
    plain = w_class is None and ignore_index is None and reduction == "mean"
    soft = lab.dtype.kind == "f"
    if soft:
        if lab.shape != x.shape:
            raise ShapeError(
                f"softmax_cross_entropy: probability targets must have the logits' shape {tuple(x.shape)}; "
                f"got {tuple(lab.shape)} (integer labels would have shape {tuple(x.shape[:-1])})"
            )
        if ignore_index is not None:
            raise ValueError("softmax_cross_entropy: ignore_index applies to integer labels, not to probability targets")
        rows = x.reshape(-1, k)  # (M, K)
        if rows.shape[0] == 0:
            raise ShapeError(f"softmax_cross_entropy: empty batch, logits shape {tuple(x.shape)}")
        target = lab.astype(x.dtype, copy=False).reshape(-1, k)  # (M, K)
        if w_class is not None:
            target = target * w_class  # w_k t_k: the weighted loss is the unweighted one of these targets
        value_shape = tuple(x.shape[:-1])
    else:
        rows, flat = _flat_labels(x, lab, "softmax_cross_entropy", ignore_index)
        value_shape = tuple(lab.shape)
    m = rows.shape[0]
    shift = row_shift(rows)
    s = rows if shift is None else rows - shift  # (M, K) logits, shifted when exp could overflow
    if plain:
        # the loss needs s: sum_k t_k (log Z - s_k), or log Z - s_label for integer labels, Z = sum_k exp(s_k)
        t_dot_s = float(xp.vdot(target.reshape(-1), s.reshape(-1))) if soft else float(s[xp.arange(m), flat].sum())
    elif soft:
        t_s = xp.einsum("ij,ij->i", target, s)  # (M,) sum_k t_k s_k
    else:
        coef, safe, keep, scale = _row_coefficients(flat, w_class, ignore_index, reduction, x.dtype)
        s_label = s[xp.arange(m), safe]  # (M,)
    e = xp.exp(s) if shift is None else xp.exp(s, out=s)
    z = row_sum(e)  # (M, 1)
    log_z = xp.log(z[:, 0])  # (M,)
    e /= z  # probabilities
    if plain:
        if soft:
            value: float | Array = (float(xp.vdot(target.sum(axis=1), log_z)) - t_dot_s) / m
            return value, SoftmaxCrossEntropyCache(e.reshape(x.shape), None, target)
        value = (float(log_z.sum()) - t_dot_s) / m
        return value, SoftmaxCrossEntropyCache(e.reshape(x.shape), flat, None)
    if soft:
        per_row = target.sum(axis=1) * log_z - t_s  # (M,)
        scale = 1.0 / m if reduction == "mean" else 1.0
        coef = xp.full(m, scale, dtype=x.dtype)
        value = _reduce(per_row, scale, reduction, value_shape)
        return value, SoftmaxCrossEntropyCache(e.reshape(x.shape), None, target, coef, reduction, value_shape)
    per_row = coef * (log_z - s_label)  # (M,), 0 where ignored
    value = _reduce(per_row, scale, reduction, value_shape)
    with _quiet():
        coef = coef * scale  # NaN rows only when nothing is kept (a NaN mean, as in PyTorch)
    coef = xp.where(keep, coef, 0).astype(x.dtype, copy=False)  # ignored rows get no gradient
    return value, SoftmaxCrossEntropyCache(e.reshape(x.shape), safe, None, coef, reduction, value_shape)


def softmax_cross_entropy_backward(cache: SoftmaxCrossEntropyCache, dy: Array | float | None = None) -> Array:
    """(softmax(x) - onehot(label)) / M for the mean over M rows (with targets: (p sum_k t_k - t) / M).

    With class weights, ignore_index or another reduction, row i's gradient is c_i (p_i - onehot(label_i))
    with c_i = w_i / (sum of the kept weights) ("mean") or w_i ("sum", "none"), 0 for ignored rows.
    ``dy``: the gradient of what the forward returned, 1 by default: a number for "mean"/"sum", an array of
    the per-example losses' shape for "none" (ones when omitted). Returns the logits' shape (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
    >>> value, cache = softmax_cross_entropy_forward(np.zeros((1, 4)), np.array([2]))
    >>> softmax_cross_entropy_backward(cache)  # softmax(x) - onehot(2)
    array([[ 0.25,  0.25, -0.75,  0.25]])
    >>> value, cache = softmax_cross_entropy_forward(np.zeros((2, 2)), np.array([0, 1]), reduction="none")
    >>> softmax_cross_entropy_backward(cache, np.array([1.0, 0.0]))  # only the first example's loss matters
    array([[-0.5,  0.5],
           [ 0. ,  0. ]])
    """
    p = cache.probabilities  # not modified: the loss layer exposes it
    k = p.shape[-1]
    m = p.size // k
    up = _upstream(dy, cache.reduction, cache.value_shape, p.dtype, "softmax_cross_entropy")
    if cache.coefficients is None:  # the plain mean
        if cache.labels is not None:
            g = p.reshape(m, k) * (1.0 / m)  # (M, K)
            g[xp.arange(m), cache.labels] -= 1.0 / m
        else:
            t = cache.target
            assert t is not None  # no labels: the forward pass kept the target distribution
            g = p.reshape(m, k) * t.sum(axis=1, keepdims=True)
            g -= t
            g *= 1.0 / m
        if dy is not None:
            g *= up
        return g.reshape(p.shape)
    c = cache.coefficients * up  # (M,)
    if cache.labels is not None:
        g = p.reshape(m, k) * c[:, None]
        g[xp.arange(m), cache.labels] -= c
    else:
        t = cache.target
        assert t is not None
        g = p.reshape(m, k) * t.sum(axis=1, keepdims=True)
        g -= t
        g *= c[:, None]
    return g.reshape(p.shape)


@dataclass
class NLLCache:
    """What the negative log-likelihood's backward needs: each row's factor, its label and the shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import nll_loss_forward
    >>> value, cache = nll_loss_forward(np.log(np.full((2, 4), 0.25)), np.array([0, 3]))
    >>> cache.coefficients, cache.labels
    (array([0.5, 0.5]), array([0, 3]))
    """

    coefficients: Array  # (M,) w_i / (sum of kept w) for "mean", w_i otherwise; 0 where ignored
    labels: Array  # (M,) labels, 0 where ignored
    shape: tuple[int, ...]  # the input's shape (..., K)
    dtype: xp.dtype
    reduction: str
    value_shape: tuple[int, ...]  # the labels' shape


def nll_loss_forward(
    log_probabilities: Array,
    labels: Array,
    weight: Array | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> tuple[float | Array, NLLCache]:
    """Negative log-likelihood: per example -w_label x_label, for log-probabilities x (e.g. a LogSoftmax's output).

    log_probabilities: (..., K), classes last ((N, K) or spatial (N, H, W, K)); labels: integers of the
    leading shape (or (N,) for (N, 1, 1, K)). PyTorch's NLLLoss and ONNX's NegativeLogLikelihoodLoss with
    the classes moved last: ``weight`` (K,) per class, ``ignore_index`` (those examples add nothing and may
    lie outside [0, K)), ``reduction`` "mean" (the sum divided by the sum of the kept examples' weights;
    NaN when none is kept), "sum" or "none" (an array of the labels' shape). Nothing checks that x holds
    log-probabilities. The value is a Python float for "mean" and "sum".

    Examples
    --------
    ONNX's example 3 (weighted mean), classes moved last: -(0.1*3 + 0.3*2 + 0.2*0 + 0.1*2) / (0.1 + 0.3 + 0.2 + 0.1).

    >>> import numpy as np
    >>> from cnnkit.ops.loss import nll_loss_forward
    >>> x = np.array([[[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]], [[0.0, 1.0], [2.0, 2.0], [1.0, 2.0]]]).transpose(0, 2, 1)
    >>> value, cache = nll_loss_forward(x, np.array([[2, 1], [0, 2]]), weight=np.array([0.2, 0.3, 0.1]))
    >>> round(value, 4)
    -1.5714
    """
    x = as_float(log_probabilities)
    if x.ndim < 1:
        raise ShapeError(f"nll_loss: input must have shape (..., K), got {tuple(x.shape)}")
    lab = xp.asarray(labels)
    w_class = _check_class_options(weight, ignore_index, reduction, x.shape[-1], x.dtype, "nll_loss")
    rows, flat = _flat_labels(x, lab, "nll_loss", ignore_index)
    coef, safe, keep, scale = _row_coefficients(flat, w_class, ignore_index, reduction, x.dtype)
    m = rows.shape[0]
    per_row = -coef * rows[xp.arange(m), safe]  # (M,), 0 where ignored
    value = _reduce(per_row, scale, reduction, tuple(lab.shape))
    with _quiet():
        coef = coef * scale
    coef = xp.where(keep, coef, 0).astype(x.dtype, copy=False)
    return value, NLLCache(coef, safe, tuple(x.shape), x.dtype, reduction, tuple(lab.shape))


def nll_loss_backward(cache: NLLCache, dy: Array | float | None = None) -> Array:
    """dx: -c_i at each row's label, 0 elsewhere (c_i as in :class:`NLLCache`); ``dy`` as for
    :func:`softmax_cross_entropy_backward`. Returns the input's shape (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import nll_loss_backward, nll_loss_forward
    >>> value, cache = nll_loss_forward(np.zeros((2, 3)), np.array([2, 0]), reduction="sum")
    >>> nll_loss_backward(cache)
    array([[ 0.,  0., -1.],
           [-1.,  0.,  0.]])
    """
    k = cache.shape[-1]
    m = len(cache.labels)
    up = _upstream(dy, cache.reduction, cache.value_shape, cache.dtype, "nll_loss")
    g = xp.zeros((m, k), dtype=cache.dtype)
    g[xp.arange(m), cache.labels] = -(cache.coefficients * up)
    return g.reshape(cache.shape)


def _quiet() -> contextlib.AbstractContextManager:
    """Silence NumPy's warnings where NaN is the intended result (a mean over no kept example)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(invalid="ignore") if errstate is not None else contextlib.nullcontext()


@dataclass
class MultiMarginCache:
    """What the multiclass hinge loss's backward needs: the active margins, the labels and the scores' shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import multi_margin_forward
    >>> value, cache = multi_margin_forward(np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    >>> cache.active, cache.labels
    (array([[0., 1., 0.]]), array([0]))
    """

    active: Array  # (M, K): d loss_row / d x_j for j != label (margin violations), 0 at the label
    labels: Array  # (M,)
    shape: tuple[int, ...]


def multi_margin_forward(
    scores: Array, labels: Array, margin: float = 1.0, p: int = 1
) -> tuple[float, MultiMarginCache]:
    """Multiclass hinge (SVM) loss, PyTorch's MultiMarginLoss: per row
    sum_{j != y} max(0, margin - x_y + x_j)^p / K, averaged over the rows.

    scores: (..., K) with integer labels of the leading shape (see softmax cross entropy); p is 1 or 2.
    The CS231n notes (seed 002's "SVM loss") omit the division by K; multiply by K for that variant.

    Examples
    --------
    The CS231n example behind seed 002's SVM loss: scores (3.2, 5.1, -1.7) for the true class 0 give
    max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9, here divided by K = 3.

    >>> import numpy as np
    >>> from cnnkit.ops.loss import multi_margin_forward
    >>> value, cache = multi_margin_forward(np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    >>> round(value * 3, 4)
    2.9
    """
    if p not in (1, 2):
        raise ValueError(f"multi_margin: p must be 1 or 2, got {p}")
    x = as_float(scores)
    rows, flat = _flat_labels(x, labels, "multi_margin")
    m, k = rows.shape
    idx = xp.arange(m)
    a = rows - rows[idx, flat][:, None]  # (M, K): x_j - x_y
    a += margin
    a[idx, flat] = 0  # the j == y term is excluded
    xp.maximum(a, 0, out=a)  # hinge
    if p == 1:
        value = float(a.sum()) / (k * m)
        active = (a > 0).astype(x.dtype)
    else:
        value = float(xp.vdot(a.reshape(-1), a.reshape(-1))) / (k * m)
        active = a
        active *= 2
    return value, MultiMarginCache(active, flat, tuple(x.shape))


def multi_margin_backward(cache: MultiMarginCache) -> Array:
    """d/dx_j = p max(0, a_j)^(p-1) [a_j > 0] / (K M) for j != y; d/dx_y = minus their sum.

    Returns the scores' shape (..., K).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import multi_margin_backward, multi_margin_forward
    >>> value, cache = multi_margin_forward(np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    >>> np.round(multi_margin_backward(cache) * 3, 4)  # only class 1 violates the margin
    array([[-1.,  1.,  0.]])
    """
    g = cache.active.copy()  # (M, K)
    m, k = g.shape
    g[xp.arange(m), cache.labels] = -g.sum(axis=1)
    g *= 1.0 / (k * m)
    return g.reshape(cache.shape)


@dataclass
class BCECache:
    """What the binary cross entropies' backward needs: the residual (sigmoid(x) - t or p - t) and p (1 - p).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import bce_forward, bce_with_logits_forward
    >>> bce_with_logits_forward(np.zeros((1, 1)), np.ones((1, 1)))[1].denom is None
    True
    >>> bce_forward(np.full((1, 1), 0.5), np.ones((1, 1)))[1].denom
    array([[0.25]])
    """

    residual: Array  # sigmoid(x) - t (logits) or x - t (probabilities)
    denom: Array | None  # max(p (1 - p), eps) for probabilities, None for logits


def bce_with_logits_forward(logits: Array, target: Array) -> tuple[float, BCECache]:
    """Binary cross entropy of sigmoid(x) against t in [0, 1] (seed 003 §2.5.7), mean over all elements.

    Per element max(x, 0) - x t + log(1 + exp(-|x|)), which never overflows. Shapes equal.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import bce_with_logits_forward
    >>> value, cache = bce_with_logits_forward(np.array([[0.0, 1000.0]]), np.array([[1.0, 0.0]]))
    >>> round(value, 4)  # (log 2 + 1000) / 2, no overflow
    500.3466
    """
    x, t = _same_shape(logits, target, "bce_with_logits")
    ell = xp.abs(x)
    xp.negative(ell, out=ell)
    xp.exp(ell, out=ell)
    xp.log1p(ell, out=ell)  # log(1 + exp(-|x|))
    ell += xp.maximum(x, 0)
    ell -= x * t
    value = float(ell.mean())
    residual = stable_sigmoid(x)
    residual -= t
    return value, BCECache(residual, None)


def bce_with_logits_backward(cache: BCECache) -> Array:
    """(sigmoid(x) - t) / numel.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import bce_with_logits_backward, bce_with_logits_forward
    >>> value, cache = bce_with_logits_forward(np.array([[0.0, 1000.0]]), np.array([[1.0, 0.0]]))
    >>> bce_with_logits_backward(cache)  # (sigmoid(x) - t) / 2
    array([[-0.25,  0.5 ]])
    """
    return cache.residual * (1.0 / cache.residual.size)


def bce_forward(probabilities: Array, target: Array) -> tuple[float, BCECache]:
    """Binary cross entropy -(t log p + (1 - t) log(1 - p)) on probabilities p in [0, 1] (seed 003 §2.5.7),
    mean over all elements; each log is clamped at -100 as in PyTorch's BCELoss, so p = 0 or 1 stays finite.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import bce_forward
    >>> value, cache = bce_forward(np.array([[0.5, 0.0]]), np.array([[1.0, 1.0]]))
    >>> round(value, 4)  # (log 2 + 100) / 2: log 0 is clamped at -100
    50.3466
    """
    p, t = _same_shape(probabilities, target, "bce")
    if p.size and not (bool(xp.all(p >= 0)) and bool(xp.all(p <= 1))):
        raise ValueError(f"bce: probabilities must lie in [0, 1]; got values in [{float(p.min())}, {float(p.max())}]")
    with_errstate = getattr(xp, "errstate", None)
    if with_errstate is not None:
        with with_errstate(divide="ignore"):
            log_p, log_q = xp.log(p), xp.log1p(-p)
    else:  # pragma: no cover - array modules without errstate
        log_p, log_q = xp.log(p), xp.log1p(-p)
    xp.maximum(log_p, -100, out=log_p)
    xp.maximum(log_q, -100, out=log_q)
    value = -float((t * log_p + (1 - t) * log_q).mean())
    denom = xp.maximum(p * (1 - p), BCE_EPSILON)
    return value, BCECache(p - t, denom)


def bce_backward(cache: BCECache) -> Array:
    """(p - t) / (max(p (1 - p), 1e-12) numel), PyTorch's BCELoss gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.loss import bce_backward, bce_forward
    >>> value, cache = bce_forward(np.array([[0.5, 0.8]]), np.array([[1.0, 0.0]]))
    >>> np.round(bce_backward(cache), 4)  # (p - t) / (p (1 - p) * 2)
    array([[-1. ,  2.5]])
    """
    g = cache.residual / cache.denom
    g *= 1.0 / g.size
    return g

