"""A compact text form for networks, in the book's notation, and the builder that turns it into layers.

Grammar (tokens separated by commas; spaces ignored; case-insensitive)::

    network := token ("," token)*
    token   := conv | pool | act | "bn" | dropout | "flatten" | fc
    conv    := "conv" KH "x" KW "x" IN "x" OUT option*     e.g. conv5x5x1x20, conv3x3x64x64p1
    option  := "s" INT (stride) | "p" INT (padding) | "psame" | "d" INT (dilation) | "nobias"
    pool    := ("pool" | "maxpool" | "avgpool") K ("s" INT)? ("p" INT)?   (stride defaults to K)
    act     := "relu" | "sigmoid" | "tanh"
    bn      := batch normalisation over the current channels
    dropout := "dropout" FLOAT?                              (p, default 0.5)
    fc      := "fc" OUT                                      (flattens, then a Linear layer)

``conv5x5x1x20`` is the seed's 5x5x1x20 kernel f (H x W x D^l x D); ``pool2`` is 2x2 max pooling at
stride 2. IN must equal the channels reaching the token. A bad token raises :class:`SpecError` that
quotes the token, its position and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from cnnkit.errors import ShapeError


class SpecError(ValueError):
    """A network string that does not parse; the message points at the bad token."""


@dataclass(frozen=True)
class Token:
    """One parsed layer description."""

    kind: str  # conv, maxpool, avgpool, relu, sigmoid, tanh, bn, dropout, flatten, fc
    text: str
    args: dict[str, Any] = field(default_factory=dict)


_CONV = re.compile(r"^conv(\d+)x(\d+)x(\d+)x(\d+)((?:s\d+|psame|p\d+|d\d+|nobias)*)$")
_CONV_OPT = re.compile(r"s\d+|psame|p\d+|d\d+|nobias")
_POOL = re.compile(r"^(pool|maxpool|avgpool)(\d+)(?:s(\d+))?(?:p(\d+))?$")
_DROPOUT = re.compile(r"^dropout((?:0(?:\.\d+)?|\.\d+))?$")
_FC = re.compile(r"^fc(\d+)$")
_SIMPLE = {"relu", "sigmoid", "tanh", "bn", "flatten"}

EXPECTED = (
    "expected one of conv<kh>x<kw>x<in>x<out>[s<stride>][p<pad>|psame][d<dilation>][nobias], "
    "pool<k>[s<stride>][p<pad>], avgpool<k>[s<stride>][p<pad>], relu, sigmoid, tanh, bn, dropout[<p>], flatten, fc<out>"
)


def _where(spec: str, index: int, tokens: list[str]) -> str:
    col = sum(len(t) + 1 for t in tokens[:index])
    return f"token {index + 1} {tokens[index]!r} (character {col + 1} of {spec!r})"


def parse(spec: str) -> list[Token]:
    """Parse a network string into tokens; raise :class:`SpecError` pointing at the first bad one."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty network string; {EXPECTED}")
    spec = "".join(spec.split())  # spaces ignored; positions below count in this compact string
    raw = [t.lower() for t in spec.split(",")]
    out: list[Token] = []
    for i, t in enumerate(raw):
        if not t:
            raise SpecError(f"empty {_where(spec, i, raw)} (two commas in a row?)")
        if m := _CONV.match(t):
            kh, kw, cin, cout = (int(v) for v in m.groups()[:4])
            args: dict[str, Any] = {"kernel": (kh, kw), "in": cin, "out": cout, "stride": 1, "padding": 0, "dilation": 1, "bias": True}
            for opt in _CONV_OPT.findall(m.group(5)):
                if opt == "psame":
                    args["padding"] = "same"
                elif opt == "nobias":
                    args["bias"] = False
                else:
                    args[{"s": "stride", "p": "padding", "d": "dilation"}[opt[0]]] = int(opt[1:])
            if min(kh, kw, cin, cout, args["stride"], args["dilation"]) < 1:
                raise SpecError(f"{_where(spec, i, raw)}: sizes, stride and dilation must be >= 1")
            out.append(Token("conv", t, args))
        elif m := _POOL.match(t):
            k = int(m.group(2))
            s = int(m.group(3)) if m.group(3) else k
            p = int(m.group(4)) if m.group(4) else 0
            if k < 1 or s < 1:
                raise SpecError(f"{_where(spec, i, raw)}: pooling size and stride must be >= 1")
            if p > k // 2:  # as the pooling layers (and PyTorch) require: no window lies wholly in the padding
                raise SpecError(f"{_where(spec, i, raw)}: pooling padding {p} must be at most half the window ({k} // 2 = {k // 2})")
            out.append(Token("avgpool" if m.group(1) == "avgpool" else "maxpool", t, {"kernel": k, "stride": s, "padding": p}))
        elif m := _DROPOUT.match(t):
            p = float(m.group(1)) if m.group(1) else 0.5
            if not 0 <= p < 1:
                raise SpecError(f"{_where(spec, i, raw)}: dropout probability must be in [0, 1)")
            out.append(Token("dropout", t, {"p": p}))
        elif m := _FC.match(t):
            if int(m.group(1)) < 1:
                raise SpecError(f"{_where(spec, i, raw)}: a fully connected layer needs at least 1 output")
            out.append(Token("fc", t, {"out": int(m.group(1))}))
        elif t in _SIMPLE:
            out.append(Token(t, t))
        else:
            raise SpecError(f"cannot parse {_where(spec, i, raw)}; {EXPECTED}")
    return out


