"""Writing a cnnkit network as an ONNX model: :func:`export`.

cnnkit computes in NHWC, ONNX in NCHW. The exported graph takes an (N, C, H, W) tensor named ``input``
(N dynamic) and gives ``output``; a 4-D output is NCHW (transpose it (0, 2, 3, 1) to compare with cnnkit's
NHWC), a flat one is exactly cnnkit's: the default NHWC :class:`~cnnkit.nn.Flatten` is written as
``Transpose(0, 2, 3, 1)`` + ``Flatten``, so that the fully connected layers after it keep their weights.
Parameters are written in ONNX's layouts (a convolution's (kh, kw, C_in/groups, C_out) as OIHW, a Linear's
(in, out) as Gemm's B) in float32, evaluation-mode semantics throughout (batch normalisation with the
running statistics, dropout as the identity).

With ``preprocess`` (a :class:`~cnnkit.data.Preprocessor`'s ``to_dict()``, e.g. a model file's) the graph
takes raw 0-255 pixels as uint8: ``Cast`` and the mode's ``Sub``/``Div`` come before the network, so
``onnxruntime`` gives the same scores as ``cnnkit predict``. Class names, the input shape and the
preprocessing mode go into ``metadata_props`` (see :mod:`cnnkit.onnx.common`).

Layers and their ONNX operators: Conv2d -> Conv (groups, dilation, any padding incl. "same" and asymmetric),
ConvTranspose2d -> ConvTranspose (groups, asymmetric pads, output_padding), MaxPool2d -> MaxPool (dilation,
ceil_mode, asymmetric and named pads), AvgPool2d -> AveragePool (count_include_pad, ceil_mode; dilation from
opset 19; a ``divisor_override``, or a ceil-mode divisor ONNX cannot say, adds a Mul), LPPool2d -> LpPool
(integer p; ceil_mode as end padding), GlobalAvgPool2d -> GlobalAveragePool, GlobalMaxPool2d -> GlobalMaxPool,
MaxUnpool2d (built with ``pool=``) -> MaxUnpool fed by the pool's Indices, Upsample -> Resize (nearest; its
coordinate and rounding conventions, scales or sizes), ReLU, Sigmoid, Tanh, LeakyReLU, PReLU, ELU, Softplus
(beta and threshold as Mul/Div/Where), Softmax, LogSoftmax, BatchNorm1d/2d -> BatchNormalization (running
statistics), Dropout, Linear -> Gemm, Flatten, Identity, ChannelPad -> Pad, LocalResponseNorm -> LRN (odd
sizes); Sequential, Residual (Add), Concat and Graph (Add, Concatenate) are walked, a layer used at several
places is written once as initializers. Not written: LocallyConnected2d (no ONNX operator), batch norm without
running statistics, LPPool2d with a fractional p, MaxUnpool2d without its pool, even-sized LocalResponseNorm,
and any layer class cnnkit.onnx does not know (a subclass included): the error names each one's dotted path
and class.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import nn
from cnnkit.errors import OnnxError
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
from cnnkit.nn.base import Layer
from cnnkit.nn.container import Container
from cnnkit.onnx.common import (
    FORMAT,
    INPUT_NAME,
    KEY_CLASSES,
    KEY_FORMAT,
    KEY_INPUT_SHAPE,
    KEY_PREPROCESS,
    OUTPUT_NAME,
    nhwc_axis_to_nchw,
    onnx_module,
)
from cnnkit.ops.geometry import resolve_padding

MIN_OPSET = 13
"""The oldest opset :func:`export` writes (Softmax over one axis, Squeeze/Dropout/Resize with inputs)."""

_SOFTPLUS_EXACT = 15.0
"""Softplus thresholds below this are written exactly (a Where); above, log(1 + e^x) and x agree in float32."""


@dataclass(frozen=True)
class _Val:
    """A tensor of the graph being written: its name and one example's shape as cnnkit sees it (NHWC)."""

    name: str
    shape: tuple[int, ...]

    @property
    def image(self) -> bool:
        return len(self.shape) == 3


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _ints(values: Sequence[int]) -> list[int]:
    return [int(v) for v in values]


