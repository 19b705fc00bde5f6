"""Per-layer summary of a network: shapes, parameters, FLOPs, memory and receptive fields.

:func:`summary` takes any network built from cnnkit layers; :func:`summarize` takes a network string and
gives one row per token (the book's tables). Both read the layers' own rules (``Layer.describe``); a
network string is built with :func:`cnnkit.nn.init.shapes_only`, so nothing large is allocated and
``cnnkit summary vgg16`` is instant.

* FLOPs count a multiply-add as 2 (forward pass, one image); a layer that does not know its cost shows none.
* Activations are the elements of each layer's output (the input image counted once), as in seed 002's
  VGG-16 memory table; elementwise layers (ReLU, sigmoid, dropout, BN) are listed with their output but are
  not added to the seed-style total, which counts them as done in place.
* im2row workspace is the size of phi(x) for one image, (H_out W_out) x (kh kw C_in) (eq. 15.25).
* ``rf`` is the receptive field of one output element in the network's input (growth by (k_eff-1)*jump),
  along H; where branches meet (a residual sum, a concatenation) it is the largest of the branches'.
* A composite token of a network string (``res(...)``, ``cat(...)``, ``<n>*...``) gets a row of its own with
  the block's totals (``group``), followed by indented rows for the tokens of each branch (``path``
  ``3.body.1``, ``5.b2.1``, ``4.copy2.1``: their receptive fields are the branch's) and the merge (``3.add``,
  ``5.concat``); totals count every row but the group rows.
* ``rf_seed`` is Table 15.2's column: the extent, in this layer's input, needed to compute one element of the
  input of the first fully connected layer (or of the network's output when there is none).
* A window that does not tile its input ((H + pads - k_eff) not divisible by the stride, seed 002's 4.5
  case) is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnkit.models.spec import Piece, Token, assemble_pieces, parse
from cnnkit.nn.base import Layer, Trace, TraceRow
from cnnkit.nn.init import shapes_only


def _mflops(flops: int | None) -> str:
    return "-" if flops is None else f"{flops / 1e6:.1f}"


@dataclass
class LayerRow:
    """One line of the summary: a token's output shape, parameters, FLOPs, activations, workspace, receptive fields.

    Examples
    --------
    >>> from cnnkit.summary import summarize
    >>> row = summarize("conv5x5x1x20,pool2", (28, 28, 1)).rows[0]
    >>> row.token, row.out_shape, row.params, row.flops, row.workspace, row.rf
    ('conv5x5x1x20', (24, 24, 20), 520, 576000, 14400, 5)
    """

    index: int
    token: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    flops: int | None
    activations: int
    workspace: int
    rf: int | None
    rf_seed: int | None
    tiles: bool
    elementwise: bool = False
    #: dotted name of the token: "3", or "3.body.1" inside a composite (summary(net): the layer's path)
    path: str = ""
    #: nesting inside composite tokens (0: a token of the network string itself)
    depth: int = 0
    #: a composite token's own row: the totals of the rows below it (not added again to the summary's totals)
    group: bool = False


@dataclass
class Summary:
    """The rows of a network's summary with their totals; :meth:`format` prints them as a table.

    Examples
    --------
    Seed 002's VGG-16 table: 138M parameters, 1,728 weights (plus 64 biases) in the first layer, and the
    table's memory column, which adds up to 15.2M values (not the 24M it states: docs/book.md, E10).

    >>> from cnnkit.models.zoo import VGG16_SPEC
    >>> from cnnkit.summary import summarize
    >>> s = summarize(VGG16_SPEC, (224, 224, 3))
    >>> s.total_params, s.rows[0].params, s.total_activations
    (138357544, 1792, 15237608)
    """

    input_shape: tuple[int, ...]
    rows: list[LayerRow]

    @property
    def tokens(self) -> list[LayerRow]:
        """One row per token of the network string (the composites' group rows, not the rows inside them)."""
        return [r for r in self.rows if r.depth == 0]

    def _counted(self) -> list[LayerRow]:
        return [r for r in self.rows if not r.group]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self._counted())

    @property
    def total_flops(self) -> int:
        """Forward FLOPs per image of the layers that know their cost."""
        return sum(r.flops or 0 for r in self._counted())

    @property
    def total_activations(self) -> int:
        """Seed-002-style count: the input plus every non-elementwise layer's output, per image."""
        return math.prod(self.input_shape) + sum(r.activations for r in self._counted() if not r.elementwise)

    @property
    def all_activations(self) -> int:
        """Every layer's output plus the input (what a framework without in-place layers stores)."""
        return math.prod(self.input_shape) + sum(r.activations for r in self._counted())

    @property
    def max_workspace(self) -> int:
        return max((r.workspace for r in self.rows), default=0)

    def format(self, bytes_per_element: int = 4) -> str:
        """A text table with totals."""
        def shape(s: tuple[int, ...]) -> str:
            return "x".join(str(v) for v in s)

        labels = [_label(r) for r in self.rows]
        width = max([22, *(len(v) for v in labels)])
        head = (f"{'#':>3} {'layer':<{width}} {'output':>13} {'params':>12} {'MFLOPs':>10} {'activ.':>10} {'im2row':>10} "
                f"{'rf':>5} {'rf(T15.2)':>9}")
        lines = [f"input {shape(self.input_shape)}", head, "-" * len(head)]
        for r, label in zip(self.rows, labels):
            flag = "  <- window does not tile its input" if not r.tiles else ""
            lines.append(
                f"{r.index if r.depth == 0 else '':>3} {label:<{width}} {shape(r.out_shape):>13} {r.params:>12,} "
                f"{_mflops(r.flops):>10} {r.activations:>10,} {r.workspace:>10,} {'' if r.rf is None else r.rf:>5} "
                f"{'' if r.rf_seed is None else r.rf_seed:>9}{flag}"
            )
        mb = 1024 * 1024
        lines += [
            "-" * len(head),
            f"parameters: {self.total_params:,} ({self.total_params * bytes_per_element / mb:.1f} MiB)",
            f"forward FLOPs per image: {self.total_flops / 1e9:.3f} G",
            f"activations per image (input + conv/pool/fc outputs, the layer notes' VGG-16 count): {self.total_activations:,} "
            f"({self.total_activations * bytes_per_element / mb:.1f} MiB)",
            f"activations per image counting every layer's output: {self.all_activations:,} "
            f"({self.all_activations * bytes_per_element / mb:.1f} MiB)",
            f"largest im2row workspace per image: {self.max_workspace:,} elements "
            f"({self.max_workspace * bytes_per_element / mb:.1f} MiB)",
        ]
        return "\n".join(lines)