def to_string(tokens: list[Token]) -> str:
    """The canonical string of parsed tokens (``parse(to_string(t)) == t``)."""
    return ",".join(t.text for t in tokens)


@dataclass
class BuildOptions:
    """How a network string becomes layers.

    init: "matconvnet" (weights 0.01*N(0,1), biases 0: MatConvNet 1.0-beta20's MNIST example),
    "he" (N(0, 2/fan_in), biases 0) or "pytorch" (U(+-1/sqrt(fan_in)) weights and biases).
    """

    init: str = "matconvnet"
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = np.float32
    first_layer_input_grad: bool = False
    workspace_limit: int = 512 * 2**20  # bytes of im2row workspace per convolution before chunking the batch


def _init_conv_like(layer: Any, opts: BuildOptions, rng: np.random.Generator, fan_in: int) -> None:
    from cnnkit.nn.init import gaussian, he_normal

    w = layer.params["weight"]
    if opts.init == "matconvnet":
        w[...] = gaussian(w.shape, 0.01, rng, w.dtype)
    elif opts.init == "he":
        w[...] = he_normal(w.shape, fan_in, rng, w.dtype)
    elif opts.init != "pytorch":
        raise ValueError(f"unknown init {opts.init!r}; expected 'matconvnet', 'he' or 'pytorch'")
    if "bias" in layer.params and opts.init != "pytorch":
        layer.params["bias"][...] = 0


def infer_shapes(tokens: list[Token], input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Output shape (H, W, C) (or (F,) after fc/flatten) of every token; raises SpecError on a mismatch."""
    from cnnkit.ops.geometry import window

    shapes: list[tuple[int, ...]] = []
    shape: tuple[int, ...] = tuple(input_shape)
    spec = to_string(tokens)
    texts = [t.text for t in tokens]
    for i, t in enumerate(tokens):
        try:
            if t.kind == "conv":
                if len(shape) != 3:
                    raise SpecError("a convolution needs an H x W x C input, but the previous layer flattened it")
                if shape[2] != t.args["in"]:
                    raise SpecError(f"the kernel expects {t.args['in']} input channels but {shape[2]} arrive (input {shape})")
                win = window(shape[:2], t.args["kernel"], t.args["stride"], t.args["padding"], t.args["dilation"], what=t.text)
                shape = (win.out[0], win.out[1], t.args["out"])
            elif t.kind in ("maxpool", "avgpool"):
                if len(shape) != 3:
                    raise SpecError("pooling needs an H x W x C input")
                win = window(shape[:2], t.args["kernel"], t.args["stride"], t.args["padding"], what=t.text)
                shape = (win.out[0], win.out[1], shape[2])
            elif t.kind in ("flatten", "fc"):
                n = int(np.prod(shape))
                shape = (t.args["out"],) if t.kind == "fc" else (n,)
        except (ShapeError, SpecError) as exc:
            raise SpecError(f"{_where(spec, i, texts)}: {exc}") from None
        shapes.append(shape)
    return shapes


def build(
    spec: str | list[Token],
    input_shape: tuple[int, int, int],
    rng: Optional[np.random.Generator] = None,
    options: Optional[BuildOptions] = None,
):  # noqa: ANN201 - returns cnnkit.nn.Sequential
    """Build a :class:`~cnnkit.nn.Sequential` from a network string for inputs of ``input_shape`` (H, W, C)."""
    from cnnkit.nn import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU, Sequential, Sigmoid, Tanh
    from cnnkit.nn import AvgPool2d, MaxPool2d

    tokens = parse(spec) if isinstance(spec, str) else spec
    opts = options or BuildOptions()
    rng = rng if rng is not None else np.random.default_rng()
    shapes = infer_shapes(tokens, input_shape)
    layers = []
    prev: tuple[int, ...] = tuple(input_shape)
    first_param_layer = True
    for t, shape in zip(tokens, shapes):
        if t.kind == "conv":
            a = t.args
            layer = Conv2d(
                a["in"], a["out"], a["kernel"], a["stride"], a["padding"], a["dilation"], bias=a["bias"],
                rng=rng, dtype=opts.dtype, need_input_grad=opts.first_layer_input_grad or not first_param_layer,
                workspace_limit=opts.workspace_limit,
            )
            _init_conv_like(layer, opts, rng, a["kernel"][0] * a["kernel"][1] * a["in"])
            first_param_layer = False
        elif t.kind == "maxpool":
            layer = MaxPool2d(t.args["kernel"], t.args["stride"], t.args["padding"])
        elif t.kind == "avgpool":
            layer = AvgPool2d(t.args["kernel"], t.args["stride"], t.args["padding"])
        elif t.kind == "relu":
            layer = ReLU()
        elif t.kind == "sigmoid":
            layer = Sigmoid()
        elif t.kind == "tanh":
            layer = Tanh()
        elif t.kind == "bn":
            layer = BatchNorm2d(prev[-1], eps=opts.bn_eps, momentum=opts.bn_momentum)
            layer.astype(opts.dtype)
        elif t.kind == "dropout":
            layer = Dropout(t.args["p"], rng=np.random.default_rng(rng.integers(2**63)))
        elif t.kind == "flatten":
            layer = Flatten()
        else:  # fc
            if len(prev) != 1:
                layers.append(Flatten())
            n_in = int(np.prod(prev))
            layer = Linear(n_in, t.args["out"], rng=rng, dtype=opts.dtype)
            _init_conv_like(layer, opts, rng, n_in)
            first_param_layer = False
        layers.append(layer)
        prev = shape
    return Sequential(*layers)
