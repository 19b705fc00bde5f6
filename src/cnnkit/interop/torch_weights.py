"""PyTorch weights without PyTorch: a cnnkit network's state as a PyTorch ``state_dict`` in a safetensors file.

:func:`save_torch_state_dict` writes the parameters and buffers of a network under the names of
``net.state_dict()`` (which are PyTorch's for the same modules in an ``nn.Sequential``, a module with
attributes ``body``/``shortcut`` for a :class:`~cnnkit.nn.Residual`, or attributes named like the nodes of
a :class:`~cnnkit.nn.Graph`), in PyTorch's layouts, so that ``torch_model.load_state_dict(
safetensors.torch.load_file(path))`` loads them strictly. :func:`load_torch_state_dict` reads what
``safetensors.torch.save_file(torch_model.state_dict(), path)`` wrote into a cnnkit network, in place.
:func:`torch_state_dict` and :func:`load_torch_arrays` do the same with NumPy arrays in memory.

=================================  =================================  ====================================================
cnnkit entry (cnnkit layout)       PyTorch entry (PyTorch layout)     conversion
=================================  =================================  ====================================================
Conv2d.weight                      Conv2d.weight                      ``w.transpose(3, 2, 0, 1)`` (grouped, depthwise too)
(kh, kw, C_in/g, C_out)            (C_out, C_in/g, kh, kw)
ConvTranspose2d.weight             ConvTranspose2d.weight             ``w.transpose(2, 3, 0, 1)``
(kh, kw, in, out/g)                (in, out/g, kh, kw)
Linear.weight (in, out)            Linear.weight (out, in)            ``w.T``, columns reordered after a Flatten (below)
BatchNorm1d/2d.weight, .bias,      the same names and shapes          as they are, reordered after a Flatten (below);
.running_mean, .running_var        (C,)                               num_batches_tracked: int64 of shape ()
PReLU.weight (num_parameters,)     PReLU.weight                       as it is, reordered after a Flatten (below)
every .bias (C_out,)               .bias                              as it is
Flatten() of an (H, W, C) image    nn.Flatten() of (C, H, W)          feature (h*W + w)*C + c is PyTorch's (c*H + h)*W + w
Flatten(order="nchw")              nn.Flatten()                       nothing to reorder
ReLU, Dropout, pools, activations  the same modules                   no entries
LocallyConnected2d, other layers   none                               an error naming the layer
with parameters
=================================  =================================  ====================================================

The feature order. cnnkit's activations are NHWC, so its default :class:`~cnnkit.nn.Flatten` numbers the
features of an H x W x C image (h*W + w)*C + c, where PyTorch's ``nn.Flatten`` of an NCHW tensor numbers
them (c*H + h)*W + w. The weight columns of the first Linear layer after such a Flatten are reordered (in
both directions), as are the per-feature entries of the elementwise layers between the two (BatchNorm1d,
PReLU with one slope per feature; ReLU, Dropout and the other activations have none and keep the order
going). Reordering needs the image's shape, so a network with a Flatten needs ``input_shape`` (one
example's (H, W, C), as for :func:`cnnkit.summary`); its shapes are traced from there.

A layer used at several places (weight sharing) has its entries once in ``net.state_dict()``; PyTorch
lists a module reached twice under each of its names, so they are written under every name, and read back
from whichever names the file holds (they must agree).

Reading trusts nothing in the file: it is opened as a regular file within :data:`cnnkit.limits.LIMITS`
(``CNNKIT_MAX_FILE_BYTES``; a FIFO or a device is refused), its header is checked completely (JSON, dtypes,
shapes, offsets that tile the data exactly) and compared with the network (names, dtypes, shapes) before
any number is copied, so a file that is refused leaves the network as it was. Floating-point tensors are
converted to the network's dtype: float16 and bfloat16 always, float32 and float64 when that loses nothing
(float64 into a float32 network is refused: convert the PyTorch model with ``.float()`` first); integer
tensors are accepted only for ``num_batches_tracked`` (int64). Errors, each one line naming the file:
:class:`~cnnkit.errors.ModelFileError` (not a safetensors file, truncated, too large, a refused dtype),
:class:`~cnnkit.errors.StateError` (missing or unexpected entries, listed),
:class:`~cnnkit.errors.ShapeError` (a shape that differs, or a network that cannot be mapped).

Writing needs the ``safetensors`` package (``pip install 'cnnkit[interop]'``); reading does not (the format
is a JSON header and raw little-endian arrays, parsed here). Writes are atomic
(:func:`cnnkit.serialize.atomic_write_bytes`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from cnnkit.errors import MismatchError, ModelFileError, ShapeError, StateError, quote, require
from cnnkit.limits import LIMITS, check_size
from cnnkit.nn.activation import ELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from cnnkit.nn.base import Layer
from cnnkit.nn.container import Concat, Container, Residual, Sequential
from cnnkit.nn.conv import Conv2d, ConvTranspose2d
from cnnkit.nn.dropout import Dropout
from cnnkit.nn.graph import Add, Concatenate, Graph, Merge
from cnnkit.nn.linear import Flatten, Identity, Linear
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from cnnkit.serialize import PathLike, atomic_write_bytes, open_regular

__all__ = ["IncompatibleKeys", "load_torch_arrays", "load_torch_state_dict", "save_torch_state_dict", "torch_state_dict"]

Shape = tuple[int, ...]
Perm = np.ndarray | None  # cnnkit feature index of each PyTorch feature (None: the same order)

#: bytes per element of every dtype the safetensors format names (so that any file's header can be checked)
SAFETENSORS_ITEMSIZE: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "C32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
_FLOAT_BITS = {"F16": 16, "BF16": 16, "F32": 32, "F64": 64}
_NUMPY_NAMES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32",
                "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL"}
_MAX_RANK = 32


class IncompatibleKeys(NamedTuple):
    """What :func:`load_torch_state_dict` left out (``strict=False``), as PyTorch's ``load_state_dict`` returns.

    ``missing_keys``: entries of the network the file does not hold (they keep their values);
    ``unexpected_keys``: entries of the file the network does not have (ignored).

    Examples
    --------
    >>> IncompatibleKeys(missing_keys=["1.bias"], unexpected_keys=[])
    IncompatibleKeys(missing_keys=['1.bias'], unexpected_keys=[])
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