class _Writer:
    """Collects the nodes and initializers of one export."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.tensors: set[str] = {INPUT_NAME, OUTPUT_NAME}
        self.node_names: set[str] = set()
        self.params: dict[tuple[int, str], str] = {}
        self.indices: dict[int, tuple[str, str, tuple[int, ...]]] = {}  # id(MaxPool2d) -> (indices, pool input, its shape)

    # -- names, constants, nodes -----------------------------------------------------------------
    def fresh(self, base: str, names: set[str] | None = None) -> str:
        names = self.tensors if names is None else names
        base = base or "t"
        name, i = base, 1
        while name in names:
            name, i = f"{base}_{i}", i + 1
        names.add(name)
        return name

    def const(self, base: str, array: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.array(array, dtype=dtype, order="C"), name))  # 0-d stays 0-d
        return name

    def param(self, layer: Layer, key: str, path: str, convert: Callable[[np.ndarray], np.ndarray] = lambda a: a) -> str:
        """The initializer of ``layer.params[key]`` (written once for a layer used at several places)."""
        k = (id(layer), key)
        if k not in self.params:
            self.params[k] = self.const(_join(path, key), convert(np.asarray(layer.params[key], dtype=np.float32)))
        return self.params[k]

    def node(self, op: str, inputs: Sequence[str], path: str, outputs: int = 1, **attrs: Any) -> list[str]:
        base = path or op.lower()
        outs = [self.fresh(base if i == 0 else f"{base}:{i}") for i in range(outputs)]
        name = self.fresh(f"{path}/{op}" if path else op, self.node_names)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs

    def one(self, op: str, inputs: Sequence[str], path: str, **attrs: Any) -> str:
        return self.node(op, inputs, path, 1, **attrs)[0]

    # -- layers -------------------------------------------------------------------------------------
    def emit(self, layer: Layer, x: _Val, path: str) -> _Val:
        kind = type(layer)
        if kind is Sequential:
            for name, child in layer.named_children():  # type: ignore[attr-defined]
                x = self.emit(child, x, _join(path, name))
            return x
        if kind is Residual:
            kids = dict(layer.named_children())  # type: ignore[attr-defined]
            y = self.emit(kids["body"], x, _join(path, "body"))
            s = self.emit(kids["shortcut"], x, _join(path, "shortcut")) if "shortcut" in kids else x
            return _Val(self.one("Add", [y.name, s.name], _join(path, "add")), y.shape)
        if kind is Concat:
            outs = [self.emit(child, x, _join(path, name)) for name, child in layer.named_children()]  # type: ignore[attr-defined]
            shape = (*outs[0].shape[:-1], sum(o.shape[-1] for o in outs))
            axis = 1 if outs[0].image else -1
            return _Val(self.one("Concat", [o.name for o in outs], _join(path, "concat"), axis=axis), shape)
        if kind is Graph:
            return self._graph(layer, x, path)  # type: ignore[arg-type]
        handler = _HANDLERS.get(kind)
        if handler is None:  # checked for every layer before writing starts
            raise OnnxError(f"layer {path or '(the network)'} ({kind.__name__}) has no ONNX form")
        return handler(self, layer, x, path)

    def _graph(self, g: Graph, x: _Val, path: str) -> _Val:
        kids = dict(g.named_children())
        out = g.output
        live = {out}
        for node in reversed(g.nodes):
            if node.name in live:
                live.update(node.inputs)
        env = {g.input_name: x}
        for node in g.nodes:
            if node.name not in live:
                continue
            layer, ins = kids[node.name], [env[n] for n in node.inputs]
            p = _join(path, node.name)
            if isinstance(layer, Add):
                y = ins[0]
                for other in ins[1:]:
                    y = _Val(self.one("Add", [y.name, other.name], p), y.shape)
                if len(ins) == 1:
                    y = _Val(self.one("Identity", [y.name], p), y.shape)
                env[node.name] = y
            elif isinstance(layer, Concatenate):
                shape = layer.merged_shape([v.shape for v in ins])
                nd = len(ins[0].shape) + 1
                a = layer.axis + nd if layer.axis < 0 else layer.axis
                axis = nhwc_axis_to_nchw(a) if nd == 4 else a
                env[node.name] = _Val(self.one("Concat", [v.name for v in ins], p, axis=axis), shape)
            else:
                env[node.name] = self.emit(layer, ins[0], p)
        return env[out]


# -- one function per layer class ------------------------------------------------------------------
def _pads(padding: Any, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] of a cnnkit padding argument."""
    t, b, l, r = resolve_padding(padding, hw, kernel, stride, dilation)
    return [t, l, b, r]


def _conv(w: _Writer, layer: Conv2d, x: _Val, path: str) -> _Val:
    h, wd, _ = x.shape
    ins = [x.name, w.param(layer, "weight", path, lambda a: a.transpose(3, 2, 0, 1))]  # (kh, kw, C_in/g, C_out) -> OIHW
    if "bias" in layer.params:
        ins.append(w.param(layer, "bias", path))
    y = w.one("Conv", ins, path, kernel_shape=_ints(layer.kernel_size), strides=_ints(layer.stride),
              pads=_pads(layer.padding, (h, wd), layer.kernel_size, layer.stride, layer.dilation),
              dilations=_ints(layer.dilation), group=int(layer.groups))
    return _Val(y, layer.output_shape(x.shape))


