"""See inside the network: filters, feature maps, saliency, receptive fields, confusion, worst errors, score
maps, classic kernels and a one-page HTML report of a run.

Every function works on any network built from cnnkit layers (model files where the data come from a
dataset), returns arrays, and given ``out=path`` writes a labelled PNG atomically. Pictures need matplotlib
(the ``plot`` extra; :class:`~cnnkit.errors.MissingDependencyError` without it), the kernel PNGs Pillow (the
``images`` extra); the arrays need neither. ``cnnkit show ...``, ``cnnkit report`` and ``cnnkit filter`` are
the command-line forms (:mod:`cnnkit.inspect.cli`).

Examples
--------
>>> import numpy as np
>>> from cnnkit.inspect import receptive_field
>>> from cnnkit.nn import Conv2d, MaxPool2d, Sequential
>>> rng = np.random.default_rng(0)
>>> net = Sequential(Conv2d(1, 4, 5, rng=rng), MaxPool2d(2), Conv2d(4, 8, 5, rng=rng), MaxPool2d(2))
>>> rf = receptive_field(net, (28, 28, 1), "3", unit=(0, 0))
>>> rf.size, rf.agrees  # 5, +1, +4*2, +1*2: the BASE network's 16 x 16 after its second pooling
((16, 16), True)
"""

from __future__ import annotations

from cnnkit.inspect.evaluation import Split, WorstErrors, confusion, worst_errors
from cnnkit.inspect.filtering import Filtered, filter_image
from cnnkit.inspect.layers import LayerError, Place, find_place, places
from cnnkit.inspect.pictures import Saliency, features, filters, filters_figure, saliency
from cnnkit.inspect.receptive import ReceptiveField, receptive_field
from cnnkit.inspect.report import report
from cnnkit.inspect.scoremap import ScoreMap, score_map_json, score_map_picture, score_maps

__all__ = [
    "Filtered", "LayerError", "Place", "ReceptiveField", "Saliency", "ScoreMap", "Split", "WorstErrors", "confusion",
    "features", "filter_image", "filters", "filters_figure", "find_place", "places", "receptive_field", "report",
    "saliency", "score_map_json", "score_map_picture", "score_maps", "worst_errors",
]
