"""The book's networks and the classic architectures as network strings (see :mod:`cnnkit.models.spec` for the grammar).

Exercise 15.6 (seed 000): BASE is MatConvNet 1.0-beta20's MNIST network (``cnn_mnist_init``): no ReLU
after the first two convolutions, the 4x4x50x500 convolution acts as the FC layer (§15.5.8), and the
1x1x500x10 convolution is the classifier. BN inserts batch normalisation after each convolution of the
first three blocks and drops those convolutions' biases (``insertBnorm`` means to; in 1.0-beta20 they stay,
but BN's mean subtraction gives them a zero gradient, so they stay at their initial zero: the same network). SK
("small kernels") is based on BN with block 1 replaced by two 3x3 convolutions each followed by BN and
ReLU. SK-s multiplies every channel count except block 4's output by s.

The classic architectures of the layer notes' case studies (seed 002) and of exercises 15.2, 15.4 and 15.5,
with their parameter counts (tests/models/test_zoo.py checks every one against the paper or torchvision and
against a PyTorch module written after the paper):

==============  =========  ===========  =============================================================
name            input      parameters   reference
==============  =========  ===========  =============================================================
lenet5          28x28x1         61,706  LeCun et al. 1998 (tanh, average pooling)
alexnet         227x227x3   60,965,224  Krizhevsky et al. 2012: two towers (groups=2), LRN; Caffe's count
alexnet-1tower  227x227x3   62,378,344  the same as one tower, without LRN
zfnet           224x224x3   62,357,608  Zeiler & Fergus 2014, fig. 3 (the paper gives no count)
vgg11           224x224x3  132,863,336  Simonyan & Zisserman, configuration A; torchvision vgg11
vgg16           224x224x3  138,357,544  configuration D; torchvision vgg16
vgg19           224x224x3  143,667,240  configuration E; torchvision vgg19
googlenet       224x224x3    6,998,552  Szegedy et al. 2015 without the auxiliary classifiers (its
                                        table 1 counts weights only, rounded: about 6.8M)
googlenet-bn    224x224x3    6,624,904  torchvision's googlenet(aux_logits=False) layout
nin             32x32x3        966,986  Lin et al. 2014, the authors' CIFAR-10 model
resnet18        224x224x3   11,689,512  He et al. 2016; torchvision resnet18
resnet34        224x224x3   21,797,672  torchvision resnet34
resnet50        224x224x3   25,557,032  torchvision resnet50
resnet20        32x32x3        269,722  He et al. §4.2, option A shortcuts: the paper's 0.27M
resnet56        32x32x3        853,018  option A shortcuts: the paper's 0.85M
plain20         32x32x3        269,722  resnet20 without its shortcuts (He et al. fig. 6)
plain56         32x32x3        853,018  resnet56 without its shortcuts
mobilenet       224x224x3    4,231,976  Howard et al. 2017, MobileNet v1 1.0-224
==============  =========  ===========  =============================================================

No model has the auxiliary classifiers of GoogLeNet or a softmax layer (the loss applies it). For 28x28x1
(Fashion-)MNIST experiments:

* ``resnet20-mnist``, ``resnet56-mnist`` (269,434 / 852,730 parameters) and ``plain20-mnist``,
  ``plain56-mnist`` (the same without shortcuts): the CIFAR ResNets with a one-channel first convolution
  (maps of 28 -> 14 -> 7), for exercise 15.4's plain versus residual comparison;
* ``nin-mnist``: Network in Network with a one-channel first convolution (957,386);
* ``cnn-gap-mnist`` and ``cnn-fc-mnist``: the same two VGG-style blocks (3x3 convolutions with BN, 28 -> 7)
  with a global-average-pooling head (``gap,fc10``: 65,834 parameters in all) or a fully connected head
  (``fc256,relu,dropout,fc10``: 870,826), for exercise 15.4(c)'s question of what replaces the FC layers.

Training defaults: the book's networks use MatConvNet's (0.01*N(0,1) weights, lr 0.001, mean image
subtracted, BN epsilon 1e-4, SGD momentum zeroed at every epoch's start); the classic architectures He
initialisation, per-channel standardisation and lr 0.1 for the
ResNets with batch normalisation and their plain twins (as He et al. train both), 0.01 for the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnnkit.models.spec import BuildOptions, SpecError, Token, build, infer_shapes, leaves, parse
from cnnkit.models.tokens import kind_of

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
    #: batch normalisation's epsilon: MatConvNet's vl_nnbnorm default 1e-4 for the book's networks, PyTorch's 1e-5 otherwise
    bn_eps: float = 1e-5
    #: zero the SGD momentum at the start of every epoch, as MatConvNet 1.0-beta20's cnn_train does (the book's networks)
    momentum_reset: bool = False


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
ALEXNET_1TOWER_SPEC = (
    "conv11x11x3x96s4,relu,pool3s2,conv5x5x96x256p2,relu,pool3s2,"
    "conv3x3x256x384p1,relu,conv3x3x384x384p1,relu,conv3x3x384x256p1,relu,pool3s2,"
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000"
)

# AlexNet as published: the two GPU towers as groups=2 on conv2, conv4 and conv5 (conv3 and the FC layers
# read both towers), local response normalisation after the ReLUs of conv1 and conv2, before their pooling.
# The paper's LRN (k=2, n=5, alpha=1e-4, beta=0.75) writes alpha without the 1/n of PyTorch's: lrn5a0.0005k2.
ALEXNET_SPEC = (
    "conv11x11x3x96s4,relu,lrn5a0.0005k2,pool3s2,conv5x5x96x256g2p2,relu,lrn5a0.0005k2,pool3s2,"
    "conv3x3x256x384p1,relu,conv3x3x384x384g2p1,relu,conv3x3x384x256g2p1,relu,pool3s2,"
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000"
)

# ZF Net (Zeiler & Fergus 2014, fig. 3): 7x7/2 first layer (224 -> 110), 3x3/2 pooling (-> 55), contrast
# normalisation across feature maps (AlexNet's LRN), 5x5/2 conv2 (-> 26 -> 13), 384-384-256 3x3 convolutions.
ZFNET_SPEC = (
    "conv7x7x3x96s2p1,relu,pool3s2p1,lrn5a0.0005k2,conv5x5x96x256s2,relu,pool3s2p1,lrn5a0.0005k2,"
    "conv3x3x256x384p1,relu,conv3x3x384x384p1,relu,conv3x3x384x256p1,relu,pool3s2,"
    "fc4096,relu,dropout,fc4096,relu,dropout,fc1000"
)

LENET5_SPEC = "conv5x5x1x6p2,tanh,avgpool2,conv5x5x6x16,tanh,avgpool2,fc120,tanh,fc84,tanh,fc10"

# INPUT -> [CONV -> RELU -> POOL] x 2 -> FC -> RELU -> FC (seed 002's CIFAR-10 pattern)
CIFAR_SPEC = "conv5x5x3x32p2,relu,pool2,conv5x5x32x64p2,relu,pool2,fc512,relu,fc10"

_VGG = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg_spec(depth: int) -> str:
    """VGG-11/13/16/19 (Simonyan & Zisserman, configurations A, B, D, E) for 224x224x3 inputs, 1000 classes.

    Examples
    --------
    >>> from cnnkit.models.zoo import VGG16_SPEC, vgg_spec
    >>> vgg_spec(16) == VGG16_SPEC
    True
    >>> vgg_spec(11).split(",")[:4]
    ['conv3x3x3x64p1', 'relu', 'pool2', 'conv3x3x64x128p1']
    """
    convs, cin = [], 3
    for n, width in zip(_VGG[depth], (64, 128, 256, 512, 512)):
        for _ in range(n):
            convs.append(f"conv3x3x{cin}x{width}p1,relu")
            cin = width
        convs.append("pool2")
    return ",".join(convs) + ",fc4096,relu,dropout,fc4096,relu,dropout,fc1000"


def _conv(k: int, cin: int, cout: int, stride: int = 1, pad: int = 0, bn: bool = False, groups: int = 1) -> str:
    """One convolution token (+ BN and ReLU with ``bn``, else + ReLU)."""
    opts = (f"g{groups}" if groups > 1 else "") + (f"s{stride}" if stride > 1 else "") + (f"p{pad}" if pad else "")
    return f"conv{k}x{k}x{cin}x{cout}{opts}nobias,bn,relu" if bn else f"conv{k}x{k}x{cin}x{cout}{opts},relu"


def inception(cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int, bn: bool = False, k5: int = 5) -> str:
    """An Inception (v1) module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, joined on channels.

    ``bn``: every convolution without bias and followed by BN (torchvision's BasicConv2d); ``k5``: the kernel of
    the third branch (torchvision uses 3, a known deviation it keeps for its weights).

    Examples
    --------
    >>> from cnnkit.models.zoo import inception
    >>> inception(192, 64, 96, 128, 16, 32, 32)  # GoogLeNet's 3a: 64 + 128 + 32 + 32 = 256 channels
    'cat(conv1x1x192x64,relu|conv1x1x192x96,relu,conv3x3x96x128p1,relu|conv1x1x192x16,relu,conv5x5x16x32p2,relu|pool3s1p1,conv1x1x192x32,relu)'
    """
    return (f"cat({_conv(1, cin, c1, bn=bn)}|{_conv(1, cin, c3r, bn=bn)},{_conv(3, c3r, c3, pad=1, bn=bn)}|"
            f"{_conv(1, cin, c5r, bn=bn)},{_conv(k5, c5r, c5, pad=k5 // 2, bn=bn)}|pool3s1p1,{_conv(1, cin, pool_proj, bn=bn)})")


#: GoogLeNet's inception modules (Szegedy et al. 2015, table 1): input channels, #1x1, #3x3 reduce, #3x3,
#: #5x5 reduce, #5x5, pool proj; a 3x3/2 max pooling after 3b and after 4e
GOOGLENET_MODULES = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64), "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64), "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128), "5b": (832, 384, 192, 384, 48, 128, 128),
}


def googlenet_spec(torchvision: bool = False) -> str:
    """GoogLeNet (Inception v1) for 224x224x3 inputs, without its two auxiliary classifiers (training-time heads).

    As published (default): convolutions with biases and ReLU, LRN in the stem (``lrn5``: Caffe's and PyTorch's
    alpha 1e-4 / 5), 3x3/2 max pooling with padding 1 (the paper's ceil-mode sizes 56, 28, 14, 7), average
    pooling, 40% dropout and the linear classifier. ``torchvision=True``: torchvision's layout instead (BN after
    every convolution, no biases, no LRN, a 3x3 convolution in the "5x5" branch, 2x2 pooling after 4e, 20% dropout).

    Examples
    --------
    >>> from cnnkit.models.zoo import googlenet_spec
    >>> googlenet_spec().split(",")[:4]
    ['conv7x7x3x64s2p3', 'relu', 'pool3s2p1', 'lrn5']
    >>> googlenet_spec().count("cat("), googlenet_spec(torchvision=True).count("lrn")
    (9, 0)
    """
    bn, k5 = torchvision, 3 if torchvision else 5
    stem = (f"{_conv(7, 3, 64, 2, 3, bn)},pool3s2p1,{_conv(1, 64, 64, bn=bn)},{_conv(3, 64, 192, pad=1, bn=bn)},pool3s2p1"
            if torchvision else
            f"{_conv(7, 3, 64, 2, 3)},pool3s2p1,lrn5,{_conv(1, 64, 64)},{_conv(3, 64, 192, pad=1)},lrn5,pool3s2p1")
    parts = [stem]
    for name, m in GOOGLENET_MODULES.items():
        parts.append(inception(*m, bn=bn, k5=k5))
        if name == "3b":
            parts.append("pool3s2p1")
        elif name == "4e":
            parts.append("pool2" if torchvision else "pool3s2p1")
    parts.append("gap,dropout0.2,fc1000" if torchvision else "gap,dropout0.4,fc1000")
    return ",".join(parts)


def nin_spec(in_channels: int = 3, classes: int = 10) -> str:
    """Network in Network (Lin et al. 2014) for CIFAR-10: three mlpconv blocks, global average pooling, no FC layer.

    The authors' CIFAR-10 model: 5x5 conv (192) + two 1x1 "cccp" layers (160, 96), 3x3/2 max pooling, dropout;
    5x5 conv + two 1x1 (192), 3x3/2 average pooling, dropout; 3x3 conv + 1x1 (192) + 1x1 (classes), ReLU, global
    average pooling (one map per class). Pooling windows are padded by 1 where Caffe rounds sizes up
    (32 -> 16 -> 8; 28 -> 14 -> 7 for MNIST-sized inputs); the average pooling counts the padding.

    Examples
    --------
    >>> from cnnkit.models.zoo import nin_spec
    >>> nin_spec().split(",")[-3:]
    ['conv1x1x192x10', 'relu', 'gap']
    """
    return (f"conv5x5x{in_channels}x192p2,relu,conv1x1x192x160,relu,conv1x1x160x96,relu,pool3s2p1,dropout,"
            "conv5x5x96x192p2,relu,conv1x1x192x192,relu,conv1x1x192x192,relu,avgpool3s2p1,dropout,"
            f"conv3x3x192x192p1,relu,conv1x1x192x192,relu,conv1x1x192x{classes},relu,gap")


def _stage(first: str, rest: str, n: int) -> str:
    """A stage of n blocks: the first (which may change size), then n - 1 copies of ``rest``."""
    if first == rest:
        return rest if n == 1 else f"{n}*({rest})"
    if n == 1:
        return first
    return f"{first},{rest}" if n == 2 else f"{first},{n - 1}*({rest})"


def _basic_block(cin: int, cout: int, stride: int) -> str:
    s = f"s{stride}" if stride > 1 else ""
    body = f"conv3x3x{cin}x{cout}{s}p1nobias,bn,relu,conv3x3x{cout}x{cout}p1nobias,bn"
    shortcut = f"|conv1x1x{cin}x{cout}{s}nobias,bn" if stride > 1 or cin != cout else ""
    return f"res({body}{shortcut}),relu"


def _bottleneck(cin: int, width: int, stride: int) -> str:
    s, cout = f"s{stride}" if stride > 1 else "", 4 * width
    body = f"conv1x1x{cin}x{width}nobias,bn,relu,conv3x3x{width}x{width}{s}p1nobias,bn,relu,conv1x1x{width}x{cout}nobias,bn"
    shortcut = f"|conv1x1x{cin}x{cout}{s}nobias,bn" if stride > 1 or cin != cout else ""
    return f"res({body}{shortcut}),relu"


_RESNET = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_spec(depth: int, classes: int = 1000) -> str:
    """ResNet-18/34 (basic blocks) and -50/101/152 (bottlenecks) of He et al. for 224x224x3 inputs.

    BN after every convolution (which has no bias), ReLU after each sum, identity shortcuts within a stage
    and projection shortcuts (1x1 convolution at stride 2, then BN) where the shape changes; a bottleneck's
    stride is on its 3x3 convolution (torchvision's "v1.5"; the paper puts it on the first 1x1: the same
    parameters). Global average pooling and one FC layer.

    Examples
    --------
    >>> from cnnkit.models.zoo import resnet_spec
    >>> resnet_spec(18).split(",")[:4]
    ['conv7x7x3x64s2p3nobias', 'bn', 'relu', 'pool3s2p1']
    >>> resnet_spec(34).count("res(")  # stage 1 repeats one block; the others a projection block and a repeated one
    7
    """
    blocks = _RESNET[depth]
    parts, cin = ["conv7x7x3x64s2p3nobias,bn,relu,pool3s2p1"], 64
    for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        stride = 1 if i == 0 else 2
        if depth >= 50:
            parts.append(_stage(_bottleneck(cin, width, stride), _bottleneck(4 * width, width, 1), n))
            cin = 4 * width
        else:
            parts.append(_stage(_basic_block(cin, width, stride), _basic_block(width, width, 1), n))
            cin = width
    return ",".join([*parts, f"gap,fc{classes}"])


def cifar_resnet_spec(depth: int, in_channels: int = 3, classes: int = 10, shortcuts: bool = True) -> str:
    """He et al.'s CIFAR-10 ResNets (§4.2): 6n+2 layers, 3 stages of n blocks of two 3x3 convolutions (16, 32, 64
    channels), global average pooling, one FC layer. ``shortcuts=False`` gives the plain network of the same depth.

    Shortcuts are option A (the paper's choice for CIFAR: no parameters): identity, and where a stage halves the
    size and doubles the channels, subsampling (a 1x1 max pooling at stride 2) and zero channels (``padc``).

    Examples
    --------
    >>> from cnnkit.models.zoo import cifar_resnet_spec
    >>> cifar_resnet_spec(20).split(",")[:4]
    ['conv3x3x3x16p1nobias', 'bn', 'relu', '3*(res(conv3x3x16x16p1nobias']
    >>> "res(" in cifar_resnet_spec(20, shortcuts=False)
    False
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, 110 ...), not {depth}")
    n = (depth - 2) // 6

    def block(cin: int, cout: int, stride: int) -> str:
        s = f"s{stride}" if stride > 1 else ""
        body = f"conv3x3x{cin}x{cout}{s}p1nobias,bn,relu,conv3x3x{cout}x{cout}p1nobias,bn"
        if not shortcuts:
            return f"{body},relu"
        shortcut = f"|pool1s{stride},padc{cout - cin}" if stride > 1 else ""
        return f"res({body}{shortcut}),relu"

    parts, cin = [f"conv3x3x{in_channels}x16p1nobias,bn,relu"], 16
    for i, width in enumerate((16, 32, 64)):
        stride = 1 if i == 0 else 2
        parts.append(_stage(block(cin, width, stride), block(width, width, 1), n))
        cin = width
    return ",".join([*parts, f"gap,fc{classes}"])


