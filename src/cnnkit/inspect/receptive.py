"""The receptive field of one unit: the input pixels it depends on, from the geometry and from the gradient.

Geometry (§15.7.2): a unit at output row ``o`` of a sliding window (convolution, pooling) reads input rows
``o*stride - pad_top + k*dilation`` for ``k = 0 .. kernel-1``; walking back from the unit to the input
through every layer on the way gives the set of input pixels it can depend on. Elementwise layers keep the
set; where branches meet (a residual sum, an Inception concatenation, a graph's merge) the sets of the
branches are united; a layer that flattens makes every input pixel count. A spatial layer without a window
(upsampling, a transposed convolution) is probed alone: its own backward pass on random inputs says which of
its input pixels the set depends on. The set is a rectangle for
ordinary stacks and a rectangle with holes after a dilated convolution.

The gradient gives the same set another way: the input pixels where the derivative of the unit (a random
combination of its channels) is not zero. It is computed with cnnkit's own backward pass (evaluation mode,
``forward(x, grad=True)``) on a batch of random inputs, and the supports are united over the batch; with
random weights that is the whole geometric set, except where a max-pooling window or a ReLU happens to block
every path to a pixel in every example of the batch (rare with a few examples; never for linear stacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError, ShapeError
from cnnkit.inspect.layers import LayerError, Place, find_place, inject_gradient, input_gradients
from cnnkit.nn.base import Layer, Trace, TraceRow
from cnnkit.nn.container import Concat, Residual, Sequential
from cnnkit.nn.graph import Graph, Merge

Box = tuple[int, int, int, int]  # (top, bottom, left, right), inclusive, possibly outside the input


@dataclass
class Region:
    """What a unit depends on in one tensor: ``mask`` (H, W) of the pixels (a 0-d array for a vector: whether
    it depends on it at all), ``box`` their extent without clipping to the tensor (None: all of a vector) and
    ``exact`` (False once a layer without a sliding window was passed: its dependence was measured with its own
    backward pass on random inputs, or, for one that cannot run alone, assumed to be on every pixel).

    Examples
    --------
    >>> r = Region(np.eye(2, dtype=bool), (0, 1, 0, 1))
    >>> r.union(Region(np.zeros((2, 2), bool), (-1, 0, 0, 3))).box
    (-1, 1, 0, 3)
    """

    mask: np.ndarray
    box: Box | None
    exact: bool = True

    def union(self, other: Region) -> Region:
        mask = self.mask | other.mask
        if self.box is None or other.box is None:
            box = self.box if other.box is None else other.box
        else:
            a, b = self.box, other.box
            box = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
        return Region(mask, box, self.exact and other.exact)


def _spatial(shape: Sequence[int]) -> bool:
    return len(shape) == 3


def _full(shape: Sequence[int], depends: bool, exact: bool = True) -> Region:
    if not _spatial(shape):
        return Region(np.array(depends), None, exact)
    h, w = int(shape[0]), int(shape[1])
    mask = np.full((h, w), bool(depends))
    return Region(mask, (0, h - 1, 0, w - 1) if depends else None, exact)


def _taps(region: Region, in_hw: tuple[int, int], stride: tuple[int, int], before: tuple[int, int],
          step: tuple[int, int], kernel: tuple[int, int]) -> Region:
    """Input pixels ``o*stride - before + k*step`` (k < kernel) of every output pixel ``o`` in the region."""
    h, w = in_hw
    mask = np.zeros((h, w), dtype=bool)
    rows, cols = np.nonzero(region.mask)
    for ki in range(kernel[0]):
        r = rows * stride[0] - before[0] + ki * step[0]
        for kj in range(kernel[1]):
            c = cols * stride[1] - before[1] + kj * step[1]
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            mask[r[ok], c[ok]] = True
    box = None
    if region.box is not None:
        t, b, l, rt = region.box
        box = (t * stride[0] - before[0], b * stride[0] - before[0] + (kernel[0] - 1) * step[0],
               l * stride[1] - before[1], rt * stride[1] - before[1] + (kernel[1] - 1) * step[1])
    return Region(mask, box, region.exact)


def _probe(layer: Layer, in_shape: tuple[int, ...], region: Region) -> Region:
    """The input pixels the region of ``layer``'s output depends on, measured with the layer's own backward pass on
    random inputs (a layer without a sliding window: upsampling, transposed convolution, channel padding ...)."""
    depends = bool(region.mask.any())
    if not depends:
        return _full(in_shape, False, exact=False)
    rng = np.random.default_rng(0)
    dtype = layer.dtype or np.float64
    try:
        x = rng.standard_normal((4, *in_shape)).astype(dtype)
        with input_gradients(layer):
            y = layer.forward(x, train=False, grad=True)
            d = np.zeros_like(y)
            d[:, region.mask, :] = rng.standard_normal((4, int(region.mask.sum()), y.shape[3]))
            dx = layer.backward(d)
    except (CnnkitError, ValueError, TypeError, IndexError):  # cannot run alone (an unpooling layer): assume every pixel
        return _full(in_shape, True, exact=False)
    if dx is None or tuple(np.shape(dx)) != x.shape:
        return _full(in_shape, True, exact=False)
    mask = np.asarray(np.asarray(dx) != 0, dtype=bool).any(axis=(0, 3)).astype(bool)
    rows, cols = np.nonzero(mask)
    box = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) if rows.size else None
    return Region(mask, box, exact=False)


def _leaf(layer: Layer, in_shape: tuple[int, ...], region: Region) -> Region:
    """The region of ``layer``'s input that the region of its output depends on."""
    depends = bool(region.mask.any())
    if not _spatial(in_shape):
        return Region(np.array(depends), None, region.exact)
    info = layer.describe(in_shape)
    if not _spatial(info.out_shape):  # Flatten, or anything that makes a vector: every pixel counts
        return _full(in_shape, depends, region.exact)
    hw = (int(in_shape[0]), int(in_shape[1]))
    win = info.window
    if win is not None:
        return _taps(region, hw, win.stride, (win.pads[0], win.pads[2]), win.dilation, win.kernel)
    if (layer.elementwise or info.elementwise) and tuple(info.out_shape[:2]) == hw:
        return Region(region.mask.copy(), region.box, region.exact)
    probed = _probe(layer, in_shape, region)
    probed.exact = False
    return probed


