"""Pictures of what a network has learned and computes: its filters, its feature maps, its saliency.

Each function works on any network built from cnnkit layers and returns arrays; given ``out`` it also writes a
labelled PNG (atomically; matplotlib, the ``plot`` extra, is needed only then).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import ShapeError
from cnnkit.inspect.layers import LayerError, capture_outputs, find_place, input_gradients, places
from cnnkit.nn.base import Layer
from cnnkit.nn.conv import Conv2d

MAX_CHANNELS = 32
"""Feature maps shown per layer at most (the first ones)."""
MAX_FILTER_INPUTS = 32
"""Input channels shown at most in a grid of a deeper layer's filters (one row each)."""
MAX_FILTER_OUTPUTS = 64
"""Output channels shown at most in a grid of filters."""


def conv_layer(net: Layer, layer: str | int | None) -> tuple[str, Conv2d, bool]:
    """(place name, the convolution, whether it is the network's first convolution) of ``layer`` (None: the first
    convolution); LayerError when there is none or ``layer`` is something else.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> name, conv, first = conv_layer(Sequential(Conv2d(1, 2, 3, rng=rng), ReLU(), Conv2d(2, 2, 3, rng=rng)), "2")
    >>> name, conv.in_channels, first
    ('2', 2, False)
    """
    convs = [p for p in places(net) if isinstance(p.obj, Conv2d)]
    if not convs:
        raise LayerError("the network has no convolution (Conv2d), so it has no filters to show")
    if layer is None:
        p = convs[0]
    else:
        p = find_place(net, layer)
        if not isinstance(p.obj, Conv2d):
            raise LayerError(f"layer {p.name} is a {p.kind}, not a convolution; the convolutions are "
                             f"{', '.join(c.name for c in convs[:20])}")
    conv = p.obj
    assert isinstance(conv, Conv2d)
    return p.name or p.kind, conv, conv is convs[0].obj


def filters(net: Layer, layer: str | int | None = None, out: str | Path | None = None) -> np.ndarray:
    """A convolution's filters as tiles, each min-max scaled to [0, 1] on its own.

    ``layer`` None takes the network's first convolution: one tile per output channel, (C_out, kh, kw, 3) in
    colour when it reads 3 channels, else (C_in, C_out, kh, kw). Any other convolution (a dotted name or an
    index, see :func:`cnnkit.inspect.layers.find_place`) gives one grey tile per (input channel, output
    channel) pair, (C_in / groups, C_out, kh, kw), drawn one row per input channel (at most
    ``MAX_FILTER_INPUTS`` rows of ``MAX_FILTER_OUTPUTS`` tiles; the title says when some are left out).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(3, 8, 5, rng=rng), ReLU(), Conv2d(8, 4, 3, rng=rng))
    >>> first = filters(net)
    >>> first.shape, float(first.min()), float(first.max())  # 8 colour tiles of 5 x 5
    ((8, 5, 5, 3), 0.0, 1.0)
    >>> filters(net, layer="2").shape  # 8 x 4 grey tiles of 3 x 3
    (8, 4, 3, 3)
    >>> filters(net, layer=1)
    Traceback (most recent call last):
    ...
    cnnkit.inspect.layers.LayerError: layer 1 is a ReLU, not a convolution; the convolutions are 0, 2
    """
    name, conv, first = conv_layer(net, layer)
    w = np.asarray(conv.params["weight"], dtype=np.float64)  # (kh, kw, C_in / groups, C_out)
    cin = w.shape[2]
    rgb = first and cin == 3
    if rgb:
        tiles = w.transpose(3, 0, 1, 2)  # (C_out, kh, kw, 3)
        scaled = _scale_tiles(tiles, (1, 2, 3))
    else:
        tiles = w.transpose(2, 3, 0, 1)  # (C_in, C_out, kh, kw)
        scaled = _scale_tiles(tiles, (2, 3))
    if out is not None:
        from cnnkit.inspect._draw import save

        save(_filters_figure(scaled, rgb, first and cin == 1, name, w.shape, conv.groups), out)
    return scaled


def filters_figure(net: Layer, layer: str | int | None = None) -> Any:
    """The matplotlib figure :func:`filters` writes (for embedding in a page).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.inspect._draw import png_bytes
    >>> from cnnkit.nn import Conv2d
    >>> png_bytes(filters_figure(Conv2d(1, 4, 3, rng=np.random.default_rng(0))))[:4]
    b'\\x89PNG'
    """
    name, conv, first = conv_layer(net, layer)
    scaled = filters(net, layer)
    w = conv.params["weight"]
    return _filters_figure(scaled, first and w.shape[2] == 3, first and w.shape[2] == 1, name, tuple(w.shape), conv.groups)


