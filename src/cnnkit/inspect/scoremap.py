"""Score maps: a classifier slid over an image larger than its input, at its total stride (§15.5.8).

The model's fully connected layers become convolutions (:func:`cnnkit.models.fcn.to_fully_convolutional`), so
one forward pass over an H x W image gives an h x w grid of class scores: cell (a, b) scores the window of the
model's input size whose top-left corner is at (a * stride, b * stride). For a network without padding that
is exactly the original network run on that crop; with padding the two differ near the crop's border (the
converted network pads only the border of the whole image, and sees real pixels elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import MismatchError
from cnnkit.inspect.evaluation import class_names, load, preprocess
from cnnkit.models.file import ModelFile


@dataclass
class ScoreMap:
    """The scores (h, w, K) of every window, the model's ``window`` (H, W) input size, the ``stride`` between
    windows, the class names and the image (uint8, as decoded) they were computed on.

    Examples
    --------
    >>> import numpy as np
    >>> m = ScoreMap(np.zeros((2, 3, 2)), (4, 4), 2, ["a", "b"], np.zeros((6, 8, 1), np.uint8))
    >>> m.predicted.shape, m.to_json()["map_shape"]
    ((2, 3), [2, 3])
    """

    scores: np.ndarray
    window: tuple[int, int]
    stride: int
    classes: list[str]
    image: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        """(h, w) index of the best class of every window."""
        return np.asarray(self.scores).argmax(axis=-1)

    @property
    def probabilities(self) -> np.ndarray:
        """(h, w, K) softmax of every window's scores."""
        s = np.asarray(self.scores, dtype=np.float64)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form: the h x w grid of predicted class names, their scores and probabilities.

        Examples
        --------
        >>> import numpy as np
        >>> m = ScoreMap(np.array([[[1.0, 3.0]]]), (4, 4), 4, ["a", "b"], np.zeros((4, 4, 1), np.uint8))
        >>> m.to_json()["classes"], m.to_json()["scores"]
        ([['b']], [[3.0]])
        """
        pred = self.predicted
        s = np.asarray(self.scores, dtype=np.float64)
        p = self.probabilities
        h, w = pred.shape
        return {
            "image_shape": [int(v) for v in self.image.shape],
            "window": [int(self.window[0]), int(self.window[1])],
            "stride": int(self.stride),
            "map_shape": [h, w],
            "classes": [[self.classes[int(pred[a, b])] for b in range(w)] for a in range(h)],
            "scores": [[float(s[a, b, pred[a, b]]) for b in range(w)] for a in range(h)],
            "probabilities": [[float(p[a, b, pred[a, b]]) for b in range(w)] for a in range(h)],
        }


def _decode(model: ModelFile, image: Any) -> np.ndarray:
    from cnnkit.data.images import color_for, decode_image

    shape = model.input_shape
    if shape is None or len(shape) != 3:
        raise MismatchError("the model file does not record an image input shape (H, W, C), so it cannot slide over an image")
    if isinstance(image, (str, Path)):
        return decode_image(image, color_for(shape[2]))
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    return img


def score_maps(model: str | Path | ModelFile, image: Any) -> ScoreMap:
    """The score map of ``model`` (a model file, run directory or ModelFile with its input shape) over
    ``image``: an image file (decoded in the model's colour, not resized) or uint8 pixels (H, W, C), at least
    the model's input size, preprocessed as the model's training data were (see
    :func:`cnnkit.inspect.evaluation.preprocess` for a mean image).

    Examples
    --------
    A network for 8 x 8 images over a 16 x 12 image: (16 - 8) / 2 + 1 = 5 by (12 - 8) / 2 + 1 = 3 windows.

    >>> import numpy as np
    >>> from cnnkit.models import build
    >>> net = build("conv3x3x1x4,relu,pool2,fc8,relu,fc3", (8, 8, 1), np.random.default_rng(0))
    >>> m = score_maps(ModelFile(net, (8, 8, 1), ["a", "b", "c"]), np.zeros((16, 12, 1), np.uint8))
    >>> m.scores.shape, m.stride, m.window
    ((5, 3, 3), 2, (8, 8))
    """
    from cnnkit.models.fcn import score_map, to_fully_convolutional
    from cnnkit.nn.base import Trace, TraceRow

    mf = load(model)
    img = _decode(mf, image)
    shape = mf.input_shape
    assert shape is not None  # _decode checked it
    if img.ndim != 3 or img.shape[2] != shape[2]:
        raise MismatchError(f"the model takes {shape[2]}-channel images; got an image of shape {img.shape}")
    if img.shape[0] < shape[0] or img.shape[1] < shape[1]:
        raise MismatchError(f"the image is {img.shape[0]}x{img.shape[1]}, smaller than the model's {shape[0]}x{shape[1]} input")
    fcn = to_fully_convolutional(mf.network, shape)
    rows: list[TraceRow] = []
    stride = fcn.trace(Trace(tuple(shape)), "", rows).jump
    x = preprocess(mf, img[None])[0]
    scores = np.asarray(score_map(fcn, x))
    return ScoreMap(scores, (int(shape[0]), int(shape[1])), int(stride), class_names(mf), img)


def score_map_json(model: str | Path | ModelFile, image: Any) -> dict[str, Any]:
    """:meth:`ScoreMap.to_json` of :func:`score_maps`: the grid of predicted class names and their scores.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import build
    >>> net = build("conv3x3x1x2,pool2,fc2", (6, 6, 1), np.random.default_rng(0))
    >>> d = score_map_json(ModelFile(net, (6, 6, 1), ["no", "yes"]), np.zeros((8, 8, 1), np.uint8))
    >>> d["map_shape"], d["stride"], len(d["classes"][0])
    ([2, 2], 2, 2)
    """
    return score_maps(model, image).to_json()


def score_map_picture(model: str | Path | ModelFile, image: Any, out: str | Path | None = None) -> np.ndarray:
    """The (h, w, K) scores of :func:`score_maps`; with ``out`` a picture: the image with the window grid,
    the map of the best class of every window (class names in the cells, a legend) and a probability heat map
    per class (the first 20 classes).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import build
    >>> net = build("conv3x3x1x2,pool2,fc2", (6, 6, 1), np.random.default_rng(0))
    >>> score_map_picture(ModelFile(net, (6, 6, 1)), np.zeros((10, 6, 1), np.uint8)).shape
    (3, 1, 2)
    """
    m = score_maps(model, image)
    if out is not None:
        draw_score_map(m, out)
    return m.scores


def draw_score_map(m: ScoreMap, out: str | Path) -> None:
    """Write the picture of a :class:`ScoreMap` to ``out`` (PNG).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cnnkit.inspect._draw import pyplot
    >>> _ = pyplot()  # needs matplotlib
    >>> m = ScoreMap(np.random.default_rng(0).standard_normal((2, 2, 3)), (4, 4), 2, ["a", "b", "c"], np.zeros((6, 6, 1), np.uint8))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     draw_score_map(m, Path(d) / "m.png")
    ...     (Path(d) / "m.png").stat().st_size > 0
    True
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    from cnnkit.inspect._draw import display_image, pyplot, save

    plt = pyplot()
    h, w, k = m.scores.shape
    shown_k = min(k, 20)
    heat_cols = min(shown_k, 5)
    heat_rows = -(-shown_k // heat_cols)
    fig = plt.figure(figsize=(4.2 * 2 + 1.8, 4.4 + 2.0 * heat_rows), layout="constrained")
    grid = fig.add_gridspec(1 + heat_rows, 2 * heat_cols, height_ratios=[2.2] + [1.0] * heat_rows)
    ax_img = fig.add_subplot(grid[0, :heat_cols])
    ax_map = fig.add_subplot(grid[0, heat_cols:])
    shown, gray = display_image(m.image)
    ax_img.imshow(shown, cmap=gray, interpolation="nearest")
    wh, ww = m.window
    for a, b in ((0, 0), (h - 1, w - 1)):
        ax_img.add_patch(Rectangle((b * m.stride - 0.5, a * m.stride - 0.5), ww, wh, fill=False, edgecolor="red", linewidth=1.5))
    ax_img.set_title(f"image {m.image.shape[0]}x{m.image.shape[1]}: windows {wh}x{ww} every {m.stride} pixels\n"
                     f"(first and last window in red)", fontsize=9)
    pred = m.predicted
    base = plt.get_cmap("tab20" if k > 10 else "tab10")
    cmap = ListedColormap([base(i % base.N) for i in range(k)])
    ax_map.imshow(pred, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
    prob = m.probabilities
    if h * w <= 400:
        for a in range(h):
            for b in range(w):
                c = int(pred[a, b])
                ax_map.text(b, a, f"{m.classes[c][:6]}\n{prob[a, b, c]:.2f}", ha="center", va="center", fontsize=7)
    present = sorted({int(v) for v in pred.ravel()})
    ax_map.legend(handles=[Patch(color=cmap(c), label=m.classes[c][:20]) for c in present[:20]], fontsize=7,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), title="best class", title_fontsize=7)
    ax_map.set_title(f"best class of each window ({h}x{w} map), with its probability", fontsize=9)
    for c in range(shown_k):
        ax = fig.add_subplot(grid[1 + c // heat_cols, 2 * (c % heat_cols) : 2 * (c % heat_cols) + 2])
        im = ax.imshow(prob[:, :, c], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"p({m.classes[c][:14]})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=fig.axes[2:], fraction=0.02, pad=0.01, label="probability")
    title = "score map: the classifier slid over the image" + (f" (first {shown_k} of {k} classes)" if shown_k < k else "")
    fig.suptitle(title, fontsize=10)
    save(fig, out)
