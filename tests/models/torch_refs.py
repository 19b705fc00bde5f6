"""Small PyTorch modules written after the papers (and torchvision's code where it is the reference), to check
the zoo's network strings against: parameter counts on the meta device, output shapes, and (for the small
blocks) outputs and gradients with copied weights. Import only after ``require_torch()``.

Each module lists its layers in the order the network string writes them (conv, BN, ..., the shortcut after
the body, the branches of an Inception module in order), so that :func:`copy_weights` can pair them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F

# -- weights between cnnkit (NHWC) and torch (NCHW) ----------------------------------------------------------


def _pairs(net, module):
    ours = [layer for _, layer in net.named_leaves() if layer.params or layer.buffers]
    theirs = [m for m in module.modules() if isinstance(m, (tnn.Conv2d, tnn.BatchNorm2d, tnn.Linear))]
    names = {"Conv2d": tnn.Conv2d, "BatchNorm2d": tnn.BatchNorm2d, "Linear": tnn.Linear}
    assert [type(m) for m in theirs] == [names[type(layer).__name__] for layer in ours]
    return list(zip(ours, theirs))


def _to_torch(name: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:  # conv weight (kh, kw, in/g, out) -> (out, in/g, kh, kw)
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:  # linear weight (in, out) -> (out, in)
        return value.T
    return value


def copy_weights(net, module) -> None:
    """Copy a cnnkit network's parameters and BN statistics into a torch module of the same layers (float64)."""
    with torch.no_grad():
        for layer, m in _pairs(net, module):
            for k, v in {**layer.params, **layer.buffers}.items():
                if k == "num_batches_tracked":
                    continue
                getattr(m, k).copy_(torch.tensor(np.ascontiguousarray(_to_torch(k, np.asarray(v)))))


def grads_pairs(net, module):
    """(cnnkit gradient, torch gradient in cnnkit's layout) for every parameter."""
    out = []
    for layer, m in _pairs(net, module):
        for k in layer.params:
            g = getattr(m, k).grad.detach().numpy()
            out.append((layer.grads[k], g.transpose(2, 3, 1, 0) if g.ndim == 4 else (g.T if g.ndim == 2 else g)))
    return out


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- blocks ----------------------------------------------------------------------------------------------------


class BasicBlock(tnn.Module):
    """torchvision's BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU; projection (1x1 conv, BN) on a change."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(tnn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3x3 convolution), expansion 4."""

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, width, 1, bias=False), tnn.BatchNorm2d(width)
        self.conv2, self.bn2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False), tnn.BatchNorm2d(width)
        self.conv3, self.bn3 = tnn.Conv2d(width, 4 * width, 1, bias=False), tnn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or cin != 4 * width:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, 4 * width, 1, stride, bias=False), tnn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class OptionABlock(tnn.Module):
    """He et al.'s CIFAR block with the option-A shortcut (as in the common PyTorch reimplementations): subsample
    by 2 and pad the new channels with zeros (here appended after the old ones); ``residual=False``: plain."""

    def __init__(self, cin: int, cout: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
        self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
        self.stride, self.extra, self.residual = stride, cout - cin, residual

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if not self.residual:
            return F.relu(out)
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        return F.relu(out + F.pad(short, (0, 0, 0, 0, 0, self.extra)))


class Inception(tnn.Module):
    """GoogLeNet's module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, each convolution with ReLU,
    concatenated on channels. ``bn``: torchvision's BasicConv2d (no bias, BN eps 1e-3); ``k5``: torchvision's 3."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp, bn: bool = False, k5: int = 5) -> None:
        super().__init__()

        def conv(i, o, k, p=0):
            if bn:
                return [tnn.Conv2d(i, o, k, padding=p, bias=False), tnn.BatchNorm2d(o, eps=0.001), tnn.ReLU()]
            return [tnn.Conv2d(i, o, k, padding=p), tnn.ReLU()]

        self.branch1 = tnn.Sequential(*conv(cin, c1, 1))
        self.branch2 = tnn.Sequential(*conv(cin, c3r, 1), *conv(c3r, c3, 3, 1))
        self.branch3 = tnn.Sequential(*conv(cin, c5r, 1), *conv(c5r, c5, k5, k5 // 2))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), *conv(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# -- networks ----------------------------------------------------------------------------------------------------


def _classifier(n_in: int, classes: int = 1000) -> list:
    return [tnn.Flatten(), tnn.Linear(n_in, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(),
            tnn.Linear(4096, classes)]


def alexnet(towers: int = 2) -> tnn.Module:
    """Krizhevsky et al. 2012 (fig. 2, §3): with ``towers=2`` the GPU split as groups=2 where the towers do not talk
    (conv2, conv4, conv5) and the paper's LRN (k=2, n=5, alpha=1e-4 per element of the sum, beta=0.75)."""
    g = towers
    lrn = [tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if towers == 2 else []
    return tnn.Sequential(
        tnn.Conv2d(3, 96, 11, 4), tnn.ReLU(), *lrn, tnn.MaxPool2d(3, 2),
        tnn.Conv2d(96, 256, 5, padding=2, groups=g), tnn.ReLU(), *lrn, tnn.MaxPool2d(3, 2),
        tnn.Conv2d(256, 384, 3, padding=1), tnn.ReLU(),
        tnn.Conv2d(384, 384, 3, padding=1, groups=g), tnn.ReLU(),
        tnn.Conv2d(384, 256, 3, padding=1, groups=g), tnn.ReLU(), tnn.MaxPool2d(3, 2),
        *_classifier(6 * 6 * 256),
    )


def zfnet() -> tnn.Module:
    """Zeiler & Fergus 2014, fig. 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6."""
    lrn = tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return tnn.Sequential(
        tnn.Conv2d(3, 96, 7, 2, 1), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True), lrn,
        tnn.Conv2d(96, 256, 5, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True), lrn,
        tnn.Conv2d(256, 384, 3, padding=1), tnn.ReLU(), tnn.Conv2d(384, 384, 3, padding=1), tnn.ReLU(),
        tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2),
        *_classifier(6 * 6 * 256),
    )