def _conv_transpose(w: _Writer, layer: ConvTranspose2d, x: _Val, path: str) -> _Val:
    groups = int(getattr(layer, "groups", 1))
    kh, kw = layer.kernel_size
    weight = np.asarray(layer.params["weight"]).transpose(2, 3, 0, 1)  # (kh, kw, C_in, C_out/g) -> (C_in, C_out/g, kh, kw)
    if weight.shape != (layer.in_channels, layer.out_channels // groups, kh, kw):
        raise OnnxError(f"layer {path} (ConvTranspose2d): a weight of shape {tuple(layer.params['weight'].shape)} with groups={groups} "
                        f"has no known ONNX layout")
    ins = [x.name, w.param(layer, "weight", path, lambda a: a.transpose(2, 3, 0, 1))]
    if "bias" in layer.params:
        ins.append(w.param(layer, "bias", path))
    t, b, l, r = resolve_padding(layer.padding, (1, 1), (1, 1), (1, 1), (1, 1))  # explicit: (ph, pw) or ((t, b), (l, r))
    y = w.one("ConvTranspose", ins, path, kernel_shape=[kh, kw], strides=_ints(layer.stride), pads=[t, l, b, r],
              output_padding=_ints(layer.output_padding), dilations=_ints(layer.dilation), group=groups)
    return _Val(y, layer.output_shape(x.shape))


def _ceil_geometry(
    in_hw: tuple[int, int], out_hw: Sequence[int], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
    pads: list[int], ceil_mode: bool, floor: bool = False,
) -> tuple[list[int], int]:
    """ONNX (pads, ceil_mode) giving cnnkit's windows.

    cnnkit (like PyTorch) drops a last ceil-mode window that would start in the end padding; ONNX's shape
    inference does not. Where that rule changes the output size (or ``floor`` asks for it), the windows are
    written in floor mode with the overhang as extra end padding (which max, Lp and count_include_pad=False
    averages ignore).
    """
    if not ceil_mode:
        return pads, 0
    t, l, b, r = pads
    spans = (in_hw[0] + t + b - dilation[0] * (kernel[0] - 1) - 1, in_hw[1] + l + r - dilation[1] * (kernel[1] - 1) - 1)
    spec = [-(-span // s) + 1 for span, s in zip(spans, stride)]
    if spec == list(out_hw) and not floor:
        return pads, 1
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + p0 + p1))
             for o, s, d, k, n, p0, p1 in zip(out_hw, stride, dilation, kernel, in_hw, (t, l), (b, r))]
    return [t, l, b + extra[0], r + extra[1]], 0


def _max_pool(w: _Writer, layer: MaxPool2d, x: _Val, path: str) -> _Val:
    h, wd, _ = x.shape
    out = layer.output_shape(x.shape)
    dilation = (int(layer.dilation[0]), int(layer.dilation[1]))
    pads = _pads(layer.padding, (h, wd), layer.kernel_size, layer.stride, dilation)
    pads, ceil = _ceil_geometry((h, wd), out[:2], layer.kernel_size, layer.stride, dilation, pads, layer.ceil_mode)
    attrs: dict[str, Any] = dict(kernel_shape=_ints(layer.kernel_size), strides=_ints(layer.stride), pads=pads, ceil_mode=ceil)
    if tuple(layer.dilation) != (1, 1):
        attrs["dilations"] = _ints(layer.dilation)
    if layer.mirrored:  # a MaxUnpool2d reads its switches: write them as MaxPool's Indices output
        y, idx = w.node("MaxPool", [x.name], path, 2, **attrs)
        w.indices[id(layer)] = (idx, x.name, x.shape)
    else:
        y = w.one("MaxPool", [x.name], path, **attrs)
    return _Val(y, out)


def _dilation(layer: Layer, w: _Writer, path: str, op: str, since: int) -> tuple[int, int]:
    """A pooling layer's dilation; OnnxError when the opset's ``op`` has no dilations yet."""
    d = tuple(int(v) for v in getattr(layer, "dilation", (1, 1)))
    if d != (1, 1) and w.opset < since:
        raise OnnxError(f"layer {path} ({type(layer).__name__}): dilation {d} needs opset {since} or later ({op}'s dilations); "
                        f"export with opset={since}")
    return d[0], d[1]


