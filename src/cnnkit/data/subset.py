"""Choosing training examples by position, as exercise 15.6 does ("the first 10000", "10001 to 20000")."""

from __future__ import annotations

import re

import numpy as np

_RANGE = re.compile(r"^\s*(\d+)\s*[-:]\s*(\d+)\s*$")


def first_n(n: int, total: int) -> np.ndarray:
    """int64 indices of the first ``n`` of ``total`` examples: ``0 .. n-1``.

    Examples
    --------
    >>> from cnnkit.data import first_n
    >>> first_n(3, 60000)
    array([0, 1, 2])
    """
    n = int(n)
    if n < 1 or n > total:
        raise ValueError(f"cannot take the first {n} examples of {total}: need 1 <= n <= {total}")
    return np.arange(n, dtype=np.int64)


def example_range(first: int, last: int, total: int) -> np.ndarray:
    """int64 indices of examples ``first`` .. ``last``, counted from 1 and inclusive (``1, 10000`` -> 0..9999).

    Examples
    --------
    Exercise 15.6's "examples 10001 to 20000":

    >>> from cnnkit.data import example_range
    >>> idx = example_range(10001, 20000, 60000)
    >>> int(idx[0]), int(idx[-1]), len(idx)
    (10000, 19999, 10000)
    """
    first, last = int(first), int(last)
    if not 1 <= first <= last <= total:
        raise ValueError(
            f"example range {first}-{last} (1-based, inclusive) is invalid for {total} examples: "
            f"need 1 <= first <= last <= {total}"
        )
    return np.arange(first - 1, last, dtype=np.int64)


def parse_subset(spec: int | str | None, total: int) -> np.ndarray:
    """Indices chosen by ``spec`` among ``total`` examples.

    ``spec`` is None or ``"all"`` (every example), a count N (an int or ``"10000"``: the first N), or a
    1-based inclusive range ``"10001-20000"`` (examples 10001 to 20000, i.e. indices 10000..19999).
    A malformed or out-of-range spec raises ValueError saying what was expected.

    Examples
    --------
    >>> from cnnkit.data import parse_subset
    >>> len(parse_subset(None, 60000)), len(parse_subset("10000", 60000))
    (60000, 10000)
    >>> parse_subset("10001-20000", 60000)[[0, -1]]
    array([10000, 19999])
    >>> parse_subset("10001..20000", 60000)
    Traceback (most recent call last):
    ...
    ValueError: subset '10001..20000' not understood: expected a count like '10000', a 1-based inclusive range like '10001-20000', or 'all'
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return np.arange(total, dtype=np.int64)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return first_n(int(spec), total)
    if isinstance(spec, str):
        text = spec.strip()
        if text.isdigit():
            return first_n(int(text), total)
        m = _RANGE.match(text)
        if m:
            return example_range(int(m.group(1)), int(m.group(2)), total)
    raise ValueError(
        f"subset {spec!r} not understood: expected a count like '10000', a 1-based inclusive range like "
        f"'10001-20000', or 'all'"
    )
