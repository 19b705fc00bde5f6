"""LocalResponseNorm and ChannelPad layers: gradient checks, PyTorch oracle, describe/config, saving as data."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import check_layer
from cnnkit.nn import ChannelPad, Conv2d, LocalResponseNorm, ReLU, Sequential
from cnnkit.nn.architecture import from_data, to_data
from tests.oracle import assert_close, nchw, nhwc, require_torch


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("shape", [(2, 3, 3, 6), (3, 4)])
@pytest.mark.parametrize("train", [True, False])
def test_lrn_gradcheck(size, shape, train, rng):
    errors = check_layer(LocalResponseNorm(size, alpha=0.8, beta=0.75, k=2.0), rng.standard_normal(shape) * 2, train=train)
    assert set(errors) == {"x"} and errors["x"] < 1e-8


def test_lrn_contract():
    lrn = LocalResponseNorm(5)
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)  # PyTorch's defaults
    assert lrn.params == {} and lrn.elementwise
    info = lrn.describe((55, 55, 96))
    assert info.out_shape == (55, 55, 96) and info.params == 0 and info.flops == 9 * 55 * 55 * 96
    assert lrn.config() == {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
    assert repr(lrn) == "LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=1)"
    with pytest.raises(ValueError, match="size"):
        LocalResponseNorm(0)


def test_lrn_and_channel_pad_saved_as_data(rng):
    net = Sequential(Conv2d(2, 4, 3, padding=1, rng=rng), LocalResponseNorm(3, 0.5, 0.6, 1.5), ReLU(), ChannelPad(2))
    again = from_data(to_data(net))
    again.load_state_dict(net.state_dict())
    x = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x, train=False), net.forward(x, train=False))
    assert again[1].config() == net[1].config() and again[3].pad == 2


@pytest.mark.oracle
def test_lrn_oracle_layer(rng):
    torch = require_torch()
    x = rng.standard_normal((2, 5, 4, 6)) * 3
    dy = rng.standard_normal(x.shape)
    ours = LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    xt = nchw(x)
    yt = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(xt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(ours.forward(x, train=True), nhwc(yt))
    assert_close(ours.backward(dy), nhwc(xt.grad))


@pytest.mark.parametrize("shape", [(2, 3, 3, 2), (3, 4)])
def test_channel_pad(shape, rng):
    pad = ChannelPad(3)
    x = rng.standard_normal(shape)
    y = pad(x)
    assert y.shape == (*shape[:-1], shape[-1] + 3)
    np.testing.assert_array_equal(y[..., : shape[-1]], x)
    assert not y[..., shape[-1] :].any()
    assert check_layer(ChannelPad(3), x, train=True)["x"] < 1e-9
    assert pad.describe(shape[1:]).out_shape == (*shape[1:-1], shape[-1] + 3)
    with pytest.raises(ShapeError, match="pad must be"):
        ChannelPad(-1)