# -- the plan: each entry of the network, its PyTorch name(s) and layout ------------------------------


@dataclass
class _Entry:
    """One parameter or buffer: the network's array, its layout in PyTorch and the other names it has there."""

    key: str
    target: np.ndarray
    layout: str = "plain"  # "conv" | "conv_transpose" | "linear" | "vector" | "plain"
    perm: Perm = None
    aliases: list[str] = field(default_factory=list)

    def torch_shape(self) -> Shape:
        s = tuple(int(v) for v in self.target.shape)
        if self.layout == "conv":
            return (s[3], s[2], s[0], s[1])
        if self.layout == "conv_transpose":
            return (s[2], s[3], s[0], s[1])
        if self.layout == "linear":
            return (s[1], s[0])
        return s

    def to_torch(self) -> np.ndarray:
        a = self.target
        if self.layout == "conv":
            a = a.transpose(3, 2, 0, 1)
        elif self.layout == "conv_transpose":
            a = a.transpose(2, 3, 0, 1)
        elif self.layout == "linear":
            a = (a if self.perm is None else a[self.perm]).T
        elif self.layout == "vector" and self.perm is not None:
            a = a[self.perm]
        return a.copy(order="C")  # np.ascontiguousarray would make a 0-d counter 1-d

    def from_torch(self, a: np.ndarray) -> np.ndarray:
        """``a`` (PyTorch's layout, already of the target's dtype) in the network's layout."""
        if self.layout == "conv":
            return a.transpose(2, 3, 1, 0)
        if self.layout == "conv_transpose":
            return a.transpose(2, 3, 0, 1)
        if self.layout == "linear":
            a = a.T
        if self.perm is not None and self.layout in ("linear", "vector"):
            out = np.empty_like(a)
            out[self.perm] = a
            return out
        return a

    def same_layout(self, other: _Entry) -> bool:
        if self.layout != other.layout:
            return False
        if self.perm is None or other.perm is None:
            return self.perm is None and other.perm is None
        return bool(np.array_equal(self.perm, other.perm))


