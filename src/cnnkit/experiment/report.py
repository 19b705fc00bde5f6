"""Experiment reports: the exercise-15.6 report (a table per part, commentary computed from the numbers,
plots, results.json) and the pieces every programme's report uses (percentages, configuration tables,
plot files, the report and results files)."""

from __future__ import annotations

import io
import json
import math
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnkit.experiment.ex15_6 import TITLES
from cnnkit.experiment.plan import Entry, Job
from cnnkit.serialize import atomic_write_bytes, atomic_write_text

#: what the ex15.6 runs share with MatConvNet 1.0-beta20's cnn_mnist / cnn_train (checked against its source)
MATCHED = [
    "Networks, initialisation (0.01·N(0,1) weights, zero biases), lr 0.001, momentum 0.9, weight decay 5e-4, batch 100, "
    "20 epochs, softmax log-loss averaged over the batch (cnn_train divides the summed gradient by the batch size).",
    "SGD: cnn_train's v = 0.9v − λw − g/B, w += lr·v is the iteration used here (b = 0.9b + g + λw, w −= lr·b) for a "
    "constant rate.",
    "Weight decay applies to every convolution weight and bias (vl_simplenn_tidy's weightDecay 1), not to BN scale "
    "and shift (insertBnorm's weightDecay [0 0]); every learning-rate multiplier is 1.",
    "Batch normalisation: batch mean and biased variance in training; running moments with rate 0.05 (insertBnorm's "
    "learningRate [1 1 0.05]) used at test time.",
    "Inputs: raw 0-255 pixels minus the mean image of all 60,000 training images (getMnistImdb), also for runs on a "
    "subset or slice; images in their IDX orientation (getMnistImdb's permute undoes MATLAB's column-major read).",
    "Every epoch visits the training subset in a fresh random order; training error is the running error over "
    "the epoch's mini-batches in training mode (cnn_train's stats.train), test error a test-mode pass after it.",
    "Dropout (d): a layer after block 4's classifier with rate 0.5, scaling by 2 during training and the identity at "
    "test time (vl_nndropout).",
]

#: the two settings MatConvNet's way (the default; ``--no-matconvnet`` turns them off)
MATCHED_SETTINGS = [
    "The SGD momentum is zeroed at the start of every training epoch, as cnn_train's process_epoch does.",
    "Batch normalisation's epsilon is 1e-4, vl_nnbnorm's default.",
]

DEVIATIONS = [
    "Random numbers: NumPy's PCG64 seeded with the run's seed draws the weights, the order of every epoch and the "
    "dropout masks. MatConvNet draws the weights after rng(0) in cnn_mnist_init whatever the experiment's seed, and "
    "each epoch's order after rng(epoch + randomSeed) from MATLAB's Mersenne twister: same distributions, other "
    "numbers, so no run reproduces MatConvNet's digit for digit (and (i)'s seeds change both the weights and the order).",
    "BN running statistics: the mean and the unbiased variance are averaged (starting at 0 and 1) and test inputs "
    "are divided by sqrt(running variance + eps); MatConvNet averages the mean and sigma = sqrt(biased variance + eps) "
    "(starting at 0 and 0) and divides by the averaged sigma. The two differ by the factor M/(M-1) (M = batch x height "
    "x width >= 100) and by the gap between an average of square roots and the square root of an average; the starting "
    "values weigh 0.95^100 < 1% after the first epoch.",
    "The convolutions followed by BN have no bias. insertBnorm sets a `biases` field that 1.0-beta20's simplenn "
    "does not read, so there they keep one, but BN's mean subtraction gives it a zero gradient and weight decay keeps "
    "it at its initial 0: the same network.",
    "SK-s rounds every scaled channel count to the nearest integer (SK-0.2: 4, 4, 10 and 100 channels); the exercise "
    "does not say how to round.",
    "Arithmetic: float32 convolutions as im2row + BLAS matrix products with their own summation order (MatConvNet's "
    "CPU path is also im2row + BLAS, in another order and memory layout); results agree to rounding per step, and "
    "rounding differences grow over training like a change of seed.",
]

#: the deviations when the runs use cnnkit's own settings (``--no-matconvnet``) instead of MatConvNet's
NOT_MATCONVNET = [
    "These runs keep the SGD momentum across epochs and use BN epsilon 1e-5 (cnnkit's own defaults, "
    "`--no-matconvnet`); MatConvNet zeroes the momentum at the start of every epoch and uses epsilon 1e-4.",
]

