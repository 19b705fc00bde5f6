"""A compact text form for networks, in the book's notation, and the builder that turns it into layers.

Grammar (tokens separated by commas; spaces ignored; case-insensitive)::

    network := chain
    chain   := item ("," item)*
    item    := token | INT "*" token | INT "*(" chain ")"         repetition: n copies, each with its own weights
    token   := conv | pool | act | "bn" | dropout | "flatten" | fc | "gap" | "gmp" | lrn | padc | res | cat
    conv    := "conv" KH "x" KW "x" IN "x" OUT option*     e.g. conv5x5x1x20, conv3x3x64x64p1, conv3x3x32x32g32p1
    option  := "s" INT (stride) | "p" INT (padding) | "psame" | "d" INT (dilation) | "g" INT (groups) | "nobias"
    pool    := ("pool" | "maxpool" | "avgpool") K ("s" INT)? ("p" INT)?   (stride defaults to K)
    act     := "relu" | "sigmoid" | "tanh"
    bn      := batch normalisation over the current channels
    dropout := "dropout" FLOAT?                              (p, default 0.5)
    fc      := "fc" OUT                                      (flattens, then a Linear layer)
    gap/gmp := global average / max pooling                  (H x W x C -> 1 x 1 x C)
    lrn     := "lrn" SIZE ("a" FLOAT)? ("b" FLOAT)? ("k" FLOAT)?   local response normalisation, PyTorch's
                                                             definition (alpha 1e-4, beta 0.75, k 1)
    padc    := "padc" INT                                    (INT zero channels appended)
    res     := "res(" chain ")" | "res(" chain "|" chain ")"  body + identity, or body + shortcut chain
    cat     := "cat(" chain ("|" chain)* ")"                 branches on one input, joined on channels

``conv5x5x1x20`` is the seed's 5x5x1x20 kernel f (H x W x D^l x D); ``pool2`` is 2x2 max pooling at
stride 2; ``g<groups>`` splits a convolution's channels into groups (``conv3x3x32x32g32p1`` is depthwise;
IN counts all input channels, as PyTorch's ``in_channels``). IN must equal the channels reaching the
token. ``res(...)`` builds a :class:`~cnnkit.nn.Residual` (a ResNet block: ``res(conv3x3x64x64p1nobias,bn,
relu,conv3x3x64x64p1nobias,bn),relu``; a projection: ``res(...|conv1x1x64x128s2nobias,bn)``; He et al.'s
parameter-free option A: ``res(...|pool1s2,padc64)``), ``cat(...)`` a :class:`~cnnkit.nn.Concat` (an
Inception module), ``3*(...)`` three copies in a row.

A bad token raises :class:`SpecError` that quotes the token, its position (its number in its chain, the
branch and token around it, and its character in the string) and what was expected, e.g. "token 2 'poo2' in
branch 3 of token 5 (character 61 of ...)"; unbalanced parentheses are pointed at by character. Each kind
of token (its grammar, layer factory and PyTorch equivalent) is one entry of :mod:`cnnkit.models.tokens`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.errors import ShapeError, SpecError, quote
from cnnkit.limits import LIMITS, check_size
from cnnkit.models.tokens import BY_KIND, EXPECTED, TOKEN_KINDS, BuildContext, Composite, entry
from cnnkit.nn.base import Layer, Trace, TraceRow
from cnnkit.nn.init import shapes_only

if TYPE_CHECKING:
    from cnnkit.nn import Sequential

__all__ = ["EXPECTED", "BuildOptions", "SpecError", "Token", "build", "count_layers", "infer_shapes", "leaves", "parse", "to_string"]


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


#: deepest nesting of composite tokens (parentheses and repetitions) a network string may have
MAX_NESTING = 32

_REPEAT = re.compile(r"(\d+)\*")


def _whole(spec: str) -> str:
    return repr(spec) if len(spec) <= 200 else f"a {len(spec):,}-character string"


def _where(spec: str, index: int, tokens: list[str]) -> str:
    col = sum(len(t) + 1 for t in tokens[:index])
    return f"token {index + 1} {quote(tokens[index], 80)} (character {col + 1} of {_whole(spec)})"


def _located(message: str) -> SpecError:
    """A SpecError whose message already says where (enclosing tokens pass it on unchanged)."""
    err = SpecError(message)
    err.located = True  # type: ignore[attr-defined]
    return err


def _split(text: str, start: int, end: int, sep: str) -> list[tuple[int, int]]:
    """(start, end) of the parts of text[start:end] between the separators ``sep`` outside parentheses."""
    parts, depth, begin = [], 0, start
    for i in range(start, end):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append((begin, i))
            begin = i + 1
    parts.append((begin, end))
    return parts


def _closing(text: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at ``open_at`` (the string is balanced)."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1  # unbalanced (refused by _check_parentheses before any token is read)


def _check_parentheses(spec: str) -> None:
    """Unbalanced or too deeply nested parentheses: SpecError pointing at the character."""
    opened: list[int] = []
    for i, ch in enumerate(spec):
        if ch == "(":
            opened.append(i)
            if len(opened) > MAX_NESTING:
                raise SpecError(f"parentheses nested more than {MAX_NESTING} deep at character {i + 1} of {_whole(spec)}")
        elif ch == ")":
            if not opened:
                raise SpecError(f"unbalanced parentheses: ')' at character {i + 1} of {_whole(spec)} closes nothing")
            opened.pop()
    if opened:
        raise SpecError(f"unbalanced parentheses: '(' at character {opened[-1] + 1} of {_whole(spec)} is never closed")


class _Parser:
    """Recursive descent over the compact string: chains split at commas, composites at '|' (see :func:`parse`)."""

    def __init__(self, spec: str) -> None:
        self.spec, self.low, self.whole = spec, spec.lower(), _whole(spec)

    def chain(self, start: int, end: int, context: str, depth: int) -> tuple[Token, ...]:
        return tuple(self.item(a, b, i, context, depth) for i, (a, b) in enumerate(_split(self.low, start, end, ",")))

    def item(self, start: int, end: int, index: int, context: str, depth: int) -> Token:
        text = self.low[start:end]
        where = f"token {index + 1} {quote(text, 80)}{context} (character {start + 1} of {self.whole})"
        if not text:
            raise SpecError(f"empty {where} (two commas in a row?)")
        m = _REPEAT.match(text)
        if m:
            return self.repeat(m, start, end, index, context, depth, where)
        name = text.split("(", 1)[0]
        k = BY_KIND.get(name)
        if "(" in text and k is not None and isinstance(k, Composite) and k.bracketed:
            return self.composite(k, start, end, index, context, depth, where)
        if "(" in text or ")" in text:
            raise SpecError(f"cannot parse {where}: parentheses follow only "
                            f"{' and '.join(k.name for k in TOKEN_KINDS if isinstance(k, Composite) and k.bracketed)} "
                            f"(or a repetition count <n>*); {EXPECTED}")
        if "|" in text:
            raise SpecError(f"cannot parse {where}: '|' separates the branches inside res(...) and cat(...); {EXPECTED}")
        if re.search(r"\d{10,}", text):
            raise SpecError(f"{where}: a number of 10 or more digits is not a size any layer can have")
        k = next((k for k in TOKEN_KINDS if not k.composite and k.pattern.fullmatch(text)), None)
        if k is None:
            raise SpecError(f"cannot parse {where}; {EXPECTED}")
        try:
            kind, args = k.parse(text)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        return Token(kind, text, args)

    def _depth(self, depth: int, where: str) -> int:
        if depth + 1 > MAX_NESTING:
            raise SpecError(f"{where}: composite tokens nested more than {MAX_NESTING} deep")
        return depth + 1

    def composite(self, k: Composite, start: int, end: int, index: int, context: str, depth: int, where: str) -> Token:
        text = self.low[start:end]
        open_at = start + len(k.name)
        close = _closing(self.low, open_at)
        if close != end - 1:
            raise SpecError(f"{where}: {quote(self.low[close + 1:end], 40)} follows the ')' at character {close + 1} "
                            f"that closes {k.name}(...); separate tokens with commas")
        depth = self._depth(depth, where)
        ranges = _split(self.low, open_at + 1, close, "|")
        try:
            k.check_branches(len(ranges))
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        branches = []
        for b, (a, z) in enumerate(ranges):
            words = k.branch_words(b)
            if a == z:
                raise SpecError(f"{where}: {words} is empty (character {a + 1}); expected {k.syntax}")
            branches.append(self.chain(a, z, f" in {words} of token {index + 1}{context}", depth))
        return Token(k.name, text, k.make_args(tuple(branches)))

    def repeat(self, m: re.Match[str], start: int, end: int, index: int, context: str, depth: int, where: str) -> Token:
        k = BY_KIND["repeat"]
        assert isinstance(k, Composite)
        text = self.low[start:end]
        if len(m.group(1)) >= 10:
            raise SpecError(f"{where}: a number of 10 or more digits is not a size any layer can have")
        depth = self._depth(depth, where)
        a = start + m.end()
        inner_context = f" in {k.branch_words(0)} of token {index + 1}{context}"
        if a == end:
            raise SpecError(f"{where}: nothing to repeat after '*'; expected {k.syntax}")
        if self.low[a] == "(" and _closing(self.low, a) == end - 1:
            if a + 1 == end - 1:
                raise SpecError(f"{where}: {k.branch_words(0)} is empty (character {a + 2}); expected {k.syntax}")
            body = self.chain(a + 1, end - 1, inner_context, depth)
        else:
            body = (self.item(a, end, 0, inner_context, depth),)
        try:
            args = k.make_args((body,), times=int(m.group(1)))  # type: ignore[call-arg]
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
        return Token(k.name, text, args)


def count_layers(tokens: list[Token] | tuple[Token, ...]) -> int:
    """How many simple tokens a network string stands for, repetitions expanded (each builds its own layers).

    Examples
    --------
    >>> count_layers(parse("conv3x3x3x8p1,3*res(conv3x3x8x8p1,relu),gap"))
    8
    """
    n = 0
    for t in tokens:
        branches = t.args.get("branches", ()) if entry(t.kind).composite else ()
        inner = sum(count_layers(b) for b in branches)
        n += t.args.get("times", 1) * inner if branches else 1
    return n


def leaves(tokens: list[Token] | tuple[Token, ...]) -> list[Token]:
    """The simple tokens of a network string in order, the tokens inside composites included (each written once).

    Examples
    --------
    >>> [t.text for t in leaves(parse("conv3x3x3x8p1,2*res(conv3x3x8x8p1|conv1x1x8x8),gap"))]
    ['conv3x3x3x8p1', 'conv3x3x8x8p1', 'conv1x1x8x8', 'gap']
    """
    out: list[Token] = []
    for t in tokens:
        if entry(t.kind).composite:
            for b in t.args["branches"]:
                out += leaves(b)
        else:
            out.append(t)
    return out


def parse(spec: str) -> list[Token]:
    """Parse a network string into tokens; raise :class:`SpecError` pointing at the first bad one.

    A composite token (``res(...)``, ``cat(...)``, ``<n>*...``) is one token whose ``args["branches"]`` hold
    the tokens inside; an error inside says where, e.g. "token 2 'poo2' in branch 3 of token 5".

    Examples
    --------
    >>> [t.kind for t in parse("conv5x5x1x20,pool2,relu,fc10")]
    ['conv', 'maxpool', 'relu', 'fc']
    >>> parse("conv5x5x1x20,poo2")
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: cannot parse token 2 'poo2' (character 14 of 'conv5x5x1x20,poo2'); expected one of ...
    >>> t = parse("conv3x3x3x8p1,res(conv3x3x8x8p1,bn,relu|conv1x1x8x8)")[1]
    >>> t.kind, [[u.text for u in b] for b in t.args["branches"]]
    ('res', [['conv3x3x8x8p1', 'bn', 'relu'], ['conv1x1x8x8']])
    >>> parse("cat(conv1x1x8x4|pool3s1p1,conv1x1x8x4|poo3)")
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: cannot parse token 1 'poo3' in branch 3 of token 1 (character 39 of '...'); expected one of ...
    >>> parse("res(conv3x3x8x8p1,relu")
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: unbalanced parentheses: '(' at character 4 of 'res(conv3x3x8x8p1,relu' is never closed
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty network string; {EXPECTED}")
    if len(spec) > LIMITS.spec_chars:
        raise SpecError(f"network string of {len(spec):,} characters, over the limit of {LIMITS.spec_chars:,} (CNNKIT_MAX_SPEC_CHARS): "
                        f"{quote(spec, 60)}")
    spec = "".join(spec.split())  # spaces ignored; positions below count in this compact string
    n_raw = spec.count(",") + spec.count("|") + 1
    if n_raw > LIMITS.layers:
        raise SpecError(
            f"network string of {n_raw:,} tokens, over the limit of {LIMITS.layers:,} (CNNKIT_MAX_LAYERS): {quote(spec, 60)}"
        )
    _check_parentheses(spec)
    tokens = list(_Parser(spec).chain(0, len(spec), "", 0))
    n = count_layers(tokens)
    if n > LIMITS.layers:
        raise SpecError(f"network string of {n:,} tokens once its repetitions are expanded, over the limit of {LIMITS.layers:,} "
                        f"(CNNKIT_MAX_LAYERS): {quote(spec, 60)}")
    return tokens