def _out_shape(layer: Layer, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in layer.output_shape(in_shape))


def _back(layer: Layer, in_shape: tuple[int, ...], region: Region) -> Region:
    """The region of ``layer``'s input that a region of its output depends on (containers walked through)."""
    return _back_from(layer, in_shape, [], region)


def _back_from(layer: Layer, in_shape: tuple[int, ...], path: list[str], region: Region) -> Region:
    """The region of ``layer``'s input that a region of the output of its place ``path`` depends on."""
    if isinstance(layer, Sequential):
        names = [k for k, _ in layer.named_children()]
        shapes = [in_shape]
        for child in layer.layers:
            shapes.append(_out_shape(child, shapes[-1]))
        stop = len(names) if not path else names.index(path[0]) + 1
        for k in range(stop - 1, -1, -1):
            inner = path[1:] if path and k == stop - 1 else []
            region = _back_from(layer.layers[k], shapes[k], inner, region)
        return region
    if isinstance(layer, (Residual, Concat)):
        kids = dict(layer.named_children())
        if path and path[0] in kids:
            return _back_from(kids[path[0]], in_shape, path[1:], region)
        if isinstance(layer, Concat):  # every branch reads the same pixels of its own channels
            out = [_back(k, in_shape, region) for k in kids.values()]
        else:
            out = [_back(kids["body"], in_shape, region)]
            out.append(_back(kids["shortcut"], in_shape, region) if "shortcut" in kids else region)
        total = out[0]
        for r in out[1:]:
            total = total.union(r)
        return total
    if isinstance(layer, Graph):
        return _graph_back(layer, in_shape, path, region)
    return _leaf(layer, in_shape, region)


def _graph_back(g: Graph, in_shape: tuple[int, ...], path: list[str], region: Region) -> Region:
    kids = dict(g.named_children())
    shapes: dict[str, tuple[int, ...]] = {g.input_name: in_shape}
    for node in g.nodes:
        child = kids[node.name]
        if isinstance(child, Merge):
            shapes[node.name] = tuple(child.merged_shape([shapes[n] for n in node.inputs]))
        else:
            shapes[node.name] = _out_shape(child, shapes[node.inputs[0]])
    target = path[0] if path else g.output
    regions: dict[str, Region] = {}

    def add(name: str, r: Region) -> None:
        regions[name] = regions[name].union(r) if name in regions else r

    if target == g.input_name:
        return region
    index = next(i for i, n in enumerate(g.nodes) if n.name == target)
    for i in range(index, -1, -1):
        node = g.nodes[i]
        child = kids[node.name]
        if i == index:
            r: Region | None = region
        else:
            r = regions.pop(node.name, None)
        if r is None:
            continue
        if isinstance(child, Merge):
            for n in node.inputs:
                add(n, r)
        else:
            inner = path[1:] if i == index else []
            add(node.inputs[0], _back_from(child, shapes[node.inputs[0]], inner, r))
    return regions.get(g.input_name, _full(in_shape, False))


