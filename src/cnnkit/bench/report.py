"""The report: result rows, the text and Markdown tables, the log lines, the targets and the results as JSON.

A :class:`Row` holds one workload at one thread count: cnnkit's figure and each peer's (PyTorch in NCHW and
``channels_last``, onnxruntime), the spread of each over the rounds, and the ratio against the best peer:
for training rows the faster PyTorch layout, for inference rows the fastest of PyTorch's layouts and
onnxruntime. Ratios read "cnnkit is this many times as fast" (for a latency in ms as for a throughput); for a
memory row (MiB) the ratio is cnnkit's peak over the leaner PyTorch layout's, so lower is better there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cnnkit.bench.stats import NOISY, UNRELIABLE, flag, worst
from cnnkit.bench.workloads import TARGETS, Target


class Column(NamedTuple):
    """One timed (engine, layout) pair: the :class:`Row` field it fills, its key in the memory results, its
    heading, and whether the engine trains (an inference-only engine has no column in training rows)."""

    engine: str
    layout: str
    field: str
    memory_key: str
    label: str = ""
    trains: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("cnnkit", "nhwc", "cnnkit", "cnnkit", "cnnkit"),
    Column("torch", "nchw", "torch_nchw", "torch", "torch"),
    Column("torch", "channels_last", "torch_cl", "torch_cl", "torch CL"),
    Column("ort", "nchw", "ort", "ort", "ORT", trains=False),
)

SPEED_UNITS = frozenset({"img/s", "GFLOP/s"})
"""Higher is better; ratio = cnnkit / peer."""

TIME_UNITS = frozenset({"ms", "s", "min"})
"""Lower is better; ratio = peer / cnnkit (how many times as fast cnnkit is). Any other unit (MiB) is a cost:
lower is better and ratio = cnnkit / peer."""


@dataclass
class Row:
    """One workload at one thread count. ``spreads``: each column's spread over the rounds (by field);
    ``rounds``: each column's per-round figures in ``unit``; ``raw``: each column's per-call seconds per round;
    ``child_seconds``: each column's child processes' wall times (start-up included); ``failed``: how many of
    its child processes failed (the row is then flagged ``?``); ``note``: a remark printed with the row (the
    ex15.6 row's source, or how to produce it)."""

    name: str
    unit: str
    cnnkit: float
    torch_nchw: float | None = None
    torch_cl: float | None = None
    ort: float | None = None
    threads: int | None = None
    spreads: dict[str, float | None] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    child_seconds: dict[str, list[float | None]] = field(default_factory=dict)
    failed: int = 0
    note: str = ""

    def _best(self, values: Iterable[float | None]) -> float | None:
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return None
        return max(vals) if self.unit in SPEED_UNITS else min(vals)

    @property
    def torch_best(self) -> float | None:
        """PyTorch's better layout: the higher throughput, or the lower time or memory."""
        return self._best((self.torch_nchw, self.torch_cl))

    @property
    def best_peer(self) -> float | None:
        """The best of every peer measured in this row (PyTorch's layouts, and onnxruntime where it ran)."""
        return self._best((self.torch_nchw, self.torch_cl, self.ort))

    def ratio_vs(self, peer: float | None) -> float | None:
        """cnnkit against one peer figure: cnnkit / peer for throughput and memory, peer / cnnkit for time."""
        if peer is None or not peer or math.isnan(self.cnnkit):
            return None
        if self.unit in TIME_UNITS:
            return peer / self.cnnkit if self.cnnkit else None
        return self.cnnkit / peer

    @property
    def ratio(self) -> float | None:
        """Against the best peer."""
        return self.ratio_vs(self.best_peer)

    def ratio_to(self, peer: str) -> float | None:
        """Against ``peer``: "torch" (the better PyTorch layout), "ort", or "" (cnnkit's own figure)."""
        if peer == "":
            return None if math.isnan(self.cnnkit) else self.cnnkit
        return self.ratio_vs(self.torch_best if peer == "torch" else self.ort)

    @property
    def spread(self) -> float | None:
        """The row's spread: its noisiest column's."""
        return worst(self.spreads.values())

    @property
    def flag(self) -> str:
        """``~`` or ``!`` for the spread (:func:`cnnkit.bench.stats.flag`), then ``?`` if a round failed."""
        return flag(self.spread) + ("?" if self.failed else "")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "threads": self.threads, "cnnkit": _num(self.cnnkit),
                "torch_nchw": self.torch_nchw, "torch_channels_last": self.torch_cl, "onnxruntime": self.ort,
                "ratio": self.ratio, "ratio_vs_torch": self.ratio_to("torch"), "ratio_vs_onnxruntime": self.ratio_to("ort"),
                "spread": self.spread, "flag": self.flag, "failed": self.failed, "spreads": self.spreads, "rounds": self.rounds,
                "note": self.note, "child_seconds": self.child_seconds, "raw_seconds": self.raw}


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v