class _Plan:
    """Walks a network (tracing shapes from ``input_shape`` when given) and records every entry's layout."""

    def __init__(self, net: Layer, input_shape: Sequence[int] | None, what: str) -> None:
        self.what = what
        self.entries: dict[str, _Entry] = {}
        self.aliases: dict[str, str] = {}  # alias -> primary key
        self._first: dict[int, str] = {}  # id(leaf) -> the name of its first use
        self._uses = 0  # layers met along every path (shared containers are walked at every use)
        shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        if shape is not None and (not shape or min(shape) < 1):
            raise ShapeError(f"{what}: input_shape must be the positive (H, W, C) of one example, got {input_shape!r}")
        try:
            self.walk(net, "", shape, None)
        except RecursionError:
            raise ShapeError(f"{what}: the network's containers are nested too deeply to be walked") from None
        expected = set(net.state_dict())
        if set(self.entries) != expected:  # a structure this walk does not know reached the state differently
            odd = sorted(expected.symmetric_difference(self.entries))
            raise ShapeError(f"{what}: the network's entries {quote(odd)} could not be mapped to PyTorch names")

    # -- containers -------------------------------------------------------------------------------
    def walk(self, layer: Layer, name: str, shape: Shape | None, perm: Perm) -> tuple[Shape | None, Perm]:
        """What flows out of ``layer`` (shape, feature order) for what flows in."""
        dot = f"{name}." if name else ""
        self._uses += 1
        if self._uses > LIMITS.layers:
            raise ShapeError(f"{self.what}: the network has more than {LIMITS.layers:,} layer uses (counting a shared "
                             f"container at each of its places), over the limit (CNNKIT_MAX_LAYERS)")
        if isinstance(layer, Sequential):
            for k, child in layer.named_children():
                shape, perm = self.walk(child, dot + k, shape, perm)
            return shape, perm
        if isinstance(layer, Residual):
            kids = dict(layer.named_children())
            body = self.walk(kids["body"], f"{dot}body", shape, perm)
            short = self.walk(kids["shortcut"], f"{dot}shortcut", shape, perm) if "shortcut" in kids else (shape, perm)
            self._same_order([body[1], short[1]], name, "Residual")
            return body
        if isinstance(layer, Concat):
            outs = [self.walk(child, dot + k, shape, perm) for k, child in layer.named_children()]
            return self._concat(outs, name, "Concat", -1)
        if isinstance(layer, Graph):
            return self._graph(layer, name, shape, perm)
        if isinstance(layer, Container):
            raise ShapeError(f"{self.what}: {self._where(name, layer)} is a container this export does not know; "
                             f"build the network from Sequential, Residual, Concat and Graph")
        return self._leaf(layer, name, shape, perm)

    def _graph(self, g: Graph, name: str, shape: Shape | None, perm: Perm) -> tuple[Shape | None, Perm]:
        dot = f"{name}." if name else ""
        kids = dict(g.named_children())
        env: dict[str, tuple[Shape | None, Perm]] = {g.input_name: (shape, perm)}
        for node in g.nodes:
            layer = kids[node.name]
            ins = [env[n] for n in node.inputs]
            if isinstance(layer, Concatenate):
                env[node.name] = self._concat(ins, dot + node.name, "Concatenate", layer.axis)
            elif isinstance(layer, Merge):  # Add keeps one order; another merge must meet none
                perms: list[Perm] = [p for _, p in ins] if isinstance(layer, Add) else [None, *(p for _, p in ins)]
                self._same_order(perms, dot + node.name, type(layer).__name__)
                shapes = [s for s, _ in ins]
                try:
                    out = None if any(s is None for s in shapes) else layer.merged_shape([s for s in shapes if s is not None])
                except ShapeError as exc:
                    raise ShapeError(exc.detail, tuple((dot + node.name).split(".")), type(layer).__name__) from None
                env[node.name] = (out, ins[0][1])
            else:
                env[node.name] = self.walk(layer, dot + node.name, *ins[0])
        return env[g.output]

    def _same_order(self, perms: list[Perm], name: str, kind: str) -> None:
        first = perms[0]
        for p in perms[1:]:
            same = (p is None and first is None) or (p is not None and first is not None and bool(np.array_equal(p, first)))
            if not same:
                raise ShapeError(f"{self.what}: layer {name or '(the network)'} ({kind}) combines flattened features of "
                                 f"different orders (one path reorders NHWC features for PyTorch, another does not); "
                                 f"use Flatten(order='nchw') in this network")

    def _concat(self, outs: list[tuple[Shape | None, Perm]], name: str, kind: str, axis: int) -> tuple[Shape | None, Perm]:
        shapes = [s for s, _ in outs]
        if any(s is None for s in shapes):
            return None, None  # no shapes, no flattened images (those need input_shape), so no order to follow
        known = [s for s in shapes if s is not None]
        try:
            merged = Concatenate(axis).merged_shape(known)
        except ShapeError as exc:
            raise ShapeError(exc.detail, tuple(name.split(".")) if name else (), kind) from None
        if all(p is None for _, p in outs):
            return merged, None
        if len(known[0]) != 1:  # pragma: no cover - orders are only followed through 1-D features
            raise ShapeError(f"{self.what}: layer {name} ({kind}) concatenates reordered features of shapes {known}")
        parts, offset = [], 0
        for (_, p), sh in zip(outs, known):
            parts.append(offset + (np.arange(sh[0]) if p is None else p))
            offset += sh[0]
        return merged, _normal(np.concatenate(parts))

    # -- leaves -----------------------------------------------------------------------------------
    @staticmethod
    def _where(name: str, layer: Layer) -> str:
        return f"layer {name} ({type(layer).__name__})" if name else f"the network ({type(layer).__name__})"

    def _leaf(self, layer: Layer, name: str, shape: Shape | None, perm: Perm) -> tuple[Shape | None, Perm]:
        out: Shape | None = None
        if shape is not None:
            try:
                out = tuple(int(v) for v in layer.describe(shape).out_shape)
            except ShapeError as exc:
                raise ShapeError(exc.detail, tuple(name.split(".")) if name else (), type(layer).__name__) from None
        if isinstance(layer, Flatten):
            return out, self._flatten(layer, name, shape, out, perm)
        if isinstance(layer, Linear):
            self._record(layer, name, {"weight": ("linear", perm)})
            return out, None
        if isinstance(layer, Conv2d):
            self._record(layer, name, {"weight": ("conv", None)})
            return out, None
        if isinstance(layer, ConvTranspose2d):
            self._record(layer, name, {"weight": ("conv_transpose", None)})
            return out, None
        if perm is not None and not isinstance(layer, _FEATUREWISE):
            raise ShapeError(f"{self.what}: {self._where(name, layer)} follows a Flatten of an image, whose features PyTorch "
                             f"orders differently, and the order cannot be followed through it; use Flatten(order='nchw')")
        if isinstance(layer, PReLU) and layer.params["weight"].ndim != 1:
            raise ShapeError(f"{self.what}: {self._where(name, layer)} has slopes of shape {layer.params['weight'].shape}, "
                             f"which PyTorch's PReLU (one slope, or one per channel) has no equivalent for")
        if isinstance(layer, (BatchNorm1d, BatchNorm2d, PReLU)):
            layouts = {k: ("vector", perm if v.ndim == 1 and v.shape[0] > 1 else None) for k, v in layer.state_dict().items()}
            self._record(layer, name, layouts)
            return out, perm
        if layer.params or layer.buffers:
            raise ShapeError(f"{self.what}: {self._where(name, layer)} has no PyTorch equivalent, so its weights "
                             f"have no PyTorch name or layout")
        return out, perm

    def _flatten(self, layer: Flatten, name: str, shape: Shape | None, out: Shape | None, perm: Perm) -> Perm:
        if shape is None:
            if layer.order == "nchw":
                return None
            raise ShapeError(
                f"{self.what}: {self._where(name, layer)} flattens its input in NHWC order and PyTorch in NCHW order, "
                f"so the weights after it are reordered, which needs the input's shape: pass input_shape=(H, W, C), "
                f"the shape of one example"
            )
        if len(shape) <= 1:
            return perm  # flattening a feature vector changes nothing
        if out is None or len(out) != 1:
            raise ShapeError(f"{self.what}: {self._where(name, layer)} flattens only some axes of {shape}, which has no "
                             f"PyTorch equivalent in NCHW order; flatten whole examples")
        if layer.order == "nchw" and len(shape) == 3:
            return None
        r = len(shape)
        return _normal(np.arange(math.prod(shape)).reshape(shape).transpose(r - 1, *range(r - 1)).ravel())

    def _record(self, layer: Layer, name: str, layouts: Mapping[str, tuple[str, Perm]]) -> None:
        dot = f"{name}." if name else ""
        first = self._first.get(id(layer))
        for k, arr in layer.state_dict().items():
            layout, perm = layouts.get(k, ("plain", None))
            entry = _Entry(dot + k, arr, layout, perm)
            if first is None:
                self.entries[entry.key] = entry
                continue
            primary = self.entries[f"{first}.{k}" if first else k]
            if not primary.same_layout(entry):
                raise ShapeError(f"{self.what}: {self._where(name, layer)} is also used as layer {first}, where its "
                                 f"inputs are ordered differently for PyTorch; one weight cannot serve both")
            if entry.key != primary.key and entry.key not in primary.aliases:
                primary.aliases.append(entry.key)
                self.aliases[entry.key] = primary.key
        self._first.setdefault(id(layer), name)