@dataclass
class ReceptiveField:
    """The input region one unit of a layer sees (see the module docstring).

    ``layer`` names the place, ``unit`` is its (row, column) in the layer's output (None when the output is a
    vector), ``mask`` the input pixels of the geometry, ``box`` their extent clipped to the input as
    (top, bottom, left, right) inclusive, ``extent`` the unclipped box (padding included), ``size`` its
    (height, width), ``support`` the pixels where the gradient of the unit is not zero, ``exact`` False when a
    layer without a sliding window was on the way (see :class:`Region`).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, MaxPool2d, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), MaxPool2d(2), Conv2d(4, 4, 3, rng=rng))
    >>> rf = receptive_field(net, (16, 16, 1), "2", unit=(0, 0))
    >>> rf.box, rf.size, rf.agrees  # 3 + 1 + 2*2 = 8 pixels from the top-left corner
    ((0, 7, 0, 7), (8, 8), True)
    """

    layer: str
    kind: str
    unit: tuple[int, int] | None
    input_shape: tuple[int, ...]
    mask: np.ndarray
    extent: tuple[int, int, int, int]
    support: np.ndarray = field(repr=False)
    exact: bool = True

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The geometry's pixels' bounding box (top, bottom, left, right), inclusive, inside the input."""
        return _bbox(self.mask)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the unclipped extent: the receptive field's size as the books count it."""
        t, b, l, r = self.extent
        return (b - t + 1, r - l + 1)

    @property
    def agrees(self) -> bool:
        """The gradient's support lies inside the geometry's pixels and has the same bounding box."""
        return bool(not (self.support & ~self.mask).any()) and _bbox(self.support) == _bbox(self.mask)

    @property
    def equal(self) -> bool:
        """The gradient's support is exactly the geometry's pixels."""
        return bool(np.array_equal(self.support, self.mask))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return (-1, -1, -1, -1)
    return (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))


def _trace_row(net: Layer, input_shape: tuple[int, ...], place: Place) -> TraceRow:
    rows: list[TraceRow] = []
    net.trace(Trace(input_shape), "", rows)
    for r in rows:
        if r.name == place.name:
            return r
    raise LayerError(f"layer {place.name!r} has no row in the network's trace")  # pragma: no cover - places follow the trace


