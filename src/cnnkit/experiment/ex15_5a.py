"""Exercise 15.5(a) by experiment: does ReLU train faster than tanh? AlexNet's figure 1 claim (a four-layer CNN
with ReLUs reaches 25% training error on CIFAR-10 six times faster than one with tanh), here on Fashion-MNIST.

The same four-layer CNN (:func:`~cnnkit.experiment.nets.cnn4_spec`) with ReLU or tanh, the same initialisation
(PyTorch's default) and no regularisation (no weight decay, no dropout), as in the paper. The paper chose each
network's learning rate "to make training as fast as possible"; here each activation is trained with two rates and
the faster is compared. The measure is the number of epochs until the training error (the running error over an
epoch's mini-batches) first reaches a target, interpolated linearly between epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.experiment.analysis import epochs_to_reach
from cnnkit.experiment.nets import cnn4_spec
from cnnkit.experiment.plan import Entry, Job, Planner, Programme, ReportContext, check_parts, make_config
from cnnkit.experiment.report import pct

PARTS = ("speed",)
TITLES = {"speed": "ReLU vs tanh: epochs to reach a training error"}
DATA = "fashion-mnist"
EXAMPLES = 10000
ACTIVATIONS = ("relu", "tanh")
RATES = (0.01, 0.05)
#: training-error targets shown (a 10-class guess is 90% wrong: the curves start at START) and the one compared
TARGETS = (0.25, 0.15, 0.10, 0.08)
HEADLINE = 0.10
START = 0.9


def plan(parts: tuple[str, ...] = PARTS, epochs: int = 15, max_train: int | None = None,
         test_limit: int | None = None) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """Four runs: ReLU and tanh, each with learning rates 0.01 and 0.05, no weight decay.

    Examples
    --------
    >>> jobs, table = plan()
    >>> [(e.label, e.group, e.x) for e in table["speed"]]
    [('ReLU, lr 0.01', 'relu', 0.01), ('ReLU, lr 0.05', 'relu', 0.05), ('tanh, lr 0.01', 'tanh', 0.01), ('tanh, lr 0.05', 'tanh', 0.05)]
    >>> c = jobs[table["speed"][2].job].config
    >>> c.model.split(",")[1], c.weight_decay, c.init, c.data
    ('tanh', 0.0, 'pytorch', 'fashion-mnist')
    """
    check_parts(parts, PARTS)
    p = Planner()
    if "speed" in parts:
        for act in ACTIVATIONS:
            for lr in RATES:
                cfg = make_config(cnn4_spec(act), epochs=epochs, n=EXAMPLES, max_train=max_train, test_limit=test_limit,
                                  data=DATA, lr=lr, weight_decay=0.0, init="pytorch", preprocess="per_channel")
                p.add("speed", f"{'ReLU' if act == 'relu' else act}, lr {lr:g}", cfg, name=f"cnn4-{act}", x=lr, group=act)
    return p.jobs, p.table


def speed_lines(entries: list[Entry], results: dict[str, dict], target: float = HEADLINE) -> list[str]:
    """Commentary: for each activation its fastest rate to ``target`` training error, and how many times faster ReLU is.

    Examples
    --------
    >>> es = [Entry("ReLU, lr 0.01", "r", 0.01, "relu"), Entry("tanh, lr 0.01", "t", 0.01, "tanh")]
    >>> res = {"r": {"train_error_per_epoch": [0.3, 0.12, 0.08]}, "t": {"train_error_per_epoch": [0.5, 0.3, 0.2, 0.1]}}
    >>> for line in speed_lines(es, res, 0.10): print(line)
    ReLU reaches 10% training error after 2.5 epochs (ReLU, lr 0.01); tanh after 4.0 epochs (tanh, lr 0.01): ReLU is 1.6 times as fast.
    """
    best: dict[str, tuple[float | None, Entry]] = {}
    for e in entries:
        r = results.get(e.job)
        if not r or not e.group:
            continue
        t = epochs_to_reach(r.get("train_error_per_epoch") or [], target, START)
        have = best.get(e.group)
        if have is None or (t is not None and (have[0] is None or t < have[0])):
            best[e.group] = (t, e)
    if "relu" not in best or "tanh" not in best:
        return []
    (tr, er), (tt, et) = best["relu"], best["tanh"]

    def when(t: float | None, e: Entry) -> str:
        n = len(results[e.job].get("train_error_per_epoch") or [])
        return f"after {t:.1f} epochs ({e.label})" if t is not None else f"not within {n} epochs ({e.label})"
    head = f"ReLU reaches {pct(target, 0)} training error {when(tr, er)}; tanh {when(tt, et)}"
    if tr is not None and tt is not None:
        ratio = tt / tr
        return [f"{head}: ReLU is {ratio:.1f} times as fast." if ratio >= 1 else f"{head}: tanh is {1 / ratio:.1f} times as fast."]
    if tr is not None:
        n = len(results[et.job].get("train_error_per_epoch") or [])
        return [f"{head}: ReLU is more than {n / tr:.1f} times as fast."]
    return [f"{head}."]


def report(ctx: ReportContext) -> Path:
    """Write ``report-ex15.5a.md``, its plot and ``results-ex15.5a.json``; returns the report's path.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.experiment import PROGRAMMES
    >>> jobs, table = plan()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = report(ReportContext(Path(d), PROGRAMMES["ex15.5a"], jobs, table, {}, {"runs": 4})).read_text()
    >>> "| activation, rate | epochs to 25% | epochs to 15% | epochs to 10% |" in text
    True
    """
    entries = ctx.table.get("speed", [])
    lines = ctx.head_lines("Exercise 15.5(a): ReLU vs tanh, epochs to reach a training error", "speed")
    lines += [f"Data: {DATA}. Epochs until the running training error first reaches each "
              "target, interpolated linearly between epochs (from 90% before training); '–': not reached.", ""]
    lines += ["| activation, rate | " + " | ".join(f"epochs to {pct(t, 0)}" for t in TARGETS) + " | final training error | test error |",
              "| --- |" + " --- |" * (len(TARGETS) + 2)]
    table: dict[str, dict[str, Any]] = {}
    for e in entries:
        r = ctx.results.get(e.job, {})
        reach = [epochs_to_reach(r.get("train_error_per_epoch") or [], t, START) for t in TARGETS]
        table[e.label] = {"epochs_to": dict(zip((str(t) for t in TARGETS), reach))}
        lines.append(f"| {e.label} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in reach)
                     + f" | {pct(r.get('train_error'))} | {pct(r.get('test_error'))} |")
    def draw(figs: Any) -> None:
        fig, ax = figs.new()
        for e in entries:
            r = ctx.results.get(e.job) or {}
            if r:
                v = [START, *list(r.get("train_error_per_epoch") or [])]
                ax.plot(range(len(v)), [100 * x for x in v], "-" if e.group == "relu" else "--", label=e.label)
        ax.axhline(100 * HEADLINE, color="grey", lw=0.8)
        ax.set(xlabel="epoch", ylabel="training error (%)", title="ReLU (solid) vs tanh (dashed)")
        figs.save(fig, "training_error.png", ax)
    return ctx.finish(lines, entries, speed_lines(entries, ctx.results), {"table": table}, "ex15.5a-", draw)

PROGRAMME = Programme("ex15.5a", "Exercise 15.5(a): ReLU vs tanh training speed (AlexNet fig. 1)", PARTS, TITLES, plan, report,
                      15, "runs/ex15.5a", DATA)
