"""Peak memory of one training step, each engine and layout in a fresh process (``cnnkit bench --memory``).

:func:`peak_memory` is the child's side (the ``peak_memory`` measure of :mod:`cnnkit.bench.child`);
:func:`memory_rows` is the parent's: one child per report column, then one report row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cnnkit.bench.engines import Engine
from cnnkit.bench.jobs import ChildError, Job, run_in_child
from cnnkit.bench.report import Column, Row, format_memory_line
from cnnkit.bench.workloads import MEMORY_NETWORK, Network


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_memory(engine: Engine, layout: str, network: Network) -> dict[str, float]:
    """Run in a fresh process: build ``network`` on ``engine`` and run one step; returns peak RSS figures (MiB).

    The baseline is taken after the framework is imported, so ``model_mib`` is what building the network
    and its data added, and ``peak_mib`` the process's peak after one step."""
    engine.load()
    base = _peak_rss_mib()
    step = engine.step(network, layout)
    after_build = _peak_rss_mib()
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    return {"baseline_mib": base, "model_mib": after_build - base, "peak_mib": _peak_rss_mib(), "step_seconds": seconds}


def memory_rows(threads: int, columns: list[Column], log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """Peak RSS of one VGG-16 training step (224x224x3, batch 8) per column, each in a child process.

    Returns the report row and the children's results keyed by the columns' memory keys; a failed child
    is logged and its column left empty."""
    results: dict[str, Any] = {}
    for col in columns:
        try:
            results[col.memory_key] = run_in_child(Job("peak_memory", col.engine, col.layout, threads, MEMORY_NETWORK))
        except ChildError as exc:
            log(f"memory run for {col.memory_key} failed: {exc}")
    peaks = {col.field: results[col.memory_key]["peak_mib"] for col in columns if col.memory_key in results}
    row = Row(f"{MEMORY_NETWORK.name} peak RSS", "MiB", peaks.pop("cnnkit", None) or float("nan"))
    for field, value in peaks.items():
        setattr(row, field, value)
    log(format_memory_line(row))
    return [row], results
