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
    """
    from cnnkit.models.file import save_model

    save_model(path, net, **info)


def load(path: str) -> Layer:
    """The network saved in a model file (see :func:`save`); its metadata: ``cnnkit.models.file.load_model``."""
    from cnnkit.models.file import load_model

    return load_model(path).network


def summary(net: Layer, input_shape: Any) -> Summary:
    """Per-layer output shapes, parameters, FLOPs, memory and receptive fields of any network."""
    return _summary_module.summary(net, input_shape)


__all__ = ["__version__", "evaluate", "fit", "load", "predict", "save", "summary"]
