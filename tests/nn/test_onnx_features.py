"""The layers' side of the ONNX operator features: pooling padding forms, dilation and allow_large_padding;
ConvTranspose2d groups and asymmetric pads; PReLU(shape=...); Upsample to sizes and non-integer scales with
ONNX's coordinate modes; BatchNorm's running_var_unbiased; SoftmaxCrossEntropy and NLLLoss options.
Layer gradient checks, PyTorch modules as oracle, configurations saved and rebuilt, defaults unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import check_layer, check_loss
from cnnkit.nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    ConvTranspose2d,
    CrossEntropyLoss,
    LPPool2d,
    MaxPool2d,
    MaxUnpool2d,
    NLLLoss,
    PReLU,
    Sequential,
    SoftmaxCrossEntropy,
    Upsample,
)
from cnnkit.nn.architecture import from_data, to_data
from cnnkit.ops.pool import avg_pool2d_forward, lp_pool2d_forward, max_pool2d_forward, resize_nearest2d_forward
from tests.oracle import assert_close, nchw, nhwc, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

GRAD_TOL = 1e-7


def rebuilt(layer):
    """The layer built back from its saved configuration (JSON-able data: tuples become lists)."""
    import json

    return from_data(json.loads(json.dumps(to_data(layer))), dtype=np.float64)


def _x(rng: np.random.Generator, shape=(2, 7, 6, 3)) -> np.ndarray:
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------------------------------
# pooling layers
# ---------------------------------------------------------------------------------------------
POOLS = {
    "max_asym": (lambda: MaxPool2d(3, 2, ((0, 1), (1, 0)), ceil_mode=True),
                 lambda x: max_pool2d_forward(x, 3, 2, ((0, 1), (1, 0)), True)[0]),
    "max_same_lower": (lambda: MaxPool2d(2, 2, "same_lower"), lambda x: max_pool2d_forward(x, 2, 2, "same_lower")[0]),
    "max_large": (lambda: MaxPool2d(2, 1, ((2, 0), (0, 1)), dilation=2, allow_large_padding=True),
                  lambda x: max_pool2d_forward(x, 2, 1, ((2, 0), (0, 1)), False, 2, allow_large_padding=True)[0]),
    "avg_dilated": (lambda: AvgPool2d(3, 1, ((1, 0), (1, 1)), count_include_pad=False, dilation=(2, 1)),
                    lambda x: avg_pool2d_forward(x, 3, 1, ((1, 0), (1, 1)), False, False, None, (2, 1))[0]),
    "avg_ceil": (lambda: AvgPool2d(3, 2, "same_upper", ceil_mode=True), lambda x: avg_pool2d_forward(x, 3, 2, "same_upper", True)[0]),
    "avg_large": (lambda: AvgPool2d(2, 2, 2, allow_large_padding=True),
                  lambda x: avg_pool2d_forward(x, 2, 2, 2, allow_large_padding=True)[0]),
    "lp_padded": (lambda: LPPool2d(3, 3, 2, padding=((1, 0), (0, 1)), dilation=(1, 2)),
                  lambda x: lp_pool2d_forward(x, 3, 3, 2, False, ((1, 0), (0, 1)), (1, 2))[0]),
    "lp_large": (lambda: LPPool2d(2, 2, padding="valid", ceil_mode=True), lambda x: lp_pool2d_forward(x, 2, 2, None, True)[0]),
}


@pytest.mark.parametrize("name", list(POOLS))
def test_pool_layers(name: str, rng: np.random.Generator) -> None:
    make, op = POOLS[name]
    layer = make()
    x = _x(rng)
    y = layer(x)
    np.testing.assert_array_equal(y, op(x))
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    np.testing.assert_array_equal(rebuilt(layer)(x), y)  # every constructor argument survives saving
    assert rebuilt(layer).config() == layer.config()
    errors = check_layer(layer, x + np.where(x >= 0, 0.05, -0.05), rng=rng)
    assert max(errors.values()) < GRAD_TOL, errors


def test_pool_layer_padding_checks() -> None:
    with pytest.raises(ShapeError, match="allow_large_padding"):
        MaxPool2d(3, padding=((0, 2), (0, 0)))
    with pytest.raises(ShapeError, match="allow_large_padding"):
        LPPool2d(2, 3, padding=2)
    with pytest.raises(ShapeError, match="same_upper"):
        AvgPool2d(2, padding="same")
    assert MaxPool2d(3, padding=((0, 2), (0, 0)), allow_large_padding=True).padding == ((0, 2), (0, 0))
    assert MaxPool2d(3, padding=((1, 1), (0, 0))).padding == (1, 0)
    # defaults unchanged: configurations and representations of the layers built as before
    assert MaxPool2d(3, padding=1).config()["padding"] == [1, 1]
    assert repr(AvgPool2d(2)) == "AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False, count_include_pad=True)"
    assert repr(LPPool2d(2, 2)) == "LPPool2d(norm_type=2, kernel_size=(2, 2), stride=(2, 2), ceil_mode=False)"
    assert "allow_large_padding=True" in repr(MaxPool2d(2, padding=2, allow_large_padding=True))


def test_unpool_mirrors_a_pool_with_asymmetric_or_named_padding(rng: np.random.Generator) -> None:
    x = _x(rng, (1, 7, 6, 2))
    for padding in (((0, 1), (1, 0)), "same_upper"):
        pool = MaxPool2d(2, padding=padding)
        net = Sequential(pool, MaxUnpool2d(pool=pool))
        y = net(x)
        assert y.shape == x.shape
        kept = y != 0  # each maximum back at its place
        np.testing.assert_array_equal(y[kept], x[kept])
        assert net.output_shape(x.shape[1:]) == x.shape[1:]
    assert MaxUnpool2d(2, padding=0).describe((3, 3, 1)).out_shape == (6, 6, 1)


# ---------------------------------------------------------------------------------------------
# ConvTranspose2d
# ---------------------------------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
    dict(kernel_size=(2, 3), stride=(2, 1), output_padding=(1, 0), dilation=(1, 2), groups=3, bias=False),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, output_padding=1, groups=6),
])
def test_conv_transpose_groups_match_torch(kwargs: dict, rng: np.random.Generator) -> None:
    torch = require_torch()
    layer = ConvTranspose2d(6, 12, rng=rng, **kwargs)
    assert layer.params["weight"].shape[2:] == (6, 12 // kwargs["groups"])
    ref = torch.nn.ConvTranspose2d(6, 12, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.params["weight"].transpose(2, 3, 0, 1).copy()))
        if ref.bias is not None:
            ref.bias.copy_(torch.tensor(layer.params["bias"]))
    x = rng.standard_normal((2, 4, 3, 6)).astype(np.float32)
    xt = nchw(x)
    yt = ref(xt)
    y = layer(x)
    assert_close(y, nhwc(yt), np.float32)
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(layer.backward(dy), nhwc(xt.grad), np.float32)
    assert_close(layer.grads["weight"], ref.weight.grad.numpy().transpose(2, 3, 0, 1), np.float32)
    bound = 1 / np.sqrt(np.prod(layer.kernel_size) * 12 // kwargs["groups"])  # PyTorch's fan_in: weight dim 1 * kh * kw
    assert np.all(np.abs(layer.params["weight"]) <= bound)


def test_conv_transpose_groups_and_asymmetric_pads_layer(rng: np.random.Generator) -> None:
    layer = ConvTranspose2d(4, 6, 3, stride=2, padding=((0, 1), (2, 1)), output_padding=(1, 0), groups=2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 4, 4))
    y = layer(x)
    assert y.shape == (2, (3 - 1) * 2 - 1 + 3 + 1, (4 - 1) * 2 - 3 + 3, 6)
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    errors = check_layer(layer, x, rng=rng)
    assert max(errors.values()) < GRAD_TOL, errors
    again = rebuilt(layer)
    again.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(again(x), y)
    assert repr(layer).endswith("padding=((0, 1), (2, 1)), output_padding=(1, 0), dilation=(1, 1), groups=2)")
    with pytest.raises(ShapeError, match="groups=4"):
        ConvTranspose2d(6, 6, 3, groups=4)
    # groups=1: the weight, the configuration and the representation as before
    plain = ConvTranspose2d(3, 5, 4, stride=2, padding=1, rng=np.random.default_rng(0))
    assert plain.params["weight"].shape == (4, 4, 3, 5) and plain.config()["padding"] == [1, 1]
    assert repr(plain) == "ConvTranspose2d(3, 5, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), output_padding=(0, 0), dilation=(1, 1))"


# ---------------------------------------------------------------------------------------------
# PReLU with broadcasting slopes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 2), (3, 1), (1, 1, 2)])
def test_prelu_shape(shape, rng: np.random.Generator) -> None:
    layer = PReLU(shape=shape, dtype=np.float64)
    layer.params["weight"][...] = rng.uniform(-0.5, 0.7, size=shape)
    assert layer.num_parameters == int(np.prod(shape))
    x = rng.standard_normal((3, 4, 3, 2))
    x += np.where(x >= 0, 0.05, -0.05)
    y = layer(x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, x * layer.params["weight"]))
    errors = check_layer(layer, x, rng=rng)
    assert max(errors.values()) < GRAD_TOL, errors
    again = rebuilt(layer)
    assert again.params["weight"].shape == shape and again.config() == layer.config()


def test_prelu_defaults_and_errors() -> None:
    assert PReLU(3).config() == {"num_parameters": 3, "shape": None}
    assert repr(PReLU(3)) == "PReLU(num_parameters=3)"
    assert PReLU(shape=(2, 2), num_parameters=4).params["weight"].shape == (2, 2)
    with pytest.raises(ValueError, match="num_parameters=3"):
        PReLU(3, shape=(2, 2))
    with pytest.raises(ShapeError, match="does not broadcast"):
        PReLU(shape=(5, 2))(np.zeros((1, 4, 3, 2)))


# ---------------------------------------------------------------------------------------------
# Upsample with ONNX's resize options
# ---------------------------------------------------------------------------------------------
def test_upsample_integer_default_unchanged() -> None:
    up = Upsample(2)
    assert repr(up) == "Upsample(scale_factor=(2, 2), mode='nearest')"
    assert up.config() == {"scale_factor": [2, 2], "mode": "nearest", "size": None, "coordinate_transformation_mode": None,
                           "nearest_mode": None}
    with pytest.raises(ValueError, match=r"scale.*coordinate_transformation_mode"):
        Upsample(1.5)  # non-integer factors need the convention named
    with pytest.raises(ValueError, match="size"):
        Upsample(size=(4, 4))
    with pytest.raises(ValueError, match="exactly one"):
        Upsample(2, size=4, coordinate_transformation_mode="asymmetric")
    with pytest.raises(ValueError, match="nearest_mode"):
        Upsample(2, nearest_mode="nearest")
    with pytest.raises(ValueError, match="bilinear"):
        Upsample(2, mode="bilinear")


@pytest.mark.parametrize("kwargs", [
    dict(size=(5, 9), coordinate_transformation_mode="align_corners", nearest_mode="round_prefer_ceil"),
    dict(scale_factor=(1.5, 0.6), coordinate_transformation_mode="half_pixel"),
    dict(scale_factor=2.5, mode="nearest-exact"),
    dict(size=3, nearest_mode="floor"),
])
def test_upsample_resize(kwargs: dict, rng: np.random.Generator) -> None:
    layer = Upsample(**kwargs)
    x = _x(rng, (2, 4, 5, 3))
    y = layer(x)
    ctm = layer.coordinate_transformation_mode
    nm = layer.nearest_mode
    np.testing.assert_array_equal(y, resize_nearest2d_forward(x, layer.size, layer.scale_factor, ctm, nm)[0])
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    np.testing.assert_array_equal(rebuilt(layer)(x), y)
    errors = check_layer(layer, x, rng=rng)
    assert max(errors.values()) < GRAD_TOL, errors
    assert "coordinate_transformation_mode" in repr(layer)


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_upsample_matches_torch(mode: str, rng: np.random.Generator) -> None:
    torch = require_torch()
    ours_args = dict(mode="nearest-exact") if mode == "nearest-exact" else dict(coordinate_transformation_mode="asymmetric",
                                                                                  nearest_mode="floor")
    for target in (dict(size=(7, 3)), dict(scale_factor=(1.5, 2.0)), dict(scale_factor=0.5)):
        ours = Upsample(**target, **ours_args)
        theirs = torch.nn.Upsample(**target, mode=mode)
        x = rng.standard_normal((2, 4, 6, 3))
        xt = nchw(x)
        yt = theirs(xt)
        y = ours(x)
        dy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        assert_close(y, nhwc(yt))
        assert_close(ours.backward(dy), nhwc(xt.grad))


# ---------------------------------------------------------------------------------------------
# batch normalisation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,shape", [(BatchNorm2d, (4, 3, 3, 2)), (BatchNorm1d, (6, 2))])
def test_batch_norm_running_var_unbiased(cls, shape, rng: np.random.Generator) -> None:
    x = rng.standard_normal(shape)
    pytorch_like, onnx_like = cls(2, dtype=np.float64), cls(2, running_var_unbiased=False, dtype=np.float64)
    np.testing.assert_array_equal(pytorch_like(x), onnx_like(x))  # the same normalisation
    m = x.size // 2
    var = x.reshape(-1, 2).var(axis=0)
    np.testing.assert_allclose(pytorch_like.buffers["running_var"], 0.9 + 0.1 * var * m / (m - 1), rtol=1e-12)
    np.testing.assert_allclose(onnx_like.buffers["running_var"], 0.9 + 0.1 * var, rtol=1e-12)
    assert pytorch_like.config()["running_var_unbiased"] is True
    again = rebuilt(onnx_like)
    assert again.running_var_unbiased is False and "running_var_unbiased=False" in repr(again)
    assert "running_var_unbiased" not in repr(pytorch_like)


@pytest.mark.oracle
def test_batch_norm_default_matches_torch(rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((4, 3, 3, 2))
    ours, theirs = BatchNorm2d(2, dtype=np.float64), torch.nn.BatchNorm2d(2, dtype=torch.float64)
    for _ in range(2):
        ours(x)
        theirs(nchw(x))
    assert_close(ours.buffers["running_var"], theirs.running_var.detach().numpy())


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_layers_match_torch(reduction: str, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((3, 2, 2, 4))  # NHWC scores, classes last
    labels = rng.integers(0, 4, size=(3, 2, 2))
    labels[0, 0, 0] = labels[2, 1, 1] = 7
    w = rng.uniform(0.5, 2.0, size=4)
    logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    pairs = [
        (SoftmaxCrossEntropy(w, 7, reduction), x, torch.nn.CrossEntropyLoss(torch.tensor(w), ignore_index=7, reduction=reduction)),
        (NLLLoss(w, 7, reduction), logp, torch.nn.NLLLoss(torch.tensor(w), ignore_index=7, reduction=reduction)),
    ]
    for ours, inp, theirs in pairs:
        value = ours(inp, labels)
        dy = rng.standard_normal(labels.shape) if reduction == "none" else None
        g = ours.backward(dy)
        xt = nchw(inp)
        vt = theirs(xt, torch.tensor(labels))
        vt.backward(None if dy is None else torch.tensor(dy))
        if reduction == "none":
            assert isinstance(value, np.ndarray) and value.shape == labels.shape
        else:
            assert type(value) is float
        assert_close(value, vt.detach().numpy())
        assert_close(g, nhwc(xt.grad))


def test_loss_layers_contract(rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 3))
    labels = np.array([0, 2, -1, 1, 2])
    for loss in (SoftmaxCrossEntropy(weight=[1.0, 2.0, 0.5], ignore_index=-1), NLLLoss([1.0, 2.0, 0.5], -1, "sum")):
        assert check_loss(loss, x, labels) < 1e-8
    none = CrossEntropyLoss(reduction="none")
    per_example = none(x, labels.clip(0))
    total = SoftmaxCrossEntropy(reduction="sum")
    assert abs(total(x, labels.clip(0)) - float(per_example.sum())) < 1e-12
    np.testing.assert_allclose(none.backward(), total.backward(), rtol=1e-13)  # dy = ones: the sum's gradient
    assert per_example.shape == (5,)
    assert repr(SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()"
    assert repr(NLLLoss([1, 2], 3, "sum")) == "NLLLoss(weight=[1, 2], ignore_index=3, reduction='sum')"
    with pytest.raises(ValueError, match="reduction"):
        NLLLoss(reduction="average")
    with pytest.raises(ValueError, match="ignore_index"):
        SoftmaxCrossEntropy(ignore_index=1.5)  # type: ignore[arg-type]  # wrong on purpose
