"""Fully convolutional networks: fully connected layers turned into convolutions, and score maps.

§15.5.8 of the chapter and the layer notes (002) observe that a fully connected layer on an H x W x C input
is a convolution whose kernel covers the whole input, and every later fully connected layer a 1 x 1
convolution. The converted network computes the same outputs on the original input size (a 1 x 1 map), and
on a larger image slides the whole network over it: one class score vector per window position, at the
network's total stride (VGG-16 on 384 x 384 gives a 6 x 6 map of 1000 scores, the same as evaluating 36
crops of 224 x 224 at stride 32, for a fraction of the work).

Examples
--------
>>> import numpy as np
>>> from cnnkit.models import build
>>> net = build("conv3x3x1x4,relu,pool2,fc8,relu,fc3", (8, 8, 1), np.random.default_rng(0))
>>> fcn = to_fully_convolutional(net, (8, 8, 1))
>>> x = np.random.default_rng(1).standard_normal((2, 8, 8, 1)).astype(np.float32)
>>> bool(np.allclose(fcn.forward(x, train=False)[:, 0, 0], net.forward(x, train=False), atol=1e-5))
True
>>> fcn.output_shape((16, 16, 1))                  # a larger image: a 5 x 5 map of scores
(5, 5, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnkit.errors import ShapeError
from cnnkit.nn import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Layer, Linear, Sequential
from cnnkit.nn.init import building_shapes_only
from cnnkit.ops.linear import fc_to_conv


def _flatten_chain(net: Layer) -> list[Layer]:
    """The layers of a chain, nested Sequentials unrolled."""
    if isinstance(net, Sequential):
        out: list[Layer] = []
        for layer in net:
            out += _flatten_chain(layer)
        return out
    return [net]


def _conv_from_linear(linear: Linear, in_shape: tuple[int, int, int], order: str) -> Conv2d:
    h, w, c = in_shape
    dtype = linear.params["weight"].dtype
    conv = Conv2d(c, linear.out_features, (h, w), bias="bias" in linear.params, dtype=dtype,
                  need_input_grad=linear.need_input_grad, rng=np.random.default_rng(0))
    if building_shapes_only():  # a network of placeholders (summaries): nothing to copy
        return conv
    kernel, bias = fc_to_conv(linear.params["weight"], linear.params.get("bias"), in_shape, layout=order.upper())
    conv.params["weight"][...] = kernel
    if bias is not None:
        conv.params["bias"][...] = bias
    return conv


def _bn2d(bn: BatchNorm1d) -> BatchNorm2d:
    out = BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine="weight" in bn.params,
                      track_running_stats=bn.track_running_stats, dtype=bn.dtype or np.float32)
    out.load_state_dict(bn.state_dict())
    return out


def to_fully_convolutional(net: Layer, input_shape: Sequence[int]) -> Sequential:
    """The same network with its fully connected head as convolutions (see the module docstring).

    ``net`` is a chain (a Sequential, possibly nested) and ``input_shape`` the (H, W, C) it was built for. The
    first Flatten of an H x W x C tensor followed (after elementwise layers) by a Linear becomes an H x W
    convolution; later Linear layers become 1 x 1 convolutions and BatchNorm1d becomes BatchNorm2d; other
    layers are kept (shared, not copied: the result uses the same weight arrays for everything it keeps).
    On the original input size the result gives (N, 1, 1, K) equal to ``net``'s (N, K) outputs.

    Examples
    --------
    >>> from cnnkit.models import build
    >>> net = build("conv5x5x1x20,pool2,fc10", (28, 28, 1), np.random.default_rng(0))
    >>> [type(layer).__name__ for layer in to_fully_convolutional(net, (28, 28, 1))]
    ['Conv2d', 'MaxPool2d', 'Conv2d']
    """
    layers = _flatten_chain(net)
    shape = tuple(int(v) for v in input_shape)
    out: list[Layer] = []
    i = 0
    converted = False
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Flatten) and len(shape) == 3:
            # everything up to the next Linear must be elementwise for the conversion to hold
            j = i + 1
            while j < len(layers) and layers[j].elementwise and not isinstance(layers[j], BatchNorm1d):
                j += 1
            linear = layers[j] if j < len(layers) else None
            if isinstance(linear, Linear):
                out += layers[i + 1 : j]
                out.append(_conv_from_linear(linear, (shape[0], shape[1], shape[2]), layer.order))
                shape = (1, 1, linear.out_features)
                converted = True
                i = j + 1
                continue
            raise ShapeError(f"layer {i} (Flatten) is not followed by a fully connected layer, so the network cannot "
                             f"slide over larger images")
        if isinstance(layer, Linear):
            if not converted:
                raise ShapeError(f"layer {i} (Linear) takes a flattened vector without a Flatten before it")
            out.append(_conv_from_linear(layer, (1, 1, layer.in_features), "nhwc"))
            shape = (1, 1, layer.out_features)
        elif isinstance(layer, BatchNorm1d) and converted:
            out.append(_bn2d(layer))
        else:
            out.append(layer)
            shape = layer.output_shape(shape)
        i += 1
    return Sequential(*out)


def score_map(fcn: Layer, image: np.ndarray, batch: bool = False) -> np.ndarray:
    """Class scores at every position of a fully convolutional network over ``image`` (H, W, C) -> (h, w, K).

    Examples
    --------
    >>> from cnnkit.models import build
    >>> fcn = to_fully_convolutional(build("conv3x3x1x4,pool2,fc3", (8, 8, 1), np.random.default_rng(0)), (8, 8, 1))
    >>> score_map(fcn, np.zeros((12, 12, 1), np.float32)).shape
    (3, 3, 3)
    """
    x = np.asarray(image)
    if not batch:
        x = x[None]
    y = fcn.forward(x, train=False)
    if y.ndim != 4:
        raise ShapeError(f"a score map needs a fully convolutional network (output (N, h, w, K)), got shape {y.shape}")
    return y if batch else y[0]