def to_string(tokens: list[Token] | tuple[Token, ...]) -> str:
    """The canonical string of parsed tokens (``parse(to_string(t)) == t``).

    Examples
    --------
    >>> from cnnkit.models import parse, to_string
    >>> to_string(parse(" Conv5x5x1x20 , POOL2 ,ReLU"))
    'conv5x5x1x20,pool2,relu'
    >>> to_string(parse("RES(conv3x3x8x8p1, relu | conv1x1x8x8), 2*(Relu, BN)"))
    'res(conv3x3x8x8p1,relu|conv1x1x8x8),2*(relu,bn)'
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


@dataclass
class Piece:
    """One token as built: its layers and trace rows; a composite's branches (or copies) as pieces of their own.

    ``path`` names the token: ``"3"`` for the third token, ``"3.body.2"`` for the second token of its body,
    ``"5.b2.1"`` inside branch 2 of a ``cat``, ``"4.copy2.1"`` inside copy 2 of a repetition. ``rows`` are
    all the trace rows of the token (for a composite: its branches' rows, then its merge rows ``merges``).

    Examples
    --------
    >>> from cnnkit.nn.init import shapes_only
    >>> with shapes_only():
    ...     p = assemble_pieces(parse("conv3x3x1x4p1,res(conv3x3x4x4p1,relu)"), (8, 8, 1))[1]
    >>> p.path, [(label, [q.path for q in qs]) for label, qs in p.branches], [r.kind for r in p.merges]
    ('2', [('body', ['2.body.1', '2.body.2'])], ['add'])
    >>> p.out.shape, p.out.rf, type(p.layers[0]).__name__
    ((8, 8, 4), 5, 'Residual')
    """

    token: Token
    path: str
    depth: int
    layers: list[Layer]
    rows: list[TraceRow]
    out: Trace
    branches: list[tuple[str, list[Piece]]] = field(default_factory=list)
    merges: list[TraceRow] = field(default_factory=list)


def _child_offsets(t: Token) -> list[int]:
    """Where each branch's first token starts, in characters from the start of a composite token's text."""
    k = entry(t.kind)
    assert isinstance(k, Composite)
    if not k.bracketed:
        star = t.text.find("*") + 1
        grouped = t.text[star : star + 1] == "(" and _closing(t.text, star) == len(t.text) - 1
        return [star + 1 if grouped else star]
    offsets, pos = [], len(k.name) + 1
    for branch in t.args["branches"]:
        offsets.append(pos)
        pos += sum(len(u.text) + 1 for u in branch)
    return offsets


@dataclass(frozen=True)
class _Site:
    """Where a chain sits: the string quoted in messages, its first character, the words and path around it."""

    whole: str
    offset: int
    context: str
    prefix: str
    depth: int


def _assemble_chain(tokens: list[Token] | tuple[Token, ...], flow: Trace, ctx: BuildContext, site: _Site) -> tuple[list[Piece], Trace]:
    pieces = []
    pos = site.offset
    for i, t in enumerate(tokens):
        path = f"{site.prefix}{i + 1}"
        try:
            k = entry(t.kind)
            if isinstance(k, Composite):
                piece = _assemble_composite(t, k, flow, ctx, site, i, pos, path)
            else:
                layers = k.build(t.args, flow.shape, ctx)
                rows: list[TraceRow] = []
                out = flow
                for layer in layers:
                    out = layer.trace(out, path, rows)
                piece = Piece(t, path, site.depth, layers, rows, out)
        except (ShapeError, SpecError) as exc:
            if getattr(exc, "located", False):
                raise
            where = f"token {i + 1} {quote(t.text, 80)}{site.context} (character {pos + 1} of {site.whole})"
            raise _located(f"{where}: {exc}") from None
        pieces.append(piece)
        flow = piece.out
        pos += len(t.text) + 1
    return pieces, flow


def _assemble_composite(t: Token, k: Composite, flow: Trace, ctx: BuildContext, site: _Site, i: int, pos: int, path: str) -> Piece:
    offsets = _child_offsets(t)
    branches: list[tuple[str, list[Piece]]] = []
    rows: list[TraceRow] = []

    def chain(b: int, inflow: Trace, copy: int) -> tuple[list[Layer], Trace]:
        label = k.branch_path(b, copy)
        inner = _Site(site.whole, pos + offsets[b], f" in {k.branch_words(b, copy)} of token {i + 1}{site.context}",
                      f"{path}.{label}.", site.depth + 1)
        pieces, out = _assemble_chain(t.args["branches"][b], inflow, ctx, inner)
        branches.append((label, pieces))
        for p in pieces:
            rows.extend(p.rows)
        return [layer for p in pieces for layer in p.layers], out

    layers, merges, out = k.assemble(t.args, flow, ctx, path, chain)
    return Piece(t, path, site.depth, layers, rows + merges, out, branches, merges)


def assemble_pieces(
    tokens: list[Token] | tuple[Token, ...], input_shape: tuple[int, ...], ctx: BuildContext | None = None
) -> list[Piece]:
    """Build every token's layers in turn and trace their shapes, composites branch by branch: one :class:`Piece` per token.

    Raises SpecError pointing at the first token (however deep) whose layers do not fit what reaches them.
    Call it inside :func:`cnnkit.nn.init.shapes_only` to read shapes and costs without allocating.

    Examples
    --------
    >>> from cnnkit.nn.init import shapes_only
    >>> with shapes_only():
    ...     pieces = assemble_pieces(parse("conv3x3x1x4,cat(conv1x1x4x2|pool3s1p1,conv1x1x4x3)"), (8, 8, 1))
    >>> [(p.path, p.out.shape) for p in pieces], [r.name for r in pieces[1].rows]
    ([('1', (6, 6, 4)), ('2', (6, 6, 5))], ['2.b1.1', '2.b2.1', '2.b2.2', '2.concat'])
    >>> with shapes_only():
    ...     assemble_pieces(parse("conv3x3x1x4,res(conv3x3x4x8p1)"), (8, 8, 1))
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: token 2 'res(conv3x3x4x8p1)' (character 13 of ...): the body gives 6x6x8 but the identity ...
    """
    ctx = ctx or BuildContext(BuildOptions(), np.random.default_rng(0))
    spec = to_string(tokens)
    site = _Site(_whole(spec), 0, "", "", 0)
    pieces, _ = _assemble_chain(tokens, Trace(tuple(int(v) for v in input_shape)), ctx, site)
    return pieces


def assemble(
    tokens: list[Token], input_shape: tuple[int, ...], ctx: BuildContext | None = None
) -> list[tuple[Token, list[Layer], list[TraceRow]]]:
    """Build every token's layers in turn and trace their shapes: (token, layers, trace rows) per token.

    Raises SpecError pointing at the first token whose layers do not fit what reaches them. Call it
    inside :func:`cnnkit.nn.init.shapes_only` to read shapes and costs without allocating. A composite
    token's rows are all those of its branches, then its merge (see :func:`assemble_pieces`).
    """
    return [(p.token, p.layers, p.rows) for p in assemble_pieces(tokens, input_shape, ctx)]


def infer_shapes(tokens: list[Token], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output shape (H, W, C) (or (F,) after fc/flatten) of every token; raises SpecError on a mismatch.

    Examples
    --------
    >>> infer_shapes(parse("conv5x5x1x20,pool2,fc10"), (28, 28, 1))
    [(24, 24, 20), (12, 12, 20), (10,)]
    >>> infer_shapes(parse("conv3x3x1x8p1,res(conv3x3x8x16s2p1,relu|conv1x1x8x16s2),cat(gap|gmp)"), (8, 8, 1))
    [(8, 8, 8), (4, 4, 16), (1, 1, 32)]
    """
    with shapes_only():
        return [p.out.shape for p in assemble_pieces(tokens, input_shape)]


def build(
    spec: str | list[Token],
    input_shape: tuple[int, ...],
    rng: np.random.Generator | None = None,
    options: BuildOptions | None = None,
) -> Sequential:
    """Build a :class:`~cnnkit.nn.Sequential` from a network string for inputs of ``input_shape`` (H, W, C).

    The whole string is checked against the input shape before any layer's memory is allocated. A
    ``res(...)`` token becomes a :class:`~cnnkit.nn.Residual`, a ``cat(...)`` a :class:`~cnnkit.nn.Concat`
    (each branch a Sequential); a repetition's copies are laid out in the chain one after another.

    Examples
    --------
    >>> import numpy as np
    >>> net = build("conv5x5x1x4,pool2,fc10", (28, 28, 1), np.random.default_rng(0))
    >>> net.forward(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 10)
    >>> net = build("conv3x3x1x4p1,2*res(conv3x3x4x4p1,bn,relu),gap,fc3", (8, 8, 1), np.random.default_rng(0))
    >>> [type(layer).__name__ for layer in net], net.forward(np.zeros((2, 8, 8, 1), np.float32)).shape
    (['Conv2d', 'Residual', 'Residual', 'GlobalAvgPool2d', 'Flatten', 'Linear'], (2, 3))
    """
    from cnnkit.nn import Sequential

    tokens = parse(spec) if isinstance(spec, str) else spec
    options = options or BuildOptions()
    with shapes_only():
        template = Sequential(*[layer for p in assemble_pieces(tokens, input_shape, BuildContext(options, np.random.default_rng(0)))
                                for layer in p.layers])
    # parameters within the limit before any is allocated (fc999999999 would ask for terabytes)
    nbytes = sum(v.size * v.dtype.itemsize for v in template.params.values())
    check_size(nbytes, LIMITS.param_bytes, f"the parameters of {quote(to_string(tokens), 80)}", "param_bytes", SpecError)
    ctx = BuildContext(options, rng if rng is not None else np.random.default_rng())
    return Sequential(*[layer for p in assemble_pieces(tokens, input_shape, ctx) for layer in p.layers])