#: layers that act on each feature alone (or on all alike), so that features reordered for PyTorch stay
#: reordered the same way through them (after a Flatten); LocalResponseNorm, for one, mixes neighbours
_FEATUREWISE = (ReLU, Sigmoid, Tanh, LeakyReLU, ELU, Softplus, Softmax, LogSoftmax, PReLU, Dropout, Identity, BatchNorm1d, Merge)


def _count(n: int) -> str:
    """``n`` with thousands separators, or shortened when a file declares an absurdly long integer.

    Examples
    --------
    >>> _count(1234567), _count(10**200)
    ('1,234,567', '10000000000000000000000000000000000... (201 characters)')
    """
    return f"{n:,}" if n.bit_length() <= 128 else quote(n, 40)


def _normal(perm: np.ndarray) -> Perm:
    """None for the identity (a 1 x 1 image, one channel): nothing to reorder."""
    return None if bool(np.array_equal(perm, np.arange(perm.size))) else perm


# -- writing -----------------------------------------------------------------------------------------


def torch_state_dict(net: Layer, input_shape: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The network's parameters and buffers as PyTorch's ``state_dict`` holds them: names and layouts (new arrays).

    ``input_shape``: one example's (H, W, C), needed when the network flattens an image (see the module
    docstring). Raises ShapeError for a layer without a PyTorch equivalent or a missing ``input_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(3, 4, 3, rng=rng), Flatten(), Linear(4 * 2 * 2, 5, rng=rng))
    >>> state = torch_state_dict(net, input_shape=(4, 4, 3))
    >>> {k: v.shape for k, v in state.items()}  # OIHW convolution, (out, in) linear weight
    {'0.weight': (4, 3, 3, 3), '0.bias': (4,), '2.weight': (5, 16), '2.bias': (5,)}
    >>> w = net[2].params["weight"]  # (in, out): row (h*W + w)*C + c; PyTorch's column (c*H + h)*W + w
    >>> c, h, x = 1, 1, 0  # the feature of channel 1 at row 1, column 0 of the 2 x 2 x 4 image
    >>> bool(np.array_equal(state["2.weight"][:, (c * 2 + h) * 2 + x], w[(h * 2 + x) * 4 + c]))
    True
    >>> torch_state_dict(net)
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: torch_state_dict: layer 1 (Flatten) flattens its input in NHWC order ... pass input_shape=(H, W, C), ...
    """
    plan = _Plan(net, input_shape, "torch_state_dict")
    out: dict[str, np.ndarray] = {}
    for entry in plan.entries.values():
        out[entry.key] = entry.to_torch()
        for alias in entry.aliases:
            out[alias] = out[entry.key]
    return out


def save_torch_state_dict(net: Layer, path: PathLike, input_shape: Sequence[int] | None = None) -> None:
    """Write the network's parameters and buffers to ``path`` as a PyTorch ``state_dict`` in safetensors format.

    PyTorch reads it with ``model.load_state_dict(safetensors.torch.load_file(path))`` into the same
    modules (see the module docstring for names and layouts). ``input_shape``: one example's (H, W, C),
    needed when the network flattens an image. The file is written atomically. Needs ``safetensors``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 2, 3, rng=rng), BatchNorm2d(2), ReLU(), Flatten(), Linear(2 * 3 * 3, 4, rng=rng))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_torch_state_dict(net, Path(d) / "net.safetensors", input_shape=(5, 5, 1))
    ...     from safetensors.numpy import load
    ...     state = load((Path(d) / "net.safetensors").read_bytes())
    >>> sorted((k, v.shape, str(v.dtype)) for k, v in state.items())  # doctest: +NORMALIZE_WHITESPACE
    [('0.bias', (2,), 'float32'), ('0.weight', (2, 1, 3, 3), 'float32'), ('1.bias', (2,), 'float32'),
     ('1.num_batches_tracked', (), 'int64'), ('1.running_mean', (2,), 'float32'), ('1.running_var', (2,), 'float32'),
     ('1.weight', (2,), 'float32'), ('4.bias', (4,), 'float32'), ('4.weight', (4, 18), 'float32')]
    """
    arrays = torch_state_dict(net, input_shape)
    st: Any = require("safetensors.numpy", "interop", "writing PyTorch weights (safetensors files)")
    data = st.save(arrays, metadata={"format": "pt"})
    atomic_write_bytes(path, data)


# -- reading -----------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One tensor of a state dict, as declared (dtype name of the safetensors format, shape) and its reader."""

    dtype: str
    shape: Shape
    read: Callable[[], np.ndarray]  # the values, in a NumPy dtype (bfloat16 widened to float32)


