"""The network-token table: one entry per kind of token, holding everything cnnkit knows about it.

Each entry (a :class:`TokenKind` subclass instance in :data:`TOKEN_KINDS`) gives, in one place:

* ``syntax`` and ``pattern``: the grammar of the token, and :meth:`TokenKind.parse` for its arguments;
* :meth:`TokenKind.build`: the layer factory (the cnnkit layers the token stands for);
* :meth:`TokenKind.torch`: the PyTorch equivalent (benchmarks and oracle tests).

Composite tokens (:class:`Composite`: ``res(...)``, ``cat(...)``, the repetition ``<n>*...``) hold chains of
tokens; their entries combine the layers the builder makes of each branch (a Residual, a Concat, copies in a
row), and their PyTorch equivalents are small modules (:func:`torch_chain` translates any chain).

Shapes and costs are the layers' own (:meth:`cnnkit.nn.Layer.describe`), read from layers built with
:func:`cnnkit.nn.init.shapes_only` (nothing is allocated). The parser (:mod:`cnnkit.models.spec`), the
summary (:mod:`cnnkit.summary`) and the benchmark's PyTorch translator only loop over this table, so a new
kind of token is one new entry here.

Examples
--------
>>> from cnnkit.models.tokens import kind_of
>>> kind_of("conv5x5x1x20").name
'conv'
>>> kind_of("pool2").parse("pool2")
('maxpool', {'kernel': 2, 'stride': 2, 'padding': 0})
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import SpecError
from cnnkit.nn.base import Layer, LayerInfo, Trace, TraceRow
from cnnkit.nn.init import building_shapes_only

Shape = tuple[int, ...]


@dataclass
class BuildContext:
    """State shared by the factories while one network is built (options, generator, first layer).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import BuildOptions
    >>> from cnnkit.models.tokens import BuildContext
    >>> from cnnkit.nn import Linear
    >>> ctx = BuildContext(BuildOptions(init="matconvnet"), np.random.default_rng(0))
    >>> ctx.need_input_grad()  # the first layer with parameters needs no dL/dx
    False
    >>> layer = ctx.initialise(Linear(4, 2, rng=np.random.default_rng(0)), 4)
    >>> ctx.need_input_grad(), layer.params["bias"]
    (True, array([0., 0.], dtype=float32))
    """

    options: Any  # cnnkit.models.spec.BuildOptions
    rng: np.random.Generator
    seen_parameters: bool = False  # a layer with parameters has been built already
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> Any:
        return self.options.dtype

    def need_input_grad(self) -> bool:
        """The first layer with parameters skips dX unless asked (nothing before it learns)."""
        return bool(self.options.first_layer_input_grad or self.seen_parameters)

    def initialise(self, layer: Layer, fan_in: int) -> Layer:
        """Apply the options' initialisation to a layer with ``weight`` (and ``bias``); marks parameters seen."""
        from cnnkit.nn.init import gaussian, he_normal

        init = self.options.init
        if init not in ("matconvnet", "he", "pytorch"):
            raise ValueError(f"unknown init {init!r}; expected 'matconvnet', 'he' or 'pytorch'")
        self.seen_parameters = True
        if building_shapes_only():
            return layer
        w = layer.params["weight"]
        if init == "matconvnet":
            w[...] = gaussian(w.shape, 0.01, self.rng, w.dtype)
        elif init == "he":
            w[...] = he_normal(w.shape, fan_in, self.rng, w.dtype)
        if "bias" in layer.params and init != "pytorch":
            layer.params["bias"][...] = 0
        return layer


def _numel(shape: Shape) -> int:
    return int(math.prod(shape))


