"""Optimisers (SGD, Adam, RMSProp, Adagrad) and learning-rate schedules."""

from cnnkit.optim.adaptive import Adagrad, Adam, RMSProp, RMSprop
from cnnkit.optim.base import Optimizer
from cnnkit.optim.factory import OPTIMIZERS, make_optimizer
from cnnkit.optim.schedule import (
    ConstantLR,
    CosineAnnealingLR,
    ListLR,
    LRSchedule,
    StepLR,
    schedule_from_spec,
)
from cnnkit.optim.sgd import SGD

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "ConstantLR",
    "CosineAnnealingLR",
    "LRSchedule",
    "ListLR",
    "Optimizer",
    "RMSProp",
    "RMSprop",
    "StepLR",
    "make_optimizer",
    "schedule_from_spec",
]
