"""The model zoo: exercise 15.6's BASE/BN/SK(-s) family and the classic networks resolve, have the right
shapes, layers and initialisation."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.models import SpecError, create, get_model_def, infer_shapes, model_names, parse, resolve
from cnnkit.summary import summarize

MNIST_NETS = ["base", "bn", "sk", "sk-0.2", "sk-2", "base-sigmoid", "bn-dropout", "sk-0.2-sigmoid", "base-dropout"]


def _tokens(name: str):
    d = get_model_def(name)
    return parse(d.spec)


@pytest.mark.parametrize("name", MNIST_NETS)
def test_mnist_nets_end_at_1x1x10(name: str) -> None:
    d = resolve(name)
    assert d.input_shape == (28, 28, 1)
    assert d.classes == 10
    assert infer_shapes(parse(d.spec), d.input_shape)[-1] == (1, 1, 10)


@pytest.mark.parametrize(
    "name, input_shape, out",
    [("lenet5", (28, 28, 1), (10,)), ("cifar", (32, 32, 3), (10,)), ("vgg16", (224, 224, 3), (1000,)),
     ("alexnet", (227, 227, 3), (1000,))],
)
def test_classic_nets(name: str, input_shape: tuple, out: tuple) -> None:
    d = resolve(name)
    assert d.input_shape == input_shape
    assert infer_shapes(parse(d.spec), input_shape)[-1] == out


def test_names_are_case_insensitive_and_listed() -> None:
    assert resolve("BASE").spec == resolve("base").spec
    names = model_names()
    for n in ("base", "bn", "sk", "lenet5", "cifar", "vgg16", "alexnet"):
        assert n in names


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown model 'nosuchnet'"):
        get_model_def("nosuchnet")
    with pytest.raises(SpecError, match="nosuchnet"):
        resolve("nosuchnet")


def test_resolve_network_string() -> None:
    d = resolve("conv5x5x1x20,pool2,conv12x12x20x7")
    assert d.name == "custom" and d.classes == 7 and d.input_shape == (28, 28, 1)
    assert resolve("conv3x3x3x4,fc5", (8, 8, 3)).input_shape == (8, 8, 3)
    with pytest.raises(SpecError, match="token 2 'poo2'"):
        resolve("conv5x5x1x20,poo2")


@pytest.mark.parametrize("name", ["alexnet", "alexnet-1tower"])
def test_alexnet_conv1_gives_55x55x96(name: str) -> None:
    tokens = _tokens(name)
    shapes = infer_shapes(tokens, (227, 227, 3))
    assert shapes[0] == (55, 55, 96)
    first_pool = next(i for i, t in enumerate(tokens) if t.kind == "maxpool")
    assert shapes[first_pool] == (27, 27, 96)  # overlapping 3x3 pooling at stride 2


def test_vgg16_has_138357544_parameters() -> None:
    d = get_model_def("vgg16")
    assert summarize(d.spec, d.input_shape).total_params == 138_357_544
    shapes = infer_shapes(parse(d.spec), d.input_shape)
    assert shapes[30] == (7, 7, 512)  # the input of the first FC layer (Table 15.2 layer 32)


def test_base_is_matconvnet_mnist() -> None:
    kinds = [t.kind for t in _tokens("base")]
    texts = [t.text for t in _tokens("base")]
    assert texts == ["conv5x5x1x20", "pool2", "conv5x5x20x50", "pool2", "conv4x4x50x500", "relu", "conv1x1x500x10"]
    convs = [i for i, k in enumerate(kinds) if k == "conv"]
    # no ReLU between the first and the third convolution (after conv 1 and conv 2)
    assert "relu" not in kinds[convs[0] : convs[2]]
    assert kinds[convs[2] + 1] == "relu"


def test_bn_drops_the_biases_of_the_first_three_convolutions() -> None:
    tokens = _tokens("bn")
    convs = [t for t in tokens if t.kind == "conv"]
    assert [c.args["bias"] for c in convs] == [False, False, False, True]
    kinds = [t.kind for t in tokens]
    for i, t in enumerate(tokens):
        if t.kind == "conv" and not t.args["bias"]:
            assert kinds[i + 1] == "bn"
    model = create("bn", np.random.default_rng(0))
    conv_biases = [k for k in model.params if k.endswith("bias")]
    # the biases left: three BN shifts and the classifier's
    assert len(conv_biases) == 4


def test_sk_blocks() -> None:
    tokens = _tokens("sk")
    convs = [t for t in tokens if t.kind == "conv"]
    assert [c.args["kernel"] for c in convs] == [(3, 3), (3, 3), (5, 5), (4, 4), (1, 1)]
    assert [c.args["out"] for c in convs] == [20, 20, 50, 500, 10]


@pytest.mark.parametrize(
    "name, channels", [("sk-0.2", [4, 4, 10, 100, 10]), ("sk-2", [40, 40, 100, 1000, 10]), ("sk-0.5", [10, 10, 25, 250, 10])]
)
def test_sk_s_channel_counts(name: str, channels: list) -> None:
    convs = [t for t in _tokens(name) if t.kind == "conv"]
    assert [c.args["out"] for c in convs] == channels
    # every convolution's input is the previous one's output
    assert [c.args["in"] for c in convs] == [1, *channels[:-1]]


def test_variants() -> None:
    sig = [t.kind for t in _tokens("base-sigmoid")]
    assert "sigmoid" in sig and "relu" not in sig
    assert [t.kind for t in _tokens("bn-dropout")][-1] == "dropout"
    assert [t.kind for t in _tokens("bn-dropout")][:-1] == [t.kind for t in _tokens("bn")]
    sk = [t.kind for t in _tokens("sk-0.2-sigmoid")]
    assert "relu" not in sk and sk.count("sigmoid") == 3


def test_bn_models_use_matconvnet_bn_momentum() -> None:
    assert get_model_def("bn").bn_momentum == pytest.approx(0.05)
    assert get_model_def("sk-0.2").bn_momentum == pytest.approx(0.05)


def test_base_init_is_gaussian_001_with_zero_biases() -> None:
    model = create("base", np.random.default_rng(0))
    weights = [v for k, v in model.params.items() if k.endswith("weight")]
    biases = [v for k, v in model.params.items() if k.endswith("bias")]
    assert len(weights) == 4 and len(biases) == 4
    for w in weights:
        assert w.dtype == np.float32
        # the smallest tensor (conv1, 500 numbers) estimates the std to about 3%
        assert abs(float(w.std()) - 0.01) < 0.1 * 0.01
        assert abs(float(w.mean())) < 0.002
    for b in biases:
        assert np.all(b == 0)


def test_create_dtype_and_input_shape() -> None:
    model = create("conv3x3x3x4,fc5", np.random.default_rng(0), np.float64, input_shape=(8, 8, 3))
    y = model.forward(np.zeros((2, 8, 8, 3)), train=False)
    assert y.shape == (2, 5) and y.dtype == np.float64


def test_create_small_model_forward_shape() -> None:
    model = create("sk-0.2", np.random.default_rng(0))
    y = model.forward(np.zeros((2, 28, 28, 1), np.float32), train=False)
    assert y.shape == (2, 1, 1, 10)
