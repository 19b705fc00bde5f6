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
quotes the token, its position and what was expected. Each kind of token (its grammar, shape rule,
layer factory, costs and PyTorch equivalent) is one entry of :mod:`cnnkit.models.tokens`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import ShapeError, SpecError, quote
from cnnkit.limits import LIMITS
from cnnkit.models.tokens import EXPECTED, TOKEN_KINDS, BuildContext, entry
from cnnkit.nn.base import Layer, Trace, TraceRow
from cnnkit.nn.init import shapes_only

if TYPE_CHECKING:
    from cnnkit.nn import Sequential

__all__ = ["EXPECTED", "BuildOptions", "SpecError", "Token", "build", "infer_shapes", "parse", "to_string"]


@dataclass(frozen=True)
class Token:
    """One parsed layer description: its kind (a key of the token table), its text and its arguments.

    Examples
    --------
    >>> from cnnkit.models import parse
    >>> t = parse("conv3x3x64x128p1")[0]
    >>> t.kind, t.args["kernel"], t.args["in"], t.args["out"], t.args["padding"]
    ('conv', (3, 3), 64, 128, 1)
    """

    kind: str
    text: str
    args: dict[str, Any] = field(default_factory=dict)


def _where(spec: str, index: int, tokens: list[str]) -> str:
    col = sum(len(t) + 1 for t in tokens[:index])
    whole = repr(spec) if len(spec) <= 200 else f"a {len(spec):,}-character string"
    return f"token {index + 1} {quote(tokens[index], 80)} (character {col + 1} of {whole})"


def parse(spec: str) -> list[Token]:
    """Parse a network string into tokens; raise :class:`SpecError` pointing at the first bad one.

    Examples
    --------
    >>> [t.kind for t in parse("conv5x5x1x20,pool2,relu,fc10")]
    ['conv', 'maxpool', 'relu', 'fc']
    >>> parse("conv5x5x1x20,poo2")
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: cannot parse token 2 'poo2' (character 14 of 'conv5x5x1x20,poo2'); expected one of ...
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty network string; {EXPECTED}")
    if len(spec) > LIMITS.spec_chars:
        raise SpecError(f"network string of {len(spec):,} characters, over the limit of {LIMITS.spec_chars:,} (CNNKIT_MAX_SPEC_CHARS): "
                        f"{quote(spec, 60)}")
    spec = "".join(spec.split())  # spaces ignored; positions below count in this compact string
    raw = [t.lower() for t in spec.split(",")]
    if len(raw) > LIMITS.layers:
        raise SpecError(
            f"network string of {len(raw):,} tokens, over the limit of {LIMITS.layers:,} (CNNKIT_MAX_LAYERS): {quote(spec, 60)}"
        )
    out: list[Token] = []
    for i, t in enumerate(raw):
        if not t:
            raise SpecError(f"empty {_where(spec, i, raw)} (two commas in a row?)")
        if re.search(r"\d{10,}", t):
            raise SpecError(f"{_where(spec, i, raw)}: a number of 10 or more digits is not a size any layer can have")
        k = next((k for k in TOKEN_KINDS if k.pattern.fullmatch(t)), None)
        if k is None:
            raise SpecError(f"cannot parse {_where(spec, i, raw)}; {EXPECTED}")
        try:
            kind, args = k.parse(t)
        except SpecError as exc:
            raise SpecError(f"{_where(spec, i, raw)}: {exc}") from None
        out.append(Token(kind, t, args))
    return out


def to_string(tokens: list[Token]) -> str:
    """The canonical string of parsed tokens (``parse(to_string(t)) == t``).

    Examples
    --------
    >>> from cnnkit.models import parse, to_string
    >>> to_string(parse(" Conv5x5x1x20 , POOL2 ,ReLU"))
    'conv5x5x1x20,pool2,relu'
    """
    return ",".join(t.text for t in tokens)


@dataclass
class BuildOptions:
    """How a network string becomes layers.

    init: "matconvnet" (weights 0.01*N(0,1), biases 0: MatConvNet 1.0-beta20's MNIST example),
    "he" (N(0, 2/fan_in), biases 0) or "pytorch" (U(+-1/sqrt(fan_in)) weights and biases).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import BuildOptions, build
    >>> net = build("fc3", (1, 1, 2), np.random.default_rng(0), BuildOptions(init="pytorch", dtype=np.float64))
    >>> net.forward(np.zeros((1, 1, 1, 2))).dtype
    dtype('float64')
    """

    init: str = "matconvnet"
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = np.float32
    first_layer_input_grad: bool = False
    workspace_limit: int = 512 * 2**20  # bytes of im2row workspace per convolution before chunking the batch


def assemble(
    tokens: list[Token], input_shape: tuple[int, ...], ctx: BuildContext | None = None
) -> list[tuple[Token, list[Layer], list[TraceRow]]]:
    """Build every token's layers in turn and trace their shapes: (token, layers, trace rows) per token.

    Raises SpecError pointing at the first token whose layers do not fit what reaches them. Call it
    inside :func:`cnnkit.nn.init.shapes_only` to read shapes and costs without allocating.
    """
    ctx = ctx or BuildContext(BuildOptions(), np.random.default_rng(0))
    spec = to_string(tokens)
    texts = [t.text for t in tokens]
    flow = Trace(tuple(int(v) for v in input_shape))
    out = []
    for i, t in enumerate(tokens):
        try:
            layers = entry(t.kind).build(t.args, flow.shape, ctx)
            rows: list[TraceRow] = []
            for layer in layers:
                flow = layer.trace(flow, str(i), rows)
        except (ShapeError, SpecError) as exc:
            raise SpecError(f"{_where(spec, i, texts)}: {exc}") from None
        out.append((t, layers, rows))
    return out


def infer_shapes(tokens: list[Token], input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Output shape (H, W, C) (or (F,) after fc/flatten) of every token; raises SpecError on a mismatch.

    Examples
    --------
    >>> infer_shapes(parse("conv5x5x1x20,pool2,fc10"), (28, 28, 1))
    [(24, 24, 20), (12, 12, 20), (10,)]
    """
    with shapes_only():
        return [rows[-1].info.out_shape for _, _, rows in assemble(tokens, input_shape)]


def build(
    spec: str | list[Token],
    input_shape: tuple[int, int, int],
    rng: np.random.Generator | None = None,
    options: BuildOptions | None = None,
) -> Sequential:
    """Build a :class:`~cnnkit.nn.Sequential` from a network string for inputs of ``input_shape`` (H, W, C).

    The whole string is checked against the input shape before any layer's memory is allocated.

    Examples
    --------
    >>> import numpy as np
    >>> net = build("conv5x5x1x4,pool2,fc10", (28, 28, 1), np.random.default_rng(0))
    >>> net.forward(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 10)
    """
    from cnnkit.nn import Sequential

    tokens = parse(spec) if isinstance(spec, str) else spec
    options = options or BuildOptions()
    with shapes_only():
        assemble(tokens, input_shape, BuildContext(options, np.random.default_rng(0)))
    ctx = BuildContext(options, rng if rng is not None else np.random.default_rng())
    return Sequential(*[layer for _, layers, _ in assemble(tokens, input_shape, ctx) for layer in layers])
