"""One ``cnnkit bench`` run: every workload on every selected engine and layout, timed in this process,
logged as it goes, then the tables and the JSON file."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.bench import harness
from cnnkit.bench.engines import Engine, get_engine, installed_engines
from cnnkit.bench.memory import memory_rows
from cnnkit.bench.options import BenchOptions
from cnnkit.bench.plots import plot_scaling
from cnnkit.bench.report import (
    COLUMNS,
    Column,
    Row,
    format_ceiling_line,
    format_row,
    format_scaling_table,
    format_table,
    results_json,
    write_json,
)
from cnnkit.bench.workloads import CONV_NETWORKS, NETWORKS, SCALING, conv_layers

Log = Callable[[str], None]


def _row(name: str, unit: str, values: dict[str, float]) -> Row:
    """A report row from column values keyed by Row field (cnnkit's is always there)."""
    row = Row(name, unit, values["cnnkit"])
    for field, value in values.items():
        setattr(row, field, value)
    return row


def _columns(engines: list[Engine]) -> list[Column]:
    names = {e.name for e in engines}
    return [c for c in COLUMNS if c.engine in names]


def network_rows(min_time: float, engines: list[Engine], log: Log) -> list[Row]:
    """Each whole network (:data:`~cnnkit.bench.workloads.NETWORKS`) in images/s."""
    rows = []
    for net in NETWORKS:
        values = {col.field: net.batch / harness.timeit(get_engine(col.engine).step(net, col.layout), min_time)
                  for col in _columns(engines)}
        row = _row(net.name, "img/s", values)
        log(format_row(row))
        rows.append(row)
    return rows


def conv_rows(min_time: float, engines: list[Engine], log: Log) -> list[Row]:
    """Each convolution alone: forward and backward (dW, db and dX) in GFLOP/s."""
    rows = []
    for net, spec, shape, batch in CONV_NETWORKS:
        for layer in conv_layers(net, spec, shape, batch):
            flops = layer.flops
            bflops = flops * (1 if layer.first else 2)  # the first layer never needs dX
            fwd: dict[str, float] = {}
            bwd: dict[str, float] = {}
            for col in _columns(engines):
                calls = get_engine(col.engine).conv_calls(layer, col.layout)
                t_f = harness.timeit(calls.forward, min_time / 2)
                t_b = harness.timeit(calls.forward_backward, min_time / 2) - t_f
                fwd[col.field] = flops / t_f / 1e9
                bwd[col.field] = bflops / max(t_b, 1e-9) / 1e9
            pair = [_row(f"{net} {layer.text} forward", "GFLOP/s", fwd),
                    _row(f"{net} {layer.text} backward{' (no dX)' if layer.first else ''}", "GFLOP/s", bwd)]
            for r in pair:
                log(format_row(r))
            rows += pair
    return rows


def scaling(min_time: float, engines: list[Engine], log: Log) -> dict[str, list[dict]]:
    """Training images/s along each curve of :data:`~cnnkit.bench.workloads.SCALING`; per engine its best layout."""
    curves: dict[str, list[dict]] = {kind: [] for kind in SCALING}
    for kind, points in SCALING.items():
        for p in points:
            net = p.network
            rec: dict[str, Any] = {"x": p.x, "batch": net.batch}
            for e in engines:
                rec[e.name] = max(net.batch / harness.timeit(e.step(net, layout), min_time, warmup=1) for layout in e.layouts)
            curves[kind].append(rec)
            log(f"{kind} {p.x}: " + ", ".join(f"{e.name} {rec[e.name]:,.0f} img/s" for e in engines))
    return curves


def run(options: BenchOptions, log: Log = print) -> dict[str, Any]:
    """The benchmark behind ``cnnkit bench``; returns the JSON-able results."""
    threads = options.threads or os.cpu_count() or 1
    _limiter = harness.set_threads(threads, installed_engines())  # must stay alive for the run
    engines = [e for e in installed_engines() if not (options.no_torch and e.name == "torch")]
    use_torch = any(e.name == "torch" for e in engines)
    info: dict[str, Any] = {"threads": threads, "numpy": np.__version__, "cpu_count": os.cpu_count()}
    for e in engines:
        info.update(e.versions())
    if not use_torch:
        log("PyTorch not installed (or --no-torch): its columns are skipped")
    min_time = options.min_time
    log(f"cnnkit bench: {threads} thread(s), min {min_time}s per measurement")
    ceiling = harness.sgemm_ceiling(min_time=min_time)
    log(f"SGEMM ceiling (NumPy float32 2048^3 matmul): {ceiling:.1f} GFLOP/s")
    rows = network_rows(min_time, engines, log)
    if not options.no_layers:
        rows += conv_rows(min_time, engines, log)
    memory = None
    if options.memory:
        mem_rows, memory = memory_rows(threads, _columns(engines), log)
        rows += mem_rows
    log("")
    log(format_table(rows))
    log(format_ceiling_line(rows, ceiling))
    curves = None
    if options.scaling:
        curves = scaling(min_time / 2, engines, log)
        log("")
        log(format_scaling_table(curves))
        if options.plot and plot_scaling(curves, options.plot):
            log(f"scaling plot written to {options.plot}")
    results = results_json(info, ceiling, rows, memory, curves)
    if options.json:
        write_json(options.json, results)
        log(f"results written to {options.json}")
    return results