class TokenKind:
    """One kind of token. Subclasses set ``name``, ``syntax`` and ``pattern`` and override what differs.

    ``parse`` gives the token's arguments, ``build`` the layers it stands for (their ``describe`` gives
    shapes and costs), ``torch`` the PyTorch modules that compute the same.

    Examples
    --------
    >>> from cnnkit.models.spec import BuildOptions
    >>> k = kind_of("conv3x3x1x8s2")
    >>> kind, args = k.parse("conv3x3x1x8s2")
    >>> kind, args
    ('conv', {'kernel': (3, 3), 'in': 1, 'out': 8, 'stride': 2, 'padding': 0, 'dilation': 1, 'bias': True})
    >>> import numpy as np
    >>> layers = k.build(args, (28, 28, 1), BuildContext(BuildOptions(), np.random.default_rng(0)))
    >>> layers[0].output_shape((28, 28, 1))
    (13, 13, 8)
    """

    name: str = ""
    syntax: str = ""
    pattern: re.Pattern[str] = re.compile(r"(?!)")
    #: a token made of chains of tokens (``args["branches"]``): see :class:`Composite`
    composite: bool = False

    def parse(self, text: str) -> tuple[str, dict[str, Any]]:
        """(kind, arguments) of a token this entry matches; raises SpecError with a reason for bad values."""
        m = self.pattern.fullmatch(text)
        if m is None:
            raise SpecError(f"{text!r} is not a {self.name} token; expected {self.syntax}")
        return self.kind(m), self.arguments(m)

    def kind(self, m: re.Match[str]) -> str:
        """The ``Token.kind`` of a match (an entry may parse several kinds, e.g. max and average pooling)."""
        return self.name

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        """The token's arguments from its pattern's match; SpecError with a reason for bad values."""
        return {}

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:  # pragma: no cover
        raise NotImplementedError

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:  # pragma: no cover
        raise NotImplementedError


class _Conv(TokenKind):
    """``conv<kh>x<kw>x<in>x<out>`` with options; ``g<groups>`` splits the channels into groups (``g<in>`` with
    in = out: depthwise). ``args["groups"]`` is present only when the option is written."""

    name = "conv"
    syntax = "conv<kh>x<kw>x<in>x<out>[s<stride>][p<pad>|psame][d<dilation>][g<groups>][nobias]"
    pattern = re.compile(r"conv(\d+)x(\d+)x(\d+)x(\d+)((?:s\d+|psame|p\d+|d\d+|g\d+|nobias)*)")
    _option = re.compile(r"s\d+|psame|p\d+|d\d+|g\d+|nobias")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        kh, kw, cin, cout = (int(v) for v in m.groups()[:4])
        args: dict[str, Any] = {"kernel": (kh, kw), "in": cin, "out": cout, "stride": 1, "padding": 0, "dilation": 1, "bias": True}
        for opt in self._option.findall(m.group(5)):
            if opt == "psame":
                args["padding"] = "same"
            elif opt == "nobias":
                args["bias"] = False
            else:
                args[{"s": "stride", "p": "padding", "d": "dilation", "g": "groups"}[opt[0]]] = int(opt[1:])
        if min(kh, kw, cin, cout, args["stride"], args["dilation"]) < 1:
            raise SpecError("sizes, stride and dilation must be >= 1")
        groups = args.get("groups", 1)
        if groups < 1 or cin % groups or cout % groups:
            raise SpecError(f"{groups} groups must divide the {cin} input and {cout} output channels")
        return args

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import Conv2d

        kh, kw = args["kernel"]
        groups = args.get("groups", 1)
        layer = Conv2d(
            args["in"], args["out"], args["kernel"], args["stride"], args["padding"], args["dilation"], groups, bias=args["bias"],
            rng=ctx.rng, dtype=ctx.dtype, need_input_grad=ctx.need_input_grad(), workspace_limit=ctx.options.workspace_limit,
        )
        return [ctx.initialise(layer, kh * kw * args["in"] // groups)]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.Conv2d(args["in"], args["out"], args["kernel"], args["stride"], args["padding"], args["dilation"],
                           groups=args.get("groups", 1), bias=args["bias"])]


