"""Rounds, medians and spreads: how ``cnnkit bench`` turns the per-call times of its rounds into one number.

Each (workload, engine, layout, thread count) is timed in R rounds, each round a fresh child process that
times many calls. A round's figure is the median of its calls; the reported figure is the median of the R
round figures, and its spread is (max - min) / median over the rounds. A spread above
:data:`NOISY` (10%) flags the row ``~`` (the ratio is indicative only), above :data:`UNRELIABLE` (25%) ``!``
(rerun it on a quiet machine).

>>> s = summarize([[1.0, 1.1, 0.9], [1.2, 1.2, 1.3], [1.0, 1.0, 1.0]])
>>> s.round_medians, s.median, round(s.spread, 3), s.flag
([1.0, 1.2, 1.0], 1.0, 0.2, '~')
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NOISY = 0.10
"""A spread above this flags a row ``~``."""

UNRELIABLE = 0.25
"""A spread above this flags a row ``!``."""


def flag(spread: float | None) -> str:
    """``""``, ``"~"`` (spread above 10%) or ``"!"`` (above 25%); no spread (one round, or none measured) is ``""``.

    >>> [flag(s) for s in (None, 0.0, 0.10, 0.1001, 0.25, 0.26)]
    ['', '', '', '~', '~', '!']
    """
    if spread is None or spread != spread:  # None or NaN
        return ""
    if spread > UNRELIABLE:
        return "!"
    if spread > NOISY:
        return "~"
    return ""


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of ``values``; None for fewer than two values or a zero median.

    >>> spread([10.0, 11.0, 9.0]), spread([5.0])
    (0.2, None)
    """
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else None


@dataclass(frozen=True)
class Summary:
    """One measurement over its rounds: each round's median, their median and their spread."""

    round_medians: list[float]
    median: float
    spread: float | None

    @property
    def flag(self) -> str:
        return flag(self.spread)


def summarize(rounds: Iterable[Sequence[float]]) -> Summary:
    """The :class:`Summary` of rounds of per-call values (rounds without values are left out); raises
    ValueError when no round has any."""
    medians = [float(statistics.median(r)) for r in rounds if len(r)]
    if not medians:
        raise ValueError("no round has any measurement")
    return Summary(medians, float(statistics.median(medians)), spread(medians))


def from_medians(medians: Sequence[float]) -> Summary:
    """The :class:`Summary` of rounds already reduced to their medians (e.g. a backward time: forward + backward
    less forward, per round); raises ValueError when there are none.

    >>> from_medians([3.0, 1.0, 2.0]).median
    2.0
    """
    if not medians:
        raise ValueError("no round has any measurement")
    values = [float(m) for m in medians]
    return Summary(values, float(statistics.median(values)), spread(values))


def worst(spreads: Iterable[float | None]) -> float | None:
    """The largest of the spreads that are known (a row's spread is its noisiest column's); None if none is.

    >>> worst([0.02, None, 0.13]), worst([None])
    (0.13, None)
    """
    known = [s for s in spreads if s is not None]
    return max(known) if known else None
