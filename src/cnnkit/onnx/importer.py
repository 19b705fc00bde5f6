"""Reading an ONNX model as an ordinary, trainable cnnkit network: :func:`load` and :func:`load_model_file`.

The network returned takes **NHWC** input: the ONNX model's (N, C, H, W) input transposed (0, 2, 3, 1);
a 4-D output comes out NHWC as well (the ONNX output transposed the same way), a flat one as it is. It is a
:class:`~cnnkit.nn.Sequential` when the graph is a chain, a :class:`~cnnkit.nn.Graph` otherwise; its
parameters are copies of the initializers in cnnkit's layouts (OIHW -> (kh, kw, C_in/groups, C_out), Gemm's
B -> (in, out)), so it trains with :func:`cnnkit.fit` and exports again with :func:`cnnkit.onnx.export`.

Operators: Conv (groups, dilation, any pads, auto_pad), ConvTranspose (groups, pads, output_padding,
output_shape), MaxPool (with its Indices feeding a MaxUnpool), AveragePool, LpPool, GlobalAveragePool,
GlobalMaxPool, MaxUnpool, Relu, Sigmoid, Tanh, LeakyRelu, PRelu, Elu, Softplus, Softmax, LogSoftmax,
BatchNormalization (inference form, running statistics kept), Dropout, Gemm, MatMul (+ Add of a bias), Flatten,
Identity, Add and Sum of tensors, Concat, Resize (nearest; axes, keep_aspect_ratio_policy) and Upsample, ReduceMean over H and W, Clip to
[0, inf) (a ReLU), LRN (odd sizes), Pad of the channels (ChannelPad), and the glue exporters emit: Constant,
Cast, Shape/Gather/Unsqueeze/Squeeze/Concat/Slice/ConstantOfShape and integer arithmetic (folded), Reshape to
(N, -1) -> ``Flatten(order="nchw")``, Transpose(0, 2, 3, 1) before a flatten (cnnkit's own NHWC Flatten),
Pad (zeros) feeding a Conv (folded into its padding), Add of a constant after a Conv, ConvTranspose or MatMul
(folded into its bias). What the layers of this cnnkit take decides the rest (asymmetric or large pooling
pads, resize conventions): anything else raises :class:`~cnnkit.errors.OnnxError` listing every unsupported
operator and attribute with the node that uses it (nodes that only read an unsupported node's output are
checked for their operator and attributes, not blamed for their input).

A model :func:`cnnkit.onnx.export` wrote with its preprocessing takes uint8 pixels and starts with
``Cast`` + ``Sub``/``Div``: :func:`load` leaves those nodes out (the network takes preprocessed NHWC
input, as every cnnkit network), and :func:`load_model_file` returns them as a Preprocessor dict with the
classes and input shape from ``metadata_props``.

Files are read without trusting them: a regular file within ``LIMITS.file_bytes``, no external data, every
initializer's size checked against its dims and the parameters against ``LIMITS.param_bytes`` before any
array is built; every problem is one line (:class:`~cnnkit.errors.ModelFileError` for the file,
:class:`~cnnkit.errors.OnnxError` for what the graph asks).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit import nn
from cnnkit.errors import ModelFileError, OnnxError, ShapeError, quote
from cnnkit.limits import LIMITS, check_size
from cnnkit.nn import (
    ELU,
    Add,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
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
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    Upsample,
)
from cnnkit.nn.base import Layer
from cnnkit.nn.graph import Merge
from cnnkit.onnx.common import KEY_CLASSES, KEY_INPUT_SHAPE, KEY_PREPROCESS, nchw_axis_to_nhwc, onnx_module
from cnnkit.ops.geometry import resolve_padding, window

if TYPE_CHECKING:
    from cnnkit.models.file import ModelFile

_channel_pad: Any = getattr(nn, "ChannelPad", None)  # newer layers, when present
_lrn: Any = getattr(nn, "LocalResponseNorm", None)

_B1, _B2 = 982_451_653, 961_748_941
"""Two stand-ins for the unknown batch size: shape arithmetic is folded for both, and an entry that
follows them is the batch dimension."""

MAX_NODES = 100_000
"""Most nodes a graph may have."""


# -- values flowing through the graph while it is read ---------------------------------------------------
@dataclass(frozen=True)
class _Const:
    """A value known when reading: ``a`` with the batch size _B1, ``b`` with _B2 (equal unless it depends on it)."""

    a: np.ndarray
    b: np.ndarray

    @staticmethod
    def of(x: Any) -> _Const:
        arr = np.asarray(x)
        return _Const(arr, arr)

    def map(self, f: Callable[[np.ndarray], Any]) -> _Const:
        return _Const(np.asarray(f(self.a)), np.asarray(f(self.b)))

    @property
    def fixed(self) -> bool:
        return self.a.shape == self.b.shape and bool(np.array_equal(self.a, self.b))


@dataclass(frozen=True)
class _Tensor:
    """A tensor computed at run time: its ONNX shape (batch None), the cnnkit node giving it and how to read it.

    ``view``: "" (as computed: NCHW for 4-D), "nhwc" (a Transpose(0, 2, 3, 1) waiting for a flatten), or
    "pad" (a zero Pad waiting for a Conv; ``pads`` = (top, bottom, left, right)).
    """

    shape: tuple[int | None, ...]
    src: str
    view: str = ""
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True)
class _Indices:
    """The Indices output of a MaxPool: only a MaxUnpool reads it."""

    pool: MaxPool2d
    pool_shape: tuple[int | None, ...]


@dataclass(frozen=True)
class _Raw:
    """The graph's integer input (raw pixels), before the Cast that starts the preprocessing."""

    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class _Pre:
    """The input after Cast and some constant arithmetic: the preprocessing, while it lasts."""

    shape: tuple[int | None, ...]
    steps: tuple[tuple[str, np.ndarray], ...] = ()


class _Poison:
    """The output of a node that could not be read (its problem is already listed)."""


_POISON = _Poison()


@dataclass
class _Node:
    """A node of the network being built: a layer (or a constant to fold into a bias) and its inputs."""

    name: str
    layer: Any
    inputs: list[str]


@dataclass
class _BiasAdd:
    """Add of a constant, to fold into the bias of the Conv/Linear before it when the network is built."""

    value: np.ndarray
    where: str
    channels_axis_last: int = -1


@dataclass
class Imported:
    """What :func:`read` finds in an ONNX file: the network and what the file says about its use.

    ``input_shape``: one example as the network takes it (H, W, C) or (features,); ``preprocess``: a
    Preprocessor dict when the graph starts with cnnkit's preprocessing (else None); ``meta``: the
    ``metadata_props`` and a few facts about the file (producer, opset).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, Sequential
    >>> from cnnkit.onnx import export
    >>> from cnnkit.onnx.importer import read
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = export(Sequential(Conv2d(1, 2, 3, rng=rng), Flatten(), Linear(18, 2, rng=rng)), (5, 5, 1), os.path.join(d, "m.onnx"))
    ...     found = read(os.path.join(d, "m.onnx"))
    >>> found.input_shape, found.classes, found.preprocess, found.meta["opset"]
    ((5, 5, 1), None, None, 17)
    """

    network: Layer
    input_shape: tuple[int, ...]
    classes: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# -- attribute access ------------------------------------------------------------------------------------
