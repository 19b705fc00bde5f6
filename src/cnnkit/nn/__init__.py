"""Layers, losses and containers: thin classes over :mod:`cnnkit.ops` with PyTorch's names.

Contract: ``y = layer.forward(x)`` (or ``layer(x)``; training mode until ``layer.eval()``, or per call
``forward(x, train=False)``), ``dx = layer.backward(dy)``;
``layer.params`` and ``layer.grads`` are dicts with the same keys. Losses: ``value = loss.forward(pred,
target)`` then ``dpred = loss.backward()``. Activations are NHWC.
"""

from cnnkit.nn.activation import ELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from cnnkit.nn.base import Layer, Loss
from cnnkit.nn.container import Concat, Residual, Sequential
from cnnkit.nn.conv import Conv2d, ConvTranspose2d
from cnnkit.nn.dropout import Dropout
from cnnkit.nn.linear import Flatten, Linear
from cnnkit.nn.local import LocallyConnected2d
from cnnkit.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HingeLoss,
    L1Loss,
    L2Loss,
    MAELoss,
    MAPELoss,
    MSELoss,
    MSLELoss,
    SoftmaxCrossEntropy,
)
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from cnnkit.nn.pool import AvgPool2d, LPPool2d, MaxPool2d, MaxUnpool2d, Upsample

__all__ = [
    "ELU", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "Concat", "Conv2d",
    "ConvTranspose2d", "CrossEntropyLoss", "Dropout", "Flatten", "HingeLoss", "L1Loss", "L2Loss",
    "LPPool2d", "Layer", "LeakyReLU", "Linear", "LocallyConnected2d", "LogSoftmax", "Loss", "MAELoss",
    "MAPELoss", "MSELoss", "MSLELoss", "MaxPool2d", "MaxUnpool2d", "PReLU", "ReLU", "Residual",
    "Sequential", "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Softplus", "Tanh", "Upsample",
]