#: how many final epochs (j)'s spread is taken over
LAST_EPOCHS = 5


def pct(v: float | None, digits: int = 2) -> str:
    """A fraction as a percentage ('n/a' for None).

    Examples
    --------
    >>> pct(0.0123), pct(None), pct(0.5, 0)
    ('1.23%', 'n/a', '50%')
    """
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


_pct = pct


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _wall(r: dict) -> str:
    """The run's wall time; a run resumed from a checkpoint says so (its time counts the resumed part only)."""
    text = f"{r.get('wall_seconds', float('nan')):.0f} s"
    if r.get("resumed_after_epoch"):
        text += f" (resumed after epoch {r['resumed_after_epoch']})"
    return text


def part_table(entries: list[Entry], results: dict[str, dict]) -> str:
    """A part's table: test error, training error, epochs and wall time per row.

    Examples
    --------
    >>> print(part_table([Entry("BASE", "b")], {"b": {"test_error": 0.02, "train_error": 0.0, "epochs": 20, "wall_seconds": 31.6}}))
    | configuration | test error | training error | epochs | wall time |
    | --- | --- | --- | --- | --- |
    | BASE | 2.00% | 0.00% | 20 | 32 s |
    """
    lines = ["| configuration | test error | training error | epochs | wall time |", "| --- | --- | --- | --- | --- |"]
    for e in entries:
        r = results.get(e.job, {})
        lines.append(f"| {e.label} | {_pct(r.get('test_error'))} | {_pct(r.get('train_error'))} | "
                     f"{r.get('epochs', 'n/a')} | {_wall(r)} |")
    return "\n".join(lines)


def commentary(part: str, entries: list[Entry], results: dict[str, dict]) -> list[str]:
    """Short factual statements computed from the numbers of one part.

    Examples
    --------
    >>> results = {"a": {"test_error": 0.02, "train_error": 0.0}, "b": {"test_error": 0.015, "train_error": 0.001}}
    >>> commentary("c", [Entry("BASE", "a"), Entry("BN", "b")], results)[0]
    'Best: BN at 1.50% test error; worst: BASE at 2.00% (0.50 points, 25% relative).'
    """
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
    if part == "j":
        out += last_epochs_lines(rows)
        if len(rows) == 2:
            from cnnkit.experiment.analysis import last_epochs

            (e0, r0), (e1, r1) = rows
            m0, m1 = (last_epochs(r.get("test_error_per_epoch") or [], LAST_EPOCHS) for r in (r0, r1))
            if m0[4] >= 2 and m1[4] >= 2:
                spread = max(m0[1], m1[1])
                d = m1[0] - m0[0]
                out.append(f"Averaged over the last {min(m0[4], m1[4])} epochs, {e1.label} is {100 * d:+.2f} points from "
                           f"{e0.label} (final epochs: {100 * (r1['test_error'] - r0['test_error']):+.2f}); the larger "
                           f"epoch-to-epoch spread is {100 * spread:.2f} points, so a difference of the final epochs "
                           f"smaller than about twice that is within the fluctuation of one run.")
    return out


def last_epochs_lines(rows: list[tuple[Entry, dict]], k: int = LAST_EPOCHS) -> list[str]:
    """For each row, the mean and spread of its last ``k`` epochs' test error beside the final one: a single
    final epoch can sit anywhere in a fluctuating curve (sigmoid's, in (j)).

    Examples
    --------
    >>> rows = [(Entry("SK-0.2 (sigmoid)", "j"), {"test_error": 0.03, "test_error_per_epoch": [0.5, 0.05, 0.04, 0.03]})]
    >>> last_epochs_lines(rows, k=3)
    ['SK-0.2 (sigmoid): final test error 3.00%; over the last 3 epochs 4.00% ± 1.00% (mean ± sd), from 3.00% to 5.00%.']
    """
    from cnnkit.experiment.analysis import last_epochs

    out = []
    for e, r in rows:
        m, sd, lo, hi, n = last_epochs(r.get("test_error_per_epoch") or [], k)
        if n < 2:
            continue
        out.append(f"{e.label}: final test error {100 * r['test_error']:.2f}%; over the last {n} epochs {100 * m:.2f}% ± "
                   f"{100 * sd:.2f}% (mean ± sd), from {100 * lo:.2f}% to {100 * hi:.2f}%.")
    return out


