"""One self-contained HTML page about a training run: what a teacher hands out.

The page holds the run's learning curves, the first convolution's filters, the confusion matrix and the worst
errors on the test data, the network's summary table, the configuration and the final metrics. Pictures are
embedded as base64 PNG data URIs; the page loads nothing else (no script, no style sheet, no server), so it
can be mailed or opened from a USB stick. Every string read from the run's files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.serialize import atomic_write_text

MAX_EMBEDDED_BYTES = 20 * 1024 * 1024
"""A run's curves.png larger than this is drawn again from metrics.jsonl instead of embedded."""

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f2f2f2; text-align: left; } td.n { text-align: right; font-family: monospace; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #a33; } pre { background: #f7f7f7; padding: 0.5em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = "".join(f'<td class="n">{_esc(v)}</td>' if i in numeric else f"<td>{_esc(v)}</td>" for i, v in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _number(v: Any) -> str:
    if isinstance(v, (list, dict)):
        text = json.dumps(v)
        if len(text) > 120:  # a per-epoch confusion matrix: the picture below shows it
            return f"({type(v).__name__} of {len(v)} entries, not shown)"
        return text
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.6g}"


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``metrics.jsonl`` (lines that are not JSON objects are skipped).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\\nnot json\\n')
    ...     read_records(d)
    [{'epoch': 1, 'train_loss': 0.5}]
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            records.append(r)
    return records


def _curves(run_dir: Path, records: list[dict[str, Any]]) -> str:
    png = run_dir / "curves.png"
    if png.is_file() and png.stat().st_size <= MAX_EMBEDDED_BYTES:
        data = png.read_bytes()
        if data.startswith(b"\x89PNG\r\n\x1a\n"):  # embedded only if it is a PNG; otherwise drawn again
            return _img(data, "learning curves")
    usable = [r for r in records if isinstance(r.get("epoch"), (int, float)) and isinstance(r.get("train_loss"), (int, float))]
    if not usable:
        return _note("no learning curves: the run has no metrics.jsonl records with epoch and train_loss")
    from cnnkit.inspect._draw import png_bytes, pyplot

    plt = pyplot()
    epochs = [r["epoch"] for r in usable]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-^"), ("test", "-s")):
        loss = [r.get(f"{split}_loss") for r in usable]
        err = [r.get(f"{split}_top1_error") for r in usable]
        if all(isinstance(v, (int, float)) for v in loss):
            ax_loss.plot(epochs, loss, style, label=split, markersize=3)
        if all(isinstance(v, (int, float)) for v in err):
            ax_err.plot(epochs, [100 * v for v in err], style, label=split, markersize=3)  # type: ignore[operator]
    ax_loss.set(xlabel="epoch", ylabel="loss (objective)", title="loss")
    ax_err.set(xlabel="epoch", ylabel="top-1 error (%)", title="top-1 error")
    for ax in (ax_loss, ax_err):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _img(png_bytes(fig), "learning curves")


def _summary(model: Any) -> str:
    from cnnkit.summary import summarize, summary

    shape = model.input_shape
    if shape is None:
        return _note("no summary: the model file does not record its input shape")
    spec = model.meta.get("spec")
    if isinstance(spec, str) and len(shape) == 3:
        s = summarize(spec, (shape[0], shape[1], shape[2]))
    else:
        s = summary(model.network, shape)
    rows = [[r.index, r.token, "x".join(map(str, r.out_shape)), f"{r.params:,}", "-" if r.flops is None else f"{r.flops / 1e6:.2f}",
             f"{r.activations:,}", f"{r.workspace:,}", "" if r.rf is None else r.rf] for r in s.rows]
    table = _table(["#", "layer", "output", "params", "MFLOPs", "activations", "im2row", "rf"], rows, {0, 3, 4, 5, 6, 7})
    totals = (f"<p>input {_esc('x'.join(map(str, s.input_shape)))}; parameters {s.total_params:,}; forward "
              f"{s.total_flops / 1e6:,.2f} MFLOPs per image; activations per image {s.total_activations:,}</p>")
    return f'<div class="summary">{table}\n{totals}</div>'