def _scale_tiles(tiles: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    from cnnkit.inspect._draw import unit_scale

    return unit_scale(tiles, axes)


def _filters_figure(scaled: np.ndarray, rgb: bool, single: bool, name: str, shape: tuple[int, ...], groups: int) -> Any:
    from cnnkit.inspect._draw import mosaic, pyplot

    plt = pyplot()
    kh, kw, cin, cout = shape
    shape_text = f"{kh}x{kw}x{cin * groups}x{cout}" + (f", {groups} groups" if groups > 1 else "")
    if rgb or single:
        tiles = scaled if rgb else scaled[0]
        n = min(len(tiles), MAX_FILTER_OUTPUTS * MAX_FILTER_INPUTS)
        cols = int(np.ceil(np.sqrt(n)))
        image = mosaic(tiles[:n], cols)
        kind = "RGB" if rgb else "grey"
        title = f"layer {name} (Conv2d) filters {shape_text}: {cout} {kind} tiles"
        if n < len(tiles):
            title += f" (first {n} shown)"
        rows_label = None
    else:
        ni, no = min(cin, MAX_FILTER_INPUTS), min(cout, MAX_FILTER_OUTPUTS)
        image = mosaic(scaled[:ni, :no].reshape(ni * no, kh, kw), no)
        title = f"layer {name} (Conv2d) filters {shape_text}: row = input channel, column = output channel"
        if (ni, no) != (cin, cout):
            title += f"\n(first {ni} of {cin} input and {no} of {cout} output channels shown)"
        rows_label = ni
    height, width = image.shape[:2]
    fig_w = float(np.clip(width / 12, 4, 16))
    fig, ax = plt.subplots(figsize=(fig_w, float(np.clip(fig_w * height / width, 2, 30)) + 1.0))
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    im = ax.imshow(image, cmap=None if rgb else cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if rows_label:
        step = kh + 1
        ax.set_yticks([i * step + (kh - 1) / 2 for i in range(rows_label)], [str(i) for i in range(rows_label)], fontsize=6)
        ax.set_ylabel("input channel")
        ax.set_xlabel("output channel")
    else:
        ax.set_yticks([])
    ax.set_title(title + "\neach tile min-max scaled on its own", fontsize=9)
    if not rgb:
        bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, ticks=[0, 1], shrink=min(1.0, 0.3 + height / width))
        bar.ax.set_yticklabels(["tile min", "tile max"], fontsize=7)
    fig.tight_layout()
    return fig


def _batch(image: Any, net: Layer) -> np.ndarray:
    """One preprocessed example as a batch of one, in the network's dtype."""
    x = np.asarray(image)
    if x.ndim in (1, 3):
        x = x[None]
    if x.shape[0] != 1:
        raise ShapeError(f"expected one preprocessed image (H, W, C) or (1, H, W, C), got shape {x.shape}")
    return x.astype(net.dtype or np.float32, copy=False)


def features(net: Layer, image: Any, out: str | Path | None = None) -> dict[str, np.ndarray]:
    """Every layer's output for one preprocessed image (H, W, C), by place name (batch axis removed).

    With ``out``, one tall figure: the input, then a row per layer with its first ``MAX_CHANNELS`` feature maps
    (one colour scale per layer, so a map of zeros stays dark), and a bar chart of the values where the output
    is a vector (1 x 1 maps included).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(36, 3, rng=rng))
    >>> maps = features(net, rng.standard_normal((8, 8, 1)))
    >>> {name: a.shape for name, a in maps.items()}
    {'0': (6, 6, 4), '1': (6, 6, 4), '2': (3, 3, 4), '3': (36,), '4': (3,)}
    """
    x = _batch(image, net)
    _, outs = capture_outputs(net, x)
    maps = {name: np.asarray(a)[0] for name, a in outs.items()}
    if out is not None:
        kinds = {p.name or p.kind: p.kind for p in places(net)}
        _draw_features(np.asarray(x[0]), maps, kinds, out)
    return maps


def _draw_features(x: np.ndarray, maps: dict[str, np.ndarray], kinds: dict[str, str], out: str | Path) -> None:
    from cnnkit.inspect._draw import display_image, mosaic, pyplot, save

    plt = pyplot()
    width = 10.0
    rows: list[tuple[str, Any, str]] = []  # (title, data, how)
    if x.ndim == 3:
        rows.append((f"input {'x'.join(map(str, x.shape))} (preprocessed)", x, "image"))
    for name, a in maps.items():
        shape = "x".join(map(str, a.shape))
        title = f"{name} {kinds.get(name, '')} {shape}"
        if a.ndim == 3 and a.shape[0] * a.shape[1] > 1:
            c = a.shape[2]
            n = min(c, MAX_CHANNELS)
            tiles = np.moveaxis(a[:, :, :n], 2, 0).astype(np.float64)
            title += f" (first {n} of {c} channels)" if n < c else f" ({c} channels)"
            rows.append((title, mosaic(tiles, min(n, 16)), "maps"))
        else:
            rows.append((title + f" ({a.size} values)", a.reshape(-1).astype(np.float64), "bars"))
    heights = []
    for _, data, how in rows:
        if how == "bars":
            heights.append(1.4)
        else:
            h, w = data.shape[:2]
            heights.append(float(np.clip(width * 0.8 * h / w, 0.9, 4.0)) + 0.4)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, sum(heights) + 0.6), height_ratios=heights, squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    for ax, (title, data, how) in zip(axes[:, 0], rows):
        if how == "image":
            shown, gray = display_image(data)
            ax.imshow(shown, cmap=gray, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        elif how == "maps":
            finite = data[np.isfinite(data)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
        else:
            if data.size <= 64:
                ax.bar(np.arange(data.size), data, width=0.9, color="tab:blue")
            else:  # one line per value: a bar chart of hundreds of patches is slow to draw
                ax.vlines(np.arange(data.size), 0, data, color="tab:blue", linewidth=max(0.4, 400 / data.size))
                ax.axhline(0, color="black", linewidth=0.5)
            ax.set_xlim(-0.5, data.size - 0.5)
            ax.tick_params(labelsize=6)
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle(f"feature maps of one image: {len(maps)} layers", fontsize=10)
    fig.tight_layout()
    save(fig, out)


@dataclass
class Saliency:
    """The gradient of one class score with respect to the input, and the two pictures made from it.

    ``gradient`` (H, W, C); ``saliency`` (H, W) = max over channels of |gradient| (Simonyan et al.'s map);
    ``grad_x_input`` (H, W) = sum over channels of gradient * input; ``class_index`` the class, ``scores`` (K,)
    the network's class scores for the image.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> net = Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    >>> s = saliency(net, np.ones((2, 2, 1)), class_index=1)
    >>> s.gradient.shape, s.saliency.shape, s.class_index
    ((2, 2, 1), (2, 2), 1)
    """

    gradient: np.ndarray
    saliency: np.ndarray
    grad_x_input: np.ndarray
    class_index: int
    scores: np.ndarray


def saliency(
    net: Layer, image: Any, class_index: int | None = None, out: str | Path | None = None, classes: list[str] | None = None
) -> Saliency:
    """The gradient of the score of ``class_index`` (default the predicted class) with respect to one
    preprocessed image (H, W, C), through cnnkit's explicit backward pass in evaluation mode (``grad=True``).

    The score is the network's output before any softmax. The parameters' gradients are overwritten, as by any
    backward pass. With ``out``: the image, |gradient| (max over channels) and gradient x input, side by side.

    Examples
    --------
    A linear model's gradient is its weight row: here the score of class 0 is 1*x_0 + 2*x_1 + 3*x_2 + 4*x_3.

    >>> import numpy as np
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> net = Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    >>> net[1].params["weight"][...] = [[1, 0], [2, 0], [3, 0], [4, 0]]
    >>> s = saliency(net, np.ones((2, 2, 1), np.float32), class_index=0)
    >>> s.gradient[:, :, 0]
    array([[1., 2.],
           [3., 4.]], dtype=float32)
    >>> s.grad_x_input.tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    x = _batch(image, net)
    with input_gradients(net):
        y = net.forward(x, train=False, grad=True)
        scores = np.asarray(y).reshape(1, -1)[0]
        k = int(np.argmax(scores)) if class_index is None else int(class_index)
        if not 0 <= k < scores.size:
            raise ShapeError(f"class {k} does not exist: the network gives {scores.size} scores")
        dy = np.zeros_like(y)
        dy.reshape(1, -1)[0, k] = 1
        dx = net.backward(dy)
    if dx is None:  # pragma: no cover - input_gradients makes every layer compute it
        raise LayerError("the network does not compute the gradient of its input")
    g = np.asarray(dx)[0]
    if g.ndim == 3:
        sal = np.abs(g).max(axis=2)
        gxi = (g * np.asarray(x)[0]).sum(axis=2)
    else:
        sal = np.abs(g)
        gxi = g * np.asarray(x)[0]
    result = Saliency(g, sal, gxi, k, scores.copy())
    if out is not None:
        _draw_saliency(np.asarray(x[0]), result, classes, out)
    return result


def _draw_saliency(x: np.ndarray, s: Saliency, classes: list[str] | None, out: str | Path) -> None:
    from cnnkit.inspect._draw import display_image, pyplot, save

    plt = pyplot()
    if x.ndim != 3:
        raise ShapeError(f"a saliency picture needs an H x W x C input, got shape {x.shape}")
    name = classes[s.class_index] if classes and s.class_index < len(classes) else str(s.class_index)
    predicted = int(np.argmax(s.scores))
    pname = classes[predicted] if classes and predicted < len(classes) else str(predicted)
    e = np.exp(s.scores - s.scores.max())
    prob = float(e[s.class_index] / e.sum())
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    shown, gray = display_image(x)
    axes[0].imshow(shown, cmap=gray, interpolation="nearest")
    axes[0].set_title("input (preprocessed)", fontsize=9)
    im = axes[1].imshow(s.saliency, cmap="hot", interpolation="nearest")
    axes[1].set_title("|d score / d input|, max over channels", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    m = float(np.abs(s.grad_x_input).max()) or 1.0
    im = axes[2].imshow(s.grad_x_input, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
    axes[2].set_title("gradient x input, summed over channels", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"saliency of class {name!r} (score {s.scores[s.class_index]:.3g}, probability {prob:.3f}); "
                 f"predicted {pname!r}", fontsize=10)
    fig.tight_layout()
    save(fig, out)