class Figures:
    """Plot files of a report: ``new()`` gives a matplotlib figure and axes, ``save(fig, name)`` writes
    ``exp_dir/<prefix><name>`` atomically and remembers it (:attr:`made`, in order).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, figures(d, "demo-") as figs:
    ...     if figs is not None:  # None without matplotlib
    ...         fig, ax = figs.new()
    ...         _ = ax.plot([1, 2], [3, 4])
    ...         figs.save(fig, "line.png")
    ...     made = figs.made if figs is not None else ["demo-line.png"]
    >>> made
    ['demo-line.png']
    """

    def __init__(self, exp_dir: str | Path, prefix: str, plt: Any) -> None:
        self.exp_dir, self.prefix, self.plt = Path(exp_dir), prefix, plt
        self.made: list[str] = []

    def new(self, figsize: tuple[float, float] = (6, 4), ncols: int = 1) -> tuple[Any, Any]:
        return self.plt.subplots(1, ncols, figsize=figsize)

    def save(self, fig: Any, name: str, *axes: Any, which: str = "major", legend_size: float | None = None) -> None:
        """Write ``fig`` as ``<prefix><name>``; ``axes`` get a light grid (on ``which`` ticks) and a legend first."""
        for ax in axes:
            ax.grid(True, which=which, alpha=0.3)
            ax.legend(fontsize=legend_size)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        self.plt.close(fig)
        atomic_write_bytes(self.exp_dir / (self.prefix + name), buf.getvalue())
        self.made.append(self.prefix + name)


@contextmanager
def figures(exp_dir: str | Path, prefix: str = "") -> Iterator[Figures | None]:
    """A :class:`Figures` for ``exp_dir`` (None when matplotlib is not installed: a report without plots).

    Examples
    --------
    >>> with figures(".") as figs:
    ...     print(figs is None or figs.made == [])
    True
    """
    from cnnkit.train.plots import have_matplotlib

    if not have_matplotlib():
        yield None
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield Figures(exp_dir, prefix, plt)


def _plots(exp_dir: Path, table: dict[str, list[Entry]], results: dict[str, dict]) -> list[str]:
    with figures(exp_dir) as figs:
        if figs is None:
            return []
        _ex15_6_plots(figs, table, results)
        return figs.made


