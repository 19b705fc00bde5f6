"""Where a classifier goes wrong: its confusion matrix and the test images it gets most wrong.

Both take a model file (or a run directory) and a dataset as ``cnnkit eval`` does (the registered dataset the
file names, or ``data``: a dataset name or an image folder), or a network with preprocessed arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import MismatchError, ShapeError
from cnnkit.models.file import ModelFile
from cnnkit.nn.base import Layer

ModelLike = str | Path | ModelFile | Layer


def model_path(path: str | Path) -> Path:
    """A model file, or a run directory's ``model.npz``; FileNotFoundError naming what is missing.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     model_path(d)
    Traceback (most recent call last):
    ...
    FileNotFoundError: no model file at .../model.npz
    """
    p = Path(path)
    if p.is_dir():
        p = p / "model.npz"
    if not p.is_file():
        raise FileNotFoundError(f"no model file at {p}" if not p.exists() else f"{p} is not a regular file")
    return p


def load(model: str | Path | ModelFile) -> ModelFile:
    """The :class:`~cnnkit.models.file.ModelFile` of a path (a model file or a run directory), or ``model`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> m = ModelFile(Linear(2, 2, rng=np.random.default_rng(0)), (2,), ["a", "b"])
    >>> load(m) is m
    True
    """
    if isinstance(model, ModelFile):
        return model
    from cnnkit.models.file import load_model

    return load_model(model_path(model))


def class_names(model: ModelFile) -> list[str]:
    """The model's class names, or "0", "1", ... when the file has none.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> class_names(ModelFile(Linear(2, 3, rng=np.random.default_rng(0)), (2,)))
    ['0', '1', '2']
    """
    if model.classes:
        return list(model.classes)
    if model.input_shape is None:
        raise MismatchError("the model file records neither its classes nor its input shape")
    k = int(np.prod(model.network.output_shape(model.input_shape)))
    return [str(i) for i in range(k)]


def preprocess(model: ModelFile, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) as the model's inputs: its preprocessing, in its dtype.

    A ``mean_image`` preprocessing fitted on images of another size (a score map over a larger image) is
    applied with the mean image repeated over the image, so that every window placed at a multiple of the
    training size sees exactly the training preprocessing.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> m = ModelFile(Linear(1, 1, rng=np.random.default_rng(0)), (1, 1, 1), None,
    ...               {"mode": "mean_image", "mean": np.array([[[10.0]], [[20.0]]])})  # a 2 x 1 mean image
    >>> preprocess(m, np.full((1, 4, 1, 1), 30, np.uint8))[0, :, 0, 0]
    array([20., 10., 20., 10.], dtype=float32)
    """
    from cnnkit.data import Preprocessor

    dtype = model.network.dtype or np.float32
    images = np.asarray(images)
    if images.ndim != 4:
        raise ShapeError(f"expected images (N, H, W, C), got shape {images.shape}")
    if not model.preprocess:
        return images.astype(dtype)
    pre = Preprocessor.from_dict(model.preprocess)
    if pre.mode == "mean_image" and pre.mean is not None and pre.mean.shape != images.shape[1:]:
        h, w = images.shape[1:3]
        mh, mw, mc = pre.mean.shape
        if images.shape[3] != mc:
            raise ShapeError(f"the model's mean image has {mc} channels; the images have {images.shape[3]}")
        reps = (-(-h // mh), -(-w // mw), 1)
        pre.mean = np.tile(pre.mean, reps)[:h, :w]
    return np.asarray(pre.transform(images, dtype=dtype))


@dataclass
class Split:
    """A dataset split as a model sees it: raw uint8 ``images`` (N, H, W, C), ``labels`` numbered by the model's
    ``classes`` and a ``name`` such as ``"mnist/test"``.

    Examples
    --------
    >>> s = Split(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1]), ["a", "b"], "toy")
    >>> len(s.labels), s.classes
    (2, ['a', 'b'])
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str


def load_split(model: ModelFile, data: str | None = None, split: str = "test", data_dir: str | None = None,
               limit: int | None = None, where: Any = "the model file") -> Split:
    """The split a model is evaluated on, as ``cnnkit eval`` finds it: ``data`` (a registered dataset or an
    image folder, whose ``split`` sub-folder is used when it has one), else the registered dataset the model
    file names. Images are decoded in the model's colour and size; labels are matched by class name.
    ``limit`` keeps the first images only.

    Examples
    --------
    An image folder of two classes (PNG files written with Pillow, the ``images`` extra):

    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> m = ModelFile(Sequential(Flatten(), Linear(16, 2, rng=np.random.default_rng(0))), (4, 4, 1), ["dark", "light"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for cls, value in (("dark", 40), ("light", 200)):
    ...         (Path(d) / "test" / cls).mkdir(parents=True)
    ...         Image.fromarray(np.full((4, 4), value, np.uint8)).save(Path(d) / "test" / cls / "0.png")
    ...     s = load_split(m, d)
    >>> s.images.shape, s.labels.tolist(), s.classes
    ((2, 4, 4, 1), [0, 1], ['dark', 'light'])
    """
    from cnnkit import data as cdata
    from cnnkit.data.images import color_for
    from cnnkit.train.run import _map_classes, _model_data

    shape = model.input_shape
    classes = class_names(model)
    name = _model_data(model.meta, data, where)
    folder = Path(name)
    if folder.is_dir():
        from cnnkit.data.folder import ImageFolder, find_images

        root = folder / split if (folder / split).is_dir() else folder
        unknown = sorted(set(find_images(root)[0]) - set(classes))
        if unknown:
            raise MismatchError(f"{root} has classes the model does not know: {unknown[:10]} (its classes: {classes[:10]})")
        color = color_for(shape[-1]) if shape else "rgb"
        size = (shape[0], shape[1]) if shape and len(shape) == 3 else None
        images = ImageFolder(root, color=color, size=size, classes=classes)
        n = len(images) if limit is None else min(limit, len(images))
        idx = np.arange(n)
        out = Split(images.images(idx), images.labels[idx], classes, str(root))
    else:
        ds = cdata.load_dataset(name, split, data_dir)
        if list(ds.classes) != classes:
            ds = _map_classes(ds, classes, f"{name}/{split}", against="the model")
        n = len(ds) if limit is None else min(limit, len(ds))
        out = Split(ds.images[:n], ds.labels[:n], classes, f"{name}/{split}")
    if shape is not None and tuple(out.images.shape[1:]) != tuple(shape):
        raise MismatchError(f"{out.name} images are {tuple(out.images.shape[1:])}; the model expects {tuple(shape)}")
    return out


def probabilities(net: Layer, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class probabilities (N, K) of a network on preprocessed inputs (evaluation mode, softmax of the scores).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][...] = np.eye(2); net.params["bias"][...] = 0
    >>> probabilities(net, np.array([[0.0, 0.0]], np.float32)).tolist()
    [[0.5, 0.5]]
    """
    from cnnkit.train.fit import predict

    return np.asarray(predict(net, x, batch_size=batch_size), dtype=np.float64)


def _confusion_of(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return m


def confusion(
    model: ModelLike,
    data: Any = None,
    *,
    split: str = "test",
    data_dir: str | None = None,
    classes: list[str] | None = None,
    out: str | Path | None = None,
    batch_size: int = 1000,
) -> np.ndarray:
    """The confusion matrix (K, K): ``m[i, j]`` counts the examples of class i predicted as class j.

    ``model`` a model file or run directory (evaluated with :func:`cnnkit.train.run.evaluate_model_file` on
    ``data``/``split``, as ``cnnkit eval``; a loaded ModelFile the same way), or a network (or ModelFile) with
    ``data`` = (preprocessed inputs, labels) and optional ``classes``. With ``out``: a heat map with the class
    names on the axes, the counts in the cells and the accuracy in the title.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][...] = np.eye(2); net.params["bias"][...] = 0  # predicts the larger coordinate
    >>> confusion(net, (np.array([[1, 0], [0, 1], [1, 0]], np.float32), np.array([0, 1, 1])))
    array([[1, 0],
           [1, 1]])
    """
    name = ""
    if isinstance(model, (str, Path)):
        from cnnkit.train.run import evaluate_model_file

        path = model_path(model)
        metrics = evaluate_model_file(path, data, split, data_dir, batch_size)
        m = np.asarray(metrics["confusion"], dtype=np.int64)
        classes = classes or class_names(load(path))
        name = f"{metrics['data']}/{split}"
    elif isinstance(model, ModelFile) and (data is None or isinstance(data, str)):  # a dataset, as for a path
        s = load_split(model, data, split, data_dir)
        p = probabilities(model.network, preprocess(model, s.images), batch_size)
        m = _confusion_of(s.labels, p.argmax(axis=1), p.shape[1])
        classes, name = classes or s.classes, s.name
    else:
        net = model.network if isinstance(model, ModelFile) else model
        if isinstance(model, ModelFile):
            classes = classes or class_names(model)
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError("confusion of a network needs data = (preprocessed inputs, labels)")
        x, y = np.asarray(data[0]), np.asarray(data[1], dtype=np.int64)
        p = probabilities(net, x, batch_size)
        m = _confusion_of(y, p.argmax(axis=1), p.shape[1])
    if out is not None:
        draw_confusion(m, classes, out, name)
    return m


def draw_confusion(m: np.ndarray, classes: list[str] | None, out: str | Path, name: str = "") -> None:
    """Draw a confusion matrix as a labelled heat map and write it to ``out`` (PNG).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.inspect._draw import pyplot
    >>> _ = pyplot()  # needs matplotlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     draw_confusion(np.array([[5, 1], [0, 4]]), ["cat", "dog"], Path(d) / "c.png")
    ...     (Path(d) / "c.png").stat().st_size > 0
    True
    """
    from cnnkit.inspect._draw import pyplot, save

    fig = confusion_figure(m, classes, name)
    pyplot()
    save(fig, out)


def confusion_figure(m: np.ndarray, classes: list[str] | None, name: str = "") -> Any:
    """The matplotlib figure of :func:`draw_confusion` (for embedding).

    Examples
    --------
    >>> from cnnkit.inspect._draw import png_bytes
    >>> png_bytes(confusion_figure(np.eye(2, dtype=int), ["a", "b"]))[:4]
    b'\\x89PNG'
    """
    from cnnkit.inspect._draw import pyplot

    plt = pyplot()
    m = np.asarray(m)
    k = m.shape[0]
    names = list(classes) if classes and len(classes) == k else [str(i) for i in range(k)]
    n = int(m.sum())
    acc = float(np.trace(m)) / n if n else 0.0
    size = float(np.clip(0.5 * k + 2.5, 4, 14))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="examples")
    ax.set_xticks(range(k), [_short(c) for c in names], rotation=90 if k > 10 or max(map(len, names)) > 4 else 0, fontsize=8)
    ax.set_yticks(range(k), [_short(c) for c in names], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 30:
        top = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7 if k > 12 else 9,
                        color="white" if top and m[i, j] > top / 2 else "black")
    where = f" on {name}" if name else ""
    ax.set_title(f"confusion matrix{where}: accuracy {100 * acc:.2f}% ({int(np.trace(m))} of {n})", fontsize=10)
    fig.tight_layout()
    return fig


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class WorstErrors:
    """The examples a classifier gets most wrong: lowest probability of the true class first.

    ``indices`` into the data, ``images`` (k, H, W, C) as drawn, ``labels`` and ``predicted`` class indices,
    ``p_true`` and ``p_predicted`` their probabilities, ``classes`` the class names.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][...] = np.eye(2); net.params["bias"][...] = 0
    >>> e = worst_errors(net, (np.array([[3, 0], [0, 1], [2, 0]], np.float32), np.array([0, 1, 1])), count=1)
    >>> e.indices.tolist(), e.labels.tolist(), e.predicted.tolist(), round(float(e.p_true[0]), 3)
    ([2], [1], [0], 0.119)
    """

    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    p_true: np.ndarray
    p_predicted: np.ndarray
    classes: list[str]


def rank_errors(p: np.ndarray, labels: np.ndarray, images: np.ndarray, classes: list[str], count: int) -> WorstErrors:
    """The ``count`` examples with the lowest probability of their true class, from probabilities (N, K).

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> rank_errors(p, np.array([0, 0, 1]), np.zeros((3, 1, 1, 1)), ["a", "b"], 2).indices.tolist()
    [1, 2]
    """
    labels = np.asarray(labels, dtype=np.int64)
    p_true = p[np.arange(len(labels)), labels]
    order = np.argsort(p_true, kind="stable")[: max(0, int(count))]
    pred = p[order].argmax(axis=1)
    return WorstErrors(order, np.asarray(images)[order], labels[order], pred, p_true[order], p[order, pred] if len(order) else
                       np.zeros(0), list(classes))


def worst_errors(
    model: ModelLike,
    data: Any = None,
    *,
    count: int = 16,
    split: str = "test",
    data_dir: str | None = None,
    limit: int | None = None,
    images: np.ndarray | None = None,
    classes: list[str] | None = None,
    out: str | Path | None = None,
) -> WorstErrors:
    """The ``count`` examples with the lowest probability of their true class (the model's worst mistakes).

    ``model`` a model file or run directory (``data``, ``split``, ``data_dir`` as ``cnnkit eval``; ``limit``
    keeps the first images of the split), or a network (or ModelFile) with ``data`` = (preprocessed inputs,
    labels); ``images`` are then what is drawn (default the inputs, min-max scaled). With ``out``: a grid of
    the images labelled true / predicted / probability of the true class.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> net = Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    >>> x = np.random.default_rng(1).standard_normal((10, 2, 2, 1)).astype(np.float32)
    >>> e = worst_errors(net, (x, np.zeros(10, int)), count=3, classes=["zero", "one"])
    >>> e.images.shape, bool(np.all(np.diff(e.p_true) >= 0))
    ((3, 2, 2, 1), True)
    """
    if isinstance(model, (str, Path, ModelFile)):
        mf = load(model)
        if isinstance(model, (str, Path)) or data is None or isinstance(data, str):
            s = load_split(mf, data if isinstance(data, str) else None, split, data_dir, limit, where=model)
            x, labels, shown, classes = preprocess(mf, s.images), s.labels, s.images, s.classes
        else:
            x, labels = np.asarray(data[0]), np.asarray(data[1])
            shown = x if images is None else images
            classes = classes or class_names(mf)
        net = mf.network
    else:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError("worst_errors of a network needs data = (preprocessed inputs, labels)")
        net = model
        x, labels = np.asarray(data[0]), np.asarray(data[1])
        shown = x if images is None else np.asarray(images)
    p = probabilities(net, x)
    names = list(classes) if classes else [str(i) for i in range(p.shape[1])]
    result = rank_errors(p, labels, shown, names, count)
    if out is not None:
        from cnnkit.inspect._draw import pyplot, save

        fig = errors_figure(result)
        pyplot()
        save(fig, out)
    return result


def errors_figure(e: WorstErrors, cols: int = 8) -> Any:
    """The matplotlib figure of a :class:`WorstErrors` grid.

    Examples
    --------
    >>> from cnnkit.inspect._draw import png_bytes
    >>> e = WorstErrors(np.arange(2), np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 1]), np.array([1, 0]),
    ...                 np.array([0.1, 0.2]), np.array([0.9, 0.8]), ["a", "b"])
    >>> png_bytes(errors_figure(e))[:4]
    b'\\x89PNG'
    """
    from cnnkit.inspect._draw import display_image, pyplot

    plt = pyplot()
    n = len(e.indices)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols + 0.4, 2.4 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        ax = axes.ravel()[k]
        img = np.asarray(e.images[k])
        if img.ndim == 3:
            shown, gray = display_image(img)
            ax.imshow(shown, cmap=gray, interpolation="nearest")
        t, pr = e.classes[int(e.labels[k])], e.classes[int(e.predicted[k])]
        ax.set_title(f"#{int(e.indices[k])} true {_short(t, 10)}\npred {_short(pr, 10)} ({e.p_predicted[k]:.2f})\n"
                     f"p(true) {e.p_true[k]:.3f}", fontsize=7)
    fig.suptitle(f"the {n} examples with the lowest probability of their true class", fontsize=10)
    fig.tight_layout()
    return fig
