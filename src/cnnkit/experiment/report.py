"""The exercise-15.6 report: a table per part, commentary computed from the numbers, plots, results.json."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from cnnkit.experiment.ex15_6 import TITLES, Entry
from cnnkit.serialize import atomic_write_bytes, atomic_write_text

DEVIATIONS = [
    "Weights are drawn from NumPy's PCG64 generator seeded with the run's seed, not MATLAB's randn stream, so no run "
    "reproduces MatConvNet's numbers digit for digit; the distribution (0.01·N(0,1), zero biases) is the same.",
    "Batch normalisation keeps running averages with momentum 0.05 (MatConvNet's moment learning rate 0.05) and "
    "uses them at test time; MatConvNet 1.0-beta20 does the same with its stored moments. The convolutions followed "
    "by BN have no bias, as insertBnorm removes it.",
    "Weight decay 5e-4 applies to every convolution weight and bias, not to batch-norm scale and shift.",
    "SGD with momentum is PyTorch's form (v = 0.9v + g + λw; w -= lr·v), identical to MatConvNet's for a constant "
    "learning rate, which the exercise uses.",
    "Inputs are raw 0-255 pixels minus the mean image of all 60,000 training images (MatConvNet's cnn_mnist), also "
    "for runs trained on a subset or slice.",
    "The dropout layer of (d) sits after block 4's classifier (on the class scores), as the exercise states, with rate 0.5.",
    "SK-s rounds every scaled channel count to the nearest integer (SK-0.2: 4, 4, 10 and 100 channels).",
    "Training error is the running error over each epoch's mini-batches (as MatConvNet reports it), not a separate pass.",
]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _wall(r: dict) -> str:
    """The run's wall time; a run resumed from a checkpoint says so (its time counts the resumed part only)."""
    text = f"{r.get('wall_seconds', float('nan')):.0f} s"
    if r.get("resumed_after_epoch"):
        text += f" (resumed after epoch {r['resumed_after_epoch']})"
    return text


def part_table(entries: list[Entry], results: dict[str, dict]) -> str:
    lines = ["| configuration | test error | training error | epochs | wall time |", "| --- | --- | --- | --- | --- |"]
    for e in entries:
        r = results.get(e.job, {})
        lines.append(f"| {e.label} | {_pct(r.get('test_error'))} | {_pct(r.get('train_error'))} | "
                     f"{r.get('epochs', 'n/a')} | {_wall(r)} |")
    return "\n".join(lines)


def commentary(part: str, entries: list[Entry], results: dict[str, dict]) -> list[str]:
    """Short factual statements computed from the numbers of one part."""
    rows = [(e, results[e.job]) for e in entries if e.job in results and results[e.job].get("test_error") is not None]
    if not rows:
        return []
    errs = [r["test_error"] for _, r in rows]
    out: list[str] = []
    best_e, best_r = min(rows, key=lambda t: t[1]["test_error"])
    worst_e, worst_r = max(rows, key=lambda t: t[1]["test_error"])
    if part in ("h", "i"):
        m, s = _mean_std(errs)
        what = "the six slices" if part == "h" else "the seven seeds"
        out.append(f"Over {what}: test error {100 * m:.2f}% ± {100 * s:.2f}% (mean ± standard deviation), "
                   f"from {100 * min(errs):.2f}% ({best_e.label}) to {100 * max(errs):.2f}% ({worst_e.label}).")
        return out
    if part == "g":
        pts = sorted((e.x, r["test_error"]) for e, r in rows if e.x)
        if len(pts) >= 2:
            (n0, e0), (n1, e1) = pts[0], pts[-1]
            out.append(f"Test error falls from {100 * e0:.2f}% with {int(n0):,} examples to {100 * e1:.2f}% with {int(n1):,}.")
            logs = [(math.log10(n), math.log10(max(err, 1e-6))) for n, err in pts]
            mx, my = statistics.fmean(x for x, _ in logs), statistics.fmean(y for _, y in logs)
            sxx = sum((x - mx) ** 2 for x, _ in logs)
            if sxx > 0:
                slope = sum((x - mx) * (y - my) for x, y in logs) / sxx
                out.append(f"On log-log axes the error falls with slope {slope:.2f}: each tenfold increase of the "
                           f"training set multiplies the error by about {10 ** slope:.2f}.")
            drops = [(pts[i + 1][0], pts[i][1] - pts[i + 1][1]) for i in range(len(pts) - 1)]
            rises = [n for n, d in drops if d < 0]
            if rises:
                out.append("Error did not fall at every step: it rose when going to " + ", ".join(f"{int(n):,}" for n in rises)
                           + " examples.")
        return out
    if len(rows) >= 2:
        gap = worst_r["test_error"] - best_r["test_error"]
        rel = gap / worst_r["test_error"] if worst_r["test_error"] else 0.0
        out.append(f"Best: {best_e.label} at {100 * best_r['test_error']:.2f}% test error; worst: {worst_e.label} at "
                   f"{100 * worst_r['test_error']:.2f}% ({100 * gap:.2f} points, {100 * rel:.0f}% relative).")
    if part == "f":
        labelled = sorted((e.x, r["test_error"], e.label) for e, r in rows if e.x)
        order = " < ".join(lbl for _, _, lbl in sorted(labelled, key=lambda t: t[1]))
        out.append(f"Ordered by test error: {order}.")
    if part in ("b", "c", "d", "e", "f", "j"):
        gaps = [(e.label, r["test_error"] - r["train_error"]) for e, r in rows if r.get("train_error") is not None]
        if gaps:
            big = max(gaps, key=lambda t: t[1])
            out.append(f"Largest gap between test and training error: {big[0]} ({100 * big[1]:.2f} points).")
    return out