def _accepts(dtype: str, target: np.dtype) -> bool:
    """Whether a tensor of ``dtype`` goes into an array of ``target`` (half precision widens; nothing narrows)."""
    if target.kind == "f":
        bits = _FLOAT_BITS.get(dtype)
        return bits is not None and (bits == 16 or bits <= 8 * target.itemsize)
    if target.kind in "iu":
        return dtype == _NUMPY_NAMES.get(target.name)
    return False  # pragma: no cover - cnnkit's entries are floats and int64 counters


def _expected(target: np.dtype) -> str:
    if target.kind == "f":
        wider = [d for d in ("F32", "F64") if _FLOAT_BITS[d] <= 8 * target.itemsize]
        return f"a floating-point tensor (F16, BF16{''.join(', ' + d for d in wider)}) for a {target.name} network"
    return f"{_NUMPY_NAMES.get(target.name, target.name)} as PyTorch stores it"


def _load(net: Layer, sources: Mapping[str, _Source], input_shape: Sequence[int] | None, strict: bool, what: str,
          where: str, dtype_error: type[ValueError]) -> IncompatibleKeys:
    """Check every source against the plan (names, dtypes, shapes), then copy them all in place."""
    plan = _Plan(net, input_shape, what)
    names = {**{k: k for k in plan.entries}, **plan.aliases}  # every name PyTorch may use -> primary key
    missing = sorted(k for k, e in plan.entries.items() if not any(n in sources for n in (k, *e.aliases)))
    unexpected = sorted(k for k in sources if k not in names)
    required = [k for k in missing if not k.endswith("num_batches_tracked")]  # as Layer.load_state_dict (older files)
    if strict and (required or unexpected):
        parts = []
        if required:
            parts.append(f"missing {len(required)} entries of the network: {quote(required)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} entries the network does not have: {quote(unexpected)}")
        raise StateError(f"{where}: {'; '.join(parts)} (a PyTorch model of the same modules, named like "
                         f"net.state_dict(), is expected; strict=False loads what matches)")
    chosen: dict[str, list[str]] = {}
    for key, src in sources.items():  # every dtype and shape first: nothing is copied unless everything fits
        if key not in names:
            continue
        entry = plan.entries[names[key]]
        if not _accepts(src.dtype, entry.target.dtype):
            raise dtype_error(f"{where}: tensor {quote(key, 80)} has dtype {quote(src.dtype, 20)}; "
                                 f"expected {_expected(entry.target.dtype)}")
        if src.shape != entry.torch_shape():
            raise ShapeError(f"{where}: tensor {quote(key, 80)} has shape {src.shape}; the network's {entry.key} "
                             f"expects {entry.torch_shape()} in PyTorch's layout")
        chosen.setdefault(entry.key, []).append(key)
    values: list[tuple[_Entry, np.ndarray]] = []
    for primary, keys in chosen.items():
        entry = plan.entries[primary]
        arrays = [sources[k].read() for k in keys]
        for k, a in zip(keys[1:], arrays[1:]):
            if not np.array_equal(a, arrays[0]):
                raise StateError(f"{where}: {quote(k, 80)} and {quote(keys[0], 80)} name one shared layer of the "
                                 f"network but hold different values")
        values.append((entry, entry.from_torch(arrays[0].astype(entry.target.dtype, copy=False))))
    for entry, value in values:
        entry.target[...] = value
    return IncompatibleKeys(missing, unexpected)


