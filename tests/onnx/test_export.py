"""cnnkit.onnx.export: every zoo model and a grid of layer configurations, checked with onnx.checker, run in
onnxruntime against cnnkit's evaluation output, and imported back (export -> import -> the same outputs).

Tolerance: see tests/onnx/helpers.py (rtol 1e-4, atol 1e-5 times the output's scale).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnkit.nn as cnnkit_nn
import cnnkit.onnx
from cnnkit.data import Preprocessor
from cnnkit.errors import OnnxError
from cnnkit.models import create
from cnnkit.nn import (
    ELU,
    Add,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Concat,
    Concatenate,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    Graph,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    LPPool2d,
    MaxPool2d,
    MaxUnpool2d,
    PReLU,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    Upsample,
)
from tests.onnx.conftest import DIFFERENCES
from tests.onnx.helpers import assert_close, export_and_compare, nchw, onnx, randomize_batch_norms, run_ort, slow

SHAPE = (9, 10, 4)  # one example of the layer grid: H x W x C, odd and even sizes
R = np.random.default_rng(7)


def _rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _prelu(n: int) -> PReLU:
    layer = PReLU(n)
    layer.params["weight"][...] = R.uniform(-0.5, 0.5, n)
    return layer


def _prelu_shaped(shape: tuple[int, ...]) -> PReLU:
    layer = PReLU(shape=shape)
    layer.params["weight"][...] = R.uniform(-0.5, 0.5, shape)
    return layer


def _bn2d(**kw: Any) -> BatchNorm2d:
    layer = BatchNorm2d(4, **kw)
    randomize_batch_norms(layer, R)
    return layer


def _unpool(**kw: Any) -> Sequential:
    pool = MaxPool2d(**kw)
    return Sequential(Conv2d(4, 4, 1, rng=_rng()), pool, ReLU(), MaxUnpool2d(pool=pool))


def _graph() -> Graph:
    rng = _rng()
    g = Graph()
    a = g.add("a", Conv2d(4, 6, 3, padding=1, rng=rng), "input")
    b = g.add("b", Conv2d(4, 6, 1, rng=rng), "input")
    s = g.add("sum", Add(), a, b, "a")  # three inputs
    r = g.add("relu", ReLU(), s)
    c = g.add("cat", Concatenate(), r, "input")  # channels
    h = g.add("cat_h", Concatenate(axis=1), c, c)  # along H
    g.add("dead", Conv2d(4, 2, 1, rng=rng), "input")  # not on the way to the output: not exported
    g.set_output(g.add("pool", MaxPool2d(2), h))
    return g


def _shared() -> Sequential:
    conv = Conv2d(4, 4, 3, padding=1, rng=_rng())
    return Sequential(conv, ReLU(), conv, Tanh(), conv)  # one layer at three places: one set of initializers


# name -> (factory of the network, per-example input shape, whether import gives the network back)
CASES: dict[str, tuple[Callable[[], Any], tuple[int, ...], bool]] = {
    "conv_k3": (lambda: Conv2d(4, 5, 3, rng=_rng()), SHAPE, True),
    "conv_s2_p1": (lambda: Conv2d(4, 5, 3, stride=2, padding=1, rng=_rng()), SHAPE, True),
    "conv_rect_asym": (lambda: Conv2d(4, 5, (3, 2), stride=(2, 1), padding=((1, 0), (2, 1)), rng=_rng()), SHAPE, True),
    "conv_same_k4": (lambda: Conv2d(4, 5, 4, padding="same", rng=_rng()), SHAPE, True),
    "conv_same_s2": (lambda: Conv2d(4, 5, 3, stride=2, padding="same", rng=_rng()), SHAPE, True),
    "conv_dilated": (lambda: Conv2d(4, 5, 3, padding=2, dilation=2, rng=_rng()), SHAPE, True),
    "conv_groups": (lambda: Conv2d(4, 6, 3, groups=2, rng=_rng()), SHAPE, True),
    "conv_depthwise_nobias": (lambda: Conv2d(4, 4, 3, padding=1, groups=4, bias=False, rng=_rng()), SHAPE, True),
    "convT_s2_p1_op1": (lambda: ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, rng=_rng()), SHAPE, True),
    "convT_rect": (lambda: ConvTranspose2d(4, 3, (2, 3), stride=(2, 1), rng=_rng()), SHAPE, True),
    "convT_dilated_nobias": (lambda: ConvTranspose2d(4, 3, 3, dilation=2, bias=False, rng=_rng()), SHAPE, True),
    "maxpool_k2": (lambda: MaxPool2d(2), SHAPE, True),
    "maxpool_k3_s2_p1": (lambda: MaxPool2d(3, 2, 1), SHAPE, True),
    "maxpool_ceil": (lambda: MaxPool2d(3, 2, ceil_mode=True), SHAPE, True),
    "maxpool_dilated": (lambda: MaxPool2d(2, 1, dilation=2), SHAPE, True),
    "maxpool_rect": (lambda: MaxPool2d((2, 3), (1, 2)), SHAPE, True),
    "avgpool_k2": (lambda: AvgPool2d(2), SHAPE, True),
    "avgpool_p1_include": (lambda: AvgPool2d(3, 2, 1, count_include_pad=True), SHAPE, True),
    "avgpool_p1_exclude": (lambda: AvgPool2d(3, 2, 1, count_include_pad=False), SHAPE, True),
    "avgpool_ceil_p1": (lambda: AvgPool2d(3, 2, 1, ceil_mode=True), SHAPE, True),
    "avgpool_ceil_exclude": (lambda: AvgPool2d(2, 3, 1, ceil_mode=True, count_include_pad=False), SHAPE, True),
    "avgpool_divisor": (lambda: AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4), SHAPE, False),
    "lppool_p2": (lambda: LPPool2d(2, 2), SHAPE, True),
    "lppool_p1_ceil": (lambda: LPPool2d(1, 3, 2, ceil_mode=True), SHAPE, True),
    "lppool_p3_s1": (lambda: LPPool2d(3, 2, 1), SHAPE, True),
    "global_avg": (lambda: Sequential(GlobalAvgPool2d(), Flatten()), SHAPE, True),
    "global_max": (lambda: GlobalMaxPool2d(), SHAPE, True),
    "unpool_k2": (lambda: _unpool(kernel_size=2), (8, 10, 4), True),
    "unpool_odd": (lambda: _unpool(kernel_size=2), SHAPE, True),
    "unpool_k3_s2_p1": (lambda: _unpool(kernel_size=3, stride=2, padding=1), SHAPE, True),
    "upsample_2": (lambda: Upsample(2), SHAPE, True),
    "upsample_2x3": (lambda: Upsample((2, 3)), SHAPE, True),
    "relu": (lambda: ReLU(), SHAPE, True),
    "sigmoid": (lambda: Sigmoid(), SHAPE, True),
    "tanh": (lambda: Tanh(), SHAPE, True),
    "leaky_relu": (lambda: LeakyReLU(0.1), SHAPE, True),
    "prelu_one": (lambda: _prelu(1), SHAPE, True),
    "prelu_channels": (lambda: _prelu(4), SHAPE, True),
    "prelu_features": (lambda: Sequential(Flatten(), _prelu(360)), SHAPE, True),
    "elu": (lambda: ELU(0.5), SHAPE, True),
    "softplus": (lambda: Softplus(), SHAPE, True),
    "softplus_beta": (lambda: Softplus(beta=2.0), SHAPE, False),
    "softplus_threshold": (lambda: Softplus(beta=0.5, threshold=1.0), SHAPE, False),
    "softmax_channels": (lambda: Softmax(), SHAPE, True),
    "softmax_features": (lambda: Sequential(Flatten(), Softmax()), SHAPE, True),
    "log_softmax": (lambda: LogSoftmax(), SHAPE, True),
    "batchnorm2d": (lambda: _bn2d(), SHAPE, True),
    "batchnorm2d_no_affine": (lambda: _bn2d(affine=False, eps=1e-3), SHAPE, True),
    "batchnorm1d": (lambda: Sequential(Flatten(), Linear(360, 6, rng=_rng()), _bn1d(6)), SHAPE, True),
    "batchnorm1d_sequence": (lambda: Sequential(Flatten(1, 2), _bn1d(4)), SHAPE, False),
    "dropout": (lambda: Dropout(0.3), SHAPE, True),
    "linear": (lambda: Sequential(Flatten(), Linear(360, 7, rng=_rng())), SHAPE, True),
    "linear_nobias_features": (lambda: Linear(12, 5, bias=False, rng=_rng()), (12,), True),
    "flatten_nhwc": (lambda: Flatten(), SHAPE, True),
    "flatten_nchw": (lambda: Flatten(order="nchw"), SHAPE, True),
    "flatten_partial": (lambda: Flatten(1, 2), SHAPE, False),
    "identity": (lambda: Identity(), SHAPE, True),
    "residual_identity": (lambda: Residual(Sequential(Conv2d(4, 4, 3, padding=1, rng=_rng()), ReLU())), SHAPE, True),
    "residual_shortcut": (lambda: Residual(Conv2d(4, 6, 3, 2, 1, rng=_rng()), Conv2d(4, 6, 1, 2, rng=_rng())), SHAPE, True),
    "concat": (lambda: Concat(Conv2d(4, 2, 1, rng=_rng()), Sequential(MaxPool2d(3, 1, 1), Conv2d(4, 3, 1, rng=_rng()))), SHAPE, True),
    "concat_features": (lambda: Sequential(Flatten(), Concat(Linear(360, 3, rng=_rng()), Identity())), SHAPE, True),
    "graph": (_graph, SHAPE, True),
    "shared_layer": (_shared, SHAPE, True),  # imported as three copies: the same outputs
    "empty_sequential": (lambda: Sequential(), SHAPE, True),
}


def _takes(cls: type, *names: str) -> bool:
    return all(n in inspect.signature(cls).parameters for n in names)


# the layers' newer arguments (asymmetric and ONNX-named pooling pads, grouped transposed convolutions, resize
# conventions, channel padding, LRN), where this tree's cnnkit.nn has them; opset 19 for AveragePool's dilations
NEWER: dict[str, tuple[Callable[[], Any], tuple[int, ...], bool]] = {}
if _takes(MaxPool2d, "allow_large_padding"):
    NEWER.update({
        "maxpool_asym": (lambda: MaxPool2d(3, 2, ((0, 1), (1, 0))), SHAPE, True),
        "maxpool_same_upper": (lambda: MaxPool2d(2, 1, "same_upper"), SHAPE, True),
        "avgpool_same_lower_exclude": (lambda: AvgPool2d(3, 2, "same_lower", count_include_pad=False), SHAPE, True),
        "avgpool_asym_ceil": (lambda: AvgPool2d(3, 2, ((1, 0), (0, 1)), ceil_mode=True), SHAPE, True),
    })
if _takes(AvgPool2d, "dilation"):
    NEWER["avgpool_dilated"] = (lambda: AvgPool2d(2, 1, dilation=(2, 1)), SHAPE, True)
if _takes(LPPool2d, "padding", "dilation"):
    NEWER["lppool_padded_dilated"] = (lambda: LPPool2d(2, 3, 2, padding=1, dilation=(1, 2)), SHAPE, True)
if _takes(ConvTranspose2d, "groups"):
    NEWER.update({
        "convT_groups_asym": (lambda: ConvTranspose2d(4, 6, 3, stride=2, padding=((0, 1), (1, 1)), groups=2, rng=_rng()), SHAPE, True),
        "convT_depthwise": (lambda: ConvTranspose2d(4, 4, 2, stride=2, groups=4, rng=_rng()), SHAPE, True),
    })
if _takes(Upsample, "coordinate_transformation_mode", "size"):
    NEWER.update({
        "resize_scale_1_5": (lambda: Upsample(1.5, coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"),
                             SHAPE, True),
        "resize_size_asymmetric": (lambda: Upsample(size=(13, 7), coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                                   SHAPE, True),
        "resize_nearest_exact": (lambda: Upsample(2.5, mode="nearest-exact"), SHAPE, True),
    })
if hasattr(cnnkit_nn, "ChannelPad"):
    NEWER["channel_pad"] = (  # ResNet's option-A shortcut
        lambda: Residual(Conv2d(4, 6, 3, 2, 1, rng=_rng()), Sequential(MaxPool2d(1, 2), cnnkit_nn.ChannelPad(2))), SHAPE, True)
    NEWER["channel_pad_only"] = (lambda: cnnkit_nn.ChannelPad(3), SHAPE, True)
if _takes(PReLU, "shape"):
    NEWER["prelu_per_column"] = (lambda: _prelu_shaped((10, 1)), SHAPE, True)
    NEWER["prelu_per_element"] = (lambda: _prelu_shaped((9, 10, 4)), SHAPE, True)
if hasattr(cnnkit_nn, "LocalResponseNorm"):
    NEWER["lrn"] = (lambda: cnnkit_nn.LocalResponseNorm(5, 1e-2, 0.75, 2.0), SHAPE, True)
CASES.update(NEWER)
OPSET = {"avgpool_dilated": 19, "lppool_padded_dilated": 18}


def _bn1d(c: int) -> BatchNorm1d:
    layer = BatchNorm1d(c)
    randomize_batch_norms(layer, R)
    return layer


def _outputs(net: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(net.forward(x, train=False))


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_grid(case: str, tmp_path: Path) -> None:
    factory, shape, round_trip = CASES[case]
    net = factory()
    x = np.random.default_rng(3).standard_normal((2, *shape)).astype(np.float32) * 2
    opset = OPSET.get(case, 17)
    _, expected, _ = export_and_compare(net, shape, tmp_path / "m.onnx", x, opset=opset)
    if round_trip:
        again = cnnkit.onnx.load(tmp_path / "m.onnx")
        assert_close(_outputs(again, x), expected, "export -> import")
        cnnkit.onnx.export(again, shape, tmp_path / "again.onnx", opset=opset)  # and out again
    else:  # written with operators the importer does not take back (Mul, Where, Reshape to 3-D, ...)
        with pytest.raises(OnnxError, match="cannot import"):
            cnnkit.onnx.load(tmp_path / "m.onnx")


def test_shared_layer_is_one_set_of_initializers(tmp_path: Path) -> None:
    model = cnnkit.onnx.export(_shared(), SHAPE, tmp_path / "m.onnx")
    assert [i.name for i in model.graph.initializer] == ["0.weight", "0.bias"]
    assert [n.op_type for n in model.graph.node].count("Conv") == 3


def test_dead_graph_node_is_not_written(tmp_path: Path) -> None:
    model = cnnkit.onnx.export(_graph(), SHAPE, tmp_path / "m.onnx")
    assert not any(i.name.startswith("dead") for i in model.graph.initializer)


@pytest.mark.parametrize("name", ["base", "bn", "sk", "lenet5", "cifar"])
def test_zoo_models(name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    net = create(name, rng)
    randomize_batch_norms(net, rng)
    from cnnkit.models import get_model_def

    shape = get_model_def(name).input_shape
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    model, expected, diff = export_and_compare(net, shape, tmp_path / f"{name}.onnx", x)
    DIFFERENCES.append((f"zoo {name} (export)", "x".join(map(str, x.shape)), diff, None, float(np.abs(expected).max())))
    assert model.opset_import[0].version == 17
    again = cnnkit.onnx.load(tmp_path / f"{name}.onnx")
    assert_close(_outputs(again, x), expected, "export -> import")
    assert sorted(again.params) == sorted(net.params)  # a chain: the same layers under the same names


@slow
@pytest.mark.parametrize("name", ["vgg16", "alexnet"])
def test_big_zoo_models(name: str, tmp_path: Path) -> None:
    """VGG-16 (138M parameters) and AlexNet at batch 1 (slow: about 10-30 s each)."""
    from cnnkit.models import get_model_def

    rng = np.random.default_rng(0)
    net = create(name, rng)
    shape = get_model_def(name).input_shape
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    _, expected, diff = export_and_compare(net, shape, tmp_path / f"{name}.onnx", x)
    DIFFERENCES.append((f"zoo {name} (export)", "x".join(map(str, x.shape)), diff, None, float(np.abs(expected).max())))
    assert expected.shape == (1, 1000)


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_opsets(opset: int, tmp_path: Path) -> None:
    net = _graph()
    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    model, expected, _ = export_and_compare(net, SHAPE, tmp_path / "m.onnx", x, opset=opset)
    assert model.opset_import[0].version == opset
    assert_close(_outputs(cnnkit.onnx.load(tmp_path / "m.onnx"), x), expected)


@pytest.mark.parametrize("mode", ["none", "scale", "mean_image", "per_channel"])
def test_preprocessing_in_the_graph(mode: str, tmp_path: Path) -> None:
    """The exported model takes raw uint8 pixels; its scores equal cnnkit's on the preprocessed images."""
    rng = np.random.default_rng(0)
    net = create("cifar", rng)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    pre = Preprocessor(mode).fit(images) if mode != "none" else Preprocessor("none")
    classes = [f"c{i}" for i in range(10)]
    model = cnnkit.onnx.export(net, (32, 32, 3), tmp_path / "m.onnx", preprocess=pre.to_dict(), classes=classes)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    props = {p.key: p.value for p in model.metadata_props}
    assert props["cnnkit.preprocess"] == mode and props["cnnkit.input_shape"] == "[32, 32, 3]"
    expected = _outputs(net, pre.transform(images))
    assert_close(run_ort(tmp_path / "m.onnx", nchw(images)), expected, "onnxruntime on raw pixels")
    m = cnnkit.onnx.load_model_file(tmp_path / "m.onnx")
    assert m.classes == classes and m.input_shape == (32, 32, 3) and m.preprocess["mode"] == mode
    again = Preprocessor.from_dict(m.preprocess)
    for key in ("mean", "std"):
        if getattr(pre, key, None) is not None:
            np.testing.assert_array_equal(getattr(again, key), getattr(pre, key))
    assert_close(_outputs(m.network, again.transform(images)), expected, "import")
    assert_close(_outputs(cnnkit.onnx.load(tmp_path / "m.onnx"), pre.transform(images)), expected, "load drops the preprocessing")


