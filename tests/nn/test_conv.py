"""Conv2d and ConvTranspose2d layers: parameters, dtype, gradient checks, PyTorch oracle, repr, errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.conv import Conv2d, ConvTranspose2d
from tests.oracle import assert_close, conv_weight_to_torch, nchw, nhwc, require_torch

GRAD_TOL = 1e-7


# --------------------------------------------------------------------------------------------------
# Conv2d
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "c_in,c_out,kernel,groups,bias",
    [(3, 4, 3, 1, True), (4, 6, (2, 3), 2, True), (4, 4, 3, 4, False), (2, 6, 1, 2, True)],
)
def test_conv2d_parameter_shapes_and_init(c_in: int, c_out: int, kernel, groups: int, bias: bool) -> None:
    layer = Conv2d(c_in, c_out, kernel, groups=groups, bias=bias, rng=np.random.default_rng(0))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    assert layer.params["weight"].shape == (kh, kw, c_in // groups, c_out)
    assert ("bias" in layer.params) == bias
    if bias:
        assert layer.params["bias"].shape == (c_out,)
    assert set(layer.grads) == set(layer.params)
    for k, g in layer.grads.items():
        assert g.shape == layer.params[k].shape and g.dtype == layer.params[k].dtype and not g.any()
    assert layer.params["weight"].dtype == np.float32  # default dtype
    bound = 1 / math.sqrt(kh * kw * c_in // groups)  # PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for p in layer.params.values():
        assert np.all(np.abs(p) <= bound)


def test_conv2d_rng_reproducible() -> None:
    a = Conv2d(3, 4, 3, rng=np.random.default_rng(5))
    b = Conv2d(3, 4, 3, rng=np.random.default_rng(5))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_conv2d_output_shape(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    assert Conv2d(3, 5, 3, rng=rng)(x).shape == (2, 5, 7, 5)
    assert Conv2d(3, 5, 3, stride=2, padding=1, rng=rng)(x).shape == (2, 4, 5, 5)
    assert Conv2d(3, 5, (2, 4), stride=(2, 3), padding="same", rng=rng)(x).shape == (2, 4, 3, 5)
    assert Conv2d(3, 6, 3, padding="same", dilation=2, groups=3, rng=rng)(x).shape == (2, 7, 9, 6)
    assert Conv2d(3, 5, 3, padding=((0, 1), (2, 0)), rng=rng)(x).shape == (2, 6, 9, 5)


def test_conv2d_in_place_param_assignment_changes_output(rng: np.random.Generator) -> None:
    layer = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    before = layer(x).copy()
    layer.params["weight"][...] = 0
    layer.params["bias"][...] = np.array([1.0, 2.0, 3.0])
    y = layer(x)
    assert not np.allclose(y, before)
    np.testing.assert_array_equal(y, np.broadcast_to(np.array([1.0, 2.0, 3.0], np.float32), y.shape))
    # replacing the array works too
    layer.params["weight"] = np.ones((3, 3, 2, 3), dtype=np.float32)
    np.testing.assert_allclose(layer(np.ones((1, 3, 3, 2), np.float32))[0, 1, 1], 18 + np.array([1.0, 2.0, 3.0]))


def test_conv2d_float64_params_compute_in_float64(rng: np.random.Generator) -> None:
    layer = Conv2d(2, 3, 3, rng=rng, dtype=np.float64)
    x32 = rng.standard_normal((2, 5, 5, 2)).astype(np.float32)
    y = layer(x32)
    assert y.dtype == np.float64
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float64 and layer.grads["weight"].dtype == np.float64
    # astype converts an existing float32 layer
    layer32 = Conv2d(2, 3, 3, rng=np.random.default_rng(1))
    assert layer32(x32).dtype == np.float32
    layer32.astype(np.float64)
    assert layer32(x32).dtype == np.float64 and layer32.grads["bias"].dtype == np.float64


@pytest.mark.parametrize(
    "c_in,c_out,kwargs",
    [
        (3, 2, dict(kernel_size=3)),
        (3, 2, dict(kernel_size=3, stride=2, padding=1)),
        (2, 3, dict(kernel_size=(2, 3), stride=(1, 2), padding="same", dilation=(2, 1))),
        (4, 4, dict(kernel_size=2, padding=((0, 1), (2, 0)), groups=2)),
        (4, 8, dict(kernel_size=3, padding=1, groups=4)),  # depthwise, multiplier 2
        (3, 2, dict(kernel_size=1, bias=False)),
    ],
)
def test_conv2d_gradcheck(rng: np.random.Generator, c_in: int, c_out: int, kwargs: dict) -> None:
    layer = Conv2d(c_in, c_out, rng=rng, dtype=np.float64, **kwargs)
    errors = check_layer(layer, rng.standard_normal((2, 5, 6, c_in)), rng=rng)
    assert set(errors) == {"x"} | set(layer.params)
    assert max(errors.values()) < GRAD_TOL, errors


def test_conv2d_need_input_grad_false(rng: np.random.Generator) -> None:
    layer = Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64, need_input_grad=False)
    x = rng.standard_normal((2, 4, 5, 2))
    y = layer(x)
    assert layer.backward(np.ones_like(y)) is None
    errors = check_layer(layer, x, check_input=False, rng=rng)
    assert set(errors) == {"weight", "bias"} and max(errors.values()) < GRAD_TOL, errors


def test_conv2d_grads_written_in_place(rng: np.random.Generator) -> None:
    layer = Conv2d(2, 3, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, 4, 4, 2))
    gw, gb = layer.grads["weight"], layer.grads["bias"]
    y = layer(x)
    layer.backward(np.ones_like(y))
    first = gw.copy()
    assert layer.grads["weight"] is gw and layer.grads["bias"] is gb
    np.testing.assert_allclose(gb, [4.0, 4.0, 4.0])  # 2x2 outputs of ones
    layer(x)
    layer.backward(np.ones_like(y))
    np.testing.assert_allclose(gw, first)  # overwritten, not accumulated


def test_conv2d_errors(rng: np.random.Generator) -> None:
    with pytest.raises(StateError, match=re.escape("Conv2d.backward called before forward")):
        Conv2d(2, 3, 3, rng=rng).backward(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ShapeError, match=r"groups=2 must divide in_channels=3 and out_channels=4"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ShapeError, match="kernel_size must be >= 1"):
        Conv2d(3, 4, 0)
    layer = Conv2d(3, 4, 3, rng=rng)
    with pytest.raises(ShapeError, match=r"input has 2 channels \(shape \(1, 5, 5, 2\)\)"):
        layer(np.zeros((1, 5, 5, 2), np.float32))
    with pytest.raises(ShapeError, match=r"kernel 3x3 .* input 2x2"):
        layer(np.zeros((1, 2, 2, 3), np.float32))
    y = layer(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ShapeError, match=r"dy has shape \(1, 3, 3, 3\), expected \(1, 3, 3, 4\)"):
        layer.backward(np.zeros((1, 3, 3, 3), np.float32))
    assert y.shape == (1, 3, 3, 4)


def test_conv2d_repr() -> None:
    layer = Conv2d(3, 8, 3, stride=2, padding="same", dilation=1, groups=1, bias=False, rng=np.random.default_rng(0))
    r = repr(layer)
    assert r.startswith("Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2)")
    assert "padding='same'" in r and "groups=1" in r and "bias=False" in r


@pytest.mark.oracle
def test_conv2d_layer_matches_pytorch(rng: np.random.Generator) -> None:
    torch = require_torch()
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, rng=rng)
    ref = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    with torch.no_grad():
        ref.weight.copy_(conv_weight_to_torch(layer.params["weight"]))
        ref.bias.copy_(torch.tensor(layer.params["bias"]))
    x = rng.standard_normal((2, 7, 6, 4)).astype(np.float32)
    xt = nchw(x)
    yt = ref(xt)
    y = layer(x)
    assert_close(y, nhwc(yt), np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(layer.backward(dy), nhwc(xt.grad), np.float32)
    assert_close(layer.grads["weight"], ref.weight.grad.numpy().transpose(2, 3, 1, 0), np.float32)
    assert_close(layer.grads["bias"], ref.bias.grad.numpy(), np.float32)


# --------------------------------------------------------------------------------------------------
# ConvTranspose2d
# --------------------------------------------------------------------------------------------------
def test_conv_transpose2d_parameter_shapes_and_init() -> None:
    layer = ConvTranspose2d(3, 5, (2, 3), stride=2, rng=np.random.default_rng(0))
    assert layer.params["weight"].shape == (2, 3, 3, 5)
    assert layer.params["bias"].shape == (5,)
    assert layer.params["weight"].dtype == np.float32
    bound = 1 / math.sqrt(2 * 3 * 5)  # PyTorch: fan_in from weight dim 1 (out_channels) * kh * kw
    assert all(np.all(np.abs(p) <= bound) for p in layer.params.values())
    assert "bias" not in ConvTranspose2d(3, 5, 2, bias=False).params


@pytest.mark.parametrize(
    "kwargs,in_hw,out_hw",
    [
        (dict(kernel_size=3), (4, 5), (6, 7)),
        (dict(kernel_size=2, stride=2), (4, 5), (8, 10)),
        (dict(kernel_size=3, stride=2, padding=1, output_padding=1), (4, 5), (8, 10)),
        (dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2)), (4, 5), (7, 15)),
    ],
)
def test_conv_transpose2d_output_shape(rng: np.random.Generator, kwargs: dict, in_hw: tuple, out_hw: tuple) -> None:
    layer = ConvTranspose2d(3, 2, rng=rng, **kwargs)
    assert layer(np.zeros((2, *in_hw, 3), np.float32)).shape == (2, *out_hw, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, stride=2, padding=1, output_padding=1),
        dict(kernel_size=(2, 3), stride=(3, 1), dilation=(1, 2)),
        dict(kernel_size=2, stride=2, bias=False),
    ],
)
def test_conv_transpose2d_gradcheck(rng: np.random.Generator, kwargs: dict) -> None:
    layer = ConvTranspose2d(3, 2, rng=rng, dtype=np.float64, **kwargs)
    errors = check_layer(layer, rng.standard_normal((2, 3, 4, 3)), rng=rng)
    assert set(errors) == {"x"} | set(layer.params)
    assert max(errors.values()) < GRAD_TOL, errors


def test_conv_transpose2d_dtype_and_in_place(rng: np.random.Generator) -> None:
    layer = ConvTranspose2d(2, 3, 2, stride=2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float64
    layer.params["weight"][...] = 0
    np.testing.assert_array_equal(layer(x), np.broadcast_to(layer.params["bias"], y.shape))


def test_conv_transpose2d_errors(rng: np.random.Generator) -> None:
    layer = ConvTranspose2d(3, 2, 2, rng=rng)
    with pytest.raises(StateError, match=re.escape("ConvTranspose2d.backward called before forward")):
        layer.backward(np.zeros((1, 3, 3, 2)))
    with pytest.raises(ShapeError, match=r"C_in = 4"):
        layer(np.zeros((1, 2, 2, 4), np.float32))


def test_conv_transpose2d_repr() -> None:
    r = repr(ConvTranspose2d(3, 5, 4, stride=2, padding=1, rng=np.random.default_rng(0)))
    assert r == "ConvTranspose2d(3, 5, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), output_padding=(0, 0), dilation=(1, 1))"


@pytest.mark.oracle
def test_conv_transpose2d_layer_matches_pytorch(rng: np.random.Generator) -> None:
    torch = require_torch()
    layer = ConvTranspose2d(3, 4, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2), rng=rng)
    ref = torch.nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2))
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.params["weight"].transpose(2, 3, 0, 1).copy()))
        ref.bias.copy_(torch.tensor(layer.params["bias"]))
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    xt = nchw(x)
    yt = ref(xt)
    y = layer(x)
    assert_close(y, nhwc(yt), np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(layer.backward(dy), nhwc(xt.grad), np.float32)
    assert_close(layer.grads["weight"], ref.weight.grad.numpy().transpose(2, 3, 0, 1), np.float32)
    assert_close(layer.grads["bias"], ref.bias.grad.numpy(), np.float32)