def geometry(
    net: Layer, input_shape: Sequence[int], layer: str | int, unit: tuple[int, int] | None = None
) -> tuple[Place, TraceRow, tuple[int, int] | None, Region]:
    """The place, its trace row, the unit (checked; default the centre) and the input :class:`Region` the unit
    depends on by the geometry alone (no forward pass).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Sequential
    >>> net = Sequential(Conv2d(1, 1, 3, dilation=2, rng=np.random.default_rng(0)))
    >>> _, _, unit, region = geometry(net, (5, 5, 1), "0")
    >>> unit, region.box, int(region.mask.sum())  # a dilated 3 x 3 kernel: 9 pixels spread over 5 x 5
    ((0, 0), (0, 4, 0, 4), 9)
    """
    shape = tuple(int(v) for v in input_shape)
    if not _spatial(shape):
        raise ShapeError(f"a receptive field needs an H x W x C input, got input shape {shape}")
    place = find_place(net, layer)
    row = _trace_row(net, shape, place)
    out = tuple(int(v) for v in row.info.out_shape)
    if _spatial(out):
        h, w = out[0], out[1]
        if unit is None:
            unit = ((h - 1) // 2, (w - 1) // 2)
        i, j = (int(v) for v in unit)
        if not (0 <= i < h and 0 <= j < w):
            raise ShapeError(f"unit ({i}, {j}) is outside layer {place.name}'s {h} x {w} output")
        unit = (i, j)
        mask = np.zeros((h, w), dtype=bool)
        mask[i, j] = True
        start = Region(mask, (i, i, j, j))
    else:
        unit = None
        start = Region(np.array(True), None)
    region = _back_from(net, shape, place.path, start)
    return place, row, unit, region


def gradient_support(net: Layer, input_shape: Sequence[int], layer: str | int, unit: tuple[int, int] | None,
                     samples: int = 16, seed: int = 0) -> np.ndarray:
    """The input pixels (H, W) where the gradient of ``unit`` of ``layer`` (random weights of its channels) is
    not zero for at least one of ``samples`` random inputs; through the network's own backward pass (a layer
    used at several places receives the unit's gradient at each of them).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Sequential
    >>> net = Sequential(Conv2d(1, 1, 3, padding=1, rng=np.random.default_rng(0)))
    >>> gradient_support(net, (4, 4, 1), "0", (0, 0)).astype(int)  # a 3 x 3 kernel at the padded corner
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    """
    shape = tuple(int(v) for v in input_shape)
    place = find_place(net, layer)
    row = _trace_row(net, shape, place)
    out = tuple(int(v) for v in row.info.out_shape)
    rng = np.random.default_rng(seed)
    dtype = net.dtype or np.float32
    x = rng.standard_normal((samples, *shape)).astype(dtype)
    d = np.zeros((samples, *out), dtype=dtype)
    if _spatial(out):
        if unit is None:
            raise ShapeError(f"layer {place.name} has a spatial output {out}: give the unit (row, column)")
        d[:, unit[0], unit[1], :] = rng.standard_normal((samples, out[2]))
    else:
        d[...] = rng.standard_normal(d.shape)
    with input_gradients(net):
        y = net.forward(x, train=False, grad=True)
        if place.path:
            with inject_gradient(place, d):
                dx = net.backward(np.zeros_like(y))
        else:
            dx = net.backward(d)
    if dx is None:  # pragma: no cover - input_gradients makes every layer compute it
        raise LayerError("the network does not compute the gradient of its input")
    return np.asarray(np.asarray(dx) != 0, dtype=bool).any(axis=(0, 3)).astype(bool)


def receptive_field(
    net: Layer,
    input_shape: Sequence[int],
    layer: str | int,
    unit: tuple[int, int] | None = None,
    image: np.ndarray | None = None,
    out: str | Path | None = None,
    *,
    samples: int = 16,
) -> ReceptiveField:
    """The input region one unit of ``layer`` sees, from the geometry and checked against the gradient's support.

    ``layer`` is a place's dotted name or index (:func:`cnnkit.inspect.layers.find_place`), ``unit`` its (row,
    column) in that layer's output (default the centre). With ``out`` the region is drawn as a rectangle
    (and the gradient's support shaded) on ``image`` (H, W, C; uint8 pixels or a preprocessed array) or on a
    blank canvas, and written there as PNG. See the module docstring for how both are computed.

    Examples
    --------
    Stride, padding and dilation: 3x3 stride 2 padding 1, then 3x3 dilation 2.

    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 2, 3, stride=2, padding=1, rng=rng), Conv2d(2, 2, 3, dilation=2, rng=rng))
    >>> rf = receptive_field(net, (16, 16, 1), 1, unit=(0, 0))
    >>> rf.extent, rf.size, rf.box   # 3 + (5 - 1) * 2 = 11 pixels, the first one in the padding
    ((-1, 9, -1, 9), (11, 11), (0, 9, 0, 9))
    >>> rf.agrees, rf.equal
    (True, True)
    """
    shape = tuple(int(v) for v in input_shape)
    place, row, unit, region = geometry(net, shape, layer, unit)
    if region.box is None:  # pragma: no cover - a spatial input always has a box
        region.box = (0, shape[0] - 1, 0, shape[1] - 1)
    if not region.mask.any():
        extent = (0, -1, 0, -1)
    else:
        extent = region.box if region.box is not None else (0, shape[0] - 1, 0, shape[1] - 1)
    support = gradient_support(net, shape, layer, unit, samples)
    rf = ReceptiveField(place.name or place.kind, row.kind, unit, shape, region.mask, extent, support, region.exact)
    if out is not None:
        _draw(rf, image, out)
    return rf


def _draw(rf: ReceptiveField, image: np.ndarray | None, out: str | Path) -> None:
    from cnnkit.inspect._draw import display_image, pyplot, save

    plt = pyplot()
    from matplotlib.patches import Rectangle

    h, w = rf.input_shape[0], rf.input_shape[1]
    if image is not None:
        img = np.asarray(image)
        if img.ndim == 4 and img.shape[0] == 1:
            img = img[0]
        if img.shape[:2] != (h, w):
            raise ShapeError(f"the image is {img.shape[0]} x {img.shape[1]}; the network's input is {h} x {w}")
        shown, cmap = display_image(img)
    else:
        shown, cmap = np.ones((h, w)), "gray"
    size = 6.0
    fig, ax = plt.subplots(figsize=(size, size * h / w + 0.8))
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    overlay = np.zeros((h, w, 4))
    overlay[rf.support] = (0.1, 0.5, 1.0, 0.35)
    overlay[rf.mask & ~rf.support] = (1.0, 0.6, 0.0, 0.35)
    ax.imshow(overlay, interpolation="nearest")
    t, b, l, r = rf.box
    if t >= 0:
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l + 1, b - t + 1, fill=False, edgecolor="red", linewidth=2))
    unit = "" if rf.unit is None else f" unit {rf.unit}"
    check = "gradient support agrees" if rf.agrees else "gradient support DIFFERS"
    ax.set_title(f"layer {rf.layer} ({rf.kind}){unit}: receptive field {rf.size[0]}x{rf.size[1]}\n"
                 f"rows {t}-{b}, columns {l}-{r} of {h}x{w}; {check} (blue: gradient != 0)", fontsize=9)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.tight_layout()
    save(fig, out)
