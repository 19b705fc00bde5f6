"""Exercise 15.4(c) by experiment: what replaces VGG's fully connected layers in GoogLeNet and ResNet (global
average pooling), and what it buys.

Two networks with the same convolutional body (two VGG-style blocks with BN, 28 -> 7) on Fashion-MNIST: an FC
head (``fc256, ReLU, dropout, fc10`` on the 7x7x64 map: ``cnn-fc-mnist``) and a GAP head (global average pooling
and ``fc10``: ``cnn-gap-mnist``). The report gives their parameters (whole network and head) and errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.experiment.plan import Entry, Job, Planner, Programme, ReportContext, check_parts, make_config
from cnnkit.experiment.report import pct

PARTS = ("heads",)
TITLES = {"heads": "FC head vs global-average-pooling head on the same convolutional body"}
DATA = "fashion-mnist"
EXAMPLES = 10000
MODELS = (("FC head (fc256 + dropout + fc10)", "cnn-fc-mnist", "fc"), ("GAP head (global average pooling + fc10)", "cnn-gap-mnist", "gap"))


def plan(parts: tuple[str, ...] = PARTS, epochs: int = 10, max_train: int | None = None,
         test_limit: int | None = None) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """The two runs: ``cnn-fc-mnist`` and ``cnn-gap-mnist`` on the first 10,000 Fashion-MNIST examples.

    Examples
    --------
    >>> jobs, table = plan()
    >>> [(e.group, jobs[e.job].config.model, jobs[e.job].config.lr) for e in table["heads"]]
    [('fc', 'cnn-fc-mnist', 0.01), ('gap', 'cnn-gap-mnist', 0.01)]
    """
    check_parts(parts, PARTS)
    p = Planner()
    if "heads" in parts:
        for label, model, group in MODELS:
            p.add("heads", label, make_config(model, epochs=epochs, n=EXAMPLES, max_train=max_train, test_limit=test_limit,
                                              data=DATA), group=group)
    return p.jobs, p.table


def head_params(model: str) -> tuple[int, int]:
    """(parameters of the whole network, parameters after its last max pooling: the head).

    Examples
    --------
    >>> head_params("cnn-gap-mnist"), head_params("cnn-fc-mnist")
    ((65834, 650), (870826, 805642))
    """
    from cnnkit.models import resolve
    from cnnkit.summary import summarize

    d = resolve(model)
    s = summarize(d.spec, d.input_shape)
    last_pool = max((i for i, t in enumerate(s.tokens) if t.kind == "maxpool"), default=-1)
    return s.total_params, sum(t.params for t in s.tokens[last_pool + 1 :])


def heads_lines(entries: list[Entry], results: dict[str, dict], params: dict[str, tuple[int, int]]) -> list[str]:
    """Commentary: how many parameters the GAP head saves, and the errors and gaps it gives against the FC head.

    Examples
    --------
    >>> es = [Entry("FC", "f", group="fc"), Entry("GAP", "g", group="gap")]
    >>> res = {"f": {"test_error": 0.10, "train_error": 0.02}, "g": {"test_error": 0.09, "train_error": 0.05}}
    >>> for line in heads_lines(es, res, {"f": (870826, 805642), "g": (65834, 650)}): print(line)
    The GAP head has 650 parameters against the FC head's 805,642 (1239x fewer); the whole network 65,834 against 870,826 (13.2x fewer).
    Test error: GAP 9.00%, FC 10.00% (GAP 1.00 points lower).
    Test minus training error (overfitting): GAP 4.00 points, FC 8.00 points.
    """
    rows = {e.group: (e, results.get(e.job)) for e in entries}
    if "fc" not in rows or "gap" not in rows:
        return []
    (fe, fr), (ge, gr) = rows["fc"], rows["gap"]
    out = []
    if fe.job in params and ge.job in params:
        (ft, fh), (gt, gh) = params[fe.job], params[ge.job]
        out.append(f"The GAP head has {gh:,} parameters against the FC head's {fh:,} ({fh / max(gh, 1):.0f}x fewer); the whole "
                   f"network {gt:,} against {ft:,} ({ft / max(gt, 1):.1f}x fewer).")
    if fr and gr and fr.get("test_error") is not None and gr.get("test_error") is not None:
        d = fr["test_error"] - gr["test_error"]
        out.append(f"Test error: GAP {pct(gr['test_error'])}, FC {pct(fr['test_error'])} "
                   f"(GAP {100 * abs(d):.2f} points {'lower' if d >= 0 else 'higher'}).")
        if fr.get("train_error") is not None and gr.get("train_error") is not None:
            out.append(f"Test minus training error (overfitting): GAP {100 * (gr['test_error'] - gr['train_error']):.2f} points, "
                       f"FC {100 * (fr['test_error'] - fr['train_error']):.2f} points.")
    return out


def report(ctx: ReportContext) -> Path:
    """Write ``report-ex15.4c.md``, its plot and ``results-ex15.4c.json``; returns the report's path.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.experiment import PROGRAMMES
    >>> jobs, table = plan()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = report(ReportContext(Path(d), PROGRAMMES["ex15.4c"], jobs, table, {}, {"runs": 2})).read_text()
    >>> "| GAP head (global average pooling + fc10) | 65,834 | 650 |" in text
    True
    """
    entries = ctx.table.get("heads", [])
    params = {e.job: head_params(ctx.jobs[e.job].config.model) for e in entries}
    lines = ctx.head_lines("Exercise 15.4(c): what replaces the fully connected layers", "heads")
    lines += [f"Data: {DATA}, test set" + (f" (first {ctx.test_limit})" if ctx.test_limit else "") + ".", ""]
    lines += ["| head | parameters | head parameters | test error | training error | best test error (epoch) | wall time |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        r = ctx.results.get(e.job, {})
        curve = [v for v in r.get("test_error_per_epoch") or [] if v is not None]
        best = f"{pct(min(curve))} ({curve.index(min(curve)) + 1})" if curve else "n/a"
        total, head = params[e.job]
        lines.append(f"| {e.label} | {total:,} | {head:,} | {pct(r.get('test_error'))} | {pct(r.get('train_error'))} | {best} | "
                     f"{r.get('wall_seconds', float('nan')):.0f} s |")
    def draw(figs: Any) -> None:
        fig, ax = figs.new()
        for e in entries:
            r = ctx.results.get(e.job) or {}
            for key, style, what in (("test_error_per_epoch", "-o", "test"), ("train_error_per_epoch", "--", "training")):
                v = r.get(key) or []
                if v:
                    ax.plot(range(1, len(v) + 1), [100 * x for x in v], style, markersize=3,
                            label=f"{e.group.upper() if e.group else e.label} {what}")
        ax.set(xlabel="epoch", ylabel="error (%)", title="FC head vs GAP head")
        figs.save(fig, "curves.png", ax)
    return ctx.finish(lines, entries, heads_lines(entries, ctx.results, params), {"params": params}, "ex15.4c-", draw)

PROGRAMME = Programme("ex15.4c", "Exercise 15.4(c): FC head vs global average pooling", PARTS, TITLES, plan, report, 10,
                      "runs/ex15.4c", DATA)