class _Pool(TokenKind):
    name = "pool"
    syntax = "pool<k>[s<stride>][p<pad>], avgpool<k>[s<stride>][p<pad>]"
    pattern = re.compile(r"(pool|maxpool|avgpool)(\d+)(?:s(\d+))?(?:p(\d+))?")

    def kind(self, m: re.Match[str]) -> str:
        return "avgpool" if m.group(1) == "avgpool" else "maxpool"

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        k = int(m.group(2))
        s = int(m.group(3)) if m.group(3) else k
        p = int(m.group(4)) if m.group(4) else 0
        if k < 1 or s < 1:
            raise SpecError("pooling size and stride must be >= 1")
        if p > k // 2:  # as the pooling layers (and PyTorch) require: no window lies wholly in the padding
            raise SpecError(f"pooling padding {p} must be at most half the window ({k} // 2 = {k // 2})")
        return {"kernel": k, "stride": s, "padding": p}

class _MaxPool(_Pool):
    """``pool<k>`` and ``maxpool<k>``: max pooling (stride defaults to k)."""

    name = "maxpool"

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import MaxPool2d

        return [MaxPool2d(args["kernel"], args["stride"], args["padding"])]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.MaxPool2d(args["kernel"], args["stride"], args["padding"])]


class _AvgPool(_Pool):
    """``avgpool<k>``: average pooling (parsed by the pool entry, built here)."""

    name = "avgpool"
    syntax = ""  # written as part of the pool entry's syntax
    pattern = re.compile(r"(?!)")  # reached through _Pool's pattern

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import AvgPool2d

        return [AvgPool2d(args["kernel"], args["stride"], args["padding"])]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.AvgPool2d(args["kernel"], args["stride"], args["padding"])]


class _Activation(TokenKind):
    """``relu``, ``sigmoid``, ``tanh``: elementwise activations, no arguments."""

    layer = ""

    def __init__(self, name: str, layer: str) -> None:
        self.name, self.syntax, self.layer = name, name, layer
        self.pattern = re.compile(re.escape(name))

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        import cnnkit.nn as nn

        return [getattr(nn, self.layer)()]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [getattr(tnn, self.layer)()]


class _BatchNorm(TokenKind):
    """``bn``: batch normalisation over the channels reaching it (BatchNorm1d after a flatten)."""

    name = syntax = "bn"
    pattern = re.compile("bn")

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import BatchNorm1d, BatchNorm2d

        cls = BatchNorm2d if len(shape) == 3 else BatchNorm1d
        layer = cls(shape[-1], eps=ctx.options.bn_eps, momentum=ctx.options.bn_momentum)
        layer.astype(ctx.dtype)
        ctx.seen_parameters = True  # its scale and shift learn: the layers after it must pass dL/dx back
        return [layer]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [(tnn.BatchNorm2d if len(shape) == 3 else tnn.BatchNorm1d)(shape[-1])]


class _Dropout(TokenKind):
    name = "dropout"
    syntax = "dropout[<p>]"
    pattern = re.compile(r"dropout((?:0(?:\.\d+)?|\.\d+))?")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        p = float(m.group(1)) if m.group(1) else 0.5
        if not 0 <= p < 1:  # pragma: no cover - the pattern admits only [0, 1)
            raise SpecError("dropout probability must be in [0, 1)")
        return {"p": p}

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import Dropout

        return [Dropout(args["p"], rng=np.random.default_rng(ctx.rng.integers(2**63)))]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.Dropout(args["p"])]


class _Flatten(TokenKind):
    name = syntax = "flatten"
    pattern = re.compile("flatten")

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import Flatten

        return [Flatten()]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.Flatten()]


