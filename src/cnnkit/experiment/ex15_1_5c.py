"""Exercises 15.1 and 15.5(c) by experiment: what dropout costs in epochs to converge, and what it buys.

The four-layer CNN of 15.5(a) with ReLU, with and without dropout (rate 0.5) after its hidden fully connected
layer (where AlexNet applies it), on the first 10,000 Fashion-MNIST examples of which 10% are held out as
validation data; no weight decay, so dropout is the only regulariser. The report gives the epochs each needs to
reach training-loss targets and a validation-error target (the worse of the two networks' best validation
errors, which both reach), the best validation error and its epoch, and the test error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.experiment.analysis import epochs_to_reach
from cnnkit.experiment.nets import cnn4_spec
from cnnkit.experiment.plan import Entry, Job, Planner, Programme, ReportContext, check_parts, make_config
from cnnkit.experiment.report import pct

PARTS = ("dropout",)
TITLES = {"dropout": "Without vs with dropout: epochs to reach a training loss or a validation error"}
DATA = "fashion-mnist"
EXAMPLES = 10000
VAL_SPLIT = 0.1
LR = 0.01
LOSS_TARGETS = (0.5, 0.3, 0.2, 0.1)


def plan(parts: tuple[str, ...] = PARTS, epochs: int = 30, max_train: int | None = None,
         test_limit: int | None = None) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """Two runs, the same but for the dropout layer.

    Examples
    --------
    >>> jobs, table = plan()
    >>> [(e.label, "dropout" in jobs[e.job].config.model, jobs[e.job].config.val_split) for e in table["dropout"]]
    [('without dropout', False, 0.1), ('with dropout (0.5)', True, 0.1)]
    """
    check_parts(parts, PARTS)
    p = Planner()
    if "dropout" in parts:
        for dropout in (False, True):
            cfg = make_config(cnn4_spec("relu", dropout), epochs=epochs, n=EXAMPLES, max_train=max_train, test_limit=test_limit,
                              data=DATA, lr=LR, weight_decay=0.0, init="pytorch", preprocess="per_channel", val_split=VAL_SPLIT)
            p.add("dropout", "with dropout (0.5)" if dropout else "without dropout", cfg,
                  name="cnn4-relu-dropout" if dropout else "cnn4-relu", group="dropout" if dropout else "plain")
    return p.jobs, p.table


def _best(curve: list[float | None]) -> tuple[float, int] | None:
    vals = [(v, i + 1) for i, v in enumerate(curve) if v is not None]
    return min(vals) if vals else None


def dropout_lines(entries: list[Entry], results: dict[str, dict]) -> list[str]:
    """Commentary: epochs to the training-loss targets and to the common validation-error target, with and
    without dropout, and the best validation and final test errors.

    Examples
    --------
    >>> es = [Entry("without dropout", "a", group="plain"), Entry("with dropout (0.5)", "b", group="dropout")]
    >>> res = {"a": {"train_loss_per_epoch": [0.6, 0.3, 0.15, 0.08], "val_error_per_epoch": [0.14, 0.12, 0.11, 0.12],
    ...              "test_error": 0.12},
    ...        "b": {"train_loss_per_epoch": [0.7, 0.45, 0.35, 0.28], "val_error_per_epoch": [0.16, 0.13, 0.11, 0.10],
    ...              "test_error": 0.105}}
    >>> for line in dropout_lines(es, res): print(line)
    Training loss 0.5: without dropout after 1.3 epochs, with dropout after 1.8 epochs (1.4x as many).
    Training loss 0.3: without dropout after 2.0 epochs, with dropout after 3.7 epochs (1.9x as many).
    Training loss 0.2: without dropout after 2.7 epochs, with dropout not within 4 epochs.
    Training loss 0.1: without dropout after 3.7 epochs, with dropout not within 4 epochs.
    Validation error 11.00% (the worse of the two best): without dropout after 3.0 epochs, with dropout after 3.0 epochs (1.0x as many).
    Best validation error: without dropout 11.00% (epoch 3), with dropout 10.00% (epoch 4); final test error 12.00% vs 10.50%.
    """
    rows = {e.group: (e, results.get(e.job)) for e in entries}
    if "plain" not in rows or "dropout" not in rows or not rows["plain"][1] or not rows["dropout"][1]:
        return []
    pr, dr = rows["plain"][1], rows["dropout"][1]
    assert pr is not None and dr is not None

    def compare(what: str, key: str, target: float, start: float | None) -> str | None:
        a = epochs_to_reach(pr.get(key) or [], target, start)
        b = epochs_to_reach(dr.get(key) or [], target, start)
        if a is None and b is None:
            return None
        na, nb = len(pr.get(key) or []), len(dr.get(key) or [])
        ta = f"after {a:.1f} epochs" if a is not None else f"not within {na} epochs"
        tb = f"after {b:.1f} epochs" if b is not None else f"not within {nb} epochs"
        ratio = f" ({b / a:.1f}x as many)" if a is not None and b is not None and a > 0 else ""
        return f"{what}: without dropout {ta}, with dropout {tb}{ratio}."

    out = [line for t in LOSS_TARGETS if (line := compare(f"Training loss {t:g}", "train_loss_per_epoch", t, None))]
    bp, bd = _best(pr.get("val_error_per_epoch") or []), _best(dr.get("val_error_per_epoch") or [])
    if bp and bd:
        target = max(bp[0], bd[0])
        line = compare(f"Validation error {pct(target)} (the worse of the two best)", "val_error_per_epoch", target, None)
        if line:
            out.append(line)
        out.append(f"Best validation error: without dropout {pct(bp[0])} (epoch {bp[1]}), with dropout {pct(bd[0])} "
                   f"(epoch {bd[1]}); final test error {pct(pr.get('test_error'))} vs {pct(dr.get('test_error'))}.")
    return out


def report(ctx: ReportContext) -> Path:
    """Write ``report-ex15.1-5c.md``, its plot and ``results-ex15.1-5c.json``; returns the report's path.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.experiment import PROGRAMMES
    >>> jobs, table = plan()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = report(ReportContext(Path(d), PROGRAMMES["ex15.1-5c"], jobs, table, {}, {"runs": 2})).read_text()
    >>> "| network | epochs to training loss 0.5 |" in text
    True
    """
    entries = ctx.table.get("dropout", [])
    lines = ctx.head_lines("Exercises 15.1 and 15.5(c): the cost of dropout in epochs", "dropout")
    lines += [f"Data: {DATA}; {100 * VAL_SPLIT:.0f}% of the training examples held out for "
              "validation; epochs interpolated linearly between epoch ends; '–': not reached.", ""]
    lines += ["| network | " + " | ".join(f"epochs to training loss {t:g}" for t in LOSS_TARGETS)
              + " | final training loss | best validation error (epoch) | test error |",
              "| --- |" + " --- |" * (len(LOSS_TARGETS) + 3)]
    for e in entries:
        r = ctx.results.get(e.job, {})
        reach = [epochs_to_reach(r.get("train_loss_per_epoch") or [], t) for t in LOSS_TARGETS]
        best = _best(r.get("val_error_per_epoch") or [])
        loss = f"{r['train_loss']:.4f}" if r.get("train_loss") is not None else "n/a"
        lines.append(f"| {e.label} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in reach)
                     + f" | {loss} | {pct(best[0]) + f' ({best[1]})' if best else 'n/a'} | {pct(r.get('test_error'))} |")
    def draw(figs: Any) -> None:
        fig, (ax1, ax2) = figs.new((11, 4), ncols=2)
        for e in entries:
            r = ctx.results.get(e.job) or {}
            style = "-" if e.group == "dropout" else "--"
            loss_curve, val_curve = r.get("train_loss_per_epoch") or [], r.get("val_error_per_epoch") or []
            ax1.plot(range(1, len(loss_curve) + 1), loss_curve, style, label=e.label)
            ax2.plot(range(1, len(val_curve) + 1), [100 * v for v in val_curve], style, label=e.label)
        ax1.set_yscale("log")
        ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
        ax2.set(xlabel="epoch", ylabel="validation error (%)", title="validation error")
        figs.save(fig, "curves.png", ax1, ax2, which="both")
    return ctx.finish(lines, entries, dropout_lines(entries, ctx.results), {}, "ex15.1-5c-", draw)

PROGRAMME = Programme("ex15.1-5c", "Exercises 15.1, 15.5(c): dropout's cost in epochs to converge", PARTS, TITLES, plan, report,
                      30, "runs/ex15.1-5c", DATA)