def load_torch_arrays(net: Layer, arrays: Mapping[str, Any], input_shape: Sequence[int] | None = None,
                      strict: bool = True) -> IncompatibleKeys:
    """Copy a PyTorch ``state_dict`` held as NumPy arrays into the network, in place (inverse of :func:`torch_state_dict`).

    ``arrays``: name -> array in PyTorch's layout (e.g. ``{k: v.numpy() for k, v in model.state_dict().items()}``).
    The checks and errors are those of :func:`load_torch_state_dict`, but a refused dtype raises MismatchError.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, ReLU, Sequential
    >>> a, b = (Sequential(Linear(3, 2, rng=np.random.default_rng(s)), ReLU()) for s in (0, 1))
    >>> load_torch_arrays(b, torch_state_dict(a))
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    >>> bool(np.array_equal(a[0].params["weight"], b[0].params["weight"]))
    True
    >>> load_torch_arrays(b, {"0.weight": np.zeros((3, 2), np.float32), "0.bias": np.zeros(2, np.float32)})
    Traceback (most recent call last):
    ...
    cnnkit.errors.ShapeError: load_torch_arrays: tensor '0.weight' has shape (3, 2); the network's 0.weight expects (2, 3) ...
    """
    sources: dict[str, _Source] = {}
    for key, value in arrays.items():
        a = np.asarray(value)
        name = _NUMPY_NAMES.get(a.dtype.name, a.dtype.name)
        sources[str(key)] = _Source(name, tuple(int(v) for v in a.shape), _array_reader(a, widen=name == "BF16"))
    return _load(net, sources, input_shape, strict, "load_torch_arrays", "load_torch_arrays", MismatchError)