class _FullyConnected(TokenKind):
    """``fc<out>``: flattens an H x W x C input (NHWC order), then a Linear layer."""

    name = "fc"
    syntax = "fc<out>"
    pattern = re.compile(r"fc(\d+)")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        if int(m.group(1)) < 1:
            raise SpecError("a fully connected layer needs at least 1 output")
        return {"out": int(m.group(1))}

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import Flatten, Linear

        n_in = _numel(shape)
        linear = ctx.initialise(Linear(n_in, args["out"], rng=ctx.rng, dtype=ctx.dtype), n_in)
        return [linear] if len(shape) == 1 else [Flatten(), linear]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        # PyTorch flattens NCHW and cnnkit NHWC: the structure is the same; weights moved between the two
        # need the linear layer's input rows reordered
        linear = tnn.Linear(_numel(shape), args["out"])
        return [linear] if len(shape) == 1 else [tnn.Flatten(), linear]


class _GlobalPool(TokenKind):
    """``gap`` and ``gmp``: global average and max pooling, H x W x C -> 1 x 1 x C (NiN, GoogLeNet, ResNet heads)."""

    layer = ""

    def __init__(self, name: str, layer: str, torch_layer: str) -> None:
        self.name, self.syntax, self.layer, self.torch_layer = name, name, layer, torch_layer
        self.pattern = re.compile(re.escape(name))

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        import cnnkit.nn as nn

        return [getattr(nn, self.layer)()]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [getattr(tnn, self.torch_layer)(1)]


_FLOAT = r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"


class _LocalResponseNorm(TokenKind):
    """``lrn<size>[a<alpha>][b<beta>][k<k>]``: local response normalisation across channels, PyTorch's definition
    and defaults (alpha 1e-4, beta 0.75, k 1; alpha is divided by the size). AlexNet's paper layer is ``lrn5a5e-4k2``."""

    name = "lrn"
    syntax = "lrn<size>[a<alpha>][b<beta>][k<k>]"
    pattern = re.compile(rf"lrn(\d+)(?:a{_FLOAT})?(?:b{_FLOAT})?(?:k{_FLOAT})?")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        from cnnkit.ops.lrn import check_lrn_arguments

        size = int(m.group(1))
        alpha, beta, k = (float(v) if v is not None else d for v, d in zip(m.groups()[1:], (1e-4, 0.75, 1.0)))
        try:
            check_lrn_arguments(size, alpha, beta, k)
        except ValueError as exc:
            raise SpecError(str(exc).replace("local response normalisation: ", "")) from None
        return {"size": size, "alpha": alpha, "beta": beta, "k": k}

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import LocalResponseNorm

        return [LocalResponseNorm(args["size"], args["alpha"], args["beta"], args["k"])]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.LocalResponseNorm(args["size"], args["alpha"], args["beta"], args["k"])]


class _ChannelPad(TokenKind):
    """``padc<n>``: append n zero channels (with ``pool1s2``: ResNet's parameter-free option-A shortcut)."""

    name = "padc"
    syntax = "padc<n>"
    pattern = re.compile(r"padc(\d+)")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        if int(m.group(1)) < 1:
            raise SpecError("channel padding needs at least 1 channel")
        return {"pad": int(m.group(1))}

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import ChannelPad

        return [ChannelPad(args["pad"])]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        return [_torch_modules()["ChannelPad"](args["pad"])]


# -- composite tokens: chains of tokens inside a token ------------------------------------------------------

#: a composite's callback into the builder: (branch index, what flows in, copy number) -> (layers, what flows out)
ChainBuilder = Callable[[int, Trace, int], tuple[list[Layer], Trace]]