def _ex15_6_plots(figs: Figures, table: dict[str, list[Entry]], results: dict[str, dict]) -> None:
    save = figs.save
    for part, name, xlabel, logx in (("g", "error_vs_train_size.png", "training examples", True),
                                     ("f", "error_vs_multiplier.png", "channel multiplier s", False)):
        pts = sorted((e.x, results[e.job]["test_error"]) for e in table.get(part, []) if e.x and e.job in results)
        if len(pts) < 2:
            continue
        fig, ax = figs.new()
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
        fig, ax = figs.new()
        for label, errs in curves.items():
            ax.plot(range(1, len(errs) + 1), [100 * v for v in errs], "-o", markersize=3, label=label)
        ax.set(xlabel="epoch", ylabel="test error (%)", title="test error per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
        save(fig, "test_error_curves.png")


def write_report(exp_dir: str | Path, table: dict[str, list[Entry]], results: dict[str, dict], meta: dict[str, Any]) -> Path:
    """Write exercise 15.6's report.md, the plots and results.json into ``exp_dir``; returns the report's path.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> results = {"b": {"test_error": 0.0215, "train_error": 0.0, "epochs": 20, "wall_seconds": 32.0,
    ...                  "config": {"model": "base"}, "test_error_per_epoch": [0.03, 0.0215]}}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = write_report(d, {"b": [Entry("BASE", "b")]}, results, {"runs": 1}).read_text()
    ...     files = sorted(p.name for p in Path(d).iterdir() if p.suffix != ".png")  # plots need matplotlib
    >>> "| BASE | 2.15% | 0.00% | 20 | 32 s |" in text, "## Deviations from MatConvNet 1.0-beta20" in text, files
    (True, True, ['report.md', 'results.json'])
    """
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
    own = str(meta.get("settings", "")).startswith("cnnkit")
    lines += ["## MatConvNet 1.0-beta20 settings these runs follow", ""]
    lines += [f"- {d}" for d in MATCHED + ([] if own else MATCHED_SETTINGS)] + [""]
    lines += ["## Deviations from MatConvNet 1.0-beta20", ""]
    lines += [f"- {d}" for d in (NOT_MATCONVNET if own else []) + DEVIATIONS] + [""]
    report = exp_dir / "report.md"
    atomic_write_text(report, "\n".join(lines))
    payload = {"meta": meta, "parts": {p: [{"label": e.label, "job": e.job, "x": e.x} for e in es] for p, es in table.items()},
               "results": results}
    atomic_write_text(exp_dir / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return report


#: how a configuration entry is shown in a report's configuration table
_SHOWN = {"model": "model", "data": "data", "train_limit": "training examples", "train_range": "training examples",
          "epochs": "epochs", "batch_size": "batch", "lr": "lr", "schedule": "schedule", "optimizer": "optimiser",
          "momentum": "momentum", "weight_decay": "weight decay", "seed": "seed", "preprocess": "preprocessing",
          "init": "init", "bn_eps": "BN eps", "momentum_reset": "momentum reset per epoch", "val_split": "validation split",
          "augment": "augmentation", "test_limit": "test images", "grad_norms": "gradient norms at steps", "dtype": "dtype"}


def _shown(key: str, value: Any) -> str:
    if key == "train_limit":
        return "all" if value is None else f"first {value:,}"
    if key == "test_limit":
        return "all" if value is None else f"first {value:,}"
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "model" and len(str(value)) > 40:
        return f"`{value}`"
    return f"{value:g}" if isinstance(value, float) else str(value)


def configuration_lines(jobs: dict[str, Job], rows: Sequence[tuple[str, str]]) -> list[str]:
    """Markdown listing the configuration of a report's runs: one line of the settings all ``rows`` share, then a
    table of those that differ (``rows``: (label, job key) pairs, in the report's order).

    Examples
    --------
    >>> from cnnkit.experiment.plan import make_config, job_key
    >>> a, b = make_config("cnn-gap-mnist", epochs=5, n=1000), make_config("cnn-fc-mnist", epochs=5, n=1000)
    >>> jobs = {job_key(c): Job(job_key(c), c) for c in (a, b)}
    >>> lines = configuration_lines(jobs, [("GAP head", job_key(a)), ("FC head", job_key(b))])
    >>> lines[0][:73]
    'Shared by every run: data mnist; training examples first 1,000; epochs 5;'
    >>> lines[2:]
    ['| run | model |', '| --- | --- |', '| GAP head | cnn-gap-mnist |', '| FC head | cnn-fc-mnist |', '']
    """
    configs = [(label, jobs[key].config.to_dict()) for label, key in rows if key in jobs]
    if not configs:
        return []
    keys = [k for k in _SHOWN if k in configs[0][1]]
    if all(c.get("train_range") is None for _, c in configs):
        keys.remove("train_range")
    shared = [k for k in keys if all(c[k] == configs[0][1][k] for _, c in configs)]
    varying = [k for k in keys if k not in shared]
    shared = [k for k in shared if configs[0][1][k] is not None or k in ("train_limit", "test_limit")]  # unset: not said
    lines = ["Shared by every run: " + "; ".join(f"{_SHOWN[k]} {_shown(k, configs[0][1][k])}" for k in shared) + ".", ""]
    if varying and len(configs) > 1:
        lines += ["| run | " + " | ".join(_SHOWN[k] for k in varying) + " |", "| --- |" + " --- |" * len(varying)]
        lines += [f"| {label} | " + " | ".join(_shown(k, c[k]) for k in varying) + " |" for label, c in configs]
        lines.append("")
    return lines


def write_files(exp_dir: str | Path, report_name: str, results_name: str, lines: Sequence[str], payload: dict[str, Any]) -> Path:
    """Write a programme's report (markdown ``lines``) and its results JSON atomically; returns the report's path.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_files(d, "report-x.md", "results-x.json", ["# X", "", "text"], {"results": {}})
    ...     print(path.name, path.read_text().splitlines(), json.loads((Path(d) / "results-x.json").read_text()))
    report-x.md ['# X', '', 'text'] {'results': {}}
    """
    exp_dir = Path(exp_dir)
    report = exp_dir / report_name
    atomic_write_text(report, "\n".join(lines).rstrip("\n") + "\n")
    atomic_write_text(exp_dir / results_name, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")
    return report


def _json_default(value: Any) -> Any:
    try:
        return value.item()  # NumPy scalars
    except AttributeError:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable") from None