VGG_CFG = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
           19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]}


def vgg(depth: int) -> tnn.Module:
    """torchvision's VGG without BN (configurations A, D, E), on 224x224 (7x7x512 before the classifier)."""
    layers, cin = [], 3
    for v in VGG_CFG[depth]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2))
        else:
            layers += [tnn.Conv2d(cin, v, 3, padding=1), tnn.ReLU()]
            cin = v
    return tnn.Sequential(*layers, *_classifier(7 * 7 * 512))


GOOGLENET = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "M",
             (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
             (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), "M4",
             (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]


def googlenet(torchvision: bool = False) -> tnn.Module:
    """Szegedy et al. 2015, table 1, without the auxiliary classifiers; ``torchvision=True``: torchvision's
    GoogLeNet(aux_logits=False, init_weights=False) layout (BasicConv2d, 3x3 in the 5x5 branch, no LRN)."""
    if torchvision:
        def conv(i, o, k, s=1, p=0):
            return [tnn.Conv2d(i, o, k, s, p, bias=False), tnn.BatchNorm2d(o, eps=0.001), tnn.ReLU()]

        stem = [*conv(3, 64, 7, 2, 3), tnn.MaxPool2d(3, 2, ceil_mode=True), *conv(64, 64, 1), *conv(64, 192, 3, 1, 1),
                tnn.MaxPool2d(3, 2, ceil_mode=True)]
    else:
        lrn = tnn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
        stem = [tnn.Conv2d(3, 64, 7, 2, 3), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True), lrn,
                tnn.Conv2d(64, 64, 1), tnn.ReLU(), tnn.Conv2d(64, 192, 3, padding=1), tnn.ReLU(), lrn,
                tnn.MaxPool2d(3, 2, ceil_mode=True)]
    body = []
    for m in GOOGLENET:
        if m == "M":
            body.append(tnn.MaxPool2d(3, 2, ceil_mode=True))
        elif m == "M4":
            body.append(tnn.MaxPool2d(2, 2, ceil_mode=True) if torchvision else tnn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            body.append(Inception(*m, bn=torchvision, k5=3 if torchvision else 5))
    head = [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(0.2 if torchvision else 0.4), tnn.Linear(1024, 1000)]
    return tnn.Sequential(*stem, *body, *head)


def nin(in_channels: int = 3, classes: int = 10) -> tnn.Module:
    """Lin et al. 2014, the authors' CIFAR-10 model (Caffe's NIN: conv + two cccp layers per block, GAP)."""
    def mlpconv(i, o, k, p, a, b):
        return [tnn.Conv2d(i, o, k, padding=p), tnn.ReLU(), tnn.Conv2d(o, a, 1), tnn.ReLU(), tnn.Conv2d(a, b, 1), tnn.ReLU()]

    return tnn.Sequential(
        *mlpconv(in_channels, 192, 5, 2, 160, 96), tnn.MaxPool2d(3, 2, ceil_mode=True), tnn.Dropout(),
        *mlpconv(96, 192, 5, 2, 192, 192), tnn.AvgPool2d(3, 2, ceil_mode=True), tnn.Dropout(),
        *mlpconv(192, 192, 3, 1, 192, classes), tnn.AdaptiveAvgPool2d(1),
    )


def resnet(depth: int) -> tnn.Module:
    """torchvision's ResNet-18/34/50."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    layers, cin = [tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)], 64
    for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            if depth >= 50:
                layers.append(Bottleneck(cin, width, stride))
                cin = 4 * width
            else:
                layers.append(BasicBlock(cin, width, stride))
                cin = width
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(cin, 1000))


def cifar_resnet(depth: int, in_channels: int = 3, residual: bool = True) -> tnn.Module:
    """He et al. §4.2: 6n+2 layers, 16-32-64 channels, option A shortcuts (or none), GAP, fc10."""
    n = (depth - 2) // 6
    layers, cin = [tnn.Conv2d(in_channels, 16, 3, padding=1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
    for i, width in enumerate((16, 32, 64)):
        for j in range(n):
            layers.append(OptionABlock(cin, width, 2 if i > 0 and j == 0 else 1, residual))
            cin = width
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))


def mobilenet() -> tnn.Module:
    """Howard et al. 2017, table 1: MobileNet v1 1.0-224 (every convolution followed by BN and ReLU)."""
    def conv_bn(i, o, k, s=1, g=1):
        return [tnn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), tnn.BatchNorm2d(o), tnn.ReLU()]

    cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2), *[(512, 512, 1)] * 5,
           (512, 1024, 2), (1024, 1024, 1)]
    layers = conv_bn(3, 32, 3, 2)
    for i, o, s in cfg:
        layers += conv_bn(i, i, 3, s, g=i) + conv_bn(i, o, 1)
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(1024, 1000))