def _label(r: LayerRow) -> str:
    """The layer column: the token, indented by its depth and named by its place in the enclosing composite."""
    text = r.token if len(r.token) <= 40 or not r.group else r.token[:37] + "..."  # a composite's row: its beginning
    if r.depth == 0:
        return text
    where = ".".join(r.path.split(".")[-2:])  # "body.1", "b2.1", "copy3.1", "add"
    if r.kind in ("add", "concat"):
        return "  " * r.depth + r.kind
    return "  " * r.depth + f"{where} {text}"


def _row(index: int, name: str, kind: str, rows: Sequence[TraceRow]) -> LayerRow:
    """One summary row for the layers of ``rows`` (one token's, or one layer's)."""
    info = [r.info for r in rows]
    flops = [i.flops for i in info]
    tiles = all(
        (p - ke) % st == 0
        for i in info if i.window is not None
        for p, ke, st in zip(i.window.padded_hw, i.window.effective_kernel, i.window.stride)
    )
    out = info[-1].out_shape
    return LayerRow(index, name, kind, out, sum(i.params for i in info), None if None in flops else sum(f or 0 for f in flops),
                    math.prod(out), max(i.workspace for i in info), rows[-1].rf, None, tiles, all(i.elementwise for i in info))


def _table_15_2(rows: list[LayerRow], groups: Sequence[Sequence[TraceRow]]) -> None:
    """Table 15.2's column: walk back from the first fully connected layer's input (chains only)."""
    stop = next((i for i, g in enumerate(groups) if any(r.info.flattens for r in g)), len(groups))
    extent = 1
    for i in range(stop - 1, -1, -1):
        for r in reversed(groups[i]):
            win = r.info.window
            if win is not None:
                extent = (extent - 1) * win.stride[0] + win.effective_kernel[0]
        rows[i].rf_seed = extent
    if stop < len(rows):
        rows[stop].rf_seed = 1


