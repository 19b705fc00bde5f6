"""Per-layer summary of a network string: shapes, parameters, FLOPs, memory and receptive fields.

Computed analytically from the network's tokens (nothing is allocated), so ``summary vgg16`` is instant.

* FLOPs count a multiply-add as 2 (forward pass, one image).
* Activations are the elements of each layer's output (the input image counted once), as in seed 002's
  VGG-16 memory table; elementwise layers (ReLU, sigmoid, dropout, BN) are listed with their output but are
  not added to the seed-style total, which counts them as done in place.
* im2row workspace is the size of phi(x) for one image, (H_out W_out) x (kh kw C_in) (eq. 15.25).
* ``rf`` is the receptive field of one output element in the network's input (growth by (k_eff-1)*jump).
* ``rf_seed`` is Table 15.2's column: the extent, in this layer's input, needed to compute one element of the
  input of the first fully connected layer (or of the network's output when there is none).
* A window that does not tile its input ((H + pads - k_eff) not divisible by the stride, seed 002's 4.5
  case) is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnkit.models.spec import Token, infer_shapes, parse
from cnnkit.models.tokens import BY_KIND, entry


@dataclass
class LayerRow:
    index: int
    token: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    flops: int
    activations: int
    workspace: int
    rf: int | None
    rf_seed: int | None
    tiles: bool


@dataclass
class Summary:
    input_shape: tuple[int, int, int]
    rows: list[LayerRow]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_activations(self) -> int:
        """Seed-002-style count: the input plus every non-elementwise layer's output, per image."""
        h, w, c = self.input_shape
        return h * w * c + sum(r.activations for r in self.rows if not BY_KIND[r.kind].elementwise)

    @property
    def all_activations(self) -> int:
        """Every layer's output plus the input (what a framework without in-place layers stores)."""
        h, w, c = self.input_shape
        return h * w * c + sum(r.activations for r in self.rows)

    @property
    def max_workspace(self) -> int:
        return max((r.workspace for r in self.rows), default=0)

    def format(self, bytes_per_element: int = 4) -> str:
        """A text table with totals."""
        def shape(s: tuple[int, ...]) -> str:
            return "x".join(str(v) for v in s)

        head = (f"{'#':>3} {'layer':<22} {'output':>13} {'params':>12} {'MFLOPs':>10} {'activ.':>10} {'im2row':>10} "
                f"{'rf':>5} {'rf(T15.2)':>9}")
        lines = [f"input {shape(self.input_shape)}", head, "-" * len(head)]
        for r in self.rows:
            flag = "  <- window does not tile its input" if not r.tiles else ""
            lines.append(
                f"{r.index:>3} {r.token:<22} {shape(r.out_shape):>13} {r.params:>12,} {r.flops / 1e6:>10.1f} "
                f"{r.activations:>10,} {r.workspace:>10,} {'' if r.rf is None else r.rf:>5} "
                f"{'' if r.rf_seed is None else r.rf_seed:>9}{flag}"
            )
        mb = 1024 * 1024
        lines += [
            "-" * len(head),
            f"parameters: {self.total_params:,} ({self.total_params * bytes_per_element / mb:.1f} MiB)",
            f"forward FLOPs per image: {self.total_flops / 1e9:.3f} G",
            f"activations per image (input + conv/pool/fc outputs, seed 002's count): {self.total_activations:,} "
            f"({self.total_activations * bytes_per_element / mb:.1f} MiB)",
            f"activations per image counting every layer's output: {self.all_activations:,} "
            f"({self.all_activations * bytes_per_element / mb:.1f} MiB)",
            f"largest im2row workspace per image: {self.max_workspace:,} elements "
            f"({self.max_workspace * bytes_per_element / mb:.1f} MiB)",
        ]
        return "\n".join(lines)


def summarize(spec: str | list[Token], input_shape: tuple[int, int, int]) -> Summary:
    """Summarise a network string for one input of shape (H, W, C).

    Examples
    --------
    >>> s = summarize("conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10", (28, 28, 1))
    >>> s.total_params, s.rows[-1].out_shape, s.rows[4].rf
    (431080, (1, 1, 10), 28)
    """
    tokens = parse(spec) if isinstance(spec, str) else spec
    shapes = infer_shapes(tokens, input_shape)
    ins = [tuple(input_shape), *shapes[:-1]]
    # forward receptive field: rf grows by (k_eff - 1) * jump; jump multiplies by the stride
    rf: int | None = 1
    jump = 1
    rows: list[LayerRow] = []
    costs = []
    for i, (t, sin, sout) in enumerate(zip(tokens, ins, shapes)):
        cost = entry(t.kind).cost(t.args, sin, sout)
        costs.append(cost)
        tiles = True
        if cost.window is not None:
            win = cost.window
            tiles = all((p - ke) % s == 0 for p, ke, s in zip(win.padded_hw, win.effective_kernel, win.stride))
            if rf is not None:
                rf = rf + (win.effective_kernel[0] - 1) * jump
                jump *= win.stride[0]
        if cost.flattens:
            rf = None
        rows.append(LayerRow(i + 1, t.text, t.kind, sout, cost.params, cost.flops, math.prod(sout), cost.workspace,
                             rf, None, tiles))
    # Table 15.2's column: walk back from the first fully connected layer's input
    stop = next((i for i, c in enumerate(costs) if c.flattens), len(tokens))
    extent = 1
    for i in range(stop - 1, -1, -1):
        back = costs[i].window
        if back is not None:
            extent = (extent - 1) * back.stride[0] + back.effective_kernel[0]
        rows[i].rf_seed = extent
    if stop < len(rows):
        rows[stop].rf_seed = 1
    h, w, c = input_shape
    return Summary((h, w, c), rows)
