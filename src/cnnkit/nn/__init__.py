"""Layers, losses and containers: thin classes over :mod:`cnnkit.ops` with PyTorch's names.

Contract: ``y = layer.forward(x)`` (or ``layer(x)``; training mode until ``layer.eval()``, or per call
``forward(x, train=False)``), ``dx = layer.backward(dy)``;
``layer.params`` and ``layer.grads`` are dicts with the same keys. Losses: ``value = loss.forward(pred,
target)`` then ``dpred = loss.backward()``. Activations are NHWC.
"""

from cnnkit.nn.activation import ELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from cnnkit.nn.base import Layer, Loss
from cnnkit.nn.channel import ChannelPad
from cnnkit.nn.container import Concat, Container, Residual, Sequential
from cnnkit.nn.conv import Conv2d, ConvTranspose2d
from cnnkit.nn.dropout import Dropout
from cnnkit.nn.graph import Add, Concatenate, Graph, Merge
from cnnkit.nn.linear import Flatten, Identity, Linear
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
    NLLLoss,
    SoftmaxCrossEntropy,
)
from cnnkit.nn.lrn import LocalResponseNorm
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from cnnkit.nn.pool import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, LPPool2d, MaxPool2d, MaxUnpool2d, Upsample

__all__ = [
    "ELU", "Add", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d",
    "ChannelPad",
    "Concat", "Concatenate",
    "Container", "Conv2d", "ConvTranspose2d", "CrossEntropyLoss", "Dropout", "Flatten", "GlobalAvgPool2d", "GlobalMaxPool2d",
    "Graph", "HingeLoss", "Identity", "L1Loss", "L2Loss", "LPPool2d", "Layer", "LeakyReLU", "Linear",
    "LocalResponseNorm",
    "LocallyConnected2d",
    "LogSoftmax", "Loss", "MAELoss", "MAPELoss", "MSELoss", "MSLELoss", "MaxPool2d", "MaxUnpool2d", "Merge", "NLLLoss", "PReLU",
    "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Softplus", "Tanh", "Upsample",
]
