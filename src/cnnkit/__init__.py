"""cnnkit: convolutional neural networks from their mathematics, on NumPy, with explicit backward passes.

The model-level API: :func:`fit`, :func:`evaluate`, :func:`predict`, :func:`save`, :func:`load` and
:func:`summary`; layers are in :mod:`cnnkit.nn`, optimisers in :mod:`cnnkit.optim`, datasets in
:mod:`cnnkit.data`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnkit import summary as _summary_module  # loaded first, so that `summary` below names the function
from cnnkit.train.fit import evaluate, fit, predict

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cnnkit.nn.base import Layer
    from cnnkit.summary import Summary


def save(net: Layer, path: str, **info: Any) -> None:
    """Save any network built from cnnkit layers (architecture as data, weights, pickle-free, atomically).

    ``info``: ``input_shape``, ``classes``, ``preprocess`` (a Preprocessor's ``to_dict()``), ``extra`` metadata.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.models.file import load_model
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "net.npz"), input_shape=(5, 5, 1), classes=["no", "yes"])
    ...     saved = load_model(str(Path(d) / "net.npz"))  # the network and its metadata
    >>> saved.input_shape, saved.classes, saved.network[3].params["weight"].shape
    ((5, 5, 1), ['no', 'yes'], (36, 2))
    """
    from cnnkit.models.file import save_model

    save_model(path, net, **info)


def load(path: str) -> Layer:
    """The network saved in a model file (see :func:`save`); its metadata: ``cnnkit.models.file.load_model``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "net.npz"))
    ...     again = cnnkit.load(str(Path(d) / "net.npz"))
    >>> [type(layer).__name__ for layer in again], bool((again[3].params["weight"] == net[3].params["weight"]).all())
    (['Conv2d', 'ReLU', 'Flatten', 'Linear'], True)
    """
    from cnnkit.models.file import load_model

    return load_model(path).network


def summary(net: Layer, input_shape: Any) -> Summary:
    """Per-layer output shapes, parameters, FLOPs, memory and receptive fields of any network.

    Examples
    --------
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 13 * 13, 10, rng=rng))
    >>> s = cnnkit.summary(net, (28, 28, 1))
    >>> [(r.kind, r.out_shape) for r in s.rows], s.total_params  # 1*9*4 + 4 and 676*10 + 10 parameters
    ([('Conv2d', (26, 26, 4)), ('ReLU', (26, 26, 4)), ('MaxPool2d', (13, 13, 4)), ('Flatten', (676,)), ('Linear', (10,))], 6810)
    """
    return _summary_module.summary(net, input_shape)


__all__ = ["__version__", "evaluate", "fit", "load", "predict", "save", "summary"]