class Composite(TokenKind):
    """A token made of chains of tokens: ``args["branches"]`` holds one tuple of tokens per branch.

    The parser (:func:`cnnkit.models.spec.parse`) reads the branches; the builder assembles each with
    :meth:`assemble`'s ``chain`` callback (so that every token inside keeps its own position, layers and
    trace rows) and the entry combines them. ``branch_words`` and ``branch_path`` name a branch in error
    messages and in summaries.

    Examples
    --------
    >>> from cnnkit.models import parse
    >>> from cnnkit.models.tokens import entry
    >>> res = entry("res")
    >>> t = parse("res(conv3x3x8x8p1,relu|conv1x1x8x8)")[0]
    >>> [[u.text for u in b] for b in t.args["branches"]], res.branch_words(1), res.branch_path(1)
    ([['conv3x3x8x8p1', 'relu'], ['conv1x1x8x8']], 'the shortcut', 'shortcut')
    >>> res.text(t.args) == t.text
    True
    >>> from cnnkit.models import BuildOptions
    >>> [type(layer).__name__ for layer in res.build(t.args, (4, 4, 8), BuildContext(BuildOptions(), np.random.default_rng(0)))]
    ['Residual']
    """

    composite = True
    #: written as ``name(<chain>|<chain>...)``; the repetition ``<n>*...`` is not
    bracketed = True
    min_branches, max_branches = 1, 1

    def branch_words(self, b: int, copy: int = 0) -> str:
        """Branch ``b`` (0-based) in an error message: "branch 2", "the body"."""
        return f"branch {b + 1}"

    def branch_path(self, b: int, copy: int = 0) -> str:
        """Branch ``b`` in a summary row's dotted name."""
        return f"b{b + 1}"

    def check_branches(self, n: int) -> None:
        """SpecError when the token cannot have ``n`` branches."""
        if not self.min_branches <= n <= self.max_branches:
            raise SpecError(f"{self.name} takes {self._count_words()}, not {n} branches; expected {self.syntax}")

    def make_args(self, branches: tuple[tuple[Any, ...], ...]) -> dict[str, Any]:
        """The token's arguments from its parsed branches; SpecError for a wrong number of them."""
        self.check_branches(len(branches))
        return {"branches": branches}

    def _count_words(self) -> str:
        return f"{self.min_branches} to {self.max_branches} branches"

    def text(self, args: dict[str, Any]) -> str:
        """The canonical text of a token with these arguments."""
        return f"{self.name}(" + "|".join(",".join(t.text for t in b) for b in args["branches"]) + ")"

    def parse(self, text: str) -> tuple[str, dict[str, Any]]:
        from cnnkit.models.spec import parse as parse_spec

        tokens = parse_spec(text)
        if len(tokens) != 1 or tokens[0].kind != self.name:
            raise SpecError(f"{text!r} is not a {self.name} token; expected {self.syntax}")
        return tokens[0].kind, tokens[0].args

    def assemble(
        self, args: dict[str, Any], flow: Trace, ctx: BuildContext, path: str, chain: ChainBuilder
    ) -> tuple[list[Layer], list[TraceRow], Trace]:  # pragma: no cover - abstract
        """(the token's layers, its own trace rows (merges), what flows out), the branches built by ``chain``."""
        raise NotImplementedError

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.models.spec import Token, assemble_pieces

        return assemble_pieces([Token(self.name, self.text(args), args)], shape, ctx)[0].layers

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError


def _max_rf(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def _hwc(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


class _Residual(Composite):
    """``res(<body>)``: y = body(x) + x; ``res(<body>|<shortcut>)``: y = body(x) + shortcut(x) (a projection)."""

    name = "res"
    syntax = "res(<chain>[|<shortcut chain>])"
    pattern = re.compile(r"res\(.*\)")
    min_branches, max_branches = 1, 2

    def branch_words(self, b: int, copy: int = 0) -> str:
        return ("the body", "the shortcut")[min(b, 1)]

    def branch_path(self, b: int, copy: int = 0) -> str:
        return ("body", "shortcut")[min(b, 1)]

    def _count_words(self) -> str:
        return "a body and at most one shortcut"

    def assemble(
        self, args: dict[str, Any], flow: Trace, ctx: BuildContext, path: str, chain: ChainBuilder
    ) -> tuple[list[Layer], list[TraceRow], Trace]:
        from cnnkit.nn import Residual, Sequential

        body, body_out = chain(0, flow, 0)
        shortcut, short_out = chain(1, flow, 0) if len(args["branches"]) > 1 else (None, flow)
        if body_out.shape != short_out.shape:
            what = "the shortcut" if shortcut is not None else "the identity shortcut"
            hint = "" if shortcut is not None else " (add a projection shortcut, e.g. res(...|conv1x1x<in>x<out>s<stride>nobias,bn))"
            raise SpecError(f"the body gives {_hwc(body_out.shape)} but {what} gives {_hwc(short_out.shape)}; "
                            f"expected equal shapes{hint}")
        layer = Residual(Sequential(*body), Sequential(*shortcut) if shortcut is not None else None)
        out = Trace(body_out.shape, _max_rf(body_out.rf, short_out.rf), body_out.jump)
        row = TraceRow(f"{path}.add", "add", flow.shape, LayerInfo(body_out.shape, 0, _numel(body_out.shape)), out.rf)
        return [layer], [row], out

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        branches = [tnn.Sequential(*torch_chain(b, shape)) for b in args["branches"]]
        return [_torch_modules()["Residual"](branches[0], branches[1] if len(branches) > 1 else None)]


class _Concat(Composite):
    """``cat(<chain>|<chain>|...)``: the branches side by side on the same input, outputs joined on channels."""

    name = "cat"
    syntax = "cat(<chain>|<chain>[|...])"
    pattern = re.compile(r"cat\(.*\)")
    min_branches, max_branches = 1, 1_000

    def _count_words(self) -> str:
        return "at least one branch"

    def assemble(
        self, args: dict[str, Any], flow: Trace, ctx: BuildContext, path: str, chain: ChainBuilder
    ) -> tuple[list[Layer], list[TraceRow], Trace]:
        from cnnkit.nn import Concat, Sequential

        built = [chain(b, flow, 0) for b in range(len(args["branches"]))]
        outs = [o for _, o in built]
        for b, o in enumerate(outs[1:], 2):
            if o.shape[:-1] != outs[0].shape[:-1]:
                raise SpecError(f"branch {b} gives {_hwc(o.shape)} but branch 1 gives {_hwc(outs[0].shape)}; expected the same "
                                f"height and width in every branch")
        shape = (*outs[0].shape[:-1], sum(o.shape[-1] for o in outs))
        rf = outs[0].rf
        for o in outs[1:]:
            rf = _max_rf(rf, o.rf)
        layer = Concat(*[Sequential(*layers) for layers, _ in built])
        row = TraceRow(f"{path}.concat", "concat", flow.shape, LayerInfo(shape, 0, 0), rf)
        return [layer], [row], Trace(shape, rf, outs[0].jump)

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [_torch_modules()["Concat"]([tnn.Sequential(*torch_chain(b, shape)) for b in args["branches"]])]


class _Repeat(Composite):
    """``<n>*<token>`` or ``<n>*(<chain>)``: the token (or chain) n times in a row, each copy with its own weights."""

    name = "repeat"
    syntax = "<n>*<token>, <n>*(<chain>)"
    pattern = re.compile(r"\d+\*.+")
    bracketed = False

    def branch_words(self, b: int, copy: int = 0) -> str:
        return f"copy {copy}" if copy else "the repeated part"

    def branch_path(self, b: int, copy: int = 0) -> str:
        return f"copy{copy}"

    def make_args(self, branches: tuple[tuple[Any, ...], ...], times: int = 1) -> dict[str, Any]:
        if times < 1:
            raise SpecError("a repetition count must be >= 1")
        return {"times": times, **super().make_args(branches)}

    def text(self, args: dict[str, Any]) -> str:
        (body,) = args["branches"]
        inner = ",".join(t.text for t in body)
        return f"{args['times']}*{inner}" if len(body) == 1 else f"{args['times']}*({inner})"

    def assemble(
        self, args: dict[str, Any], flow: Trace, ctx: BuildContext, path: str, chain: ChainBuilder
    ) -> tuple[list[Layer], list[TraceRow], Trace]:
        layers: list[Layer] = []
        for copy in range(1, args["times"] + 1):
            built, flow = chain(0, flow, copy)
            layers += built
        return layers, [], flow

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        return torch_chain(list(args["branches"][0]) * args["times"], shape)


def torch_chain(tokens: Sequence[Any], shape: Shape) -> list[Any]:
    """The PyTorch modules of a chain of tokens for inputs of ``shape`` (NCHW; composites as small modules).

    Examples
    --------
    >>> import pytest
    >>> _ = pytest.importorskip("torch")
    >>> from cnnkit.models import parse
    >>> [type(m).__name__ for m in torch_chain(parse("conv3x3x3x8p1,res(conv3x3x8x8p1,bn),gap,fc10"), (8, 8, 3))]
    ['Conv2d', 'Residual', 'AdaptiveAvgPool2d', 'Flatten', 'Linear']
    """
    from cnnkit.models.spec import infer_shapes

    shapes = infer_shapes(list(tokens), shape)
    out: list[Any] = []
    prev = tuple(shape)
    for t, s in zip(tokens, shapes):
        out += entry(t.kind).torch(t.args, prev)
        prev = s
    return out


@functools.cache
def _torch_modules() -> dict[str, Any]:
    """PyTorch modules for what torch.nn lacks: a residual sum, a channel concatenation, channel padding."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    class Residual(tnn.Module):
        def __init__(self, body: Any, shortcut: Any = None) -> None:
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x: Any) -> Any:
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class Concat(tnn.Module):
        def __init__(self, branches: list[Any]) -> None:
            super().__init__()
            self.branches = tnn.ModuleList(branches)

        def forward(self, x: Any) -> Any:
            return torch.cat([b(x) for b in self.branches], dim=1)

    class ChannelPad(tnn.Module):
        def __init__(self, pad: int) -> None:
            super().__init__()
            self.pad = pad

        def forward(self, x: Any) -> Any:
            return F.pad(x, (0, 0) * (x.dim() - 2) + (0, self.pad))

    return {"Residual": Residual, "Concat": Concat, "ChannelPad": ChannelPad}


#: The table, in the order the parser tries the entries.
TOKEN_KINDS: tuple[TokenKind, ...] = (
    _Conv(),
    _MaxPool(),
    _AvgPool(),
    _Dropout(),
    _FullyConnected(),
    _Activation("relu", "ReLU"),
    _Activation("sigmoid", "Sigmoid"),
    _Activation("tanh", "Tanh"),
    _BatchNorm(),
    _Flatten(),
    _GlobalPool("gap", "GlobalAvgPool2d", "AdaptiveAvgPool2d"),
    _GlobalPool("gmp", "GlobalMaxPool2d", "AdaptiveMaxPool2d"),
    _LocalResponseNorm(),
    _ChannelPad(),
    _Residual(),
    _Concat(),
    _Repeat(),
)

#: kind name (``Token.kind``) -> entry
BY_KIND: dict[str, TokenKind] = {k.name: k for k in TOKEN_KINDS}

#: the grammar, as shown in parse errors
EXPECTED = "expected one of " + ", ".join(k.syntax for k in TOKEN_KINDS if k.syntax)


def kind_of(text: str) -> TokenKind:
    """The entry whose pattern matches a (lower-case, space-free) token; raises SpecError when none does.

    Examples
    --------
    >>> from cnnkit.models.tokens import kind_of
    >>> kind_of("relu").name, kind_of("avgpool3s2").name
    ('relu', 'avgpool')
    >>> kind_of("softmax")
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: cannot parse 'softmax'; expected one of ...
    """
    for k in TOKEN_KINDS:
        m = k.pattern.fullmatch(text)
        if m:
            return BY_KIND[k.kind(m)]
    raise SpecError(f"cannot parse {text!r}; {EXPECTED}")


def entry(kind: str) -> TokenKind:
    """The entry for a parsed token's ``kind``.

    Examples
    --------
    >>> from cnnkit.models.tokens import entry
    >>> entry("avgpool").name, entry("fc").syntax
    ('avgpool', 'fc<out>')
    """
    try:
        return BY_KIND[kind]
    except KeyError:
        raise SpecError(f"unknown token kind {kind!r}") from None