def _array_reader(a: np.ndarray, widen: bool) -> Callable[[], np.ndarray]:
    """A reader of an array in memory (bfloat16, e.g. from ml_dtypes, widened to float32)."""
    return lambda: a.astype(np.float32) if widen else a


def load_torch_state_dict(net: Layer, path: PathLike, input_shape: Sequence[int] | None = None,
                          strict: bool = True) -> IncompatibleKeys:
    """Load a PyTorch ``state_dict`` saved as safetensors (``safetensors.torch.save_file``) into the network, in place.

    The inverse of :func:`save_torch_state_dict`: names, layouts and the Flatten reordering as in the module
    docstring. ``input_shape``: one example's (H, W, C), needed when the network flattens an image.
    ``strict``: the file must hold every entry of the network (``num_batches_tracked`` may be missing) and
    no other; with False, what matches is loaded and the rest listed in the returned :class:`IncompatibleKeys`.

    Nothing is copied unless the whole file fits the network. Raises ModelFileError (not a readable
    safetensors file, truncated, over ``CNNKIT_MAX_FILE_BYTES``, not a regular file, a refused dtype),
    StateError (missing or unexpected entries, listed), ShapeError (a shape that differs), each naming the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, Sequential
    >>> def make(seed):
    ...     rng = np.random.default_rng(seed)
    ...     return Sequential(Conv2d(3, 4, 3, rng=rng), Flatten(), Linear(4 * 2 * 2, 5, rng=rng))
    >>> a, b = make(0), make(1)
    >>> x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_torch_state_dict(a, Path(d) / "w.safetensors", input_shape=(4, 4, 3))
    ...     keys = load_torch_state_dict(b, Path(d) / "w.safetensors", input_shape=(4, 4, 3))
    ...     try:
    ...         load_torch_state_dict(Sequential(Linear(3, 2)), Path(d) / "w.safetensors")
    ...     except StateError as e:
    ...         error = str(e)
    >>> keys, bool(np.allclose(a(x), b(x)))
    (IncompatibleKeys(missing_keys=[], unexpected_keys=[]), True)
    >>> print(error)
    /.../w.safetensors: unexpected 2 entries the network does not have: ['2.bias', '2.weight'] (a PyTorch model ...)
    """
    sources = _read_safetensors(path)
    return _load(net, sources, input_shape, strict, "load_torch_state_dict", str(path), ModelFileError)


