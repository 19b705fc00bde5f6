"""Mini-batches of example indices, reshuffled every epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many mini-batches :func:`iterate_minibatches` yields for ``n`` examples.

    Examples
    --------
    >>> from cnnkit.data import num_batches
    >>> num_batches(10, 4), num_batches(10, 4, drop_last=True)
    (3, 2)
    """
    _check(n, batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_minibatches(
    n: int, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """Yield int64 index arrays of length ``batch_size`` covering ``range(n)`` once (one epoch).

    With ``rng`` the order is ``rng.permutation(n)`` drawn afresh on each call (call once per epoch);
    with None it is ``0, 1, ..., n-1``. The last batch is shorter when ``batch_size`` does not divide
    ``n``, unless ``drop_last`` drops it.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import iterate_minibatches
    >>> [b.tolist() for b in iterate_minibatches(5, 2)]
    [[0, 1], [2, 3], [4]]
    >>> batches = list(iterate_minibatches(5, 2, np.random.default_rng(0)))  # one shuffled epoch
    >>> [len(b) for b in batches], sorted(np.concatenate(batches).tolist())
    ([2, 2, 1], [0, 1, 2, 3, 4])
    """
    _check(n, batch_size)  # here, not in the generator, so that bad arguments fail at the call
    return _batches(int(n), int(batch_size), rng, drop_last)


def _batches(n: int, batch_size: int, rng: np.random.Generator | None, drop_last: bool) -> Iterator[np.ndarray]:
    order = np.arange(n, dtype=np.int64) if rng is None else rng.permutation(n).astype(np.int64, copy=False)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def _check(n: int, batch_size: int) -> None:
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