def test_export_errors(tmp_path: Path) -> None:
    from cnnkit.errors import MismatchError, ShapeError
    from cnnkit.nn import LocallyConnected2d

    class MyReLU(ReLU):  # a subclass may compute something else: not written as its base class
        pass

    rng = _rng()
    net = Sequential(Conv2d(4, 4, 1, rng=rng), Residual(LocallyConnected2d(4, 4, 3, in_size=(9, 10), padding=1, rng=rng)),
                     MyReLU(), Flatten())
    with pytest.raises(OnnxError, match=r"2 layer\(s\) have no ONNX form: 1\.body \(LocallyConnected2d\), 2 \(MyReLU\)"):
        cnnkit.onnx.export(net, SHAPE, tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match="track_running_stats=False"):
        cnnkit.onnx.export(BatchNorm2d(4, track_running_stats=False), SHAPE, tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match="integer p"):
        cnnkit.onnx.export(LPPool2d(1.5, 2), SHAPE, tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match=r"pool=<its MaxPool2d>"):
        cnnkit.onnx.export(MaxUnpool2d(2), SHAPE, tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match="opset 9"):
        cnnkit.onnx.export(ReLU(), SHAPE, tmp_path / "m.onnx", opset=9)
    with pytest.raises(ShapeError, match="input channels"):
        cnnkit.onnx.export(Conv2d(3, 4, 3, rng=rng), SHAPE, tmp_path / "m.onnx")
    with pytest.raises(MismatchError, match="classes"):
        cnnkit.onnx.export(Sequential(Flatten(), Linear(360, 3, rng=rng)), SHAPE, tmp_path / "m.onnx", classes=["a", "b"])
    with pytest.raises(OnnxError, match="no statistics"):
        cnnkit.onnx.export(ReLU(), SHAPE, tmp_path / "m.onnx", preprocess={"mode": "mean_image"})
    assert not list(tmp_path.iterdir())  # nothing half-written
