"""One ``cnnkit bench`` run: every workload on every selected engine and layout, each measurement in a fresh
child process, in rounds, logged as it goes; then the tables, the targets, the JSON and Markdown files.

The parent never times anything itself. For each thread count it runs R rounds; a round runs every workload
once on every column (cnnkit, torch NCHW, torch channels_last, onnxruntime), each in its own child process
pinned to that thread count, the columns in an order rotated by one each round, so that a slow drift of the
machine's load reaches every engine alike and no engine always runs right after the same other one. A
column's figure is the median over the rounds of each round's median call; its spread, (max - min) / median
of those round medians, flags the row (:mod:`cnnkit.bench.stats`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cnnkit.bench.engines import Engine, installed_engines
from cnnkit.bench.jobs import ChildError, Job, run_in_child
from cnnkit.bench.machine import loadavg, machine_info
from cnnkit.bench.memory import memory_rows
from cnnkit.bench.options import BenchOptions
from cnnkit.bench.plots import plot_scaling
from cnnkit.bench.report import (
    COLUMNS,
    LEGEND,
    Column,
    Row,
    format_ceiling_line,
    format_markdown,
    format_scaling_table,
    format_table,
    format_targets,
    target_values,
    threads_title,
    write_json,
    write_text,
)
from cnnkit.bench.stats import from_medians
from cnnkit.bench.workloads import CONV_NETWORKS, NETWORKS, SCALING, ConvLayer, Network, conv_layers, unit_of

Log = Callable[[str], None]

LAYER_MIN_TIME = 0.2
"""Seconds of calls per round at least, for a per-convolution measurement (forward, and forward + backward)."""

MIN_CALL_SECONDS = 50e-6
"""A per-convolution row whose call (in any column) takes less than this is dropped: too short to time."""

CHILD_TIMEOUT = 900.0
"""Seconds a timing child may take before it counts as failed."""


@dataclass(frozen=True)
class Item:
    """One thing timed in every round: a whole network (``layer`` None: one row) or one of its convolutions
    alone (``layer``: its index in :func:`~cnnkit.bench.workloads.conv_layers`; two rows, forward and backward)."""

    network: Network
    layer: int | None = None
    conv: ConvLayer | None = None

    @property
    def label(self) -> str:
        return self.network.name if self.conv is None else f"{self.network.name} {self.conv.text}"


def selected_engines(options: BenchOptions) -> list[Engine]:
    """The installed engines less those the options leave out."""
    left_out = {"torch"} if options.no_torch else set()
    left_out |= {"ort"} if options.no_ort else set()
    return [e for e in installed_engines() if e.name not in left_out]


def _columns(engines: list[Engine]) -> list[Column]:
    names = {e.name for e in engines}
    return [c for c in COLUMNS if c.engine in names]


def items(layers: bool) -> list[Item]:
    """The whole networks, then (with ``layers``) every convolution of :data:`CONV_NETWORKS` alone."""
    out = [Item(net) for net in NETWORKS]
    if layers:
        for prefix, spec, shape, batch in CONV_NETWORKS:
            net = Network(prefix, spec, shape, batch, True)
            out += [Item(net, i, conv) for i, conv in enumerate(conv_layers(prefix, spec, shape, batch))]
    return out


def columns_for(item: Item, columns: Sequence[Column]) -> list[Column]:
    """The columns that time ``item``: all for a convolution; for a network, those whose engine runs it."""
    return [c for c in columns if item.conv is not None or c.trains or not item.network.train]


def rotated(seq: Sequence[Column], by: int) -> list[Column]:
    """``seq`` rotated left by ``by``: round r starts with the r-th column.

    >>> [c.field for c in rotated(COLUMNS, 1)]
    ['torch_nchw', 'torch_cl', 'ort', 'cnnkit']
    """
    if not seq:
        return []
    k = by % len(seq)
    return [*seq[k:], *seq[:k]]


def _job(item: Item, col: Column, threads: int, min_time: float) -> Job:
    if item.conv is None:
        return Job("time", col.engine, col.layout, threads, item.network, {"min_time": min_time})
    return Job("conv", col.engine, col.layout, threads, item.network,
               {"min_time": max(min_time, LAYER_MIN_TIME), "layer": item.layer})


def _progress(item: Item, got: dict[str, dict[str, Any]], columns: Sequence[Column]) -> str:
    parts = []
    for col in columns:
        res = got.get(col.field)
        if res is None:
            continue
        if item.conv is None:
            t = res["median"]
            unit = unit_of(item.network)
            value = 1e3 * t if unit == "ms" else item.network.batch / t
            parts.append(f"{col.label} {value:,.{3 if unit == 'ms' else 0}f} {unit}")
        else:
            parts.append(f"{col.label} fwd {1e6 * res['forward']['median']:,.0f} us")
    return f"{item.label}: " + ", ".join(parts)


def _network_row(item: Item, threads: int, results: dict[str, list[dict[str, Any]]]) -> Row:
    net = item.network
    unit = unit_of(net)

    def convert(t: float) -> float:
        return 1e3 * t if unit == "ms" else net.batch / t

    row = Row(net.name, unit, math.nan, threads=threads)
    for fld, rounds in results.items():
        if not rounds:
            continue
        s = from_medians([r["median"] for r in rounds])
        setattr(row, fld, convert(s.median))
        row.spreads[fld] = s.spread
        row.rounds[fld] = [convert(m) for m in s.round_medians]
        row.raw[fld] = [r["times"] for r in rounds]
        row.child_seconds[fld] = [r.get("child_seconds") for r in rounds]
    return row


def _conv_rows(item: Item, threads: int, results: dict[str, list[dict[str, Any]]]) -> tuple[list[Row], list[str]]:
    """The forward and backward rows of one convolution, and the reasons for any row dropped."""
    layer = item.conv
    assert layer is not None
    flops = layer.flops
    kinds = {"forward": flops, "backward": flops * (1 if layer.first else 2)}  # the first layer never needs dX
    names = {"forward": f"{item.label} forward", "backward": f"{item.label} backward{' (no dX)' if layer.first else ''}"}
    rows: list[Row] = []
    dropped: list[str] = []
    for kind, work in kinds.items():
        row = Row(names[kind], "GFLOP/s", math.nan, threads=threads)
        shortest: tuple[float, str] | None = None
        for fld, rounds in results.items():
            if kind == "forward":
                medians = [r["forward"]["median"] for r in rounds]
            else:
                medians = [r["forward_backward"]["median"] - r["forward"]["median"] for r in rounds
                           if r.get("forward_backward") is not None]
            if not medians:
                continue
            s = from_medians(medians)
            if shortest is None or s.median < shortest[0]:
                shortest = (s.median, fld)
            if s.median <= 0:
                continue
            setattr(row, fld, work / s.median / 1e9)
            row.spreads[fld] = s.spread
            row.rounds[fld] = [work / m / 1e9 if m > 0 else math.nan for m in s.round_medians]
            row.raw[fld] = [{"forward": r["forward"]["times"],
                             "forward_backward": (r.get("forward_backward") or {}).get("times")} for r in rounds]
            row.child_seconds[fld] = [r.get("child_seconds") for r in rounds]
        if shortest is not None and shortest[0] < MIN_CALL_SECONDS:
            dropped.append(f"{row.name} ({shortest[1]}: {1e6 * shortest[0]:.0f} us per call, under "
                           f"{1e6 * MIN_CALL_SECONDS:.0f} us: too short to time)")
            continue
        rows.append(row)
    return rows, dropped


def timed_rows(threads: int, rounds: int, min_time: float, columns: Sequence[Column], todo: Sequence[Item],
               log: Log) -> tuple[list[Row], list[str], list[str]]:
    """Every item timed in ``rounds`` rounds of child processes: its rows, the rows dropped (with why) and the
    children that failed."""
    results: list[dict[str, list[dict[str, Any]]]] = [{c.field: [] for c in columns_for(item, columns)} for item in todo]
    failures: list[str] = []
    failed = [0] * len(todo)
    for r in range(rounds):
        for i, item in enumerate(todo):
            cols = columns_for(item, columns)
            got: dict[str, dict[str, Any]] = {}
            for col in rotated(cols, r):
                t = time.perf_counter()
                try:
                    got[col.field] = run_in_child(_job(item, col, threads, min_time), CHILD_TIMEOUT)
                    got[col.field]["child_seconds"] = round(time.perf_counter() - t, 3)  # start-up included
                except ChildError as exc:
                    failures.append(f"{item.label}, {col.label}, round {r + 1}: {exc}")
                    failed[i] += 1
                    log(f"  failed: {failures[-1]}")
                    continue
                results[i][col.field].append(got[col.field])
            log(f"[{threads_title(threads)}, round {r + 1}/{rounds}] {_progress(item, got, cols)}")
    rows: list[Row] = []
    dropped: list[str] = []
    for item, result, n_failed in zip(todo, results, failed):
        more: list[Row]
        gone: list[str]
        if item.conv is None:
            more, gone = [_network_row(item, threads, result)], []
        else:
            more, gone = _conv_rows(item, threads, result)
        for row in more:
            row.failed = n_failed
        rows += more
        dropped += gone
    return rows, dropped, failures


def sgemm(threads: int, min_time: float, log: Log) -> dict[str, Any] | None:
    """The SGEMM ceiling at ``threads``, in a child process (None if it failed)."""
    try:
        res = run_in_child(Job("sgemm", "cnnkit", "nhwc", threads, None, {"min_time": min_time}), CHILD_TIMEOUT)
    except ChildError as exc:
        log(f"SGEMM ceiling failed: {exc}")
        return None
    log(f"SGEMM ceiling (NumPy float32 2048^3 matmul), {threads_title(threads)}: {res['gflops']:.1f} GFLOP/s")
    return res


def scaling(threads: int, min_time: float, engines: list[Engine], log: Log) -> dict[str, list[dict]]:
    """Training images/s along each curve of :data:`~cnnkit.bench.workloads.SCALING`, one round, each engine and
    layout in a child process; per engine its best layout."""
    curves: dict[str, list[dict]] = {kind: [] for kind in SCALING}
    trainers = [e for e in engines if e.trains]
    for kind, points in SCALING.items():
        for p in points:
            net = p.network
            rec: dict[str, Any] = {"x": p.x, "batch": net.batch}
            for e in trainers:
                best = None
                for layout in e.layouts:
                    try:
                        res = run_in_child(Job("time", e.name, layout, threads, net, {"min_time": min_time}), CHILD_TIMEOUT)
                    except ChildError as exc:
                        log(f"  failed: {net.name}, {e.name} {layout}: {exc}")
                        continue
                    best = max(best or 0.0, net.batch / res["median"])
                if best is not None:
                    rec[e.name] = best
            curves[kind].append(rec)
            log(f"{kind} {p.x:g}: " + ", ".join(f"{e.name} {rec[e.name]:,.0f} img/s" for e in trainers if e.name in rec))
    return curves


def command_line(options: BenchOptions, threads: Sequence[int]) -> str:
    """The ``cnnkit bench`` command that runs ``options``.

    >>> command_line(BenchOptions(threads=(1, 2), layers=True, no_ort=True), (1, 2))
    'cnnkit bench --threads 1,2 --rounds 3 --min-time 1 --no-ort --layers'
    """
    words = ["cnnkit bench", f"--threads {','.join(map(str, threads))}", f"--rounds {options.rounds}",
             f"--min-time {options.min_time:g}"]
    words += [flag for flag, on in (("--no-torch", options.no_torch), ("--no-ort", options.no_ort), ("--layers", options.layers),
                                    ("--no-memory", not options.memory), ("--scaling", options.scaling)) if on]
    return " ".join(words)


def run(options: BenchOptions, log: Log = print) -> dict[str, Any]:
    """The benchmark behind ``cnnkit bench``; returns the JSON-able results."""
    from cnnkit.bench.ex156 import ex156_row

    t0 = time.perf_counter()
    counts = options.thread_counts()
    engines = selected_engines(options)
    columns = _columns(engines)
    info = machine_info()
    info["engines"] = [e.name for e in engines]
    info["command"] = command_line(options, counts)
    info["options"] = {"threads": list(counts), "rounds": options.rounds, "min_time": options.min_time,
                       "layers": options.layers, "memory": options.memory, "layer_min_time": max(options.min_time, LAYER_MIN_TIME),
                       "min_call_seconds": MIN_CALL_SECONDS}
    missing = [name for name, flag in (("torch", options.no_torch), ("ort", options.no_ort))
               if not flag and name not in info["engines"]]
    if missing:
        log(f"not installed, so left out: {', '.join(missing)} (onnxruntime needs onnxruntime and onnx)")
    log(f"{info['command']}: engines {', '.join(info['engines'])}; each measurement in its own process")
    load = info.get("loadavg_start")
    if load and load[0] >= 0.5:
        log(f"note: the machine is busy (load average {load[0]:.2f} on {info['cores']} cores): treat these figures as smoke checks")
    todo = items(options.layers)
    per_threads: dict[int, list[Row]] = {}
    dropped: dict[int, list[str]] = {}
    ceilings: dict[int, float] = {}
    runs: list[dict[str, Any]] = []
    for n in counts:
        log(f"== {threads_title(n)} ==")
        ceiling = sgemm(n, options.min_time, log)
        if ceiling is not None:
            ceilings[n] = ceiling["gflops"]
        rows, gone, failures = timed_rows(n, options.rounds, options.min_time, columns, todo, log)
        for reason in gone:
            log(f"dropped: {reason}")
        memory = None
        if options.memory:
            mem_rows, memory = memory_rows(n, columns, log)
            rows += mem_rows
        per_threads[n], dropped[n] = rows, gone
        runs.append({"threads": n, "sgemm": ceiling, "sgemm_gflops": ceilings.get(n), "rows": [r.as_dict() for r in rows],
                     "dropped": gone, "failed": failures, "memory": memory})
    ex_row, ex_record = ex156_row(options.ex156)
    info["loadavg_end"] = loadavg()
    info["elapsed_seconds"] = round(time.perf_counter() - t0, 1)

    log("")
    for n, rows in per_threads.items():
        log(format_table(rows, title=f"== {threads_title(n)} =="))
        if n in ceilings:
            log(format_ceiling_line(rows, ceilings[n]))
        for reason in dropped[n]:
            log(f"dropped: {reason}")
        log("")
    ex_value = "not measured" if math.isnan(ex_row.cnnkit) else f"{ex_row.cnnkit:.1f} min"
    log(f"{ex_row.name}: {ex_value} ({ex_row.note})")
    log("")
    log(format_targets(per_threads, [ex_row]))
    log("")
    log(LEGEND)
    log(f"cnnkit bench took {info['elapsed_seconds'] / 60:.1f} min")
    results: dict[str, Any] = {
        "info": info, "runs": runs, "ex156": {**ex_record, "row": ex_row.as_dict()},
        "targets": [{"target": t.describe(), "threads": n, "value": v, "met": t.met(v)}
                    for n, rows in per_threads.items() for t, v in target_values([*rows, ex_row])]}
    if options.scaling:
        top = max(counts)
        log("")
        log(f"scaling curves ({threads_title(top)}, one round):")
        curves = scaling(top, options.min_time / 2, engines, log)
        log(format_scaling_table(curves))
        if options.plot and plot_scaling(curves, options.plot):
            log(f"scaling plot written to {options.plot}")
        results["scaling"] = curves
    if options.json:
        write_json(options.json, results)
        log(f"results written to {options.json}")
    if options.markdown:
        write_text(options.markdown, format_markdown(info, per_threads, [ex_row], dropped, ceilings))
        log(f"Markdown table written to {options.markdown}")
    return results