def _read_safetensors(path: PathLike) -> dict[str, _Source]:
    """The tensors of a safetensors file, their headers checked completely (each read on request)."""
    limit = LIMITS.file_bytes + LIMITS.meta_bytes
    with open_regular(path, ModelFileError, limit) as f:
        data = _read_exactly(f, str(path), limit)

    def fail(why: str) -> ModelFileError:
        return ModelFileError(f"{path}: {why}")

    if len(data) < 8:
        raise fail(f"not a safetensors file: {len(data)} bytes, fewer than the 8 of its header's length (truncated?)")
    n = int.from_bytes(data[:8], "little")
    check_size(n, LIMITS.meta_bytes, f"{path}: its header", "meta_bytes", ModelFileError)
    if 8 + n > len(data):
        raise fail(f"truncated or not a safetensors file: it declares a header of {n:,} bytes but holds {len(data) - 8:,} after the length")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise fail(f"its header names {quote(twice, 80)} twice")
        return out

    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise fail(f"not a safetensors file: its header is not JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(header, dict):
        raise fail(f"not a safetensors file: its header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise fail("its __metadata__ is not an object of strings")
    if len(header) > LIMITS.members:
        raise fail(f"{len(header):,} tensors, over the limit of {LIMITS.members:,} (CNNKIT_MAX_MEMBERS)")
    start, size = 8 + n, len(data) - 8 - n
    spans: list[tuple[int, int, str]] = []
    sources: dict[str, _Source] = {}
    for key, info in header.items():
        name = quote(key, 80)
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise fail(f"tensor {name}: expected an object with dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_ITEMSIZE:
            raise fail(f"tensor {name} has an unknown dtype {quote(dtype, 20)}")
        if (not isinstance(shape, list) or len(shape) > _MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise fail(f"tensor {name} declares an invalid shape {quote(shape, 80)}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            raise fail(f"tensor {name} declares invalid data_offsets {quote(offsets, 80)}")
        nbytes = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise fail(f"tensor {name} declares {dtype} {quote(tuple(shape), 80)} ({_count(nbytes)} bytes) but "
                       f"data_offsets of {_count(offsets[1] - offsets[0])} bytes")
        spans.append((offsets[0], offsets[1], key))
        sources[key] = _Source(dtype, tuple(shape), _reader(data, start + offsets[0], dtype, tuple(shape)))
    end = 0
    for b, e, key in sorted(spans):
        if b != end:
            raise fail(f"tensor {quote(key, 80)}'s data starts at byte {b:,} of the data, expected {end:,} "
                       f"(the tensors must tile the data without gaps or overlaps)")
        end = e
    if end > size:
        raise fail(f"truncated: its tensors need {end:,} bytes of data but the file holds {size:,}")
    if end < size:
        raise fail(f"{size - end:,} bytes after the last tensor's data (not a safetensors file, or a damaged one)")
    return sources


def _read_exactly(f: BinaryIO, where: str, limit: int) -> bytearray:
    """All of an open regular file (its size known, at most ``limit``), into one buffer allocated once."""
    size = os.fstat(f.fileno()).st_size
    data = bytearray(size)
    got = 0
    while got < size:
        chunk = f.read(min(1 << 24, size - got))
        if not chunk:
            break
        data[got : got + len(chunk)] = chunk
        got += len(chunk)
    if got < size:  # shrank while being read: what is there is parsed (and found truncated)
        del data[got:]
    elif f.read(1):
        raise ModelFileError(f"{where}: the file grew while it was read; read it again when it is complete")
    check_size(len(data), limit, where, error=ModelFileError)
    return data


def _reader(data: bytearray, offset: int, dtype: str, shape: Shape) -> Callable[[], np.ndarray]:
    """Decode one tensor's little-endian bytes (numbers only: bfloat16 widened to float32)."""

    def read() -> np.ndarray:
        count = math.prod(shape)
        if dtype == "BF16":
            half = np.frombuffer(data, "<u2", count, offset).astype(np.uint32)
            return (half << 16).view(np.float32).reshape(shape)
        np_dtype = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}.get(dtype)
        if np_dtype is None:  # pragma: no cover - refused by the dtype check before any read
            raise ModelFileError(f"dtype {dtype} is not read")
        return np.frombuffer(data, np_dtype, count, offset).reshape(shape).astype(np_dtype[1:], copy=False)

    return read