def _avg_pool(w: _Writer, layer: AvgPool2d, x: _Val, path: str) -> _Val:
    h, wd, _ = x.shape
    out = layer.output_shape(x.shape)
    kernel, stride = layer.kernel_size, layer.stride
    dilation = _dilation(layer, w, path, "AveragePool", 19)
    pads = _pads(layer.padding, (h, wd), kernel, stride, dilation)
    onnx_pads, ceil = _ceil_geometry((h, wd), out[:2], kernel, stride, dilation, pads, layer.ceil_mode)
    divisor = layer.divisor_override
    # a divisor ONNX's attributes cannot say: average over whole windows of the padded input, then rescale
    rescale = divisor is not None or (layer.count_include_pad and onnx_pads != pads and not ceil)
    if rescale:
        onnx_pads, ceil = _ceil_geometry((h, wd), out[:2], kernel, stride, dilation, pads, layer.ceil_mode, floor=True)
    attrs: dict[str, Any] = dict(kernel_shape=_ints(kernel), strides=_ints(stride), pads=onnx_pads, ceil_mode=ceil,
                                 count_include_pad=1 if rescale else int(layer.count_include_pad))
    if dilation != (1, 1):
        attrs["dilations"] = list(dilation)
    y = w.one("AveragePool", [x.name], f"{path}/mean" if rescale else path, **attrs)
    if rescale:  # kh*kw / cnnkit's divisor per output position: (sum of ones) / (cnnkit's mean of ones), or the override
        ones = np.ones((1, h, wd, 1), np.float64)
        summed = type(layer)(**{**layer.config(), "divisor_override": 1}).forward(ones, train=False)
        mean = layer.forward(ones, train=False) if divisor is None else summed / divisor
        factor = (kernel[0] * kernel[1] * mean / summed).transpose(0, 3, 1, 2)
        y = w.one("Mul", [y, w.const(f"{path}.divisor", factor)], path)
    return _Val(y, out)


def _lp_pool(w: _Writer, layer: LPPool2d, x: _Val, path: str) -> _Val:
    p = float(layer.norm_type)
    if p != int(p):
        raise OnnxError(f"layer {path} (LPPool2d): ONNX's LpPool takes an integer p, not norm_type={p:g}")
    h, wd, _ = x.shape
    out = layer.output_shape(x.shape)
    dilation = _dilation(layer, w, path, "LpPool", 18)
    pads = _pads(getattr(layer, "padding", 0), (h, wd), layer.kernel_size, layer.stride, dilation)
    # ceil_mode as zero padding after the input (|0|^p adds nothing): the same windows, in every opset
    pads, _ = _ceil_geometry((h, wd), out[:2], layer.kernel_size, layer.stride, dilation, pads, layer.ceil_mode, floor=True)
    attrs: dict[str, Any] = dict(kernel_shape=_ints(layer.kernel_size), strides=_ints(layer.stride), pads=pads, p=int(p))
    if dilation != (1, 1):
        attrs["dilations"] = list(dilation)
    return _Val(w.one("LpPool", [x.name], path, **attrs), out)


def _global(op: str) -> Callable[[_Writer, Layer, _Val, str], _Val]:
    def write(w: _Writer, layer: Layer, x: _Val, path: str) -> _Val:
        return _Val(w.one(op, [x.name], path), layer.output_shape(x.shape))

    return write


def _max_unpool(w: _Writer, layer: MaxUnpool2d, x: _Val, path: str) -> _Val:
    pool = layer.pool
    if pool is None:
        raise OnnxError(f"layer {path} (MaxUnpool2d) takes its switches as a call argument; only one built with pool=<its MaxPool2d> "
                        f"has an ONNX form")
    if id(pool) not in w.indices:
        raise OnnxError(f"layer {path} (MaxUnpool2d) mirrors a MaxPool2d that does not come before it in the exported network")
    idx, pool_in, pool_shape = w.indices[id(pool)]
    size = w.one("Shape", [pool_in], f"{path}/size")
    t, b, l, r = resolve_padding(layer.padding, (pool_shape[0], pool_shape[1]), layer.kernel_size, layer.stride, (1, 1))
    y = w.one("MaxUnpool", [x.name, idx, size], path, kernel_shape=_ints(layer.kernel_size), strides=_ints(layer.stride),
              pads=[t, l, b, r])
    return _Val(y, pool_shape)