def summarize(spec: str | list[Token], input_shape: tuple[int, ...]) -> Summary:
    """Summarise a network string for one input of shape (H, W, C): one row per token.

    Examples
    --------
    >>> s = summarize("conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10", (28, 28, 1))
    >>> s.total_params, s.rows[-1].out_shape, s.rows[4].rf
    (431080, (1, 1, 10), 28)

    A residual block: its own row (the block's totals), then its branches' tokens and the sum, indented.

    >>> s = summarize("conv3x3x1x8p1,res(conv3x3x8x8p1,relu|conv1x1x8x8),gap", (8, 8, 1))
    >>> [(r.path, r.token, r.params, r.rf) for r in s.rows]  # doctest: +NORMALIZE_WHITESPACE
    [('1', 'conv3x3x1x8p1', 80, 3), ('2', 'res(conv3x3x8x8p1,relu|conv1x1x8x8)', 656, 5),
     ('2.body.1', 'conv3x3x8x8p1', 584, 5), ('2.body.2', 'relu', 0, 5), ('2.shortcut.1', 'conv1x1x8x8', 72, 3),
     ('2.add', 'add', 0, 5), ('3', 'gap', 0, 12)]
    >>> s.total_params, len(s.tokens)
    (736, 3)
    """
    tokens = parse(spec) if isinstance(spec, str) else spec
    with shapes_only():
        pieces = assemble_pieces(tokens, input_shape)
    rows: list[LayerRow] = []
    for i, p in enumerate(pieces):
        _piece_rows(i + 1, p, rows)
    if not any(p.branches for p in pieces):  # Table 15.2's column is defined for chains
        _table_15_2(rows, [p.rows for p in pieces])
    return Summary(tuple(int(v) for v in input_shape), rows)


def _piece_rows(index: int, p: Piece, out: list[LayerRow]) -> None:
    """The rows of one token: a simple token's one row; a composite's group row, its branches' rows, its merges."""
    row = _row(index, p.token.text, p.token.kind, p.rows)
    row.path, row.depth, row.group = p.path, p.depth, bool(p.branches)
    out.append(row)
    for _, pieces in p.branches:
        for q in pieces:
            _piece_rows(index, q, out)
    for m in p.merges:
        merge = _row(index, m.kind, m.kind, [m])
        merge.path, merge.depth = m.name, p.depth + 1
        out.append(merge)


def summary(net: Layer, input_shape: Sequence[int]) -> Summary:
    """Summarise any network for one example of ``input_shape`` (no batch axis): one row per layer.

    Rows are named by the layers' dotted paths (``"3.body.0"``); a residual sum and a concatenation get
    rows of their own (``add``, ``concat``). Nothing is run: the layers' ``describe`` rules give the numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Residual, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 8, 3, padding=1, rng=rng), Residual(Sequential(Conv2d(8, 8, 3, padding=1, rng=rng), ReLU())),
    ...                  Flatten(), Linear(8 * 6 * 6, 10, rng=rng))
    >>> s = summary(net, (6, 6, 1))
    >>> [(r.token, r.kind, r.out_shape) for r in s.rows]  # doctest: +NORMALIZE_WHITESPACE
    [('0 Conv2d', 'Conv2d', (6, 6, 8)), ('1.body.0 Conv2d', 'Conv2d', (6, 6, 8)), ('1.body.1 ReLU', 'ReLU', (6, 6, 8)),
     ('1.add', 'add', (6, 6, 8)), ('2 Flatten', 'Flatten', (288,)), ('3 Linear', 'Linear', (10,))]
    >>> s.total_params, s.rows[3].rf  # 1*9*8 + 8, 8*9*8 + 8 and 288*10 + 10 parameters
    (3554, 5)
    """
    trace_rows: list[TraceRow] = []
    shape = tuple(int(v) for v in input_shape)
    net.trace(Trace(shape), "", trace_rows)
    seen: set[int] = set()
    rows = []
    for i, r in enumerate(trace_rows):
        row = _row(i + 1, f"{r.name} {r.kind}" if r.name and r.kind not in ("add", "concat") else (r.name or r.kind), r.kind, [r])
        if r.layer is not None:
            if id(r.layer) in seen:  # a shared layer: its parameters are counted at its first use
                row.params = 0
            seen.add(id(r.layer))
        rows.append(row)
    if not any(r.kind in ("add", "concat") for r in trace_rows):  # Table 15.2's column is defined for chains
        _table_15_2(rows, [[r] for r in trace_rows])
    return Summary(shape, rows)


def training_bytes(net: Layer, input_shape: Sequence[int], batch_size: int, itemsize: int = 4) -> int:
    """A lower estimate of the memory one training step of ``batch_size`` examples needs, in bytes.

    Parameters three times (weights, gradients, one optimiser buffer), every layer's output kept for the
    backward pass plus as much again for the gradients flowing back, and the largest im2row matrix.
    Computed from the layers' shapes alone; used to refuse a network that cannot fit before allocating it.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Sequential
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), Flatten())
    >>> training_bytes(net, (5, 5, 1), batch_size=10)  # 20 parameters, 25 + 18 + 18 values and 81 phi(x) entries per example
    8360
    """
    s = summary(net, input_shape)
    per_example = 2 * s.all_activations + s.max_workspace
    return itemsize * (3 * s.total_params + batch_size * per_example)
