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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.models.tokens import EXPECTED, TOKEN_KINDS, BuildContext, SpecError, check_shape, entry

if TYPE_CHECKING:
    from cnnkit.nn import Sequential

__all__ = ["EXPECTED", "BuildOptions", "SpecError", "Token", "build", "infer_shapes", "parse", "to_string"]


@dataclass(frozen=True)
class Token:
    """One parsed layer description: its kind (a key of the token table), its text and its arguments."""

    kind: str
    text: str
    args: dict[str, Any] = field(default_factory=dict)


def _where(spec: str, index: int, tokens: list[str]) -> str:
    col = sum(len(t) + 1 for t in tokens[:index])
    return f"token {index + 1} {tokens[index]!r} (character {col + 1} of {spec!r})"


def parse(spec: str) -> list[Token]:
    """Parse a network string into tokens; raise :class:`SpecError` pointing at the first bad one.

    Examples
    --------
    >>> [t.kind for t in parse("conv5x5x1x20,pool2,relu,fc10")]
    ['conv', 'maxpool', 'relu', 'fc']
    >>> parse("conv5x5x1x20,poo2")
    Traceback (most recent call last):
    ...
    cnnkit.models.tokens.SpecError: cannot parse token 2 'poo2' (character 14 of 'conv5x5x1x20,poo2'); expected one of ...
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty network string; {EXPECTED}")
    spec = "".join(spec.split())  # spaces ignored; positions below count in this compact string
    raw = [t.lower() for t in spec.split(",")]
    out: list[Token] = []
    for i, t in enumerate(raw):
        if not t:
            raise SpecError(f"empty {_where(spec, i, raw)} (two commas in a row?)")
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


def infer_shapes(tokens: list[Token], input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """Output shape (H, W, C) (or (F,) after fc/flatten) of every token; raises SpecError on a mismatch.

    Examples
    --------
    >>> infer_shapes(parse("conv5x5x1x20,pool2,fc10"), (28, 28, 1))
    [(24, 24, 20), (12, 12, 20), (10,)]
    """
    shapes: list[tuple[int, ...]] = []
    shape: tuple[int, ...] = tuple(input_shape)
    spec = to_string(tokens)
    texts = [t.text for t in tokens]
    for i, t in enumerate(tokens):
        try:
            shape = check_shape(entry(t.kind), t.args, shape)
        except SpecError as exc:
            raise SpecError(f"{_where(spec, i, texts)}: {exc}") from None
        shapes.append(shape)
    return shapes


def build(
    spec: str | list[Token],
    input_shape: tuple[int, int, int],
    rng: np.random.Generator | None = None,
    options: BuildOptions | None = None,
) -> Sequential:
    """Build a :class:`~cnnkit.nn.Sequential` from a network string for inputs of ``input_shape`` (H, W, C).

    Examples
    --------
    >>> import numpy as np
    >>> net = build("conv5x5x1x4,pool2,fc10", (28, 28, 1), np.random.default_rng(0))
    >>> net.forward(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 10)
    """
    from cnnkit.nn import Sequential

    tokens = parse(spec) if isinstance(spec, str) else spec
    ctx = BuildContext(options or BuildOptions(), rng if rng is not None else np.random.default_rng())
    shapes = infer_shapes(tokens, input_shape)
    layers = []
    prev: tuple[int, ...] = tuple(input_shape)
    for t, shape in zip(tokens, shapes):
        layers += entry(t.kind).build(t.args, prev, ctx)
        prev = shape
    return Sequential(*layers)
