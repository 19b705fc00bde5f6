"""Numbers the reports compute from the runs: epochs to reach a target, statistics over the last epochs,
gradient attenuation across layers, and ensembles (averaged softmax probabilities of saved models)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def epochs_to_reach(per_epoch: Sequence[float | None], target: float, start: float | None = None) -> float | None:
    """The (fractional) epoch at which a per-epoch curve first falls to ``target`` or below, else None.

    ``per_epoch[i]`` is the value after epoch i + 1; between two epochs the curve is taken as linear, and
    ``start`` (the value before training, e.g. 0.9 for the error of a 10-class guess) is the point at epoch 0.
    Without ``start`` a curve already at the target after epoch 1 gives 1.0.

    Examples
    --------
    >>> epochs_to_reach([0.30, 0.20, 0.12, 0.08], 0.10)
    3.5
    >>> epochs_to_reach([0.30, 0.20], 0.10) is None
    True
    >>> epochs_to_reach([0.50, 0.20], 0.70, start=0.90)
    0.5
    """
    prev_x, prev_y = (0.0, start) if start is not None else (None, None)
    for i, y in enumerate(per_epoch):
        if y is None:
            continue
        x = float(i + 1)
        if y <= target:
            if prev_y is None or prev_x is None or prev_y <= target or prev_y == y:
                return x
            return round(prev_x + (prev_y - target) / (prev_y - y) * (x - prev_x), 6)
        prev_x, prev_y = x, y
    return None


def last_epochs(per_epoch: Sequence[float | None], k: int = 5) -> tuple[float, float, float, float, int]:
    """Mean, standard deviation, minimum and maximum of the last ``k`` values (fewer when the curve is shorter),
    and how many there were.

    Examples
    --------
    >>> m, s, lo, hi, n = last_epochs([0.5, 0.04, 0.03, 0.05, 0.04, 0.04], k=5)
    >>> round(m, 4), round(s, 4), lo, hi, n
    (0.04, 0.0071, 0.03, 0.05, 5)
    """
    tail = [float(v) for v in per_epoch if v is not None][-k:]
    if not tail:
        return math.nan, math.nan, math.nan, math.nan, 0
    sd = statistics.stdev(tail) if len(tail) > 1 else 0.0
    return statistics.fmean(tail), sd, min(tail), max(tail), len(tail)


def attenuation(norms: Sequence[float]) -> float:
    """How many times smaller the gradient norm reaching the first layer is than at the last (last / first).

    Examples
    --------
    >>> attenuation([1e-6, 1e-3, 1.0])
    1000000.0
    >>> attenuation([0.0, 1.0])
    inf
    """
    first, last = float(norms[0]), float(norms[-1])
    return math.inf if first == 0 else last / first


def ensemble_errors(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Errors of single networks and of averaging their probabilities; ``probs``: (networks, examples, classes).

    Returns ``single`` (each network's error), ``ensemble`` (the error of the average of the first k networks,
    k = 1 .. networks), ``oracle`` (the share of examples no network gets right), ``disagreement`` (the mean
    over pairs of networks of the share of examples on which their predictions differ), ``fixed`` and ``broken``
    (examples the average gets right though most networks get them wrong, and the reverse).

    Examples
    --------
    Three networks, each wrong on a different example of four: every single error is 25%; the average of two
    still errs where they tie, the average of three is right everywhere.

    >>> import numpy as np
    >>> labels = np.array([0, 1, 0, 1])
    >>> good = np.eye(2)[labels] * 0.8 + 0.1
    >>> probs = np.stack([good.copy() for _ in range(3)])
    >>> for k in range(3):
    ...     probs[k, k] = probs[k, k][::-1]  # network k is wrong (confidently) on example k
    >>> r = ensemble_errors(probs, labels)
    >>> r["single"], r["ensemble"], r["oracle"], round(r["disagreement"], 4)
    ([0.25, 0.25, 0.25], [0.25, 0.25, 0.0], 0.0, 0.5)
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    preds = probs.argmax(axis=2)  # (networks, examples)
    right = preds == labels[None, :]
    single = [float(1.0 - r.mean()) for r in right]
    cumulative = np.cumsum(probs, axis=0)
    ensemble = [float((cumulative[k].argmax(axis=1) != labels).mean()) for k in range(len(probs))]
    k = len(probs)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    disagreement = statistics.fmean(float((preds[i] != preds[j]).mean()) for i, j in pairs) if pairs else 0.0
    avg_right = cumulative[-1].argmax(axis=1) == labels
    majority_right = right.sum(axis=0) * 2 > k
    return {"single": single, "ensemble": ensemble, "oracle": float((~right.any(axis=0)).mean()),
            "disagreement": disagreement, "fixed": int((avg_right & ~majority_right).sum()),
            "broken": int((~avg_right & majority_right).sum()), "n": len(labels)}


def model_probabilities(paths: Sequence[str | Path], data: str, data_dir: str | None, test_limit: int | None = None,
                        batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of saved models (``model.npz`` files) on a registered dataset's test split, each
    with its own preprocessing: ``(networks, examples, classes)`` probabilities and the labels.

    Examples
    --------
    Two hand-made brightness classifiers on a folder-free dataset need files; see the ex15.5b programme's
    tests. Without models there is nothing to stack:

    >>> model_probabilities([], "mnist", None)
    Traceback (most recent call last):
    ...
    ValueError: no model files to evaluate
    """
    if not paths:
        raise ValueError("no model files to evaluate")
    from cnnkit import data as cdata
    from cnnkit.data import Preprocessor
    from cnnkit.models.file import load_model
    from cnnkit.train.fit import predict

    test = cdata.load_dataset(data, "test", data_dir)
    if test_limit:
        test = test.subset(slice(0, test_limit))
    out = []
    for path in paths:
        mf = load_model(path)
        pre = Preprocessor.from_dict(mf.preprocess) if mf.preprocess else None
        parts = []
        for start in range(0, len(test.labels), batch_size):
            images = test.images[start : start + batch_size]
            x = pre.transform(images, dtype=mf.network.dtype) if pre is not None else images.astype(mf.network.dtype)
            parts.append(np.asarray(predict(mf.network, x, batch_size)))
        out.append(np.concatenate(parts))
    return np.stack(out), np.asarray(test.labels)
