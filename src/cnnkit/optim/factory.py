"""Optimisers by name, as a command line or a configuration names them."""

from __future__ import annotations

from cnnkit.optim.adaptive import Adagrad, Adam, RMSProp
from cnnkit.optim.base import Optimizer
from cnnkit.optim.sgd import SGD
from cnnkit.protocols import Parameterised

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")


def make_optimizer(
    name: str, model: Parameterised, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> Optimizer:
    """The optimiser ``name`` (sgd, adam, rmsprop, adagrad) over ``model``'s parameters.

    ``momentum`` applies to SGD and RMSProp; Adam and Adagrad ignore it.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> make_optimizer("sgd", Linear(3, 2, rng=np.random.default_rng(0)), lr=0.1, momentum=0.9)
    SGD(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False, dampening=0.0)
    """
    key = name.lower()
    if key == "sgd":
        return SGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if key == "adam":
        return Adam(model, lr=lr, weight_decay=weight_decay)
    if key == "rmsprop":
        return RMSProp(model, lr=lr, weight_decay=weight_decay, momentum=momentum)
    if key == "adagrad":
        return Adagrad(model, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
