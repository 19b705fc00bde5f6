"""Tests of the pooling layers: gradient checks through the Layer contract, PyTorch oracle, SegNet-style
unpooling inside a Sequential, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.base import Layer
from cnnkit.nn.container import Sequential
from cnnkit.nn.pool import AvgPool2d, LPPool2d, MaxPool2d, MaxUnpool2d, Upsample
from tests.oracle import assert_close, nchw, nhwc, require_torch


def distinct_values(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size).astype(np.float64) * 0.01 - 0.005 * size).reshape(shape)


LAYERS = [
    lambda: MaxPool2d(2),
    lambda: MaxPool2d(3, 2, 1),
    lambda: MaxPool2d(2, 2, ceil_mode=True),
    lambda: MaxPool2d((3, 2), (1, 2), (1, 0), dilation=(2, 1)),
    lambda: AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda: AvgPool2d(2, 1),
    lambda: LPPool2d(2, 2),
    lambda: LPPool2d(3, 3, 2, ceil_mode=True),
    lambda: Upsample(2),
    lambda: Upsample((1, 3)),
]


@pytest.mark.parametrize("make", LAYERS)
def test_layers_gradcheck(make):
    layer = make()
    assert isinstance(layer, Layer) and layer.params == {} and layer.grads == {}
    x = distinct_values((2, 7, 6, 3), seed=4)
    errors = check_layer(layer, x)
    assert errors["x"] < 1e-7


def test_segnet_style_unpool_in_sequential_gradcheck():
    """MaxUnpool2d(pool=p) uses p's switches and restores p's (odd) input size inside a Sequential."""
    pool = MaxPool2d(2, 2)
    net = Sequential(pool, Upsample(1), MaxUnpool2d(pool=pool))
    x = distinct_values((2, 7, 7, 3), seed=1)
    y = net.forward(x)
    assert y.shape == x.shape
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])  # the maxima are back at their places
    assert kept.sum() == 2 * 3 * 3 * 3
    assert check_layer(net, x)["x"] < 1e-7


def test_unpool_with_explicit_indices_and_torch():
    torch = require_torch()
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3))
    pool = MaxPool2d(2, return_indices=True)
    pooled = pool(x)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    _, idx_t = torch.nn.functional.max_pool2d(xt, 2, return_indices=True)
    np.testing.assert_array_equal(pool.switches, nhwc(idx_t))
    assert pool.switches.dtype == np.int64 and pool.switches.shape == pooled.shape
    unpool = MaxUnpool2d(2)
    y = unpool(pooled, indices=pool.switches)
    yt = torch.nn.functional.max_unpool2d(nchw(pooled), idx_t, 2)
    assert_close(y, nhwc(yt))
    dy = np.random.default_rng(3).standard_normal(y.shape)
    gathered = np.take_along_axis(dy.reshape(2, 64, 3), pool.switches.reshape(2, 16, 3), axis=1)
    assert_close(unpool.backward(dy), gathered.reshape(pooled.shape))


def test_dilated_pool_mirrored_by_unpool():
    pool = MaxPool2d(3, 1, 0, dilation=2)
    x = distinct_values((1, 8, 8, 2), seed=5)
    up = MaxUnpool2d(pool=pool)
    y = up(pool(x))  # PyTorch's default size rule would reject 8x8 here; the pool's input size is used
    assert y.shape == x.shape


@pytest.mark.parametrize(
    "layer,torch_layer",
    [
        (lambda: MaxPool2d(3, 2, 1, ceil_mode=True), lambda nn: nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (lambda: MaxPool2d(2, 1, 1, dilation=2), lambda nn: nn.MaxPool2d(2, 1, 1, dilation=2)),
        (lambda: AvgPool2d(3, 2, 1, True, False), lambda nn: nn.AvgPool2d(3, 2, 1, True, False)),
        (lambda: AvgPool2d(2), lambda nn: nn.AvgPool2d(2)),
        (lambda: LPPool2d(2, 3, 2), lambda nn: nn.LPPool2d(2, 3, 2)),
        (lambda: Upsample((2, 3)), lambda nn: nn.Upsample(scale_factor=(2.0, 3.0), mode="nearest")),
    ],
)
def test_layers_match_torch(layer, torch_layer):
    torch = require_torch()
    x = np.random.default_rng(8).standard_normal((2, 9, 8, 3))
    ours, theirs = layer(), torch_layer(torch.nn)
    y = ours.forward(x, train=True)
    dy = np.random.default_rng(9).standard_normal(y.shape)
    xt = nchw(x)
    yt = theirs(xt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(y, nhwc(yt))
    assert_close(ours.backward(dy), nhwc(xt.grad))


def test_float32_layers_stay_float32():
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 2)).astype(np.float32)
    for make in LAYERS:
        layer = make()
        y = layer(x)
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize("make", [*LAYERS, lambda: MaxUnpool2d(2)])
def test_backward_before_forward(make):
    with pytest.raises(StateError, match="before forward"):
        make().backward(np.zeros((1, 2, 2, 1)))


def test_layer_errors():
    with pytest.raises(StateError, match="switches"):
        _ = MaxPool2d(2).switches
    with pytest.raises(StateError, match="indices"):
        MaxUnpool2d(2)(np.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match="kernel_size or"):
        MaxUnpool2d()
    with pytest.raises(TypeError, match="MaxPool2d"):
        MaxUnpool2d(pool=AvgPool2d(2))  # type: ignore[arg-type]  # a wrong argument on purpose
    with pytest.raises(ValueError, match="nearest"):
        Upsample(2, mode="bilinear")
    with pytest.raises(ValueError, match="scale"):
        Upsample(1.5)
    with pytest.raises(ValueError, match="norm_type"):
        LPPool2d(0, 2)
    with pytest.raises(ShapeError, match="half the kernel"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ShapeError, match="half the kernel"):
        AvgPool2d(3, padding=(0, 2))
    with pytest.raises(ShapeError, match=r"\(3, 3\)"):
        MaxPool2d(2).forward(np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="does not fit"):
        AvgPool2d(4).forward(np.zeros((1, 3, 3, 1)))
    pool = MaxPool2d(2)
    pool(np.zeros((1, 4, 4, 1)))
    with pytest.raises(ShapeError, match="switches"):
        MaxUnpool2d(pool=pool)(np.zeros((1, 3, 3, 1)))


def test_repr_and_defaults():
    pool = MaxPool2d(3, padding=1)
    assert pool.stride == (3, 3) and pool.padding == (1, 1)
    assert "kernel_size=(3, 3)" in repr(pool)
    unpool = MaxUnpool2d(pool=pool)
    assert unpool.kernel_size == (3, 3) and unpool.stride == (3, 3) and unpool.padding == (1, 1)
    assert "MaxUnpool2d(" in repr(unpool)
    assert repr(Upsample(2)) == "Upsample(scale_factor=(2, 2), mode='nearest')"
    assert "norm_type=2" in repr(LPPool2d(2, 2))
    assert "count_include_pad=True" in repr(AvgPool2d(2))
