"""Exercise 15.6's wall time as a report row (``cnnkit bench --ex156 DIR``).

Bench does not run the exercise (about 20 minutes): it reads a finished ``cnnkit experiment ex15.6 --out DIR``
directory, its ``results.json`` (else ``report.md``), and reports "wall time of this invocation" in minutes.
The figure is only the whole exercise's when the invocation ran every part, at full size, from scratch; the
row's note says where it did not (a part missing, a shrunken run, runs reused from an earlier invocation).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from cnnkit.bench.report import Row
from cnnkit.bench.workloads import EX156_ROW

HOW = "run `cnnkit experiment ex15.6 --out DIR` (about 20 min), then `cnnkit bench --ex156 DIR`"


def _seconds(text: Any) -> float | None:
    """``"1234 s"`` (how the experiment's meta writes times) as 1234.0.

    >>> _seconds("1234 s"), _seconds("n/a")
    (1234.0, None)
    """
    m = re.fullmatch(r"\s*([0-9.]+)\s*s\s*", str(text))
    return float(m.group(1)) if m else None


def _meta_from_report(text: str) -> dict[str, str]:
    """The ``- key: value`` lines at the top of report.md."""
    meta = {}
    for line in text.splitlines():
        m = re.fullmatch(r"- ([^:]+): (.*)", line.strip())
        if m:
            meta[m.group(1)] = m.group(2)
        elif line.startswith("## "):
            break
    return meta


def read_meta(directory: str | Path) -> tuple[dict[str, Any], Path]:
    """The experiment's meta and the file it came from; raises ValueError when the directory has neither file."""
    d = Path(directory)
    results = d / "results.json"
    if results.is_file():
        try:
            data = json.loads(results.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{results}: not readable as JSON ({exc})") from None
        if isinstance(data, dict) and isinstance(data.get("meta"), dict):
            return data["meta"], results
        raise ValueError(f"{results}: no 'meta' object (not an ex15.6 results file)")
    report = d / "report.md"
    if report.is_file():
        return _meta_from_report(report.read_text()), report
    raise ValueError(f"{d}: no results.json or report.md of a finished `cnnkit experiment ex15.6`")


def _full_parts() -> tuple[str, ...] | None:
    try:
        from cnnkit.experiment import PROGRAMMES

        return tuple(PROGRAMMES["ex15.6"].parts)
    except Exception:  # the experiment package is optional to this row
        return None


def caveats(meta: dict[str, Any], full_parts: tuple[str, ...] | None) -> list[str]:
    """Why the invocation's wall time may not be the whole exercise's.

    >>> for note in caveats({"parts": "b,c", "wall time of this invocation": "100 s", "sum of run wall times": "900 s",
    ...                      "workers x threads": "2 x 1", "max_train (shrunken run)": 500}, ("b", "c", "d")):
    ...     print(note)
    parts b,c only (the exercise: b,c,d)
    a shrunken run (max_train 500)
    runs reused from an earlier invocation (their sum 900 s over 2 workers exceeds the wall time 100 s)
    """
    notes = []
    parts = [p for p in str(meta.get("parts", "")).split(",") if p]
    if full_parts and parts and set(parts) != set(full_parts):
        notes.append(f"parts {','.join(parts)} only (the exercise: {','.join(full_parts)})")
    if "max_train (shrunken run)" in meta:
        notes.append(f"a shrunken run (max_train {meta['max_train (shrunken run)']})")
    if "test_limit" in meta:
        notes.append(f"test set limited to {meta['test_limit']}")
    wall = _seconds(meta.get("wall time of this invocation"))
    total = _seconds(meta.get("sum of run wall times"))
    m = re.match(r"\s*(\d+)", str(meta.get("workers x threads", "")))
    workers = int(m.group(1)) if m else None
    if wall is not None and total is not None and workers and total / workers > 1.25 * wall:
        notes.append(f"runs reused from an earlier invocation (their sum {total:.0f} s over {workers} workers "
                     f"exceeds the wall time {wall:.0f} s)")
    return notes


def ex156_row(directory: str | Path | None) -> tuple[Row, dict[str, Any]]:
    """The ex15.6 row (minutes; NaN with instructions when ``directory`` is None or unreadable) and its record."""
    if directory is None:
        return Row(EX156_ROW, "min", math.nan, note=HOW), {"measured": False, "note": HOW}
    try:
        meta, source = read_meta(directory)
    except ValueError as exc:
        note = f"{exc}; {HOW}"
        return Row(EX156_ROW, "min", math.nan, note=note), {"measured": False, "note": note}
    wall = _seconds(meta.get("wall time of this invocation"))
    if wall is None:
        note = f"{source}: no 'wall time of this invocation'; {HOW}"
        return Row(EX156_ROW, "min", math.nan, note=note), {"measured": False, "note": note}
    notes = caveats(meta, _full_parts())
    note = f"from {source}" + (f"; NOT the whole exercise: {'; '.join(notes)}" if notes else "")
    return Row(EX156_ROW, "min", wall / 60, note=note), {"measured": True, "seconds": wall, "source": str(source),
                                                          "caveats": notes, "meta": meta}
