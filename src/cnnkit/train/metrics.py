"""Classification metrics: top-k errors from scores."""

from __future__ import annotations

from cnnkit.backend import Array, xp


def topk_wrong(scores: Array, labels: Array, k: int) -> int:
    """How many rows of ``scores`` (N, K) (or (N, 1, 1, K)) do not rank the true label among the top k.

    Examples
    --------
    Row 0 ranks its label first, row 1 second, row 2 last:

    >>> import numpy as np
    >>> from cnnkit.train.metrics import topk_wrong
    >>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.3, 0.2, 0.5]])
    >>> labels = np.array([1, 1, 1])
    >>> topk_wrong(scores, labels, 1), topk_wrong(scores, labels, 2), topk_wrong(scores, labels, 3)
    (2, 1, 0)
    """
    s = scores.reshape(scores.shape[0], -1)
    k = min(k, s.shape[1])
    true = s[xp.arange(s.shape[0]), labels][:, None]  # (N, 1)
    # rank of the true class = number of classes scoring strictly higher (ties counted in its favour)
    higher = (s > true).sum(axis=1)
    # a row with a NaN score has no ranking (every comparison with NaN is False): count it as wrong
    return int(((higher >= k) | xp.isnan(s).any(axis=1)).sum())