def _upsample(w: _Writer, layer: Upsample, x: _Val, path: str) -> _Val:
    if not x.image:
        raise OnnxError(f"layer {path} (Upsample): only images have an ONNX form here, got an input of shape {x.shape}")
    out = layer.output_shape(x.shape)
    coordinates = getattr(layer, "coordinate_transformation_mode", None)
    rounding = getattr(layer, "nearest_mode", None)
    if coordinates is None:  # integer factors: PyTorch's nearest, each pixel copied into a block
        coordinates, rounding = "asymmetric", "floor"
    attrs = dict(mode="nearest", coordinate_transformation_mode=coordinates, nearest_mode=rounding)
    size = getattr(layer, "size", None)
    if size is not None:  # (N, C) of the input, then (H_out, W_out)
        shape = w.one("Shape", [x.name], f"{path}/shape")
        nc = w.one("Slice", [shape, w.const(f"{path}.start", [0], np.int64), w.const(f"{path}.end", [2], np.int64)], f"{path}/nc")
        sizes = w.one("Concat", [nc, w.const(f"{path}.size", list(size), np.int64)], f"{path}/sizes", axis=0)
        return _Val(w.one("Resize", [x.name, "", "", sizes], path, **attrs), out)
    sh, sw = layer.scale_factor  # type: ignore[misc]
    scales = w.const(f"{path}.scales", [1, 1, sh, sw])
    return _Val(w.one("Resize", [x.name, "", scales], path, **attrs), out)


def _channel_pad(w: _Writer, layer: Layer, x: _Val, path: str) -> _Val:
    pad = int(layer.pad)  # type: ignore[attr-defined]
    rank = len(x.shape) + 1
    axis = 1 if x.image else rank - 1  # the channels: NCHW's axis 1, the last axis otherwise
    pads = [0] * (2 * rank)
    pads[rank + axis] = pad
    y = w.one("Pad", [x.name, w.const(f"{path}.pads", pads, np.int64)], path, mode="constant")
    return _Val(y, layer.output_shape(x.shape))


def _local_response_norm(w: _Writer, layer: Layer, x: _Val, path: str) -> _Val:
    size = int(layer.size)  # type: ignore[attr-defined]
    if size % 2 == 0 or not x.image:
        raise OnnxError(f"layer {path} (LocalResponseNorm): ONNX's LRN centres an even window ({size}) differently from "
                        f"PyTorch's and normalises NCHW images only; cnnkit writes odd sizes on images")
    y = w.one("LRN", [x.name], path, size=size, alpha=float(layer.alpha), beta=float(layer.beta),  # type: ignore[attr-defined]
              bias=float(layer.k))  # type: ignore[attr-defined]
    return _Val(y, x.shape)


def _simple(op: str, **fixed: Any) -> Callable[[_Writer, Layer, _Val, str], _Val]:
    def write(w: _Writer, layer: Layer, x: _Val, path: str) -> _Val:
        return _Val(w.one(op, [x.name], path, **fixed), x.shape)

    return write


def _leaky_relu(w: _Writer, layer: LeakyReLU, x: _Val, path: str) -> _Val:
    return _Val(w.one("LeakyRelu", [x.name], path, alpha=float(layer.negative_slope)), x.shape)


def _elu(w: _Writer, layer: ELU, x: _Val, path: str) -> _Val:
    return _Val(w.one("Elu", [x.name], path, alpha=float(layer.alpha)), x.shape)


def _prelu(w: _Writer, layer: PReLU, x: _Val, path: str) -> _Val:
    n = layer.num_parameters
    broadcast = getattr(layer, "shape", None)  # slopes of a shape broadcasting to one NHWC example
    if broadcast is not None:
        aligned = (1,) * (len(x.shape) - len(broadcast)) + tuple(broadcast)

        def convert(a: np.ndarray) -> np.ndarray:
            a = a.reshape(aligned)
            return a.transpose(2, 0, 1) if x.image else a  # (H, W, C) -> (C, H, W): broadcasts over NCHW

    else:
        shape = (n, 1, 1) if x.image and n > 1 else (n,)  # one slope per channel: NCHW's axis 1

        def convert(a: np.ndarray) -> np.ndarray:
            return a.reshape(shape)

    return _Val(w.one("PRelu", [x.name, w.param(layer, "weight", path, convert)], path), x.shape)


def _softplus(w: _Writer, layer: Softplus, x: _Val, path: str) -> _Val:
    beta, threshold = layer.beta, layer.threshold
    scaled = x.name if beta == 1 else w.one("Mul", [x.name, w.const(f"{path}.beta", beta)], f"{path}/scaled")
    soft = w.one("Softplus", [scaled], path if beta == 1 and threshold >= _SOFTPLUS_EXACT else f"{path}/softplus")
    if beta != 1:
        soft = w.one("Div", [soft, w.const(f"{path}.beta_", beta)], path if threshold >= _SOFTPLUS_EXACT else f"{path}/div")
    if threshold < _SOFTPLUS_EXACT:  # y = x where beta x > threshold, exactly as cnnkit
        above = w.one("Greater", [scaled, w.const(f"{path}.threshold", threshold)], f"{path}/above")
        soft = w.one("Where", [above, x.name, soft], path)
    return _Val(soft, x.shape)


