"""Numerical gradient checking by centred differences (float64), for ops, layers and losses.

Used by the test-suite and available to users who write their own layers:
``check_layer(layer, x)`` compares ``layer.backward`` with (f(x+h) - f(x-h)) / 2h for the input and
every parameter, where f is a random linear functional of the output, sum(r * layer(x)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.backend import Array

if TYPE_CHECKING:
    from cnnkit.protocols import LossFunction


def numerical_grad(f: Callable[[], float], x: Array, eps: float = 1e-6) -> Array:
    """dF/dx by centred differences, perturbing ``x`` in place (it is restored).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.gradcheck import numerical_grad
    >>> x = np.array([1.0, -2.0])
    >>> np.round(numerical_grad(lambda: float(np.sum(x**3)), x), 4)  # 3 x^2
    array([ 3., 12.])
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_grad needs a contiguous array it can perturb in place")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def max_rel_error(a: Array, b: Array) -> float:
    """max |a-b| / max(1, |a|, |b|) elementwise: relative for large entries, absolute for small ones.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.gradcheck import max_rel_error
    >>> round(max_rel_error(np.array([100.0, 0.001]), np.array([101.0, 0.002])), 4)  # max(1/101, 0.001)
    0.0099
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))))


def check_layer(
    layer: Any,  # any object with the Layer contract
    x: Array,
    train: bool = False,
    eps: float = 1e-6,
    rng: np.random.Generator | None = None,
    check_input: bool = True,
) -> dict[str, float]:
    """Compare a layer's analytic gradients with numerical ones; returns the max relative error per name.

    Keys: ``"x"`` for the input and each parameter name. For layers with randomness in training
    (dropout) the caller must make the forward deterministic (e.g. reseed inside).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.gradcheck import check_layer
    >>> from cnnkit.nn import Linear
    >>> rng = np.random.default_rng(0)
    >>> errors = check_layer(Linear(3, 2, rng=rng, dtype=np.float64), rng.standard_normal((4, 3)))
    >>> sorted(errors), max(errors.values()) < 1e-6
    (['bias', 'weight', 'x'], True)
    """
    rng = rng or np.random.default_rng(0)
    y = layer.forward(x, train, grad=False)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(r * layer.forward(x, train, grad=False)))

    layer.forward(x, train, grad=True)  # keep the cache whatever the mode
    dx = layer.backward(r.astype(y.dtype))
    analytic = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    errors: dict[str, float] = {}
    if check_input:
        errors["x"] = max_rel_error(dx, numerical_grad(f, x, eps))
    for name, p in layer.params.items():
        errors[name] = max_rel_error(analytic[name], numerical_grad(f, p, eps))
    return errors


def check_loss(loss: LossFunction, prediction: Array, target: Array, eps: float = 1e-6) -> float:
    """Max relative error between ``loss.backward()`` and the numerical gradient of the loss value.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.gradcheck import check_loss
    >>> from cnnkit.nn.loss import SoftmaxCrossEntropy
    >>> scores = np.random.default_rng(0).standard_normal((4, 3))
    >>> check_loss(SoftmaxCrossEntropy(), scores, np.array([0, 1, 2, 1])) < 1e-6
    True
    """
    loss.forward(prediction, target)
    analytic = np.array(loss.backward(), copy=True)
    numeric = numerical_grad(lambda: float(loss.forward(prediction, target)), prediction, eps)
    return max_rel_error(analytic, numeric)