def _plots(exp_dir: Path, table: dict[str, list[Entry]], results: dict[str, dict]) -> list[str]:
    from cnnkit.train.plots import have_matplotlib

    if not have_matplotlib():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []

    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(exp_dir / name, buf.getvalue())
        made.append(name)

    for part, name, xlabel, logx in (("g", "error_vs_train_size.png", "training examples", True),
                                     ("f", "error_vs_multiplier.png", "channel multiplier s", False)):
        pts = sorted((e.x, results[e.job]["test_error"]) for e in table.get(part, []) if e.x and e.job in results)
        if len(pts) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "-o")
        if logx:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel="test error (%)", title=TITLES[part])
        ax.grid(True, which="both", alpha=0.3)
        save(fig, name)
    curves = {}
    for part, label, model in (("b", "BASE", "base"), ("c", "BN", "bn"), ("e", "SK", "sk")):
        for e in table.get(part, []):
            r = results.get(e.job)
            if r and r["config"]["model"] == model:
                curves[label] = r["test_error_per_epoch"]
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, errs in curves.items():
            ax.plot(range(1, len(errs) + 1), [100 * v for v in errs], "-o", markersize=3, label=label)
        ax.set(xlabel="epoch", ylabel="test error (%)", title="test error per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
        save(fig, "test_error_curves.png")
    return made


def write_report(exp_dir: str | Path, table: dict[str, list[Entry]], results: dict[str, dict], meta: dict[str, Any]) -> Path:
    """Write report.md, the plots and results.json into ``exp_dir``; returns the report's path."""
    exp_dir = Path(exp_dir)
    plots = _plots(exp_dir, table, results)
    lines = ["# Exercise 15.6 on MNIST with cnnkit", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "Every number below is what the runs gave; the test set is the 10,000 MNIST test images"
              + (f" (limited to the first {meta['test_limit']})" if meta.get("test_limit") else "") + ".", ""]
    for part, entries in table.items():
        lines += [f"## {TITLES[part]}", "", part_table(entries, results), ""]
        lines += [f"- {s}" for s in commentary(part, entries, results)]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Deviations from MatConvNet 1.0-beta20", ""] + [f"- {d}" for d in DEVIATIONS] + [""]
    report = exp_dir / "report.md"
    atomic_write_text(report, "\n".join(lines))
    payload = {"meta": meta, "parts": {p: [{"label": e.label, "job": e.job, "x": e.x} for e in es] for p, es in table.items()},
               "results": results}
    atomic_write_text(exp_dir / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return report