def _fmt(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1 or v == 0:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


_W = 50


def format_row(r: Row) -> str:
    """One line of :func:`format_table`."""
    return (f"{r.name:<{_W}} {r.unit:<7} {_fmt(r.cnnkit):>9} {_fmt(r.torch_nchw):>9} {_fmt(r.torch_cl):>9} "
            f"{_fmt(r.ort):>9} {_ratio(r.ratio):>7} {_pct(r.spread):>7} {r.flag}").rstrip()


def format_table(rows: list[Row], title: str | None = None) -> str:
    """The rows as a text table (under ``title``, when given)."""
    head = (f"{'workload':<{_W}} {'unit':<7} {'cnnkit':>9} {'torch':>9} {'torch CL':>9} {'ORT':>9} {'ratio':>7} "
            f"{'spread':>7}")
    lines = [title] if title else []
    return "\n".join([*lines, head, "-" * len(head)] + [format_row(r) for r in rows])


LEGEND = (f"ratio: cnnkit against the best peer (training: PyTorch's faster layout; inference: the fastest of "
          f"PyTorch's layouts and onnxruntime), as 'times as fast' (for ms too); for MiB, cnnkit's peak over "
          f"PyTorch's leaner layout's (lower is better). spread: (max - min) / median of the rounds' medians, "
          f"the row's noisiest column; ~ above {100 * NOISY:.0f}% (indicative only), ! above {100 * UNRELIABLE:.0f}% "
          f"(rerun on a quiet machine); ? a round failed (see the log). A target's verdict carries its row's flag.")


def format_markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table; the flag follows the spread."""
    lines = ["| workload | unit | cnnkit | torch | torch CL | ORT | ratio | spread |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        spread = f"{_pct(r.spread)} {r.flag}".strip()
        lines.append(f"| {r.name} | {r.unit} | {_fmt(r.cnnkit)} | {_fmt(r.torch_nchw)} | {_fmt(r.torch_cl)} | "
                     f"{_fmt(r.ort)} | {_ratio(r.ratio)} | {spread} |")
    return "\n".join(lines)


def format_memory_line(row: Row) -> str:
    return (f"{row.name}: cnnkit {_fmt(row.cnnkit)} MiB, torch {_fmt(row.torch_nchw)} MiB, "
            f"torch channels_last {_fmt(row.torch_cl)} MiB")


def format_ceiling_line(rows: list[Row], ceiling: float) -> str:
    """The SGEMM ceiling and each convolution's forward GFLOP/s as a fraction of it."""
    fractions = [f"{r.name.split(' forward')[0]} {100 * r.cnnkit / ceiling:.0f}%"
                 for r in rows if r.unit == "GFLOP/s" and r.name.endswith("forward")]
    text = f"SGEMM ceiling: {ceiling:.1f} GFLOP/s"
    return text + ("; conv forward rows as a fraction of it: " + ", ".join(fractions) if fractions else "")


# -- targets ----------------------------------------------------------------------------------------------


def target_values(rows: Sequence[Row], targets: Sequence[Target] = TARGETS) -> list[tuple[Target, float | None]]:
    """Each target with the value it is judged on in ``rows`` (one thread count's; None: not measured)."""
    by_name = {r.name: r for r in rows}
    return [(t, by_name[t.row].ratio_to(t.peer) if t.row in by_name else None) for t in targets]


def _verdict(target: Target, value: float | None, row: Row | None) -> str:
    met = target.met(value)
    if met is None:
        return "not measured"
    shown = f"{value:.1f} {target.unit}" if target.peer == "" else f"{value:.2f}x"
    return f"{shown} {'met' if met else 'MISSED'} {row.flag if row else ''}".rstrip()


def format_targets(per_threads: dict[int, list[Row]], extra: Sequence[Row] = (), markdown: bool = False) -> str:
    """The targets against each thread count's rows (``extra``: rows that belong to every thread count, ex15.6's)."""
    counts = list(per_threads)
    judged = {n: {t.describe(): v for t, v in target_values([*rows, *extra])} for n, rows in per_threads.items()}
    by_name = {n: {r.name: r for r in [*rows, *extra]} for n, rows in per_threads.items()}
    heads = [f"{n} thread{'s' if n != 1 else ''}" for n in counts]
    if markdown:
        lines = ["| target | " + " | ".join(heads) + " |", "| --- | " + " | ".join("---:" for _ in counts) + " |"]
    else:
        lines = [f"{'target':<64} " + " ".join(f"{h:>20}" for h in heads)]
    for t in TARGETS:
        cells = [_verdict(t, judged[n][t.describe()], by_name[n].get(t.row)) for n in counts]
        if markdown:
            lines.append(f"| {t.describe()} | " + " | ".join(cells) + " |")
        else:
            lines.append(f"{t.describe():<64} " + " ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


# -- scaling --------------------------------------------------------------------------------------------


def format_scaling_table(curves: dict[str, list[dict]]) -> str:
    """The scaling curves as a Markdown table (training images/s; PyTorch = its faster layout)."""
    what = {"batch": "BASE, batch size", "multiplier": "SK-s (batch 100), s", "image_size": "VGG-style stack, image side"}
    lines = ["| curve | x | batch | cnnkit img/s | PyTorch img/s | ratio |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, pts in curves.items():
        for p in pts:
            t = p.get("torch")
            ratio = f"{p['cnnkit'] / t:.2f}x" if t else "-"
            lines.append(f"| {what.get(kind, kind)} | {p['x']:g} | {p.get('batch', '')} | {_fmt(p['cnnkit'])} | "
                         f"{_fmt(t)} | {ratio} |")
    return "\n".join(lines)


# -- the whole report ---------------------------------------------------------------------------------------


def machine_line(info: dict[str, Any]) -> str:
    """One line about the machine and the software, from the results' ``info``."""
    v = info.get("versions", {})
    blas = info.get("blas") or {}
    blas_text = " ".join(str(blas[k]) for k in ("internal_api", "version", "architecture", "threading_layer") if blas.get(k))
    soft = ", ".join(f"{k} {v[k]}" for k in ("numpy", "torch", "onnxruntime", "numba") if v.get(k))
    return (f"{info.get('cpu_model', 'unknown CPU')}, {info.get('cores', '?')} cores; {soft}"
            + (f"; BLAS: {blas_text}" if blas_text else "")
            + (f"; load average {info['loadavg_start'][0]:.2f} at the start" if info.get("loadavg_start") else ""))


def threads_title(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def format_markdown(info: dict[str, Any], per_threads: dict[int, list[Row]], extra: Sequence[Row] = (),
                    dropped: dict[int, list[str]] | None = None, ceilings: dict[int, float] | None = None) -> str:
    """The README-ready Markdown: the machine, one table per thread count, the extra rows (ex15.6), the targets."""
    opts = info.get("options", {})
    lines = [f"Measured with `{info.get('command', 'cnnkit bench')}` on {machine_line(info)}. Every engine in its "
             f"own process, {opts.get('rounds', '?')} rounds interleaving the engines, at least "
             f"{opts.get('min_time', '?')} s of calls per round; figures are medians over the rounds.", ""]
    for n, rows in per_threads.items():
        lines += [f"#### {threads_title(n)}", ""]
        if ceilings and n in ceilings:
            lines += [f"SGEMM ceiling (NumPy float32 2048³): {ceilings[n]:.1f} GFLOP/s.", ""]
        lines += [format_markdown_table(rows), ""]
        for name in (dropped or {}).get(n, []):
            lines.append(f"- dropped: {name}")
        if (dropped or {}).get(n):
            lines.append("")
    for r in extra:
        value = "not measured" if math.isnan(r.cnnkit) else f"{r.cnnkit:.1f} {r.unit}"
        lines += [f"**{r.name}**: {value}" + (f" ({r.note})" if r.note else ""), ""]
    lines += ["Targets (ratios from this run):", "", format_targets(per_threads, extra, markdown=True), "", LEGEND, ""]
    return "\n".join(lines)


def write_json(path: str, results: dict[str, Any]) -> None:
    from cnnkit.serialize import atomic_write_text

    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def write_text(path: str, text: str) -> None:
    from cnnkit.serialize import atomic_write_text

    atomic_write_text(path, text)