#: MobileNet v1's depthwise-separable layers (Howard et al. 2017, table 1): (input channels, output channels, stride)
MOBILENET_LAYERS = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
                    *((512, 512, 1),) * 5, (512, 1024, 2), (1024, 1024, 1))


def mobilenet_spec(classes: int = 1000) -> str:
    """MobileNet v1 (width 1, 224x224x3): a 3x3/2 convolution, then 13 depthwise-separable layers (a 3x3
    depthwise convolution ``g<channels>`` and a 1x1 pointwise one, each followed by BN and ReLU), average pooling, FC.

    Examples
    --------
    >>> from cnnkit.models.zoo import mobilenet_spec
    >>> mobilenet_spec().split(",")[3:5]
    ['conv3x3x32x32g32p1nobias', 'bn']
    """
    def dw(cin: int, cout: int, stride: int) -> str:
        return f"{_conv(3, cin, cin, stride, 1, bn=True, groups=cin)},{_conv(1, cin, cout, bn=True)}"

    layers = [dw(*m) for m in MOBILENET_LAYERS]
    body = ",".join([*layers[:6], f"5*({layers[6]})", *layers[11:]])
    return f"{_conv(3, 3, 32, 2, 1, bn=True)},{body},gap,fc{classes}"


#: the body of the GAP-head / FC-head pair for 28x28x1 inputs: two VGG-style blocks (BN, ReLU), 28 -> 14 -> 7
_MNIST_BODY = ("conv3x3x1x32p1nobias,bn,relu,conv3x3x32x32p1nobias,bn,relu,pool2,"
               "conv3x3x32x64p1nobias,bn,relu,conv3x3x64x64p1nobias,bn,relu,pool2")
