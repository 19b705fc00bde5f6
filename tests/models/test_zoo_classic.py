"""The classic architectures of the zoo: every parameter count against its paper or torchvision, and against
PyTorch modules written after the papers (tests/models/torch_refs.py), built on the meta device (no memory);
the token table's PyTorch translation of each string gives the same count; structure, defaults and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.models import create, get_model_def, infer_shapes, model_names, parse, resolve
from cnnkit.models.spec import count_layers, leaves
from cnnkit.summary import summarize

# name: (input shape, output shape, parameters). Published: AlexNet 60,965,224 (Caffe's bvlc_alexnet: the paper's
# two towers); VGG, ResNet-18/34/50, GoogLeNet without aux (googlenet-bn): torchvision's counts; ResNet-20/56
# (option A): the paper's 0.27M / 0.85M; MobileNet v1: 4.2M (4,231,976 with BN).
ZOO = {
    "base": ((28, 28, 1), (1, 1, 10), 431_080),
    "bn": ((28, 28, 1), (1, 1, 10), 431_650),
    "sk": ((28, 28, 1), (1, 1, 10), 434_970),
    "lenet5": ((28, 28, 1), (10,), 61_706),
    "cifar": ((32, 32, 3), (10,), 2_156_490),
    "vgg16": ((224, 224, 3), (1000,), 138_357_544),
    "vgg16-fcn": ((224, 224, 3), (1, 1, 1000), 138_357_544),
    "alexnet": ((227, 227, 3), (1000,), 60_965_224),
    "alexnet-1tower": ((227, 227, 3), (1000,), 62_378_344),
    "zfnet": ((224, 224, 3), (1000,), 62_357_608),
    "vgg11": ((224, 224, 3), (1000,), 132_863_336),
    "vgg19": ((224, 224, 3), (1000,), 143_667_240),
    "googlenet": ((224, 224, 3), (1000,), 6_998_552),
    "googlenet-bn": ((224, 224, 3), (1000,), 6_624_904),
    "nin": ((32, 32, 3), (1, 1, 10), 966_986),
    "resnet18": ((224, 224, 3), (1000,), 11_689_512),
    "resnet34": ((224, 224, 3), (1000,), 21_797_672),
    "resnet50": ((224, 224, 3), (1000,), 25_557_032),
    "resnet20": ((32, 32, 3), (10,), 269_722),
    "resnet56": ((32, 32, 3), (10,), 853_018),
    "plain20": ((32, 32, 3), (10,), 269_722),
    "plain56": ((32, 32, 3), (10,), 853_018),
    "mobilenet": ((224, 224, 3), (1000,), 4_231_976),
    "resnet20-mnist": ((28, 28, 1), (10,), 269_434),
    "resnet56-mnist": ((28, 28, 1), (10,), 852_730),
    "plain20-mnist": ((28, 28, 1), (10,), 269_434),
    "plain56-mnist": ((28, 28, 1), (10,), 852_730),
    "nin-mnist": ((28, 28, 1), (1, 1, 10), 957_386),
    "cnn-gap-mnist": ((28, 28, 1), (10,), 65_834),
    "cnn-fc-mnist": ((28, 28, 1), (10,), 870_826),
}

CLASSIC = [n for n in ZOO if n not in ("base", "bn", "sk", "lenet5", "cifar", "vgg16", "vgg16-fcn")]


def test_every_named_model_is_counted() -> None:
    assert sorted(ZOO) == sorted(n for n in model_names() if "<" not in n)


@pytest.mark.parametrize("name", list(ZOO))
def test_counts_and_shapes(name: str) -> None:
    shape, out, params = ZOO[name]
    d = get_model_def(name)
    assert d.input_shape == shape
    s = summarize(d.spec, d.input_shape)
    assert s.total_params == params
    assert s.tokens[-1].out_shape == out
    assert d.classes == out[-1]


@pytest.mark.parametrize("name", CLASSIC)
def test_training_defaults_are_said_in_the_description(name: str) -> None:
    d = get_model_def(name)
    lr = 0.1 if re.match(r"(resnet|plain)\d", name) else 0.01
    assert (d.init, d.preprocess, d.lr) == ("he", "per_channel", lr)
    assert f"lr {lr:g}" in d.description and "He init" in d.description and "per-channel" in d.description
    assert f"{ZOO[name][2]:,}" in d.description  # the count it is checked against


def _refs():
    from tests.models import torch_refs as R

    return {
        "alexnet": R.alexnet, "alexnet-1tower": lambda: R.alexnet(1), "zfnet": R.zfnet, "vgg11": lambda: R.vgg(11),
        "vgg16": lambda: R.vgg(16), "vgg19": lambda: R.vgg(19), "googlenet": R.googlenet,
        "googlenet-bn": lambda: R.googlenet(torchvision=True), "nin": R.nin, "resnet18": lambda: R.resnet(18),
        "resnet34": lambda: R.resnet(34), "resnet50": lambda: R.resnet(50), "resnet20": lambda: R.cifar_resnet(20),
        "resnet56": lambda: R.cifar_resnet(56), "plain20": lambda: R.cifar_resnet(20, residual=False),
        "plain56": lambda: R.cifar_resnet(56, residual=False), "mobilenet": R.mobilenet,
        "resnet20-mnist": lambda: R.cifar_resnet(20, 1), "plain20-mnist": lambda: R.cifar_resnet(20, 1, residual=False),
        "nin-mnist": lambda: R.nin(1),
    }


TORCH_CHECKED = ["alexnet", "alexnet-1tower", "zfnet", "vgg11", "vgg16", "vgg19", "googlenet", "googlenet-bn", "nin", "resnet18",
                 "resnet34", "resnet50", "resnet20", "resnet56", "plain20", "plain56", "mobilenet", "resnet20-mnist",
                 "plain20-mnist", "nin-mnist"]


@pytest.mark.oracle
@pytest.mark.parametrize("name", TORCH_CHECKED)
def test_counts_against_pytorch_modules(name: str) -> None:
    """The module written after the paper, and the string's own PyTorch translation, have the count; on the meta
    device the paper module's output has the string's output shape."""
    torch = pytest.importorskip("torch")
    from cnnkit.models.tokens import torch_chain
    from tests.models.torch_refs import count

    d = get_model_def(name)
    h, w, c = d.input_shape
    with torch.device("meta"):
        ref = _refs()[name]()
        translated = torch.nn.Sequential(*torch_chain(parse(d.spec), d.input_shape))
        y = ref(torch.empty(1, c, h, w))
    assert count(ref) == count(translated) == ZOO[name][2]
    out = infer_shapes(parse(d.spec), d.input_shape)[-1]
    assert tuple(y.shape[1:]) == ((out[2], out[0], out[1]) if len(out) == 3 else out)


def test_alexnet_as_published() -> None:
    convs = [t for t in parse(get_model_def("alexnet").spec) if t.kind == "conv"]
    assert [t.args.get("groups", 1) for t in convs] == [1, 2, 1, 2, 2]  # the towers talk only at conv3 (and the FCs)
    kinds = [t.kind for t in parse(get_model_def("alexnet").spec)]
    assert kinds[:4] == ["conv", "relu", "lrn", "maxpool"] and kinds[4:8] == ["conv", "relu", "lrn", "maxpool"]
    lrn = next(t for t in parse(get_model_def("alexnet").spec) if t.kind == "lrn")
    assert lrn.args == {"size": 5, "alpha": 5e-4, "beta": 0.75, "k": 2.0}  # the paper's k=2, n=5, alpha=1e-4 (sum), beta
    assert "lrn" not in get_model_def("alexnet-1tower").spec and "g2" not in get_model_def("alexnet-1tower").spec


def test_zfnet_sizes_follow_the_paper() -> None:
    shapes = infer_shapes(parse(get_model_def("zfnet").spec), (224, 224, 3))
    assert [s[:2] for s in shapes if len(s) == 3 and s[2] in (96, 256)][:5] == [(110, 110), (110, 110), (55, 55), (55, 55), (26, 26)]
    assert (6, 6, 256) in shapes


def test_googlenet_has_nine_inception_modules_and_no_auxiliary_classifier() -> None:
    tokens = parse(get_model_def("googlenet").spec)
    cats = [t for t in tokens if t.kind == "cat"]
    assert len(cats) == 9 and all(len(t.args["branches"]) == 4 for t in cats)
    shapes = infer_shapes(tokens, (224, 224, 3))
    assert [shapes[i][2] for i, t in enumerate(tokens) if t.kind == "cat"] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert [shapes[i][0] for i, t in enumerate(tokens) if t.kind == "cat"] == [28, 28, 14, 14, 14, 14, 14, 7, 7]
    assert sum(t.kind == "fc" for t in leaves(tokens)) == 1  # the classifier only
    assert "conv5x5" not in get_model_def("googlenet-bn").spec and "conv5x5" in get_model_def("googlenet").spec


def test_resnets_structure() -> None:
    r50 = leaves(parse(get_model_def("resnet50").spec))
    assert all(not t.args["bias"] for t in r50 if t.kind == "conv")
    # as written: the stem, then per stage a first block (3 convolutions and a projection) and one repeated block
    assert sum(t.kind == "conv" for t in r50) == 1 + 4 * (3 + 1 + 3)
    for name in ("resnet20", "resnet56"):
        spec = get_model_def(name).spec
        assert "padc16" in spec and "padc32" in spec and "conv1x1" not in spec  # option A: no projection parameters
    assert "res(" not in get_model_def("plain20").spec
    for depth in (20, 56):  # the plain networks: the residual ones without shortcuts (and without the sums)
        plain = parse(get_model_def(f"plain{depth}-mnist").spec)
        residual = parse(get_model_def(f"resnet{depth}-mnist").spec)
        assert [t.text for t in leaves(plain)] == [t.text for t in leaves(residual) if t.kind not in ("maxpool", "padc")]
        assert count_layers(plain) == count_layers(residual) - 4  # the two option-A shortcuts


def test_mobilenet_is_depthwise_separable() -> None:
    convs = [t for t in leaves(parse(get_model_def("mobilenet").spec)) if t.kind == "conv"]
    depthwise = [t for t in convs if t.args.get("groups", 1) > 1]
    assert len(depthwise) == 9 and all(t.args["groups"] == t.args["in"] == t.args["out"] for t in depthwise)  # 13 with 5*(...)
    d = get_model_def("mobilenet")
    assert summarize(d.spec, d.input_shape).tokens[-2].out_shape == (1, 1, 1024)


def test_gap_and_fc_heads_share_their_body() -> None:
    gap, fc = get_model_def("cnn-gap-mnist").spec, get_model_def("cnn-fc-mnist").spec
    assert gap.endswith(",gap,fc10") and fc.endswith(",fc256,relu,dropout,fc10")
    assert gap.rsplit(",gap", 1)[0] == fc.rsplit(",fc256", 1)[0]


def test_mnist_variants_build_and_run() -> None:
    for name in ("resnet20-mnist", "plain20-mnist", "cnn-gap-mnist"):
        net = create(name, np.random.default_rng(0))
        assert net.forward(np.zeros((2, 28, 28, 1), np.float32), train=False).shape == (2, 10)


def test_global_pooling_models_take_other_input_sizes() -> None:
    assert resolve("resnet18", (64, 64, 3)).name == "resnet18"
    assert create("resnet20", np.random.default_rng(0), input_shape=(16, 16, 3)).output_shape((16, 16, 3)) == (10,)
    with pytest.raises(Exception, match="sized for 224x224x3 inputs"):
        resolve("vgg19", (64, 64, 3))
    with pytest.raises(Exception, match="expects 3 input channels but 1 arrive"):
        resolve("resnet18", (64, 64, 1))


@pytest.mark.parametrize("name", ["resnet18", "alexnet", "googlenet-bn", "resnet56"])
def test_cli_summary_prints_the_published_count(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    assert main(["summary", name]) == 0
    out = capsys.readouterr().out
    count = f"{ZOO[name][2]:,}"
    assert out.startswith(f"{name}: ") and f"parameters: {count} " in out


def test_cli_accepts_dag_strings(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import _model_arg, main

    spec = "conv3x3x1x8p1,2*(res(conv3x3x8x8p1,relu),relu),cat(gap|gmp),fc10"
    assert _model_arg(spec) == spec
    assert main(["summary", spec]) == 0
    assert "      copy2.1 res(conv3x3x8x8p1,relu)" in capsys.readouterr().out
    assert resolve(spec).classes == 10
    assert main(["summary", "conv3x3x1x8p1,res(conv3x3x8x8p1,poo2)"]) == 2
    assert "token 2 'poo2' in the body of token 2 (character 33" in capsys.readouterr().err
