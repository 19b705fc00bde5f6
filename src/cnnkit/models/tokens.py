"""The network-token table: one entry per kind of token, holding everything cnnkit knows about it.

Each entry (a :class:`TokenKind` subclass instance in :data:`TOKEN_KINDS`) gives, in one place:

* ``syntax`` and ``pattern``: the grammar of the token, and :meth:`TokenKind.parse` for its arguments;
* :meth:`TokenKind.build`: the layer factory (the cnnkit layers the token stands for);
* :meth:`TokenKind.torch`: the PyTorch equivalent (benchmarks and oracle tests).

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

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import SpecError
from cnnkit.nn.init import building_shapes_only

if TYPE_CHECKING:
    from cnnkit.nn.base import Layer

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
    name = "conv"
    syntax = "conv<kh>x<kw>x<in>x<out>[s<stride>][p<pad>|psame][d<dilation>][nobias]"
    pattern = re.compile(r"conv(\d+)x(\d+)x(\d+)x(\d+)((?:s\d+|psame|p\d+|d\d+|nobias)*)")
    _option = re.compile(r"s\d+|psame|p\d+|d\d+|nobias")

    def arguments(self, m: re.Match[str]) -> dict[str, Any]:
        kh, kw, cin, cout = (int(v) for v in m.groups()[:4])
        args: dict[str, Any] = {"kernel": (kh, kw), "in": cin, "out": cout, "stride": 1, "padding": 0, "dilation": 1, "bias": True}
        for opt in self._option.findall(m.group(5)):
            if opt == "psame":
                args["padding"] = "same"
            elif opt == "nobias":
                args["bias"] = False
            else:
                args[{"s": "stride", "p": "padding", "d": "dilation"}[opt[0]]] = int(opt[1:])
        if min(kh, kw, cin, cout, args["stride"], args["dilation"]) < 1:
            raise SpecError("sizes, stride and dilation must be >= 1")
        return args

    def build(self, args: dict[str, Any], shape: Shape, ctx: BuildContext) -> list[Layer]:
        from cnnkit.nn import Conv2d

        kh, kw = args["kernel"]
        layer = Conv2d(
            args["in"], args["out"], args["kernel"], args["stride"], args["padding"], args["dilation"], bias=args["bias"],
            rng=ctx.rng, dtype=ctx.dtype, need_input_grad=ctx.need_input_grad(), workspace_limit=ctx.options.workspace_limit,
        )
        return [ctx.initialise(layer, kh * kw * args["in"])]

    def torch(self, args: dict[str, Any], shape: Shape) -> list[Any]:
        import torch.nn as tnn

        return [tnn.Conv2d(args["in"], args["out"], args["kernel"], args["stride"], args["padding"], args["dilation"], bias=args["bias"])]


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