MNIST_HEADS = {"gap": "gap,fc10", "fc": "fc256,relu,dropout,fc10"}


BN_MOMENTUM_MATCONVNET = 0.05  # MatConvNet's bnorm moments learning rate (insertBnorm: learningRate [1 1 0.05])
BN_EPS_MATCONVNET = 1e-4  # vl_nnbnorm's default epsilon (MatConvNet 1.0-beta20)


def _book(name: str, spec: str, bn_momentum: float, description: str) -> ModelDef:
    """One of exercise 15.6's networks with MatConvNet 1.0-beta20's settings: its init, lr, mean image, BN epsilon
    1e-4 and momentum reset at every epoch (``cnn_train``'s ``process_epoch``)."""
    return ModelDef(name, spec, _MNIST, 10, bn_momentum=bn_momentum, description=description, bn_eps=BN_EPS_MATCONVNET,
                    momentum_reset=True)

_MNIST = (28, 28, 1)


def _fixed_models() -> dict[str, ModelDef]:
    m = BN_MOMENTUM_MATCONVNET
    return {
        "base": _book("base", base_spec(), 0.1, "exercise 15.6 BASE (MatConvNet MNIST)"),
        "bn": _book("bn", bn_spec(), m, "BASE + batch norm after the first three convolutions"),
        "sk": _book("sk", sk_spec(1.0), m, "BN with block 1 as two 3x3 convolutions"),
        "lenet5": ModelDef("lenet5", LENET5_SPEC, (28, 28, 1), 10, init="pytorch", lr=0.01, preprocess="scale",
                           description="LeNet-5 (tanh, average pooling)"),
        "cifar": ModelDef("cifar", CIFAR_SPEC, (32, 32, 3), 10, init="he", lr=0.01, preprocess="per_channel",
                           description="CIFAR-10: [CONV-RELU-POOL]x2-FC-RELU-FC"),
        "vgg16": ModelDef("vgg16", VGG16_SPEC, (224, 224, 3), 1000, init="he", lr=0.01, preprocess="per_channel",
                           description="VGG-16 as in the chapter's Table 15.2"),
        "vgg16-fcn": ModelDef("vgg16-fcn", VGG16_FCN_SPEC, (224, 224, 3), 1000, init="he", lr=0.01, preprocess="per_channel",
                              description="VGG-16 fully convolutional: any input of at least 224x224 gives a map of scores"),
        "alexnet": _he("alexnet", ALEXNET_SPEC, (227, 227, 3), 1000, 0.01,
                       "AlexNet as published (Krizhevsky et al. 2012): two towers as groups=2 on conv2/4/5, LRN after conv1 and "
                       "conv2; 60,965,224 parameters (Caffe's bvlc_alexnet)"),
        "alexnet-1tower": _he("alexnet-1tower", ALEXNET_1TOWER_SPEC, (227, 227, 3), 1000, 0.01,
                              "AlexNet as one tower, no LRN; 62,378,344 parameters"),
        "zfnet": _he("zfnet", ZFNET_SPEC, (224, 224, 3), 1000, 0.01,
                     "ZF Net (Zeiler & Fergus 2014, fig. 3): 7x7/2 conv1, 5x5/2 conv2, AlexNet's LRN; 62,357,608 parameters"),
        "vgg11": _he("vgg11", vgg_spec(11), (224, 224, 3), 1000, 0.01, "VGG-11 (configuration A); 132,863,336 parameters"),
        "vgg19": _he("vgg19", vgg_spec(19), (224, 224, 3), 1000, 0.01, "VGG-19 (configuration E); 143,667,240 parameters"),
        "googlenet": _he("googlenet", googlenet_spec(), (224, 224, 3), 1000, 0.01,
                         "GoogLeNet (Inception v1, Szegedy et al. 2015) as published, 9 inception modules, LRN in the stem, "
                         "without the two auxiliary classifiers; 6,998,552 parameters (biases included)"),
        "googlenet-bn": _he("googlenet-bn", googlenet_spec(torchvision=True), (224, 224, 3), 1000, 0.01,
                            "GoogLeNet in torchvision's layout (BN after every convolution, a 3x3 convolution in the 5x5 branch), "
                            "without the auxiliary classifiers; 6,624,904 parameters as torchvision's googlenet(aux_logits=False)"),
        "nin": _he("nin", nin_spec(), (32, 32, 3), 10, 0.01,
                   "Network in Network (Lin et al. 2014) for CIFAR-10: mlpconv blocks, global average pooling; 966,986 parameters"),
        "resnet18": _he("resnet18", resnet_spec(18), (224, 224, 3), 1000, 0.1, "ResNet-18 (He et al. 2016); 11,689,512 parameters"),
        "resnet34": _he("resnet34", resnet_spec(34), (224, 224, 3), 1000, 0.1, "ResNet-34 (He et al. 2016); 21,797,672 parameters"),
        "resnet50": _he("resnet50", resnet_spec(50), (224, 224, 3), 1000, 0.1,
                        "ResNet-50 (He et al. 2016), bottleneck blocks, stride on the 3x3 convolution; 25,557,032 parameters"),
        "resnet20": _he("resnet20", cifar_resnet_spec(20), (32, 32, 3), 10, 0.1,
                        "CIFAR-10 ResNet-20 (He et al. §4.2), option A shortcuts; 269,722 parameters (the paper's 0.27M)"),
        "resnet56": _he("resnet56", cifar_resnet_spec(56), (32, 32, 3), 10, 0.1,
                        "CIFAR-10 ResNet-56 (He et al. §4.2), option A shortcuts; 853,018 parameters (the paper's 0.85M)"),
        "plain20": _he("plain20", cifar_resnet_spec(20, shortcuts=False), (32, 32, 3), 10, 0.1,
                       "CIFAR-10 plain-20: ResNet-20 without its shortcuts (He et al. fig. 6); 269,722 parameters"),
        "plain56": _he("plain56", cifar_resnet_spec(56, shortcuts=False), (32, 32, 3), 10, 0.1,
                       "CIFAR-10 plain-56: ResNet-56 without its shortcuts; 853,018 parameters"),
        "mobilenet": _he("mobilenet", mobilenet_spec(), (224, 224, 3), 1000, 0.01,
                         "MobileNet v1 (Howard et al. 2017), width 1: depthwise-separable convolutions; 4,231,976 parameters"),
        "resnet20-mnist": _he("resnet20-mnist", cifar_resnet_spec(20, 1), _MNIST, 10, 0.1,
                              "ResNet-20 for 28x28x1 (Fashion-)MNIST: 28 -> 14 -> 7, option A shortcuts; 269,434 parameters"),
        "resnet56-mnist": _he("resnet56-mnist", cifar_resnet_spec(56, 1), _MNIST, 10, 0.1,
                              "ResNet-56 for 28x28x1 inputs, option A shortcuts; 852,730 parameters"),
        "plain20-mnist": _he("plain20-mnist", cifar_resnet_spec(20, 1, shortcuts=False), _MNIST, 10, 0.1,
                             "plain-20 for 28x28x1 inputs: resnet20-mnist without shortcuts (exercise 15.4); 269,434 parameters"),
        "plain56-mnist": _he("plain56-mnist", cifar_resnet_spec(56, 1, shortcuts=False), _MNIST, 10, 0.1,
                             "plain-56 for 28x28x1 inputs: resnet56-mnist without shortcuts; 852,730 parameters"),
        "nin-mnist": _he("nin-mnist", nin_spec(1), _MNIST, 10, 0.01,
                         "Network in Network for 28x28x1 inputs (28 -> 14 -> 7, GAP head); 957,386 parameters"),
        "cnn-gap-mnist": _he("cnn-gap-mnist", f"{_MNIST_BODY},{MNIST_HEADS['gap']}", _MNIST, 10, 0.01,
                             "two VGG-style blocks (BN) with a GAP head: global average pooling + fc10 (exercise 15.4c); "
                             "65,834 parameters"),
        "cnn-fc-mnist": _he("cnn-fc-mnist", f"{_MNIST_BODY},{MNIST_HEADS['fc']}", _MNIST, 10, 0.01,
                            "the same blocks with an FC head: fc256 + ReLU + dropout + fc10 on the 7x7x64 map; 870,826 parameters"),
    }