def _softmax(op: str) -> Callable[[_Writer, Layer, _Val, str], _Val]:
    def write(w: _Writer, layer: Layer, x: _Val, path: str) -> _Val:
        dim = int(layer.dim)  # type: ignore[attr-defined]
        if dim not in (-1, len(x.shape)):
            raise OnnxError(f"layer {path} ({type(layer).__name__}): dim={dim} is not the last axis of an input of shape {x.shape}")
        return _Val(w.one(op, [x.name], path, axis=1 if x.image else -1), x.shape)

    return write


def _batch_norm(w: _Writer, layer: BatchNorm1d | BatchNorm2d, x: _Val, path: str) -> _Val:
    if "running_mean" not in layer.buffers:
        raise OnnxError(f"layer {path} ({type(layer).__name__}): track_running_stats=False normalises with the batch's statistics "
                        f"at evaluation, which ONNX's BatchNormalization (inference form) cannot")
    c = layer.num_features
    scale = w.param(layer, "weight", path) if "weight" in layer.params else w.const(_join(path, "weight"), np.ones(c))
    bias = w.param(layer, "bias", path) if "bias" in layer.params else w.const(_join(path, "bias"), np.zeros(c))
    k = (id(layer), "running")
    if k not in w.params:
        w.params[k] = w.const(_join(path, "running_mean"), layer.buffers["running_mean"])
        w.params[(id(layer), "running_var")] = w.const(_join(path, "running_var"), layer.buffers["running_var"])
    mean, var = w.params[k], w.params[(id(layer), "running_var")]
    attrs: dict[str, Any] = {"epsilon": float(layer.eps)}
    if layer.momentum is not None:
        attrs["momentum"] = 1.0 - float(layer.momentum)  # ONNX keeps this much of the running statistics
    if len(x.shape) == 2:  # (N, L, C): channels to axis 1 and back
        t = w.one("Transpose", [x.name], f"{path}/to_ncl", perm=[0, 2, 1])
        y = w.one("BatchNormalization", [t, scale, bias, mean, var], f"{path}/bn", **attrs)
        return _Val(w.one("Transpose", [y], path, perm=[0, 2, 1]), x.shape)
    return _Val(w.one("BatchNormalization", [x.name, scale, bias, mean, var], path, **attrs), x.shape)


def _dropout(w: _Writer, layer: Dropout, x: _Val, path: str) -> _Val:
    ratio = w.const(_join(path, "ratio"), np.float32(layer.p))
    return _Val(w.one("Dropout", [x.name, ratio], path), x.shape)


def _linear(w: _Writer, layer: Linear, x: _Val, path: str) -> _Val:
    weight = w.param(layer, "weight", path)  # (in, out) is Gemm's B as it is
    out = (*x.shape[:-1], layer.out_features)
    if len(x.shape) == 1:
        ins = [x.name, weight] + ([w.param(layer, "bias", path)] if "bias" in layer.params else [])
        return _Val(w.one("Gemm", ins, path), out)
    y = w.one("MatMul", [x.name, weight], path if "bias" not in layer.params else f"{path}/matmul")
    if "bias" in layer.params:
        y = w.one("Add", [y, w.param(layer, "bias", path)], path)
    return _Val(y, out)


def _flatten(w: _Writer, layer: Flatten, x: _Val, path: str) -> _Val:
    nd = len(x.shape) + 1
    s = layer.start_dim + nd if layer.start_dim < 0 else layer.start_dim
    e = layer.end_dim + nd if layer.end_dim < 0 else layer.end_dim
    if s == 0:
        raise OnnxError(f"layer {path} (Flatten): start_dim={layer.start_dim} merges the batch axis, which the exported graph keeps "
                        f"dynamic")
    out = layer.output_shape(x.shape)
    name = x.name
    if nd == 4 and layer.order != "nchw":  # cnnkit's NHWC feature order: back to NHWC first
        name = w.one("Transpose", [name], f"{path}/to_nhwc", perm=[0, 2, 3, 1])
    if (s, e) == (1, nd - 1) or layer.order == "nchw":
        return _Val(w.one("Flatten", [name], path, axis=1), out)
    target = w.const(_join(path, "shape"), [0, *out], np.int64)  # 0: keep the batch size
    return _Val(w.one("Reshape", [name, target], path), out)