_COMMON = {"Conv": {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}}
_ALLOWED: dict[str, set[str]] = {
    "Conv": _COMMON["Conv"],
    "ConvTranspose": {"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides"},
    "MaxPool": {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
    "AveragePool": {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"},
    "LpPool": {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "p", "pads", "strides"},
    "MaxUnpool": {"kernel_shape", "pads", "strides"},
    "LeakyRelu": {"alpha"},
    "Elu": {"alpha"},
    "Softmax": {"axis"},
    "LogSoftmax": {"axis"},
    "BatchNormalization": {"epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"},
    "Dropout": {"ratio", "seed", "is_test"},
    "Gemm": {"alpha", "beta", "transA", "transB", "broadcast"},
    "Flatten": {"axis"},
    "Reshape": {"allowzero"},
    "Transpose": {"perm"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
    "Cast": {"to", "saturate", "round_mode"},
    "Shape": {"start", "end"},
    "Gather": {"axis"},
    "Unsqueeze": {"axes"},
    "Squeeze": {"axes"},
    "Concat": {"axis"},
    "Slice": {"starts", "ends", "axes"},
    "Pad": {"mode", "pads", "value"},
    "Resize": {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
               "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"},
    "Upsample": {"mode", "scales"},
    "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"},
    "LRN": {"size", "alpha", "beta", "bias"},
    "Clip": {"min", "max"},
    "ConstantOfShape": {"value"},
    "Add": {"broadcast", "axis"},
    "Sub": {"broadcast", "axis"},
    "Mul": {"broadcast", "axis"},
    "Div": {"broadcast", "axis"},
}


def _clean(name: str) -> str:
    """A node name cnnkit accepts: letters, digits and underscores."""
    out = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return out[:120]


class _Reader:
    """One pass over an ONNX graph, building the cnnkit network and listing what it cannot represent."""

    def __init__(self, onnx: Any, model: Any, path: str) -> None:
        self.onnx, self.model, self.path = onnx, model, path
        self.graph = model.graph
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.values: dict[str, Any] = {}
        self.nodes: list[_Node] = []
        self.names: set[str] = {"input"}
        self.problems: list[str] = []
        self.prologue: _Pre | None = None
        self.input_shape: tuple[int, ...] = ()
        self.uses: Counter[str] = Counter()
        for node in self.graph.node:
            self.uses.update(n for n in node.input if n)
        self.uses.update(o.name for o in self.graph.output)

    # -- problems and names ----------------------------------------------------------------------------
    @staticmethod
    def where(node: Any) -> str:
        label = node.name or (node.output[0] if node.output else "")
        return f"node {quote(label, 80)} ({node.op_type})"

    def bad(self, node: Any, what: str) -> None:
        self.problems.append(f"{self.where(node)}: {what}")

    def add(self, node: Any, layer: Any, inputs: Sequence[str], suffix: str = "") -> str:
        base = _clean(node.name) or _clean(node.output[0] if node.output else "") or node.op_type.lower()
        if base[0].isdigit():
            base = f"{node.op_type.lower()}_{base}"
        base += suffix
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        self.nodes.append(_Node(name, layer, list(inputs)))
        return name

    # -- reading values ------------------------------------------------------------------------------------
    def tensor(self, node: Any, v: Any, what: str = "its input") -> _Tensor | None:
        """``v`` as a plain run-time tensor, or None (a problem is listed unless it is poisoned already)."""
        if isinstance(v, _Tensor) and not v.view:
            return v
        if isinstance(v, _Tensor) and v.view == "nhwc":
            self.bad(node, f"{what} comes from a Transpose(0, 2, 3, 1) that only a Flatten or Reshape after it can absorb")
        elif isinstance(v, _Tensor) and v.view == "pad":
            self.bad(node, f"{what} comes from a Pad, which cnnkit folds only into a Conv after it")
        elif isinstance(v, _Const):
            self.bad(node, f"{what} is a constant where a computed tensor is expected")
        elif isinstance(v, _Indices):
            self.bad(node, f"{what} is a MaxPool's Indices, which only a MaxUnpool can read")
        elif isinstance(v, _Raw):
            self.bad(node, f"{what} is the graph's integer input, read before a Cast to floating point")
        elif v is None:
            self.bad(node, f"{what} is missing")
        return None

    def const(self, node: Any, v: Any, what: str) -> np.ndarray | None:
        """``v`` as a batch-independent constant array, or None (a problem is listed)."""
        if isinstance(v, _Const):
            if v.fixed:
                return v.a
            self.bad(node, f"{what} depends on the batch size")
        elif not isinstance(v, _Poison):
            self.bad(node, f"{what} must be a constant (an initializer or folded shape arithmetic), not a computed tensor")
        return None

    def attrs(self, node: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.attribute:
            if a.type == self.onnx.AttributeProto.TENSOR:
                out[a.name] = _array(self.onnx, a.t, self.path)
            elif a.type in (self.onnx.AttributeProto.GRAPH, self.onnx.AttributeProto.GRAPHS, self.onnx.AttributeProto.SPARSE_TENSOR):
                out[a.name] = a
            else:
                v = self.onnx.helper.get_attribute_value(a)
                out[a.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return out

    # -- the pass ----------------------------------------------------------------------------------------
    def run(self) -> tuple[Layer, tuple[int, ...], dict[str, Any] | None]:
        self._inputs()
        for node in self.graph.node:
            self._node(node)
        out = self._output()
        if self.problems:
            raise OnnxError(f"{self.path}: cannot import it ({len(self.problems)} problem(s)): " + "; ".join(self.problems))
        net = self._build(out)
        if self.problems:
            raise OnnxError(f"{self.path}: cannot import it ({len(self.problems)} problem(s)): " + "; ".join(self.problems))
        return net, self.input_shape, self._preprocess()

    def _inputs(self) -> None:
        onnx = self.onnx
        for init in self.graph.initializer:
            self.values[init.name] = _Const.of(_array(onnx, init, self.path))
        inputs = [i for i in self.graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise OnnxError(f"{self.path}: the graph has {len(inputs)} inputs ({quote([i.name for i in inputs][:5], 120)}); "
                            f"cnnkit networks take exactly one")
        x = inputs[0]
        tt = x.type.tensor_type if x.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape"):
            raise OnnxError(f"{self.path}: the input {quote(x.name, 80)} is not a tensor of known rank")
        dims = list(tt.shape.dim)
        if len(dims) not in (2, 4):
            raise OnnxError(f"{self.path}: the input {quote(x.name, 80)} has rank {len(dims)}; cnnkit imports (N, C, H, W) or "
                            f"(N, features) inputs")
        rest = []
        for i, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise OnnxError(f"{self.path}: input dimension {i} of {quote(x.name, 80)} is not a fixed size "
                                f"({quote(d.dim_param or '?', 40)}); cnnkit needs every size but the batch")
            rest.append(int(d.dim_value))
        shape: tuple[int | None, ...] = (None, *rest)
        self.input_shape = (rest[1], rest[2], rest[0]) if len(rest) == 3 else (rest[0],)
        float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
        int_types = {onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.UINT16, onnx.TensorProto.INT16,
                     onnx.TensorProto.INT32, onnx.TensorProto.INT64}
        if tt.elem_type in float_types:
            self.values[x.name] = _Tensor(shape, "input")
        elif tt.elem_type in int_types and len(rest) == 3:
            self.values[x.name] = _Raw(shape)
        else:
            raise OnnxError(f"{self.path}: the input {quote(x.name, 80)} has element type "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; cnnkit imports float inputs (or uint8 images)")

    def _enter(self, v: Any, node: Any = None) -> Any:
        """Where the preprocessing ends: its value becomes the network's input."""
        if isinstance(v, _Pre):
            if self.prologue is not None and self.prologue is not v:
                if node is not None:
                    self.bad(node, "the graph's input is preprocessed in two different ways")
                else:
                    self.problems.append("the graph's input is preprocessed in two different ways")
                return _POISON
            self.prologue = v
            return _Tensor(v.shape, "input")
        return v

    def _node(self, node: Any) -> None:
        op = node.op_type
        if len(self.nodes) > MAX_NODES:
            raise OnnxError(f"{self.path}: more than {MAX_NODES:,} nodes")
        outs: list[Any] | None = None
        ins = [self.values.get(n, _POISON) if n else None for n in node.input]
        if node.domain not in ("", "ai.onnx"):
            self.bad(node, f"operator {node.domain}.{op} is outside the standard ONNX domain")
        elif not hasattr(self, f"op_{op.lower()}"):
            self.bad(node, f"operator {op} is not supported")
        else:
            at = self.attrs(node)
            unknown = sorted(set(at) - _ALLOWED.get(op, set()))
            for name in unknown:
                self.bad(node, f"attribute {name}={quote(_show(at[name]), 60)} is not supported")
            if not unknown:
                keeps_pre = op in ("Sub", "Mul", "Div", "Add") and any(isinstance(v, _Pre) for v in ins) and any(
                    isinstance(v, _Const) for v in ins)
                if not keeps_pre and op not in ("Cast", "Shape", "Identity"):
                    ins = [self._enter(v, node) for v in ins]
                try:
                    outs = getattr(self, f"op_{op.lower()}")(node, ins, at)
                except ShapeError as exc:
                    self.bad(node, f"its geometry does not work in cnnkit: {exc}")
                    outs = None
        for i, name in enumerate(node.output):
            if name:
                self.values[name] = outs[i] if outs is not None and i < len(outs) and outs[i] is not None else _POISON

    def _output(self) -> Any:
        outs = list(self.graph.output)
        if len(outs) != 1:
            self.problems.append(f"the graph has {len(outs)} outputs; cnnkit networks give exactly one")
            return None
        v = self._enter(self.values.get(outs[0].name, _POISON))
        if isinstance(v, _Raw):
            self.problems.append("the graph's output is its integer input")
        elif isinstance(v, _Const):
            self.problems.append(f"the graph's output {quote(outs[0].name, 80)} is a constant")
        elif isinstance(v, _Tensor) and v.view:
            self.problems.append(f"the graph's output {quote(outs[0].name, 80)} ends with a Transpose or Pad cnnkit cannot absorb")
        elif isinstance(v, _Indices):
            self.problems.append("the graph's output is a MaxPool's Indices")
        return v

    # -- building the network ------------------------------------------------------------------------------
    def _build(self, out: _Tensor) -> Layer:
        nodes = {n.name: n for n in self.nodes}
        uses: Counter[str] = Counter(i for n in self.nodes for i in n.inputs)
        uses[out.src] += 1
        alias: dict[str, str] = {}
        for n in self.nodes:  # fold constant Adds into the bias before them
            n.inputs = [alias.get(i, i) for i in n.inputs]
            if not isinstance(n.layer, _BiasAdd):
                continue
            src = nodes.get(n.inputs[0])
            layer = src.layer if src is not None else None
            if isinstance(layer, (Conv2d, Linear, ConvTranspose2d)) and uses[src.name] == 1:  # type: ignore[union-attr]
                c = layer.params["weight"].shape[-1] if not isinstance(layer, ConvTranspose2d) else layer.out_channels
                bias = n.layer.value
                if bias.size in (1, c):
                    full = np.broadcast_to(bias.reshape(-1), (c,)).astype(np.float32)
                    if "bias" in layer.params:
                        layer.params["bias"] += full
                    else:
                        layer.params["bias"] = full.copy()
                        layer._init_grads()
                    alias[n.name] = src.name  # type: ignore[union-attr]
                    continue
            self.problems.append(f"{n.layer.where}: an Add of a constant is supported only as the bias of the Conv, ConvTranspose, "
                                 f"Gemm or MatMul before it (when nothing else reads that node)")
        if self.problems:
            return Identity()
        keep = [n for n in self.nodes if not isinstance(n.layer, _BiasAdd)]
        output = alias.get(out.src, out.src)
        live = {output}
        for n in reversed(keep):
            if n.name in live:
                live.update(n.inputs)
        keep = [n for n in keep if n.name in live]
        if not keep:
            return Identity()
        chain = all(
            len(n.inputs) == 1 and n.inputs[0] == (keep[i - 1].name if i else "input") and not isinstance(n.layer, Merge)
            for i, n in enumerate(keep)
        ) and keep[-1].name == output
        counts = Counter(i for n in keep for i in n.inputs)
        if chain and all(counts[n.name] == 1 for n in keep[:-1]):
            return Sequential(*[n.layer for n in keep])
        g = Graph("input")
        for n in keep:
            g.add(n.name, n.layer, *n.inputs)
        g.set_output(output)
        return g

    def _preprocess(self) -> dict[str, Any] | None:
        if self.prologue is None:
            return None
        steps = [(op, np.asarray(v, np.float32)) for op, v in self.prologue.steps]
        ops = [op for op, _ in steps]
        h, w, c = self.input_shape

        def is255(op: str, v: np.ndarray) -> bool:
            value = float(v.ravel()[0]) if v.size == 1 else 0.0
            return (op == "Div" and value == 255.0) or (op == "Mul" and abs(value * 255 - 1) < 1e-6)

        def per_channel(v: np.ndarray) -> np.ndarray | None:
            return v.reshape(c).copy() if v.shape in ((1, c, 1, 1), (c, 1, 1)) or (c == 1 and v.size == 1) else None

        if not steps:
            return {"mode": "none"}
        if len(steps) == 1 and is255(*steps[0]):
            return {"mode": "scale"}
        if ops == ["Sub"] and steps[0][1].shape in ((1, c, h, w), (c, h, w)):
            return {"mode": "mean_image", "mean": steps[0][1].reshape(c, h, w).transpose(1, 2, 0).copy()}
        if len(steps) == 3 and is255(*steps[0]) and ops[1:] == ["Sub", "Div"]:
            mean, std = per_channel(steps[1][1]), per_channel(steps[2][1])
            if mean is not None and std is not None:
                return {"mode": "per_channel", "mean": mean, "std": std}
        raise OnnxError(f"{self.path}: the graph takes integer pixels and starts with {' '.join(['Cast', *ops])} of constants, which "
                        f"is none of cnnkit's preprocessing modes (scale, mean_image, per_channel)")

    # -- helpers for the operators ----------------------------------------------------------------------
    def _image(self, node: Any, v: Any, what: str = "its input") -> _Tensor | None:
        t = self.tensor(node, v, what)
        if t is not None and len(t.shape) != 4:
            self.bad(node, f"{what} has rank {len(t.shape)}; cnnkit's layer takes (N, C, H, W) images")
            return None
        return t

    def _layer_out(self, node: Any, layer: Layer, t: _Tensor, srcs: Sequence[str] | None = None, suffix: str = "") -> _Tensor:
        out = _from_cnnkit(layer.output_shape(_to_cnnkit(t.shape)))
        return _Tensor(out, self.add(node, layer, srcs if srcs is not None else [t.src], suffix))

    def _window_attrs(self, node: Any, at: dict[str, Any], t: _Tensor, kernel: Sequence[int] | None
                      ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int, int, int]] | None:
        """(kernel, strides, dilations, (top, bottom, left, right) pads) of a 2-D window operator, or None."""
        k = list(at.get("kernel_shape", kernel or []))
        if len(k) != 2:
            self.bad(node, f"kernel_shape {k} is not two-dimensional")
            return None
        s = list(at.get("strides", [1, 1]))
        d = list(at.get("dilations", [1, 1]))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        if len(s) != 2 or len(d) != 2 or len(pads) != 4:
            self.bad(node, "strides, dilations and pads must be given for two spatial axes")
            return None
        auto = at.get("auto_pad", "NOTSET")
        h, w = int(t.shape[2] or 0), int(t.shape[3] or 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for ax, size in enumerate((h, w)):
                out = -(-size // s[ax])
                total = max((out - 1) * s[ax] + d[ax] * (k[ax] - 1) + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto != "NOTSET":
            self.bad(node, f"auto_pad={auto!r} is not supported")
            return None
        return (k[0], k[1]), (s[0], s[1]), (d[0], d[1]), (pads[0], pads[2], pads[1], pads[3])

    # -- constants and glue ------------------------------------------------------------------------------
    def op_constant(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if "value" in at:
            return [_Const.of(at["value"])]
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64), ("value_ints", np.int64)):
            if key in at:
                return [_Const.of(np.asarray(at[key], dtype=dtype))]
        self.bad(node, "no value")
        return None

    def op_identity(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return [ins[0]]

    def op_cast(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        to = int(at.get("to", 0))
        try:
            dtype = self.onnx.helper.tensor_dtype_to_np_dtype(to)
        except (KeyError, ValueError, TypeError):
            self.bad(node, f"cast to type {to} is not supported")
            return None
        v = ins[0]
        if isinstance(v, _Const):
            return [v.map(lambda a: a.astype(dtype))]
        if isinstance(v, _Raw) and np.issubdtype(dtype, np.floating):
            return [_Pre(v.shape)]
        if isinstance(v, _Pre) and np.issubdtype(dtype, np.floating):
            return [v]
        if isinstance(v, _Tensor) and np.issubdtype(dtype, np.floating):
            return [v]
        if not isinstance(v, _Poison):
            self.bad(node, f"a cast of a computed tensor to {np.dtype(dtype).name} (cnnkit computes in floating point)")
        return None

    def op_shape(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        v = ins[0]
        if isinstance(v, _Const):
            shape_a, shape_b = np.array(v.a.shape, np.int64), np.array(v.b.shape, np.int64)
        elif isinstance(v, (_Tensor, _Raw, _Pre, _Indices)):
            dims = v.pool_shape if isinstance(v, _Indices) else v.shape
            shape_a = np.array([_B1 if d is None else d for d in dims], np.int64)
            shape_b = np.array([_B2 if d is None else d for d in dims], np.int64)
        else:
            return None
        start, end = at.get("start", 0), at.get("end")
        return [_Const(shape_a[start:end], shape_b[start:end])]

    def _fold(self, node: Any, ins: list[Any], f: Callable[..., Any], n: int | None = None) -> list[Any] | None:
        """Fold a node of constant inputs: ``f`` applied to the _B1 and to the _B2 arrays."""
        vals = ins if n is None else ins[:n]
        if any(isinstance(v, _Poison) for v in vals):
            return None
        if not all(isinstance(v, _Const) or v is None for v in vals):
            self.bad(node, "a shape operation on a computed tensor (only constants and shapes are folded)")
            return None
        a = [None if v is None else v.a for v in vals]
        b = [None if v is None else v.b for v in vals]
        try:
            return [_Const(np.asarray(f(*a)), np.asarray(f(*b)))]
        except (ValueError, IndexError, TypeError) as exc:
            self.bad(node, f"cannot fold its constants: {exc}")
            return None

    def op_gather(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        axis = int(at.get("axis", 0))
        return self._fold(node, ins, lambda d, i: np.take(d, np.where(i < 0, i + d.shape[axis], i), axis=axis))

    def _axes(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[int] | None:
        if "axes" in at:
            return [int(a) for a in at["axes"]]
        if len(ins) > 1 and ins[1] is not None:
            v = self.const(node, ins[1], "axes")
            return None if v is None else [int(a) for a in v.ravel()]
        return None

    def op_unsqueeze(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        axes = self._axes(node, ins, at)
        if axes is None:
            if not any(isinstance(v, _Poison) for v in ins):
                self.bad(node, "no axes")
            return None

        def f(d: np.ndarray) -> np.ndarray:
            rank = d.ndim + len(axes)
            for a in sorted(x + rank if x < 0 else x for x in axes):
                d = np.expand_dims(d, a)
            return d

        return self._fold(node, ins, f, 1)

    def op_squeeze(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        axes = self._axes(node, ins, at)
        v = ins[0]
        if isinstance(v, _Tensor) and not v.view and len(v.shape) == 4 and v.shape[2:] == (1, 1) and (
                axes is None or sorted(a % 4 for a in axes) == [2, 3]):
            return [_Tensor((None, v.shape[1]), self.add(node, Flatten(order="nchw"), [v.src]))]
        if isinstance(v, _Const):
            return self._fold(node, ins, lambda d: np.squeeze(d, axis=None if axes is None else tuple(axes)), 1)
        if not isinstance(v, _Poison):
            self.bad(node, "a Squeeze of a computed tensor other than (N, C, 1, 1) -> (N, C)")
        return None

    def op_slice(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if self.opset < 10:
            starts, ends, axes = at.get("starts", []), at.get("ends", []), at.get("axes")

            def f1(d: np.ndarray) -> np.ndarray:
                return _slice(d, starts, ends, axes, None)

            return self._fold(node, ins, f1, 1)

        def f(d: np.ndarray, s: np.ndarray, e: np.ndarray, a: np.ndarray | None = None, st: np.ndarray | None = None) -> np.ndarray:
            return _slice(d, s.ravel().tolist(), e.ravel().tolist(), None if a is None else a.ravel().tolist(),
                          None if st is None else st.ravel().tolist())

        return self._fold(node, ins, f)

    def op_constantofshape(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        value = np.asarray(at.get("value", np.zeros(1, np.float32)))

        def f(s: np.ndarray) -> np.ndarray:
            dims = [int(d) for d in s.ravel()]
            check_size(math.prod(dims) * value.dtype.itemsize, LIMITS.param_bytes, f"{self.path}: a ConstantOfShape", "param_bytes",
                       OnnxError)
            return np.full(dims, value.ravel()[0], dtype=value.dtype)

        return self._fold(node, ins, f)

    def op_reshape(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        allowzero = int(at.get("allowzero", 0))
        v, target = ins[0], ins[1] if len(ins) > 1 else None
        if isinstance(v, _Const):
            return self._fold(node, ins, lambda d, s: d.reshape(_reshape_dims(d.shape, s.ravel().tolist(), allowzero)))
        if isinstance(v, _Poison) or isinstance(target, _Poison):
            return None
        if not isinstance(target, _Const):
            self.bad(node, "its target shape is computed at run time (cnnkit folds only constant shape arithmetic)")
            return None
        if not isinstance(v, _Tensor) or v.view == "pad":
            self.tensor(node, v)
            return None
        dims = _batch_dims(target, v.shape, allowzero)
        shape = v.shape
        features = math.prod(int(d or 0) for d in shape[1:])
        if dims is not None and dims[0] is None:
            rest = dims[1:]
            if len(rest) == 1 and rest[0] in (-1, features) and len(shape) in (3, 4):
                layer = Flatten() if v.view == "nhwc" or len(shape) == 3 else Flatten(order="nchw")
                return [_Tensor((None, features), self.add(node, layer, [v.src]))]
            if rest == list(shape[1:]) or (len(shape) == 2 and rest == [-1]):
                return [v]
        self.bad(node, f"Reshape of a {len(shape)}-D tensor to {quote(target.a.tolist(), 60)} (cnnkit imports flattening to "
                       f"(N, -1) only)")
        return None

    def op_transpose(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        v = ins[0]
        perm = at.get("perm")
        if isinstance(v, _Const):
            return [v.map(lambda a: np.transpose(a, perm))]
        if isinstance(v, _Tensor):
            rank = len(v.shape)
            p = list(perm) if perm is not None else list(range(rank))[::-1]
            if p == list(range(rank)) and not v.view:
                return [v]
            if rank == 4 and p == [0, 2, 3, 1] and not v.view:
                return [_Tensor((None, v.shape[2], v.shape[3], v.shape[1]), v.src, "nhwc")]
            if rank == 4 and p == [0, 3, 1, 2] and v.view == "nhwc":
                return [_Tensor((None, v.shape[3], v.shape[1], v.shape[2]), v.src)]
            self.bad(node, f"Transpose with perm {p} (cnnkit absorbs only (0, 2, 3, 1) before a flatten)")
        elif not isinstance(v, _Poison):
            self.tensor(node, v)
        return None

    def op_flatten(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        v = ins[0]
        axis = int(at.get("axis", 1))
        if isinstance(v, _Const):
            return [v.map(lambda a: a.reshape(math.prod(a.shape[:axis]), -1))]
        if not isinstance(v, _Tensor) or v.view == "pad":
            self.tensor(node, v)
            return None
        rank = len(v.shape)
        if axis + rank * (axis < 0) != 1:
            self.bad(node, f"axis={axis} (cnnkit flattens whole examples, axis=1)")
            return None
        if rank == 2:
            return [v]
        layer = Flatten() if v.view == "nhwc" or rank != 4 else Flatten(order="nchw")
        return [_Tensor((None, math.prod(v.shape[1:])), self.add(node, layer, [v.src]))]  # type: ignore[arg-type]

    def _binary(self, node: Any, ins: list[Any], f: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> list[Any] | None:
        a, b = ins[0], ins[1]
        if isinstance(a, _Const) and isinstance(b, _Const):
            return self._fold(node, ins, f)
        op = node.op_type
        pre, c = (a, b) if isinstance(a, _Pre) else (b, a)
        if isinstance(pre, _Pre) and isinstance(c, _Const) and c.fixed and (op in ("Mul", "Add") or pre is a):
            return [_Pre(pre.shape, (*pre.steps, (op, c.a)))]
        if any(isinstance(v, _Poison) for v in (a, b)):
            return None
        if op == "Add" and isinstance(a, _Tensor) and isinstance(b, _Tensor):
            ta, tb = self.tensor(node, a, "its first input"), self.tensor(node, b, "its second input")
            if ta is None or tb is None:
                return None
            if ta.shape != tb.shape:
                self.bad(node, f"Add of tensors of shapes {ta.shape[1:]} and {tb.shape[1:]} (cnnkit adds equal shapes)")
                return None
            return [_Tensor(ta.shape, self.add(node, Add(), [ta.src, tb.src]))]
        if op == "Add":
            t, c = (a, b) if isinstance(a, _Tensor) else (b, a)
            t2 = self.tensor(node, t)
            value = self.const(node, c, "the constant added")
            if t2 is None or value is None:
                return None
            if not _per_channel(value.shape, t2.shape):
                self.bad(node, f"Add of a constant of shape {value.shape} to a tensor of shape {t2.shape[1:]} (only a per-channel "
                               f"bias after a Conv or MatMul is supported)")
                return None
            return [_Tensor(t2.shape, self.add(node, _BiasAdd(value, self.where(node)), [t2.src]))]
        self.bad(node, f"{op} of computed tensors (cnnkit imports {op} only in the preprocessing at the input, or of constants)")
        return None

    def op_add(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._binary(node, ins, np.add)

    def op_sub(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._binary(node, ins, np.subtract)

    def op_mul(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._binary(node, ins, np.multiply)

    def op_div(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        def div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            if np.issubdtype(x.dtype, np.integer):
                return np.trunc(np.true_divide(x, y)).astype(x.dtype)
            return np.true_divide(x, y)

        return self._binary(node, ins, div)

    def op_sum(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if all(isinstance(v, _Const) for v in ins):
            return self._fold(node, ins, lambda *xs: sum(xs[1:], xs[0]))
        ts = [self.tensor(node, v, f"input {i}") for i, v in enumerate(ins)]
        if any(t is None for t in ts):
            return None
        if len({t.shape for t in ts if t is not None}) != 1:
            self.bad(node, "a Sum of tensors of different shapes")
            return None
        if len(ts) == 1:
            return [ts[0]]
        return [_Tensor(ts[0].shape, self.add(node, Add(), [t.src for t in ts if t is not None]))]  # type: ignore[union-attr]

    def op_concat(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        axis = int(at.get("axis", 0))
        if all(isinstance(v, _Const) for v in ins):
            return self._fold(node, ins, lambda *xs: np.concatenate(xs, axis=axis))
        ts = [self.tensor(node, v, f"input {i}") for i, v in enumerate(ins)]
        if any(t is None for t in ts):
            return None
        tensors = [t for t in ts if t is not None]
        rank = len(tensors[0].shape)
        a = axis + rank if axis < 0 else axis
        if a < 1 or any(len(t.shape) != rank for t in tensors):
            self.bad(node, f"concatenation on axis {axis} (cnnkit concatenates features, not examples)")
            return None
        nhwc = nchw_axis_to_nhwc(a) if rank == 4 else a
        shape = list(tensors[0].shape)
        shape[a] = sum(int(t.shape[a] or 0) for t in tensors)
        for t in tensors[1:]:
            if t.shape[:a] + t.shape[a + 1:] != tensors[0].shape[:a] + tensors[0].shape[a + 1:]:
                self.bad(node, f"inputs of shapes {[t.shape[1:] for t in tensors]} differ outside axis {axis}")
                return None
        return [_Tensor(tuple(shape), self.add(node, Concatenate(axis=nhwc if rank != 4 else (-1 if nhwc == 3 else nhwc)),
                                               [t.src for t in tensors]))]

    def op_pad(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        mode = at.get("mode", "constant")
        if mode != "constant":
            self.bad(node, f"mode={mode!r} (cnnkit folds only zero padding into a Conv)")
            return None
        if self.opset < 11:
            pads = at.get("pads")
            value = float(at.get("value", 0.0))
        else:
            p = self.const(node, ins[1], "pads") if len(ins) > 1 and ins[1] is not None else None
            pads = None if p is None else p.ravel().tolist()
            cv = self.const(node, ins[2], "constant_value") if len(ins) > 2 and ins[2] is not None else np.zeros(1)
            value = 0.0 if cv is None or cv.size == 0 else float(cv.ravel()[0])
            if len(ins) > 3 and ins[3] is not None:
                axes = self.const(node, ins[3], "axes")
                if axes is not None and pads is not None:
                    full = [0] * 8
                    for i, ax in enumerate(axes.ravel().tolist()):
                        ax = int(ax) % 4
                        full[ax], full[ax + 4] = pads[i], pads[i + len(axes.ravel())]
                    pads = full
        if value != 0.0:
            self.bad(node, f"padding with {value:g} (cnnkit folds only zeros into a Conv)")
            return None
        v = ins[0]
        if isinstance(v, _Tensor) and not v.view and pads is not None and len(pads) == 2 * len(v.shape) and _channel_pad is not None:
            rank = len(v.shape)
            channels = 1 if rank == 4 else rank - 1
            if pads[rank + channels] > 0 and not any(p for i, p in enumerate(pads) if i != rank + channels):
                layer = _channel_pad(int(pads[rank + channels]))
                return [_Tensor(_from_cnnkit(layer.output_shape(_to_cnnkit(v.shape))), self.add(node, layer, [v.src]))]
        t = self._image(node, ins[0])
        if t is None or pads is None:
            return None
        if len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
            self.bad(node, f"pads {pads} (cnnkit folds only non-negative padding of H and W into a Conv)")
            return None
        shape = (None, t.shape[1], int(t.shape[2] or 0) + pads[2] + pads[6], int(t.shape[3] or 0) + pads[3] + pads[7])
        return [_Tensor(shape, t.src, "pad", (int(pads[2]), int(pads[6]), int(pads[3]), int(pads[7])))]

    # -- layers ---------------------------------------------------------------------------------------------
    def op_conv(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        weight = self.const(node, ins[1], "the weight") if len(ins) > 1 else None
        bias = self.const(node, ins[2], "the bias") if len(ins) > 2 and ins[2] is not None else None
        v = ins[0]
        extra = (0, 0, 0, 0)
        if isinstance(v, _Tensor) and v.view == "pad":
            extra = v.pads
            if at.get("auto_pad", "NOTSET") != "NOTSET":
                self.bad(node, "auto_pad after a folded Pad")
                return None
            v = _Tensor((None, v.shape[1], int(v.shape[2] or 0) - extra[0] - extra[1], int(v.shape[3] or 0) - extra[2] - extra[3]), v.src)
        if weight is not None and weight.ndim != 4:
            self.bad(node, f"a {weight.ndim - 2}-D convolution (cnnkit's Conv2d is 2-D)")
            return None
        t = self._image(node, v)
        if t is None or weight is None:
            return None
        geometry = self._window_attrs(node, at, _Tensor(v.shape, "", ""), weight.shape[2:])
        if geometry is None:
            return None
        (kh, kw), stride, dilation, (pt, pb, pl, pr) = geometry
        pt, pb, pl, pr = pt + extra[0], pb + extra[1], pl + extra[2], pr + extra[3]
        groups = int(at.get("group", 1))
        c_in = int(t.shape[1] or 0)
        c_out = weight.shape[0]
        if weight.shape[2:] != (kh, kw) or weight.shape[1] * groups != c_in:
            self.bad(node, f"a weight of shape {weight.shape} with kernel_shape {[kh, kw]} and group={groups} does not fit "
                           f"{c_in} input channels")
            return None
        padding: Any = (pt, pl) if (pt, pl) == (pb, pr) else ((pt, pb), (pl, pr))
        layer = Conv2d(c_in, c_out, (kh, kw), stride, padding, dilation, groups, bias=bias is not None)
        layer.params["weight"][...] = weight.transpose(2, 3, 1, 0)  # OIHW -> (kh, kw, C_in/g, C_out)
        if bias is not None:
            layer.params["bias"][...] = bias.reshape(c_out)
        return [self._layer_out(node, layer, t)]

    def op_convtranspose(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        weight = self.const(node, ins[1], "the weight") if len(ins) > 1 else None
        bias = self.const(node, ins[2], "the bias") if len(ins) > 2 and ins[2] is not None else None
        groups = int(at.get("group", 1))
        t = self._image(node, ins[0])
        if t is None or weight is None:
            return None
        if weight.ndim != 4:
            self.bad(node, f"a {weight.ndim - 2}-D transposed convolution (cnnkit's is 2-D)")
            return None
        k = list(at.get("kernel_shape", weight.shape[2:]))
        s = list(at.get("strides", [1, 1]))
        d = list(at.get("dilations", [1, 1]))
        op = list(at.get("output_padding", [0, 0]))
        h, w = int(t.shape[2] or 0), int(t.shape[3] or 0)
        auto = at.get("auto_pad", "NOTSET")
        if len(k) != 2 or len(s) != 2 or len(d) != 2 or len(op) != 2:
            self.bad(node, "kernel_shape, strides, dilations and output_padding must be two-dimensional")
            return None
        if "output_shape" in at or auto in ("SAME_UPPER", "SAME_LOWER"):
            want = list(at["output_shape"])[-2:] if "output_shape" in at else [h * s[0], w * s[1]]
            pads = [0, 0, 0, 0]
            for ax, size in enumerate((h, w)):
                total = s[ax] * (size - 1) + op[ax] + (k[ax] - 1) * d[ax] + 1 - int(want[ax])
                if total < 0:  # an output_shape beyond the full output: the rest comes at the end, as output_padding
                    op[ax], total = op[ax] - total, 0
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (big, small) if auto == "SAME_LOWER" else (small, big)
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        else:
            pads = list(at.get("pads", [0, 0, 0, 0]))
        c_in = int(t.shape[1] or 0)
        if len(pads) != 4 or min(pads) < 0 or weight.shape[0] != c_in or tuple(weight.shape[2:]) != tuple(k) or c_in % groups:
            self.bad(node, f"a weight of shape {weight.shape}, pads {pads} and group={groups} do not fit {c_in} input channels "
                           f"and kernel_shape {k}")
            return None
        # ONNX's pads [top, left, bottom, right] crop the full output, as cnnkit's ((top, bottom), (left, right))
        pt, pl, pb, pr = pads
        attempts: list[tuple[Any, tuple[int, int]]] = [((pt, pl) if (pt, pl) == (pb, pr) else ((pt, pb), (pl, pr)), (op[0], op[1]))]
        if (pt, pl) != (pb, pr) and pt >= pb and pl >= pr:  # a layer with symmetric padding only: crop less at the end
            attempts.append(((pt, pl), (op[0] + pt - pb, op[1] + pl - pr)))
        c_out = weight.shape[1] * groups
        layer: Layer | None = None
        for padding, output_padding in attempts:
            kwargs: dict[str, Any] = {"groups": groups} if groups != 1 else {}
            try:
                layer = ConvTranspose2d(c_in, c_out, (k[0], k[1]), (s[0], s[1]), padding, output_padding, bias=bias is not None,
                                        dilation=(d[0], d[1]), **kwargs)
                break
            except (ShapeError, ValueError, TypeError) as exc:
                error = exc
        if layer is None:
            self.bad(node, f"cnnkit's ConvTranspose2d does not take group={groups}, pads {pads}, output_padding {op}: {error}")
            return None
        w_cnnkit = weight.transpose(2, 3, 0, 1)  # (C_in, C_out/g, kh, kw) -> (kh, kw, C_in, C_out/g)
        if layer.params["weight"].shape != w_cnnkit.shape:
            self.bad(node, f"a grouped weight of shape {weight.shape} has no known cnnkit layout")
            return None
        layer.params["weight"][...] = w_cnnkit
        if bias is not None:
            layer.params["bias"][...] = bias.reshape(-1)
        return [self._layer_out(node, layer, t)]

    def _make(self, node: Any, cls: type, args: dict[str, Any], optional: dict[str, tuple[Any, Any, str]]) -> Any:
        """``cls(**args, **optional)``, an optional argument passed only when it differs from its default; a problem
        listed (and None) when cnnkit's layer lacks the argument or refuses the values."""
        import inspect

        params = inspect.signature(cls).parameters
        kwargs = dict(args)
        for name, (value, default, what) in optional.items():
            if value == default:
                continue
            if name not in params:
                self.bad(node, f"{what} (cnnkit's {cls.__name__} has no {name})")
                return None
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except (ShapeError, ValueError, TypeError) as exc:
            self.bad(node, f"cnnkit's {cls.__name__} does not take it: {exc}")
            return None

    def _pool_geometry(self, node: Any, at: dict[str, Any], t: _Tensor) -> tuple[Any, ...] | None:
        """(kernel, strides, dilations, padding argument, large) of a pooling node, or None."""
        g = self._window_attrs(node, at, t, None)
        if g is None:
            return None
        kernel, stride, dilation, pads = g
        pt, pb, pl, pr = pads
        padding = (pt, pl) if (pt, pl) == (pb, pr) else ((pt, pb), (pl, pr))
        large = max(pt, pb) > kernel[0] // 2 or max(pl, pr) > kernel[1] // 2
        return kernel, stride, dilation, padding, large

    def op_maxpool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if int(at.get("storage_order", 0)) != 0 and len(node.output) > 1 and node.output[1]:
            self.bad(node, "storage_order=1 (column-major indices)")
            return None
        t = self._image(node, ins[0])
        g = None if t is None else self._pool_geometry(node, at, t)
        if t is None or g is None:
            return None
        kernel, stride, dilation, padding, large = g
        layer = self._make(node, MaxPool2d, dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                                                 ceil_mode=bool(at.get("ceil_mode", 0))),
                           {"allow_large_padding": (large, False, "pads larger than half the kernel")})
        if layer is None:
            return None
        return [self._layer_out(node, layer, t), _Indices(layer, t.shape)]

    def op_averagepool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        t = self._image(node, ins[0])
        g = None if t is None else self._pool_geometry(node, at, t)
        if t is None or g is None:
            return None
        kernel, stride, dilation, padding, large = g
        layer = self._make(node, AvgPool2d, dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=bool(at.get("ceil_mode", 0)),
                                                 count_include_pad=bool(at.get("count_include_pad", 0))),
                           {"dilation": (dilation, (1, 1), f"dilations {list(dilation)}"),
                            "allow_large_padding": (large, False, "pads larger than half the kernel")})
        return None if layer is None else [self._layer_out(node, layer, t)]

    def op_lppool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        t = self._image(node, ins[0])
        g = None if t is None else self._pool_geometry(node, at, t)
        if t is None or g is None:
            return None
        kernel, stride, dilation, padding, large = g
        ceil = bool(at.get("ceil_mode", 0))
        p = float(at.get("p", 2))
        pt, pb, pl, pr = resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1))
        if (pt, pl) == (0, 0) and (pb, pr) != (0, 0) and not ceil:  # zeros after the input: ceil_mode windows?
            h, w = int(t.shape[2] or 0), int(t.shape[3] or 0)
            floor = window((h + pb, w + pr), kernel, stride, dilation=dilation).out
            if window((h, w), kernel, stride, dilation=dilation, ceil_mode=True).out == floor:
                padding, ceil = 0, True
        layer = self._make(node, LPPool2d, dict(norm_type=p, kernel_size=kernel, stride=stride, ceil_mode=ceil),
                           {"padding": (padding, (0, 0), f"pads {[pt, pl, pb, pr]}"),
                            "dilation": (dilation, (1, 1), f"dilations {list(dilation)}"),
                            "allow_large_padding": (large, False, "pads larger than half the kernel")})
        return None if layer is None else [self._layer_out(node, layer, t)]

    def op_globalaveragepool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        t = self._image(node, ins[0])
        return None if t is None else [self._layer_out(node, GlobalAvgPool2d(), t)]

    def op_globalmaxpool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        t = self._image(node, ins[0])
        return None if t is None else [self._layer_out(node, GlobalMaxPool2d(), t)]

    def op_reducemean(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        axes = self._axes(node, ins, at)
        keep = int(at.get("keepdims", 1))
        t = self._image(node, ins[0])
        if t is None:
            return None
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            self.bad(node, f"a mean over axes {axes} (cnnkit imports the mean over H and W, global average pooling)")
            return None
        y = self._layer_out(node, GlobalAvgPool2d(), t)
        if not keep:
            y = _Tensor((None, t.shape[1]), self.add(node, Flatten(order="nchw"), [y.src], "_flatten"))
        return [y]

    def op_maxunpool(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        t = self._image(node, ins[0])
        idx = ins[1] if len(ins) > 1 else None
        if not isinstance(idx, _Indices):
            if not isinstance(idx, _Poison):
                self.bad(node, "its indices do not come from a MaxPool's Indices output")
            return None
        if t is None:
            return None
        k = list(at.get("kernel_shape", []))
        s = list(at.get("strides", [1, 1]))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        if len(k) != 2 or len(s) != 2 or len(pads) != 4 or pads[:2] != pads[2:]:
            self.bad(node, f"kernel_shape {k}, strides {s}, pads {pads} (two spatial axes, symmetric pads)")
            return None
        pool_shape = idx.pool_shape
        if len(ins) > 2 and ins[2] is not None:
            size = ins[2]
            want = [int(d or 0) for d in pool_shape[1:]]
            if not (isinstance(size, _Const) and size.a.size == 4 and size.a.ravel()[1:].tolist() == want
                    and size.b.ravel()[1:].tolist() == want):
                if not isinstance(size, _Poison):
                    self.bad(node, "an output_shape other than its MaxPool's input shape")
                return None
        else:
            default = [(int(n or 0) - 1) * st - 2 * p + kk for n, st, p, kk in zip(t.shape[2:], s, pads[:2], k)]
            if default != list(pool_shape[2:]):
                self.bad(node, f"no output_shape, and its default size {default} is not its MaxPool's input size {list(pool_shape[2:])}")
                return None
        layer = MaxUnpool2d((k[0], k[1]), (s[0], s[1]), (pads[0], pads[1]), pool=idx.pool)
        return [_Tensor(pool_shape, self.add(node, layer, [t.src]))]

    def _elementwise(self, node: Any, ins: list[Any], layer: Layer) -> list[Any] | None:
        t = self.tensor(node, ins[0])
        return None if t is None else [_Tensor(t.shape, self.add(node, layer, [t.src]))]

    def op_relu(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, ReLU())

    def op_sigmoid(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, Sigmoid())

    def op_tanh(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, Tanh())

    def op_leakyrelu(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, LeakyReLU(float(at.get("alpha", 0.01))))

    def op_elu(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, ELU(float(at.get("alpha", 1.0))))

    def op_softplus(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._elementwise(node, ins, Softplus())

    def op_clip(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if self.opset < 11:
            lo, hi = at.get("min", -np.inf), at.get("max", np.inf)
        else:
            a = self.const(node, ins[1], "min") if len(ins) > 1 and ins[1] is not None else np.array(-np.inf)
            b = self.const(node, ins[2], "max") if len(ins) > 2 and ins[2] is not None else np.array(np.inf)
            if a is None or b is None:
                return None
            lo, hi = float(a.ravel()[0]), float(b.ravel()[0])
        if lo != 0 or hi != np.inf:
            self.bad(node, f"Clip to [{lo:g}, {hi:g}] (cnnkit imports Clip to [0, inf), a ReLU; ReLU6 has no cnnkit layer)")
            return None
        return self._elementwise(node, ins, ReLU())

    def op_prelu(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        slope = self.const(node, ins[1], "the slope") if len(ins) > 1 else None
        t = self.tensor(node, ins[0])
        if t is None or slope is None:
            return None
        rank, c = len(t.shape), int(t.shape[1] or 0)
        # one slope, or one per channel (NCHW's axis 1 when trailing ones follow it; the last axis otherwise)
        trailing = slope.shape[-(rank - 2):] if rank > 2 else ()
        per_channel = slope.size == c and (rank == 2 or (slope.ndim >= rank - 1 and all(v == 1 for v in trailing))
                                           or (self.opset < 7 and slope.ndim == 1))  # PRelu-6 and before: a (C,) slope per channel
        if slope.size == 1 or per_channel:
            layer = PReLU(int(slope.size))
            layer.params["weight"][...] = slope.reshape(-1)
            return [_Tensor(t.shape, self.add(node, layer, [t.src]))]
        import inspect

        aligned = (1,) * (rank - slope.ndim) + tuple(slope.shape)  # ONNX's unidirectional broadcast onto (N, ...)
        fits = all(a in (1, int(d or 0)) for a, d in zip(aligned[1:], t.shape[1:]))
        if slope.ndim > rank or aligned[0] != 1 or not fits or "shape" not in inspect.signature(PReLU).parameters:
            self.bad(node, f"a slope of shape {slope.shape} for an input of shape {t.shape[1:]} (cnnkit's PReLU has one slope, "
                           f"one per channel, or slopes broadcasting to one example)")
            return None
        per_example = slope.reshape(aligned[1:])
        if rank == 4:
            per_example = per_example.transpose(1, 2, 0)  # (C, H, W) -> cnnkit's (H, W, C)
        layer = self._make(node, PReLU, dict(shape=per_example.shape), {})
        if layer is None:
            return None
        layer.params["weight"][...] = per_example
        return [_Tensor(t.shape, self.add(node, layer, [t.src]))]

    def _softmax(self, node: Any, ins: list[Any], at: dict[str, Any], cls: type) -> list[Any] | None:
        t = self.tensor(node, ins[0])
        if t is None:
            return None
        rank = len(t.shape)
        axis = int(at.get("axis", -1 if self.opset >= 13 else 1))
        a = axis + rank if axis < 0 else axis
        if self.opset < 13:  # over the axes from `axis` on, flattened: the channels only when nothing follows them
            ok = a == rank - 1 if rank != 4 else (a == 1 and t.shape[2:] == (1, 1))
        else:
            ok = a == (1 if rank == 4 else rank - 1)
        if not ok:
            self.bad(node, f"axis={axis} on a tensor of shape {t.shape[1:]} (cnnkit normalises over the channels)")
            return None
        return [_Tensor(t.shape, self.add(node, cls(), [t.src]))]

    def op_softmax(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._softmax(node, ins, at, Softmax)

    def op_logsoftmax(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        return self._softmax(node, ins, at, LogSoftmax)

    def op_batchnormalization(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if int(at.get("training_mode", 0)) or any(o and self.uses[o] for o in node.output[1:]):
            self.bad(node, "the training form (running statistics as outputs); cnnkit imports the inference form")
            return None
        if self.opset < 7 and not int(at.get("is_test", 0)):
            self.bad(node, "is_test=0")
            return None
        if int(at.get("spatial", 1)) != 1:
            self.bad(node, "spatial=0 (statistics per position)")
            return None
        consts = [self.const(node, v, what) for v, what in zip(ins[1:5], ("scale", "B", "mean", "var"))]
        t = self.tensor(node, ins[0])
        if t is None or any(c is None for c in consts) or len(consts) != 4:
            return None
        scale, bias, mean, var = (np.asarray(c, np.float32).reshape(-1) for c in consts)
        rank, c = len(t.shape), int(t.shape[1] or 0)
        if rank not in (2, 4) or any(v.size != c for v in (scale, bias, mean, var)):
            self.bad(node, f"statistics of sizes {[v.size for v in (scale, bias, mean, var)]} for an input of shape {t.shape[1:]}")
            return None
        momentum = 1.0 - float(at.get("momentum", 0.9))
        layer: Layer = (BatchNorm2d if rank == 4 else BatchNorm1d)(c, eps=float(at.get("epsilon", 1e-5)), momentum=momentum)
        layer.params["weight"][...] = scale
        layer.params["bias"][...] = bias
        layer.buffers["running_mean"][...] = mean
        layer.buffers["running_var"][...] = var
        return [_Tensor(t.shape, self.add(node, layer, [t.src]))]

    def op_dropout(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if len(node.output) > 1 and node.output[1] and self.uses[node.output[1]]:
            self.bad(node, "its mask output is read (cnnkit's Dropout gives none)")
            return None
        ratio = float(at.get("ratio", 0.5))
        if len(ins) > 1 and ins[1] is not None:
            r = self.const(node, ins[1], "ratio")
            if r is None:
                return None
            ratio = float(r.ravel()[0])
        if len(ins) > 2 and ins[2] is not None:
            mode = self.const(node, ins[2], "training_mode")
            if mode is None:
                return None
            if bool(mode.ravel()[0]):
                self.bad(node, "training_mode=true (a graph that always drops)")
                return None
        if not 0 <= ratio < 1:
            self.bad(node, f"ratio {ratio:g}")
            return None
        return self._elementwise(node, ins, Dropout(ratio))

    def op_gemm(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if int(at.get("transA", 0)):
            self.bad(node, "transA=1 (the examples must be the rows)")
            return None
        b = self.const(node, ins[1], "B") if len(ins) > 1 else None
        c = self.const(node, ins[2], "C") if len(ins) > 2 and ins[2] is not None else None
        t = self.tensor(node, ins[0], "A")
        if t is None or b is None or (len(ins) > 2 and ins[2] is not None and c is None):
            return None
        if len(t.shape) != 2 or b.ndim != 2:
            self.bad(node, f"A of shape {t.shape[1:]} per example and B of shape {b.shape} (a matrix product of (N, K) and (K, M))")
            return None
        w = (b.T if int(at.get("transB", 0)) else b) * float(at.get("alpha", 1.0))
        k, m = w.shape
        if k != t.shape[1]:
            self.bad(node, f"B of shape {b.shape} does not fit {t.shape[1]} features")
            return None
        if c is not None and c.size not in (1, m):
            self.bad(node, f"C of shape {c.shape} (cnnkit's Linear adds one bias per output)")
            return None
        layer = Linear(k, m, bias=c is not None)
        layer.params["weight"][...] = w
        if c is not None:
            layer.params["bias"][...] = np.broadcast_to(c.reshape(-1) * float(at.get("beta", 1.0)), (m,))
        return [_Tensor((None, m), self.add(node, layer, [t.src]))]

    def op_matmul(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        b = self.const(node, ins[1], "the second input") if len(ins) > 1 else None
        t = self.tensor(node, ins[0])
        if t is None or b is None:
            return None
        if len(t.shape) != 2 or b.ndim != 2 or b.shape[0] != t.shape[1]:
            self.bad(node, f"MatMul of a tensor of shape {t.shape[1:]} per example and a constant of shape {b.shape} (cnnkit imports "
                           f"(N, K) x (K, M) as a Linear)")
            return None
        layer = Linear(b.shape[0], b.shape[1], bias=False)
        layer.params["weight"][...] = b
        return [_Tensor((None, b.shape[1]), self.add(node, layer, [t.src]))]

    def _upsample(self, node: Any, t: _Tensor, scales: Sequence[float] | None, size: Sequence[int] | None = None,
                  coordinates: str = "asymmetric", rounding: str = "floor") -> list[Any] | None:
        """An Upsample for Resize's (scales or sizes) of (N, C, H, W) and its coordinate and rounding rules."""
        import inspect

        dims = [int(t.shape[1] or 0), int(t.shape[2] or 0), int(t.shape[3] or 0)]
        if size is not None:
            scales = [1.0] + [float(size[i]) / dims[i - 1] for i in (1, 2, 3)]
        assert scales is not None
        if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            self.bad(node, f"scales {list(scales)} (cnnkit resizes H and W only)")
            return None
        integer = all(v >= 1 and v == int(v) for v in scales[2:])
        # nearest with integer factors copies each pixel into a block under these coordinate and rounding rules (half_pixel
        # puts output x at input (x + 0.5) / s - 0.5, never a tie: rounding to nearest gives blocks, ceil and floor do not)
        blocks = (coordinates in ("half_pixel", "pytorch_half_pixel") and rounding in ("round_prefer_floor", "round_prefer_ceil")) or (
            coordinates == "asymmetric" and rounding == "floor")
        if integer and blocks:
            layer: Any = Upsample((int(scales[2]), int(scales[3])))
        elif "coordinate_transformation_mode" in inspect.signature(Upsample.__init__).parameters:
            kwargs = {"size": (int(size[2]), int(size[3]))} if size is not None else {"scale_factor": (scales[2], scales[3])}
            layer = self._make(node, Upsample, dict(coordinate_transformation_mode=coordinates, nearest_mode=rounding, **kwargs), {})
            if layer is None:
                return None
        else:
            self.bad(node, f"scales {list(scales)} with coordinate_transformation_mode={coordinates!r}, nearest_mode={rounding!r} "
                           f"(cnnkit's Upsample copies pixels into blocks by integer factors)")
            return None
        return [self._layer_out(node, layer, t)]

    def op_resize(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        mode = at.get("mode", "nearest")
        coord = at.get("coordinate_transformation_mode", "half_pixel")
        nearest = at.get("nearest_mode", "round_prefer_floor")
        problems = []
        if mode != "nearest":
            problems.append(f"mode={mode!r} (cnnkit's Upsample is nearest-neighbour)")
        if int(at.get("antialias", 0)) or int(at.get("exclude_outside", 0)):
            problems.append("antialias or exclude_outside")
        axes = [int(a) for a in at.get("axes", [0, 1, 2, 3])]
        policy = at.get("keep_aspect_ratio_policy", "stretch")
        if sorted(a % 4 for a in axes) != sorted({a % 4 for a in axes}) or policy not in ("stretch", "not_larger", "not_smaller"):
            problems.append(f"axes {axes} with keep_aspect_ratio_policy={policy!r}")
        for p in problems:
            self.bad(node, p)
        t = self._image(node, ins[0])
        if problems or t is None:
            return None
        if self.opset < 11:
            scales_v, sizes_v = (ins[1] if len(ins) > 1 else None), None
            coord, nearest = "asymmetric", "floor"  # Resize-10
        else:
            scales_v, sizes_v = (ins[2] if len(ins) > 2 else None), (ins[3] if len(ins) > 3 else None)

        def given(v: Any) -> bool:
            return v is not None and not (isinstance(v, _Const) and v.a.size == 0)

        axes = [a % 4 for a in axes]
        dims = [1, int(t.shape[1] or 0), int(t.shape[2] or 0), int(t.shape[3] or 0)]

        def full(values: Sequence[float], fill: Sequence[float]) -> list[float] | None:
            """scales or sizes given for ``axes`` (Resize-18's attribute) spread over the four axes."""
            if len(values) != len(axes):
                self.bad(node, f"{len(values)} scales or sizes for axes {axes}")
                return None
            out = list(fill)
            for a, v in zip(axes, values):
                out[a] = v
            return out

        if given(scales_v):
            scales = self.const(node, scales_v, "scales")
            spread = None if scales is None else full([float(v) for v in scales.ravel()], [1.0] * 4)
            return None if spread is None else self._upsample(node, t, spread, None, coord, nearest)
        if given(sizes_v):
            if not isinstance(sizes_v, _Const) or sizes_v.a.size != len(axes) or not np.array_equal(
                    sizes_v.a[1:] if len(axes) == 4 else sizes_v.a, sizes_v.b[1:] if len(axes) == 4 else sizes_v.b):
                self.const(node, sizes_v, "sizes")
                return None
            want = [int(v) for v in sizes_v.a.ravel()]
            if len(axes) == 4:
                want[axes.index(0)] = 1  # N may come from a Shape
            sizes = full(want, dims)
            if sizes is None:
                return None
            if policy != "stretch":  # one scale for the axes resized, the sizes rounded half up from it
                ratios = [sizes[a] / dims[a] for a in axes]
                scale = min(ratios) if policy == "not_larger" else max(ratios)
                sizes = [int(scale * dims[a] + 0.5) if a in axes else dims[a] for a in range(4)]
                from cnnkit.ops.pool import nearest_source_indices

                for a in (2, 3):  # cnnkit's Upsample maps by size / input: the same source pixels?
                    if a in axes and not np.array_equal(
                            nearest_source_indices(dims[a], int(sizes[a]), scale, coord, nearest),
                            nearest_source_indices(dims[a], int(sizes[a]), None, coord, nearest)):
                        self.bad(node, f"keep_aspect_ratio_policy={policy!r}: the scale {scale:g} picks other pixels than the "
                                       f"size {int(sizes[a])} / {dims[a]} that cnnkit's Upsample resizes by")
                        return None
            return self._upsample(node, t, None, [int(v) for v in sizes], coord, nearest)
        self.bad(node, "neither scales nor sizes is given")
        return None

    def op_upsample(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        if at.get("mode", "nearest") != "nearest":
            self.bad(node, f"mode={at.get('mode')!r} (cnnkit's Upsample is nearest-neighbour)")
            return None
        t = self._image(node, ins[0])
        scales = at.get("scales") if "scales" in at else (self.const(node, ins[1], "scales") if len(ins) > 1 else None)
        if t is None or scales is None:
            return None
        return self._upsample(node, t, [float(v) for v in np.asarray(scales).ravel()], None, "asymmetric", "floor")


    def op_lrn(self, node: Any, ins: list[Any], at: dict[str, Any]) -> list[Any] | None:
        size = int(at.get("size", 0))
        if _lrn is None or size % 2 == 0:
            self.bad(node, f"size={size} (cnnkit's LocalResponseNorm centres even windows as PyTorch does, not as ONNX)"
                     if _lrn is not None else "operator LRN is not supported")
            return None
        t = self._image(node, ins[0])
        if t is None:
            return None
        layer = _lrn(size, float(at.get("alpha", 1e-4)), float(at.get("beta", 0.75)), float(at.get("bias", 1.0)))
        return [_Tensor(t.shape, self.add(node, layer, [t.src]))]


# -- module-level helpers -------------------------------------------------------------------------------
def _per_channel(const: tuple[int, ...], shape: tuple[int | None, ...]) -> bool:
    """Whether a constant of shape ``const`` broadcast onto ``shape`` gives one value per channel (axis 1)."""
    if math.prod(const) == 1:
        return len(const) <= len(shape)
    rank = len(shape)
    if len(const) > rank:
        return False
    aligned = (1,) * (rank - len(const)) + tuple(const)
    return aligned[1] == shape[1] and all(d == 1 for i, d in enumerate(aligned) if i != 1)


def _show(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, list)) else type(v).__name__


def _to_cnnkit(shape: Sequence[int | None]) -> tuple[int, ...]:
    """One example's cnnkit shape of an ONNX tensor shape (batch first; images NCHW -> HWC)."""
    dims = [int(d or 0) for d in shape[1:]]
    return (dims[1], dims[2], dims[0]) if len(dims) == 3 else tuple(dims)


def _from_cnnkit(shape: Sequence[int]) -> tuple[int | None, ...]:
    dims = [int(d) for d in shape]
    return (None, dims[2], dims[0], dims[1]) if len(dims) == 3 else (None, *dims)


def _slice(d: np.ndarray, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> np.ndarray:
    index = [slice(None)] * d.ndim
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return d[tuple(index)]


def _reshape_dims(shape: tuple[int, ...], target: list[int], allowzero: int) -> list[int]:
    return [shape[i] if t == 0 and not allowzero else int(t) for i, t in enumerate(target)]


def _batch_dims(target: _Const, shape: tuple[int | None, ...], allowzero: int) -> list[int | None] | None:
    """A Reshape's target with the batch dimension as None, or None if the batch shows up elsewhere."""
    a, b = target.a.ravel().tolist(), target.b.ravel().tolist()
    if len(a) != len(b) or not a:
        return None
    out: list[int | None] = []
    for i, (x, y) in enumerate(zip(a, b)):
        if (x, y) == (_B1, _B2) and i == 0:
            out.append(None)
        elif x != y:
            return None
        elif i == 0 and x == 0 and not allowzero:
            out.append(None)
        else:
            out.append(int(x))
    rest = [v for v in out[1:] if v is not None]
    if out[0] == -1 and len(rest) == len(out) - 1 and min(rest, default=1) > 0 and math.prod(rest) == math.prod(
            int(d or 0) for d in shape[1:]):
        out[0] = None
    return out


def _check_tensor(onnx: Any, t: Any, path: str | os.PathLike[str]) -> tuple[list[int], np.dtype]:
    """(dims, dtype) of a TensorProto whose data is inside the file and has the size its dims declare; ModelFileError
    otherwise (before anything is allocated)."""
    name = quote(t.name, 80) if t.name else "a constant"
    if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
        raise ModelFileError(f"{path}: tensor {name} keeps its data in an external file; cnnkit reads only self-contained ONNX files")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise ModelFileError(f"{path}: tensor {name} has impossible dims {dims[:10]}")
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    except (KeyError, ValueError, TypeError):
        raise ModelFileError(f"{path}: tensor {name} has an unknown element type {t.data_type}") from None
    if dtype.kind not in "fiub" or t.data_type == onnx.TensorProto.STRING:
        raise ModelFileError(f"{path}: tensor {name} has element type {dtype}, which cnnkit does not read")
    count = math.prod(dims)
    check_size(count * dtype.itemsize, LIMITS.param_bytes, f"{path}: tensor {name}", "param_bytes", ModelFileError)
    if t.HasField("raw_data"):
        if len(t.raw_data) != count * dtype.itemsize:
            raise ModelFileError(f"{path}: tensor {name} declares dims {dims} ({count * dtype.itemsize:,} bytes) but holds "
                                 f"{len(t.raw_data):,} bytes")
    else:
        have = max(len(t.float_data), len(t.int32_data), len(t.int64_data), len(t.double_data), len(t.uint64_data))
        if have != count:
            raise ModelFileError(f"{path}: tensor {name} declares dims {dims} ({count:,} values) but holds {have:,}")
    return dims, dtype


def _array(onnx: Any, t: Any, path: str) -> np.ndarray:
    """A checked TensorProto (:func:`_check_tensor`) as a NumPy array."""
    dims, _ = _check_tensor(onnx, t, path)
    try:
        arr = onnx.numpy_helper.to_array(t)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: tensor {quote(t.name, 80)} cannot be read: {exc}") from None
    return np.asarray(arr).reshape(dims)


def _parse(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(the onnx module, the ModelProto) of a file read without trusting it."""
    from cnnkit.serialize import open_regular

    onnx = onnx_module("ONNX import")
    with open_regular(path, ModelFileError, LIMITS.file_bytes) as f:
        data = f.read()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFileError(f"{path}: not an ONNX model (no graph)")
    total = 0
    for init in model.graph.initializer:  # every size checked before the checker or NumPy reads the data
        dims, dtype = _check_tensor(onnx, init, path)
        total += math.prod(dims) * dtype.itemsize
    check_size(total, LIMITS.param_bytes, f"{path}: its initializers", "param_bytes", ModelFileError)
    if len(model.graph.sparse_initializer):
        raise ModelFileError(f"{path}: sparse initializers are not supported")
    if len(model.graph.node) > MAX_NODES:
        raise ModelFileError(f"{path}: {len(model.graph.node):,} nodes, over the limit of {MAX_NODES:,}")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError, or what the C++ checker throws
        first = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{path}: a malformed ONNX model ({first})") from None
    return onnx, model


def _metadata(model: Any, path: str | os.PathLike[str]) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def read(path: str | os.PathLike[str]) -> Imported:
    """Read an ONNX file: the network (NHWC input), its input shape, and what cnnkit's metadata says.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.onnx import export
    >>> from cnnkit.onnx.importer import read
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = export(Linear(3, 2, rng=np.random.default_rng(0)), (3,), os.path.join(d, "fc.onnx"), classes=["a", "b"])
    ...     found = read(os.path.join(d, "fc.onnx"))
    >>> type(found.network).__name__, found.input_shape, found.classes
    ('Sequential', (3,), ['a', 'b'])
    """
    onnx, model = _parse(path)
    network, shape, preprocess = _Reader(onnx, model, str(path)).run()
    props = _metadata(model, path)
    classes: list[str] | None = None
    if KEY_CLASSES in props:
        try:
            classes = json.loads(props[KEY_CLASSES])
        except ValueError:
            classes = None
        if not (isinstance(classes, list) and len(classes) <= 1_000_000 and all(isinstance(c, str) and len(c) <= 1000 for c in classes)):
            raise ModelFileError(f"{path}: its metadata {KEY_CLASSES} is not a list of names")
    if KEY_INPUT_SHAPE in props:
        try:
            recorded = tuple(json.loads(props[KEY_INPUT_SHAPE]))
        except (ValueError, TypeError):
            recorded = ()
        if recorded != shape:
            raise ModelFileError(f"{path}: its metadata {KEY_INPUT_SHAPE}={quote(props[KEY_INPUT_SHAPE], 60)} disagrees with the "
                                 f"graph's input, {shape} as HWC")
    mode = props.get(KEY_PREPROCESS)
    if mode is not None and (preprocess is None or preprocess["mode"] != mode):
        raise ModelFileError(f"{path}: its metadata says the graph does {quote(mode, 40)} preprocessing, but its first nodes do "
                             f"{(preprocess or {}).get('mode', 'none')!r}")
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    meta: dict[str, Any] = {"format": "onnx", "producer": f"{model.producer_name} {model.producer_version}".strip(), "opset": opset,
                            "metadata_props": props}
    return Imported(network, shape, classes, preprocess, meta)


def load(path: str | os.PathLike[str]) -> Layer:
    """The network of an ONNX file as an ordinary, trainable cnnkit network taking NHWC input.

    A Sequential when the graph is a chain, a Graph otherwise; ONNX's (N, C, H, W) input becomes cnnkit's
    (N, H, W, C) (``x_onnx.transpose(0, 2, 3, 1)``), a 4-D output comes out NHWC. Preprocessing nodes that
    :func:`cnnkit.onnx.export` put in front are left out (see :func:`load_model_file`). Unsupported operators
    and attributes raise :class:`~cnnkit.errors.OnnxError` listing every one with its node; a malformed,
    oversized or externally stored file raises :class:`~cnnkit.errors.ModelFileError`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> from cnnkit.onnx import export, load
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = export(net, (5, 5, 1), os.path.join(d, "net.onnx"))
    ...     again = load(os.path.join(d, "net.onnx"))
    >>> [type(layer).__name__ for layer in again]
    ['Conv2d', 'ReLU', 'Flatten', 'Linear']
    >>> x = rng.standard_normal((2, 5, 5, 1)).astype(np.float32)
    >>> bool(np.allclose(again.eval()(x), net.eval()(x), atol=1e-6))
    True
    """
    return read(path).network


def load_model_file(path: str | os.PathLike[str]) -> ModelFile:
    """An ONNX file as a :class:`~cnnkit.models.file.ModelFile`: network, input shape (HWC), classes, preprocess.

    What ``cnnkit predict model.onnx image.png`` and ``cnnkit summary model.onnx`` use; the classes and the
    preprocessing are those :func:`cnnkit.onnx.export` stored (None for another producer's file).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from cnnkit.data import Preprocessor
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> from cnnkit.onnx import export, load_model_file
    >>> pre = Preprocessor("scale").fit(np.zeros((1, 2, 2, 1), np.uint8))
    >>> net = Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = export(net, (2, 2, 1), os.path.join(d, "m.onnx"), preprocess=pre.to_dict(), classes=["dark", "light"])
    ...     m = load_model_file(os.path.join(d, "m.onnx"))
    >>> m.input_shape, m.classes, m.preprocess, [type(layer).__name__ for layer in m.network]
    ((2, 2, 1), ['dark', 'light'], {'mode': 'scale'}, ['Flatten', 'Linear'])
    """
    from cnnkit.models.file import ModelFile

    found = read(path)
    meta = dict(found.meta)
    meta.setdefault("model", Path(path).name)
    return ModelFile(found.network, found.input_shape, found.classes, found.preprocess, meta)


__all__ = ["Imported", "load", "load_model_file", "read"]
