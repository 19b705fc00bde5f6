"""Peak memory of one training step, each engine and layout in a fresh process.

:func:`peak_memory` is the child's side (the ``peak_memory`` measure of :mod:`cnnkit.bench.child`);
:func:`memory_rows` is the parent's: one child per report column, then one report row.

The peak is the process's high-water mark of resident memory, read from ``VmHWM`` in ``/proc/self/status``:
``getrusage``'s ``ru_maxrss`` is no good here, because on Linux a child inherits its parent's figure across
``fork`` (and keeps it across ``exec``), so a fresh child of a big parent would report the parent's peak.
Where there is no ``/proc`` (macOS), ``ru_maxrss`` is used.

The child runs two steps. The first includes whatever an engine does once (cnnkit's convolution planner
timing its algorithms, first-touch allocations); the high-water mark is then reset (writing 5 to
``/proc/self/clear_refs``) and the second step gives the steady-state peak of a training step. The row
reports the process's peak over both (``peak_mib``, what a training run needs); the JSON also has each.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.bench.engines import Engine
from cnnkit.bench.jobs import ChildError, Job, run_in_child
from cnnkit.bench.report import Column, Row, format_memory_line
from cnnkit.bench.workloads import MEMORY_NETWORK, MEMORY_ROW, Network


def _vm_hwm_kib(status: str) -> float | None:
    """``VmHWM`` (kB) from the text of ``/proc/<pid>/status``; None when it is not there.

    >>> _vm_hwm_kib("Name:\\tpython\\nVmPeak:\\t  900 kB\\nVmHWM:\\t  512 kB\\n")
    512.0
    """
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    try:
        kib = _vm_hwm_kib(Path("/proc/self/status").read_text())
    except OSError:
        kib = None
    if kib is not None:
        return kib / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB elsewhere


def reset_peak_rss() -> bool:
    """Reset this process's high-water mark of resident memory to its current RSS (Linux); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory(engine: Engine, layout: str, network: Network, steps: int = 2) -> dict[str, float | None]:
    """Run in a fresh process: build ``network`` on ``engine`` and run ``steps`` steps (1 or 2); returns peak RSS
    figures (MiB) and the steps' seconds.

    The baseline is taken after the framework is imported, so ``model_mib`` is what building the network
    and its data added; ``first_step_peak_mib`` is the process's peak after the first step and
    ``later_step_peak_mib`` the peak during the second alone (None: one step, or no way to reset the mark);
    ``peak_mib`` is the process's peak over all of it."""
    engine.load()
    base = peak_rss_mib()
    step = engine.step(network, layout)
    after_build = peak_rss_mib()
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    first = peak_rss_mib()
    later = later_seconds = None
    if steps >= 2 and reset_peak_rss():
        t = time.perf_counter()
        step()
        later_seconds = time.perf_counter() - t
        later = peak_rss_mib()
    return {"baseline_mib": base, "model_mib": after_build - base, "first_step_peak_mib": first,
            "later_step_peak_mib": later, "peak_mib": max(first, later or 0.0), "step_seconds": seconds,
            "later_step_seconds": later_seconds}


def memory_rows(threads: int, columns: list[Column], log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """Peak RSS of one VGG-16 training step (224x224x3, batch 8) per column, each in a child process.

    Returns the report row and the children's results keyed by the columns' memory keys; a failed child
    is logged and its column left empty. Inference-only engines have no column here."""
    results: dict[str, Any] = {}
    columns = [c for c in columns if c.trains]
    for col in columns:
        try:
            results[col.memory_key] = run_in_child(Job("peak_memory", col.engine, col.layout, threads, MEMORY_NETWORK,
                                                       {"steps": 2}))
        except ChildError as exc:
            log(f"memory run for {col.memory_key} failed: {exc}")
    peaks = {col.field: results[col.memory_key]["peak_mib"] for col in columns if col.memory_key in results}
    row = Row(MEMORY_ROW, "MiB", peaks.pop("cnnkit", None) or float("nan"), threads=threads)
    for fld, value in peaks.items():
        setattr(row, fld, value)
    log(format_memory_line(row))
    later = {key: r.get("later_step_peak_mib") for key, r in results.items()}
    if any(v is not None for v in later.values()):
        log("  a later step alone (steady state): " + ", ".join(f"{k} {v:,.0f} MiB" for k, v in later.items() if v is not None))
    return [row], results