_HANDLERS: dict[type, Callable[[_Writer, Any, _Val, str], _Val]] = {
    Conv2d: _conv,
    ConvTranspose2d: _conv_transpose,
    MaxPool2d: _max_pool,
    AvgPool2d: _avg_pool,
    LPPool2d: _lp_pool,
    GlobalAvgPool2d: _global("GlobalAveragePool"),
    GlobalMaxPool2d: _global("GlobalMaxPool"),
    MaxUnpool2d: _max_unpool,
    Upsample: _upsample,
    ReLU: _simple("Relu"),
    Sigmoid: _simple("Sigmoid"),
    Tanh: _simple("Tanh"),
    LeakyReLU: _leaky_relu,
    ELU: _elu,
    PReLU: _prelu,
    Softplus: _softplus,
    Softmax: _softmax("Softmax"),
    LogSoftmax: _softmax("LogSoftmax"),
    BatchNorm1d: _batch_norm,
    BatchNorm2d: _batch_norm,
    Dropout: _dropout,
    Linear: _linear,
    Flatten: _flatten,
    Identity: _simple("Identity"),
}
for _name, _write in (("ChannelPad", _channel_pad), ("LocalResponseNorm", _local_response_norm)):  # newer layers, when present
    if isinstance(getattr(nn, _name, None), type):
        _HANDLERS[getattr(nn, _name)] = _write

_CONTAINERS = (Sequential, Residual, Concat, Graph)
_MERGES = (Add, Concatenate)  # inside a Graph


def exportable_layers() -> list[str]:
    """The names of the layer classes :func:`export` writes (containers included).

    Examples
    --------
    >>> from cnnkit.onnx import exportable_layers
    >>> "Conv2d" in exportable_layers(), "LocallyConnected2d" in exportable_layers()
    (True, False)
    """
    return sorted({c.__name__ for c in (*_HANDLERS, *_CONTAINERS)})


def _unsupported(net: Layer) -> list[str]:
    """'path (Class)' of every layer below ``net`` without an ONNX form."""
    out: list[str] = []

    def walk(layer: Layer, path: str, in_graph: bool = False) -> None:
        if type(layer) in _CONTAINERS:
            for name, child in layer.named_children():  # type: ignore[attr-defined]
                walk(child, _join(path, name), type(layer) is Graph)
        elif isinstance(layer, Container) or (type(layer) not in _HANDLERS and not (type(layer) in _MERGES and in_graph)):
            out.append(f"{path or '(the network)'} ({type(layer).__name__})")

    walk(net, "")
    return out


def _preprocess_nodes(w: _Writer, preprocess: dict[str, Any], input_shape: tuple[int, ...]) -> str:
    """Cast and the preprocessing arithmetic on the uint8 NCHW input; returns the network's input tensor."""
    from cnnkit.data.preprocess import Preprocessor

    try:
        pre = Preprocessor.from_dict(preprocess)
    except (ValueError, TypeError) as exc:
        raise OnnxError(f"export: malformed preprocess: {exc}") from None
    if len(input_shape) != 3:
        raise OnnxError(f"export: preprocessing needs an image input (H, W, C), got input_shape {input_shape}")
    if not pre.fitted:
        raise OnnxError(f"export: the {pre.mode!r} preprocessing has no statistics (fit it first)")
    onnx = w.onnx
    x = w.one("Cast", [INPUT_NAME], "preprocess/cast", to=onnx.TensorProto.FLOAT)
    if pre.mode in ("scale", "per_channel"):
        x = w.one("Div", [x, w.const("preprocess.255", np.float32(255))], "preprocess/scale")
    if pre.mode == "mean_image":
        mean = np.asarray(pre.mean, np.float32)
        if mean.shape != tuple(input_shape):
            raise OnnxError(f"export: the mean image has shape {mean.shape}, the input {tuple(input_shape)}")
        x = w.one("Sub", [x, w.const("preprocess.mean", mean.transpose(2, 0, 1)[None])], "preprocess/mean")
    elif pre.mode == "per_channel":
        mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
        if mean.shape != (input_shape[2],):
            raise OnnxError(f"export: per-channel statistics for {mean.shape[0]} channels, the input has {input_shape[2]}")
        x = w.one("Sub", [x, w.const("preprocess.mean", mean.reshape(1, -1, 1, 1))], "preprocess/mean")
        x = w.one("Div", [x, w.const("preprocess.std", std.reshape(1, -1, 1, 1))], "preprocess/std")
    return x


def _onnx_shape(shape: tuple[int, ...]) -> list[Any]:
    """The ONNX shape of a batch of cnnkit examples of ``shape`` (images as NCHW), batch dimension "N"."""
    dims = [shape[2], shape[0], shape[1]] if len(shape) == 3 else list(shape)
    return ["N", *(int(d) for d in dims)]