def _he(name: str, spec: str, shape: tuple[int, int, int], classes: int, lr: float, description: str) -> ModelDef:
    """A model trained from He initialisation on per-channel standardised inputs (the defaults said in its description)."""
    return ModelDef(name, spec, shape, classes, init="he", lr=lr, preprocess="per_channel",
                    description=f"{description}; defaults: He init, per-channel standardisation, lr {lr:g}")


_VARIANT = re.compile(r"^(base|bn|sk(?:-(\d+(?:\.\d+)?))?)((?:-sigmoid|-dropout)*)$")


def model_names() -> list[str]:
    """The named models (SK-s takes any multiplier: sk-0.2, sk-1.5 ...; book models take -sigmoid/-dropout).

    Examples
    --------
    >>> from cnnkit.models import model_names
    >>> model_names()[:8]
    ['base', 'bn', 'sk', 'lenet5', 'cifar', 'vgg16', 'vgg16-fcn', 'alexnet']
    >>> "resnet50" in model_names(), model_names()[-3:]
    (True, ['sk-<s>', '<book model>-sigmoid', '<book model>-dropout'])
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
    >>> get_model_def("resnet51")
    Traceback (most recent call last):
    ...
    KeyError: "unknown model 'resnet51'; known: base, bn, sk, ...
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
    return _book(key, spec, mom, f"exercise 15.6 variant {key}")


def _looks_like_spec(text: str) -> bool:
    """A network string rather than a (mistyped) model name: commas, parentheses, a repetition or one known token."""
    t = "".join(text.split()).lower()
    if any(c in t for c in ",(*|") or t.startswith(("conv", "pool", "fc")):
        return True
    try:
        kind_of(t)
    except SpecError:
        return False
    return True


def _classes(tokens: list[Token], input_shape: tuple[int, int, int]) -> int:
    """Outputs of a network string: its last shape's channels, else (it does not fit) its last conv/fc's outputs."""
    try:
        return int(infer_shapes(tokens, input_shape)[-1][-1])
    except SpecError:
        return next((int(t.args["out"]) for t in reversed(leaves(tokens)) if t.kind in ("conv", "fc")), 0)


def resolve(name_or_spec: str, input_shape: tuple[int, int, int] | None = None) -> ModelDef:
    """A model name, or a network string (then ``input_shape`` defaults to MNIST's 28x28x1).

    A named model takes another ``input_shape`` when that builds the same parameters (a global-pooling head:
    ``resnet18`` on 64x64x3), not when it changes a fully connected layer's size (``vgg16``).

    Examples
    --------
    >>> from cnnkit.models import resolve
    >>> resolve("base").spec == resolve("conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10").spec
    True
    >>> d = resolve("conv5x5x3x8,pool2,fc4", (32, 32, 3))
    >>> d.name, d.input_shape, d.classes
    ('custom', (32, 32, 3), 4)
    >>> resolve("conv3x3x1x8p1,res(conv3x3x8x8p1,relu),gap").classes
    8
    >>> resolve("resnet18", (64, 64, 3)).name
    'resnet18'
    """
    try:
        d = get_model_def(name_or_spec)
    except KeyError as name_error:
        if not _looks_like_spec(name_or_spec):
            raise SpecError(str(name_error).strip("'\"")) from None
        tokens = parse(name_or_spec)
        shape = input_shape or _MNIST
        return ModelDef("custom", name_or_spec, shape, _classes(tokens, shape))
    if input_shape is not None and tuple(input_shape) != d.input_shape and _sized_for_input(d, tuple(input_shape)):
        fcn = f"; {d.name}-fcn is its fully convolutional form, which takes larger inputs" if d.name == "vgg16" else ""
        sized = "x".join(map(str, d.input_shape))
        raise SpecError(
            f"{d.name}'s fully connected layers are sized for {sized} inputs, not {'x'.join(map(str, input_shape))} "
            f"(another size would build another network){fcn}"
        )
    return d


def _sized_for_input(d: ModelDef, input_shape: tuple[int, ...]) -> bool:
    """Whether a named model's fully connected layers would change size on ``input_shape`` (a SpecError if it does not fit)."""
    from cnnkit.summary import summarize

    tokens = parse(d.spec)
    if not any(t.kind == "fc" for t in leaves(tokens)):
        return False
    return summarize(tokens, d.input_shape).total_params != summarize(tokens, input_shape).total_params


def model_input(name_or_spec: str) -> tuple[tuple[int, int, int] | None, int]:
    """(input shape of a named model, else None; channels it takes): a network string's channels are its
    first convolution's input channels (3 when it starts otherwise).

    Examples
    --------
    >>> model_input("base"), model_input("conv3x3x3x8,pool2,fc10"), model_input("res(conv3x3x1x1p1),fc2")
    (((28, 28, 1), 1), (None, 3), (None, 1))
    """
    try:
        d = get_model_def(name_or_spec)
    except KeyError:
        tokens = parse(name_or_spec)
        return None, next((int(t.args["in"]) for t in leaves(tokens) if "in" in t.args), 3)
    return d.input_shape, d.input_shape[2]


def create(
    name_or_spec: str,
    rng: np.random.Generator | None = None,
    dtype: object = np.float32,
    input_shape: tuple[int, int, int] | None = None,
    init: str | None = None,
    bn_eps: float | None = None,
) -> Sequential:
    """Build a named model (or a network string) with its default initialisation and BN epsilon, or ``init`` and
    ``bn_eps`` instead (``init``: "matconvnet", "he" or "pytorch", see :class:`~cnnkit.models.BuildOptions`).

    Examples
    --------
    Exercise 15.6's BASE: the last two convolutions act as fully connected layers (§15.5.8), so the output is 1 x 1 x 10.

    >>> import numpy as np
    >>> from cnnkit.models import create
    >>> net = create("base", rng=np.random.default_rng(0))
    >>> net.forward(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 1, 1, 10)

    The book's BN layers take MatConvNet's epsilon 1e-4 unless told otherwise:

    >>> [layer.eps for layer in create("bn") if hasattr(layer, "eps")], create("bn", bn_eps=1e-5)[1].eps
    ([0.0001, 0.0001, 0.0001], 1e-05)
    """
    d = resolve(name_or_spec, input_shape)
    opts = BuildOptions(init=init or d.init, bn_momentum=d.bn_momentum, bn_eps=d.bn_eps if bn_eps is None else float(bn_eps),
                        dtype=dtype)
    return build(d.spec, input_shape or d.input_shape, rng, opts)