def report(
    run_dir: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    limit: int | None = None,
    count: int = 24,
) -> str:
    """Write the HTML report of the run in ``run_dir`` (its ``model.npz``, ``metrics.jsonl``, ``config.json``
    and ``curves.png``) to ``out``; returns the page.

    The confusion matrix and worst errors are computed on ``data``/``split`` as ``cnnkit eval`` finds them
    (``limit``: the first images only); when the data cannot be found the page says why instead. Needs
    matplotlib (the ``plot`` extra) for the pictures.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.inspect._draw import pyplot
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, Sequential
    >>> _ = pyplot()  # needs matplotlib
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), Flatten(), Linear(8, 2, rng=np.random.default_rng(1)))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "model.npz"), input_shape=(4, 4, 1), classes=["<a>", "b"])
    ...     page = report(d, Path(d) / "report.html")
    >>> "&lt;a&gt;" in page, '<div class="summary"><table>' in page
    (True, True)
    """
    from cnnkit.inspect._draw import png_bytes, pyplot
    from cnnkit.inspect.evaluation import (
        class_names,
        confusion_figure,
        errors_figure,
        load,
        load_split,
        preprocess,
        probabilities,
        rank_errors,
    )
    from cnnkit.inspect.pictures import filters_figure

    pyplot()  # MissingDependencyError now rather than half-way
    run = Path(run_dir)
    model = load(run)
    records = read_records(run)
    config: dict[str, Any] = {}
    config_note = ""
    if (run / "config.json").is_file():
        try:
            loaded = json.loads((run / "config.json").read_text(encoding="utf-8", errors="replace"))
            config = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            config_note = f"config.json cannot be read: {exc}"
    title = f"cnnkit run {run.resolve().name}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{_esc(title)}</title>",
        f"<style>{_STYLE}</style>", "</head>", "<body>", f"<h1>{_esc(title)}</h1>",
    ]
    model_name = model.meta.get("model", "model file")
    shape = "x".join(map(str, model.input_shape)) if model.input_shape else "unknown"
    names = class_names(model)
    listed = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    parts.append(f"<p>model <b>{_esc(model_name)}</b>, input {_esc(shape)}, {model.network.num_params():,} parameters; "
                 f"trained on {_esc(model.meta.get('data', 'unknown data'))}. Classes: {_esc(listed)}.</p>")

    parts.append("<h2>Final metrics</h2>")
    if records:
        last = records[-1]
        parts.append(_table(["metric", "value"], [[k, _number(v)] for k, v in sorted(last.items())], {1}))
    else:
        parts.append(_note("no metrics.jsonl records"))

    parts.append("<h2>Learning curves</h2>")
    parts.append(_curves(run, records))

    parts.append("<h2>Network</h2>")
    parts.append(_summary(model))

    parts.append("<h2>Filters of the first convolution</h2>")
    try:
        parts.append(_img(png_bytes(filters_figure(model.network)), "filters"))
    except CnnkitError as exc:
        parts.append(_note(str(exc)))

    parts.append(f"<h2>Test data: confusion matrix and worst errors ({_esc(split)} split)</h2>")
    try:
        s = load_split(model, data, split, data_dir, limit, where=run / "model.npz")
        p = probabilities(model.network, preprocess(model, s.images))
        m = np.zeros((p.shape[1], p.shape[1]), dtype=np.int64)
        np.add.at(m, (s.labels, p.argmax(axis=1)), 1)
        n = int(m.sum())
        limited = f" (the first {n})" if limit is not None else ""
        parts.append(f"<p>{_esc(s.name)}{_esc(limited)}: {n:,} images, accuracy {100 * np.trace(m) / max(n, 1):.2f}%.</p>")
        parts.append(_img(png_bytes(confusion_figure(m, s.classes, s.name)), "confusion matrix"))
        e = rank_errors(p, s.labels, s.images, s.classes, count)
        parts.append(_img(png_bytes(errors_figure(e)), "worst errors"))
        rows = [[int(i), s.classes[int(t)], s.classes[int(q)], f"{pt:.4f}", f"{pq:.4f}"]
                for i, t, q, pt, pq in zip(e.indices, e.labels, e.predicted, e.p_true, e.p_predicted)]
        parts.append(_table(["example", "true", "predicted", "p(true)", "p(predicted)"], rows, {0, 3, 4}))
    except (CnnkitError, ValueError, OSError) as exc:
        parts.append(_note(f"no evaluation: {exc}"))

    parts.append("<h2>Configuration</h2>")
    if config:
        parts.append(_table(["setting", "value"], [[k, _number(v)] for k, v in sorted(config.items())]))
    else:
        parts.append(_note(config_note or "no config.json in the run directory"))
    parts += ["<p><small>written by cnnkit report</small></p>", "</body>", "</html>", ""]
    page = "\n".join(parts)
    atomic_write_text(out, page)
    return page
