"""Sequential runs a MaxPool2d next to a ReLU as one compiled kernel: the same bits as the two layers one after
the other (outputs, input gradients, parameter gradients, switches), and no fusion where it would not be safe."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import jit
from cnnkit.inspect.layers import capture_outputs, find_place, inject_gradient
from cnnkit.nn import Conv2d, Flatten, Linear, MaxPool2d, MaxUnpool2d, ReLU, Sequential
from cnnkit.nn.container import Fused

pytestmark = pytest.mark.skipif(not jit.HAVE_NUMBA, reason="fusion needs the compiled kernels (extra 'fast')")


def _net(order: str, pool: tuple[int, int, int], dtype: type, inplace: bool = False) -> Sequential:
    k, s, p = pool
    rng = np.random.default_rng(1)
    relu, mp = ReLU(inplace=inplace), MaxPool2d(k, s, padding=p)
    middle = [relu, mp] if order == "relu-pool" else [mp, relu]
    return Sequential(Conv2d(2, 3, 3, rng=rng, dtype=dtype), *middle, Flatten())


def _input(dtype: type) -> np.ndarray:
    x = np.random.default_rng(2).integers(-3, 3, size=(3, 9, 10, 2)).astype(dtype)  # ties and zeros
    x[0, 0, 0, 0] = np.nan
    return x


def _run(net: Sequential, x: np.ndarray) -> tuple[np.ndarray, ...]:
    y = net.forward(x.copy(), train=True)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    dy[0, :4] = -1.0  # gradients of both signs where ReLU blocks them
    dx = net.backward(dy)
    grads = tuple(g.copy() for g in net.grads.values())
    return (y, dx, *grads, net.forward(x.copy(), train=False))


def _same_bits(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(u.dtype == v.dtype and u.tobytes() == v.tobytes() for u, v in zip(a, b))


def _fused(net: Sequential) -> bool:
    return any(isinstance(c, Fused) for c in net._cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["relu-pool", "pool-relu"])
@pytest.mark.parametrize("pool", [(2, 2, 0), (3, 2, 0), (2, 1, 0), (3, 2, 1), (3, 1, 1)])
@pytest.mark.parametrize("inplace", [False, True])
def test_fused_equals_unfused(dtype, order: str, pool: tuple[int, int, int], inplace: bool) -> None:
    x = _input(dtype)
    fused_net, plain_net = _net(order, pool, dtype, inplace), _net(order, pool, dtype, inplace)
    plain_net.fuse = False
    fused, plain = _run(fused_net, x), _run(plain_net, x)
    assert _same_bits(fused, plain)
    fused_net.forward(x, train=True)
    plain_net.forward(x, train=True)  # training forwards: each pooling keeps its switches
    assert _fused(fused_net) == (order == "pool-relu" or pool[2] == 0)  # a ReLU before a padded window is not fused
    assert not _fused(plain_net)
    i = 2 if order == "relu-pool" else 1
    np.testing.assert_array_equal(fused_net[i].switches, plain_net[i].switches)


def test_layer_by_layer_backward_after_a_fused_forward() -> None:
    for order in ("relu-pool", "pool-relu"):
        x = _input(np.float32)
        fused_net, plain_net = _net(order, (2, 2, 0), np.float32), _net(order, (2, 2, 0), np.float32)
        plain_net.fuse = False
        outs = []
        for net in (fused_net, plain_net):
            y = net.forward(x, train=True)
            g = np.ones_like(y)
            for layer in reversed(net.layers):  # each layer's own backward, as a user may call it
                g = layer.backward(g)
            outs.append((g, net[0].grads["weight"].copy()))
        assert _same_bits(outs[0], outs[1])


@pytest.mark.parametrize("order", ["relu-pool", "pool-relu"])
@pytest.mark.parametrize("where", [1, 2])
def test_injected_gradient_reaches_a_fused_layer(order: str, where: int) -> None:
    x = _input(np.float32)
    outs = []
    for fuse in (True, False):
        net = _net(order, (2, 2, 0), np.float32)
        net.fuse = fuse
        y = net.forward(x, train=False, grad=True)
        assert _fused(net) == fuse
        inject = np.random.default_rng(4).standard_normal(net[where].input_shape if False else net[where]._saved_shape
                                                          if False else _output_shape(net, x, where)).astype(np.float32)
        with inject_gradient(find_place(net, str(where)), inject):
            outs.append((net.backward(np.zeros_like(y)),))
    assert _same_bits(outs[0], outs[1])


def _output_shape(net: Sequential, x: np.ndarray, upto: int) -> tuple[int, ...]:
    h = x
    for layer in net.layers[: upto + 1]:
        h = layer.forward(h, train=False)
    return tuple(h.shape)


def test_watched_shared_mirrored_and_subclassed_layers_are_not_fused() -> None:
    x = _input(np.float32)
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, 3, rng=rng)

    relu = ReLU()
    shared = Sequential(conv, relu, MaxPool2d(2), relu)  # the ReLU is used twice
    shared.forward(x, train=True)
    assert not _fused(shared)

    pool = MaxPool2d(2)
    mirrored = Sequential(Conv2d(2, 3, 3, rng=rng), ReLU(), pool, MaxUnpool2d(pool=pool))
    mirrored.forward(x, train=True)
    assert not _fused(mirrored)

    class MyReLU(ReLU):
        pass

    sub = Sequential(Conv2d(2, 3, 3, rng=rng), MyReLU(), MaxPool2d(2))
    sub.forward(x, train=True)
    assert not _fused(sub)

    at_input = Sequential(ReLU(inplace=True), MaxPool2d(2))  # would overwrite the caller's array
    x2 = x.copy()
    at_input.forward(x2, train=True)
    assert not _fused(at_input) and np.array_equal(x2, np.maximum(x, 0), equal_nan=True)

    plain = Sequential(Conv2d(2, 3, 3, rng=rng), ReLU(), MaxPool2d(2))
    y, outs = capture_outputs(plain, x)  # patches each layer's forward to read its output
    assert sorted(outs) == ["0", "1", "2"] and np.array_equal(outs["2"], y, equal_nan=True)
    assert (outs["1"] >= 0).all() or np.isnan(outs["1"]).any()
    plain.forward(x, train=True)
    assert _fused(plain)


def test_non_float_and_wrong_rank_inputs_take_the_layers_paths() -> None:
    ints = np.arange(2 * 4 * 4 * 1).reshape(2, 4, 4, 1) - 10
    net = Sequential(ReLU(), MaxPool2d(2), Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    y = net.forward(ints, train=True)
    assert y.shape == (2, 2) and not _fused(net)
    flat = Sequential(MaxPool2d(2), ReLU())
    with pytest.raises(Exception, match="rank-4"):
        flat.forward(np.ones((2, 4, 4), np.float32))


def test_evaluation_keeps_no_caches_in_fused_and_plain_layers() -> None:
    from cnnkit.models import create

    for spec in ("conv3x3x1x4,bn,relu,pool2,conv3x3x4x8,pool2,relu,fc10", "base"):
        net = create(spec, np.random.default_rng(0), input_shape=(28, 28, 1))
        net.eval()
        net.forward(np.ones((2, 28, 28, 1), np.float32))
        assert all(layer._cache is None for layer in net.modules()), spec
