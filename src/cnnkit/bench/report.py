"""The report: result rows, the text and Markdown tables, the log lines, and the results as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple


class Column(NamedTuple):
    """One timed (engine, layout) pair: the :class:`Row` field it fills and its key in the memory results."""

    engine: str
    layout: str
    field: str
    memory_key: str


COLUMNS: tuple[Column, ...] = (
    Column("cnnkit", "nhwc", "cnnkit", "cnnkit"),
    Column("torch", "nchw", "torch_nchw", "torch"),
    Column("torch", "channels_last", "torch_cl", "torch_cl"),
)


@dataclass
class Row:
    name: str
    unit: str
    cnnkit: float
    torch_nchw: float | None = None
    torch_cl: float | None = None

    @property
    def torch_best(self) -> float | None:
        """PyTorch's better layout: the higher throughput, or the lower memory (unit MiB)."""
        vals = [v for v in (self.torch_nchw, self.torch_cl) if v is not None]
        if not vals:
            return None
        return min(vals) if self.unit == "MiB" else max(vals)

    @property
    def ratio(self) -> float | None:
        best = self.torch_best
        return self.cnnkit / best if best else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "cnnkit": self.cnnkit, "torch_nchw": self.torch_nchw,
                "torch_channels_last": self.torch_cl, "ratio": self.ratio}


def _fmt(v: float | None) -> str:
    return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")


def format_row(r: Row) -> str:
    """One line of :func:`format_table`."""
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
    return f"{r.name:<44} {r.unit:<8} {_fmt(r.cnnkit):>10} {_fmt(r.torch_nchw):>10} {_fmt(r.torch_cl):>10} {ratio:>7}"


def format_table(rows: list[Row]) -> str:
    head = f"{'workload':<44} {'unit':<8} {'cnnkit':>10} {'torch':>10} {'torch CL':>10} {'ratio':>7}"
    return "\n".join([head, "-" * len(head)] + [format_row(r) for r in rows])


def format_memory_line(row: Row) -> str:
    return f"{row.name}: cnnkit {_fmt(row.cnnkit)} MiB, torch {_fmt(row.torch_nchw)} MiB, torch channels_last {_fmt(row.torch_cl)} MiB"


def format_ceiling_line(rows: list[Row], ceiling: float) -> str:
    """The SGEMM ceiling and each convolution's forward GFLOP/s as a fraction of it."""
    fractions = [f"{r.name.split(' forward')[0]} {100 * r.cnnkit / ceiling:.0f}%"
                 for r in rows if r.unit == "GFLOP/s" and r.name.endswith("forward")]
    return f"SGEMM ceiling: {ceiling:.1f} GFLOP/s; conv forward rows as a fraction of it: " + ", ".join(fractions)


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


def results_json(info: dict[str, Any], sgemm_gflops: float, rows: list[Row], memory: dict[str, Any] | None = None,
                 scaling: dict[str, list[dict]] | None = None) -> dict[str, Any]:
    """The JSON-able results: ``info``, ``sgemm_gflops``, ``memory`` (with --memory), ``rows``, ``scaling`` (with --scaling)."""
    results: dict[str, Any] = {"info": info, "sgemm_gflops": sgemm_gflops}
    if memory is not None:
        results["memory"] = memory
    results["rows"] = [r.as_dict() for r in rows]
    if scaling is not None:
        results["scaling"] = scaling
    return results


def write_json(path: str, results: dict[str, Any]) -> None:
    from cnnkit.serialize import atomic_write_text

    atomic_write_text(path, json.dumps(results, indent=2) + "\n")
