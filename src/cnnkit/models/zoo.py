"""The book's networks as network strings (see :mod:`cnnkit.models.spec` for the grammar).

Exercise 15.6 (seed 000): BASE is MatConvNet 1.0-beta20's MNIST network (``cnn_mnist_init``): no ReLU
after the first two convolutions, the 4x4x50x500 convolution acts as the FC layer (§15.5.8), and the
1x1x500x10 convolution is the classifier. BN inserts batch normalisation after each convolution of the
first three blocks (and drops those convolutions' biases, as MatConvNet's ``insertBnorm`` does). SK
("small kernels") is based on BN with block 1 replaced by two 3x3 convolutions each followed by BN and
ReLU. SK-s multiplies every channel count except block 4's output by s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnnkit.models.spec import BuildOptions, SpecError, build, parse

if TYPE_CHECKING:
    from cnnkit.nn import Sequential


@dataclass(frozen=True)
class ModelDef:
    """A named network: its string, input shape (H, W, C), class count and default build options.

    Examples
    --------
    >>> from cnnkit.models import get_model_def
    >>> d = get_model_def("vgg16")
    >>> d.input_shape, d.classes, d.init
    ((224, 224, 3), 1000, 'he')
    """

    name: str
    spec: str
    input_shape: tuple[int, int, int]
    classes: int
    init: str = "matconvnet"
    bn_momentum: float = 0.1
    description: str = ""
    #: training defaults: MatConvNet's for the book's networks (raw pixels minus the mean image, lr 0.001 with
    #: 0.01*N(0,1) weights); He-initialised networks need unit-scale inputs and a larger rate
    lr: float = 0.001
    preprocess: str = "mean_image"


def _ch(c: int, s: float) -> int:
    return max(1, round(c * s))


def base_spec(act: str = "relu", dropout: bool = False) -> str:
    """Exercise 15.6's BASE network (MatConvNet's MNIST example), with ``act`` after the 4x4x50x500 convolution.

    Examples
    --------
    >>> from cnnkit.models.zoo import base_spec
    >>> base_spec()
    'conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10'
    >>> base_spec("sigmoid", dropout=True).split(",")[-3:]
    ['sigmoid', 'conv1x1x500x10', 'dropout']
    """

    s = f"conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,{act},conv1x1x500x10"
    return s + (",dropout" if dropout else "")


def bn_spec(act: str = "relu", dropout: bool = False) -> str:
    """BASE with batch normalisation after each of the first three convolutions (which then lose their biases).

    Examples
    --------
    >>> from cnnkit.models.zoo import bn_spec
    >>> bn_spec().split(",")[:3]
    ['conv5x5x1x20nobias', 'bn', 'pool2']
    """

    s = f"conv5x5x1x20nobias,bn,pool2,conv5x5x20x50nobias,bn,pool2,conv4x4x50x500nobias,bn,{act},conv1x1x500x10"
    return s + (",dropout" if dropout else "")


def sk_spec(s: float = 1.0, act: str = "relu", dropout: bool = False) -> str:
    """SK-s: BN with block 1 as two 3x3 convolutions, every channel count but the last multiplied by ``s``.

    Examples
    --------
    >>> from cnnkit.models.zoo import sk_spec
    >>> [t for t in sk_spec(0.2).split(",") if t.startswith("conv")]
    ['conv3x3x1x4nobias', 'conv3x3x4x4nobias', 'conv5x5x4x10nobias', 'conv4x4x10x100nobias', 'conv1x1x100x10']
    """

    a, b, c = _ch(20, s), _ch(50, s), _ch(500, s)
    spec = (
        f"conv3x3x1x{a}nobias,bn,{act},conv3x3x{a}x{a}nobias,bn,{act},pool2,"
        f"conv5x5x{a}x{b}nobias,bn,pool2,conv4x4x{b}x{c}nobias,bn,{act},conv1x1x{c}x10"
    )
    return spec + (",dropout" if dropout else "")


VGG16_SPEC = (
    "conv3x3x3x64p1,relu,conv3x3x64x64p1,relu,pool2,"
    "conv3x3x64x128p1,relu,conv3x3x128x128p1,relu,pool2,"
    "conv3x3x128x256p1,relu,conv3x3x256x256p1,relu,conv3x3x256x256p1,relu,pool2,"
    "conv3x3x256x512p1,relu,conv3x3x512x512p1,relu,conv3x3x512x512p1,relu,pool2,"
    "conv3x3x512x512p1,relu,conv3x3x512x512p1,relu,conv3x3x512x512p1,relu,pool2,"
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000"
)

# VGG-16 with its fully connected layers as convolutions (the layer notes' FC-to-conv conversion): the same
# parameters; on 224x224 a 1x1 map of scores, on 384x384 a 6x6 map (36 windows at stride 32)
VGG16_FCN_SPEC = VGG16_SPEC.replace(
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000",
    "conv7x7x512x4096,relu,dropout,conv1x1x4096x4096,relu,dropout,conv1x1x4096x1000",
)

# AlexNet (Krizhevsky et al. 2012) as one tower, 227x227x3 input; local response normalisation omitted.
ALEXNET_SPEC = (
    "conv11x11x3x96s4,relu,pool3s2,conv5x5x96x256p2,relu,pool3s2,"
    "conv3x3x256x384p1,relu,conv3x3x384x384p1,relu,conv3x3x384x256p1,relu,pool3s2,"
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000"
)

LENET5_SPEC = "conv5x5x1x6p2,tanh,avgpool2,conv5x5x6x16,tanh,avgpool2,fc120,tanh,fc84,tanh,fc10"

# INPUT -> [CONV -> RELU -> POOL] x 2 -> FC -> RELU -> FC (seed 002's CIFAR-10 pattern)
CIFAR_SPEC = "conv5x5x3x32p2,relu,pool2,conv5x5x32x64p2,relu,pool2,fc512,relu,fc10"

BN_MOMENTUM_MATCONVNET = 0.05  # MatConvNet's bnorm moments learning rate (insertBnorm: learningRate [1 1 0.05])

_MNIST = (28, 28, 1)


def _fixed_models() -> dict[str, ModelDef]:
    m = BN_MOMENTUM_MATCONVNET
    return {
        "base": ModelDef("base", base_spec(), _MNIST, 10, description="exercise 15.6 BASE (MatConvNet MNIST)"),
        "bn": ModelDef("bn", bn_spec(), _MNIST, 10, bn_momentum=m, description="BASE + batch norm after the first three convolutions"),
        "sk": ModelDef("sk", sk_spec(1.0), _MNIST, 10, bn_momentum=m, description="BN with block 1 as two 3x3 convolutions"),
        "lenet5": ModelDef("lenet5", LENET5_SPEC, (28, 28, 1), 10, init="pytorch", lr=0.01, preprocess="scale",
                           description="LeNet-5 (tanh, average pooling)"),
        "cifar": ModelDef("cifar", CIFAR_SPEC, (32, 32, 3), 10, init="he", lr=0.01, preprocess="per_channel",
                           description="CIFAR-10: [CONV-RELU-POOL]x2-FC-RELU-FC"),
        "vgg16": ModelDef("vgg16", VGG16_SPEC, (224, 224, 3), 1000, init="he", lr=0.01, preprocess="per_channel",
                           description="VGG-16 as in the chapter's Table 15.2"),
        "vgg16-fcn": ModelDef("vgg16-fcn", VGG16_FCN_SPEC, (224, 224, 3), 1000, init="he", lr=0.01, preprocess="per_channel",
                              description="VGG-16 fully convolutional: any input of at least 224x224 gives a map of scores"),
        "alexnet": ModelDef("alexnet", ALEXNET_SPEC, (227, 227, 3), 1000, init="he", lr=0.01, preprocess="per_channel",
                           description="AlexNet, one tower, no LRN"),
    }


_VARIANT = re.compile(r"^(base|bn|sk(?:-(\d+(?:\.\d+)?))?)((?:-sigmoid|-dropout)*)$")


def model_names() -> list[str]:
    """The named models (SK-s takes any multiplier: sk-0.2, sk-1.5 ...; book models take -sigmoid/-dropout).

    Examples
    --------
    >>> from cnnkit.models import model_names
    >>> model_names()
    ['base', 'bn', 'sk', 'lenet5', 'cifar', 'vgg16', 'vgg16-fcn', 'alexnet', 'sk-<s>', '<book model>-sigmoid', '<book model>-dropout']
    """
    return [*_fixed_models(), "sk-<s>", "<book model>-sigmoid", "<book model>-dropout"]


def get_model_def(name: str) -> ModelDef:
    """Resolve a model name, e.g. ``base``, ``bn-dropout``, ``sk-0.2``, ``sk-0.2-sigmoid``, ``vgg16``.

    Examples
    --------
    >>> from cnnkit.models import get_model_def
    >>> d = get_model_def("sk-0.5-sigmoid")
    >>> d.name, d.bn_momentum, "sigmoid" in d.spec
    ('sk-0.5-sigmoid', 0.05, True)
    >>> get_model_def("resnet50")
    Traceback (most recent call last):
    ...
    KeyError: "unknown model 'resnet50'; known: base, bn, sk, ...
    """
    key = name.strip().lower()
    fixed = _fixed_models()
    if key in fixed:
        return fixed[key]
    m = _VARIANT.match(key)
    if not m:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(model_names())}, or a network string")
    family, mult, suffix = m.group(1), m.group(2), m.group(3) or ""
    act = "sigmoid" if "-sigmoid" in suffix else "relu"
    dropout = "-dropout" in suffix
    if family == "base":
        spec, mom = base_spec(act, dropout), 0.1
    elif family == "bn":
        spec, mom = bn_spec(act, dropout), BN_MOMENTUM_MATCONVNET
    else:
        spec, mom = sk_spec(float(mult) if mult else 1.0, act, dropout), BN_MOMENTUM_MATCONVNET
    return ModelDef(key, spec, _MNIST, 10, bn_momentum=mom, description=f"exercise 15.6 variant {key}")


def resolve(name_or_spec: str, input_shape: tuple[int, int, int] | None = None) -> ModelDef:
    """A model name, or a network string (then ``input_shape`` defaults to MNIST's 28x28x1).

    Examples
    --------
    >>> from cnnkit.models import resolve
    >>> resolve("base").spec == resolve("conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10").spec
    True
    >>> d = resolve("conv5x5x3x8,pool2,fc4", (32, 32, 3))
    >>> d.name, d.input_shape, d.classes
    ('custom', (32, 32, 3), 4)
    """
    try:
        d = get_model_def(name_or_spec)
    except KeyError as name_error:
        if "," not in name_or_spec and not name_or_spec.lower().startswith(("conv", "pool", "fc")):
            raise SpecError(str(name_error).strip("'\"")) from None
        tokens = parse(name_or_spec)
        classes = next((t.args["out"] for t in reversed(tokens) if t.kind in ("conv", "fc")), 0)
        return ModelDef("custom", name_or_spec, input_shape or _MNIST, classes)
    if input_shape is not None and tuple(input_shape) != d.input_shape and any(t.kind == "fc" for t in parse(d.spec)):
        fcn = f"; {d.name}-fcn is its fully convolutional form, which takes larger inputs" if d.name == "vgg16" else ""
        shape = "x".join(map(str, d.input_shape))
        raise SpecError(
            f"{d.name}'s fully connected layers are sized for {shape} inputs, not {'x'.join(map(str, input_shape))} "
            f"(another size would build another network){fcn}"
        )
    return d


def model_input(name_or_spec: str) -> tuple[tuple[int, int, int] | None, int]:
    """(input shape of a named model, else None; channels it takes): a network string's channels are its
    first convolution's input channels (3 when it starts otherwise).

    Examples
    --------
    >>> model_input("base"), model_input("conv3x3x3x8,pool2,fc10")
    (((28, 28, 1), 1), (None, 3))
    """
    try:
        d = get_model_def(name_or_spec)
    except KeyError:
        tokens = parse(name_or_spec)
        return None, next((int(t.args["in"]) for t in tokens if "in" in t.args), 3)
    return d.input_shape, d.input_shape[2]


def create(
    name_or_spec: str,
    rng: np.random.Generator | None = None,
    dtype: object = np.float32,
    input_shape: tuple[int, int, int] | None = None,
) -> Sequential:
    """Build a named model (or a network string) with its default initialisation.

    Examples
    --------
    Exercise 15.6's BASE: the last two convolutions act as fully connected layers (§15.5.8), so the output is 1 x 1 x 10.

    >>> import numpy as np
    >>> from cnnkit.models import create
    >>> net = create("base", rng=np.random.default_rng(0))
    >>> net.forward(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 1, 1, 10)
    """
    d = resolve(name_or_spec, input_shape)
    opts = BuildOptions(init=d.init, bn_momentum=d.bn_momentum, dtype=dtype)
    return build(d.spec, input_shape or d.input_shape, rng, opts)