def to_model(
    net: Layer,
    input_shape: Sequence[int],
    *,
    preprocess: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    opset: int = 17,
) -> Any:
    """The ``onnx.ModelProto`` that :func:`export` writes (checked with ``onnx.checker``), without writing it.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> from cnnkit.onnx import to_model
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> model = to_model(net, (5, 5, 1))
    >>> [n.op_type for n in model.graph.node]  # the NHWC Flatten is a Transpose + Flatten
    ['Conv', 'Relu', 'Transpose', 'Flatten', 'Gemm']
    >>> [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]  # NCHW, dynamic batch
    ['N', 1, 5, 5]
    """
    from cnnkit.models.file import check_outputs

    onnx = onnx_module("ONNX export")
    newest = int(onnx.defs.onnx_opset_version())
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxError(f"export: opset {opset!r} is not one cnnkit writes; expected {MIN_OPSET} to {newest}")
    shape = tuple(int(v) for v in input_shape)
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise OnnxError(f"export: input_shape must be one example's shape, (H, W, C) or (features,), got {tuple(input_shape)}")
    missing = _unsupported(net)
    if missing:
        raise OnnxError(f"export: {len(missing)} layer(s) have no ONNX form: {', '.join(missing)}")
    check_outputs(net, shape, None if classes is None else list(classes))  # ShapeError naming the layer; MismatchError
    w = _Writer(onnx, opset)
    x = _preprocess_nodes(w, preprocess, shape) if preprocess is not None else INPUT_NAME
    y = w.emit(net, _Val(x, shape), "")
    if y.name == INPUT_NAME:
        w.one("Identity", [y.name], OUTPUT_NAME)
        y = _Val(w.nodes[-1].output[0], y.shape)
    for node in w.nodes:  # the last tensor is the graph's output
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name == y.name:
                    seq[i] = OUTPUT_NAME
    helper = onnx.helper
    dtype = onnx.TensorProto.UINT8 if preprocess is not None else onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        w.nodes, "cnnkit", [helper.make_tensor_value_info(INPUT_NAME, dtype, _onnx_shape(shape))],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, _onnx_shape(y.shape))], initializer=w.inits,
    )
    import cnnkit

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnnkit",
                              producer_version=cnnkit.__version__)
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))  # what older runtimes accept
    props = {KEY_FORMAT: FORMAT, KEY_INPUT_SHAPE: json.dumps(list(shape))}
    if classes is not None:
        props[KEY_CLASSES] = json.dumps([str(c) for c in classes])
    if preprocess is not None:
        props[KEY_PREPROCESS] = str(preprocess.get("mode"))
    helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in the exporter
        raise OnnxError(f"export: the written graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return model


def export(
    net: Layer,
    input_shape: Sequence[int],
    path: str | os.PathLike[str],
    *,
    preprocess: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    opset: int = 17,
) -> Any:
    """Write ``net`` as an ONNX model at ``path`` (atomically); returns the ``onnx.ModelProto``.

    ``input_shape``: one example as cnnkit takes it, (H, W, C) for images; the graph's input is NCHW,
    ``(N, C, H, W)`` with a dynamic N, named ``input``; its output is ``output``. ``preprocess`` (a
    Preprocessor's ``to_dict()``) puts the preprocessing into the graph, which then takes uint8 pixels;
    ``classes`` and the preprocessing mode are stored in ``metadata_props``. A layer without an ONNX form
    (LocallyConnected2d) raises :class:`~cnnkit.errors.OnnxError` naming its dotted path and class; a
    shape that does not fit raises ShapeError. See the module docstring for the operators written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, LocallyConnected2d, ReLU, Sequential
    >>> from cnnkit.onnx import export
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     model = export(net, (5, 5, 1), os.path.join(d, "net.onnx"), classes=["no", "yes"])
    ...     written = os.path.getsize(os.path.join(d, "net.onnx")) > 0
    >>> written, {p.key: p.value for p in model.metadata_props}["cnnkit.classes"]
    (True, '["no", "yes"]')
    >>> export(Sequential(LocallyConnected2d(1, 2, 3, in_size=(5, 5), rng=rng)), (5, 5, 1), "never.onnx")
    Traceback (most recent call last):
    ...
    cnnkit.errors.OnnxError: export: 1 layer(s) have no ONNX form: 0 (LocallyConnected2d)
    """
    model = to_model(net, input_shape, preprocess=preprocess, classes=classes, opset=opset)
    target = Path(path)
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GiB limit
        raise OnnxError(f"export: the model does not fit one ONNX file ({exc}); cnnkit writes no external data") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return model
