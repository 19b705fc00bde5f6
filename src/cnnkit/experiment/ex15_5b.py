"""Exercise 15.5(b) by experiment: averaging the predictions of several networks lowers the error.

The networks are exercise 15.6(i)'s: SK-0.2 on the first 10,000 MNIST examples with seven seeds, the same jobs
(same keys), so in ex15.6's experiment directory (the default ``--out``) the finished runs and their model files
are reused and only missing ones are trained. The report averages the saved models' softmax probabilities on the
test set (the first k networks, k = 1 .. 7) and sets the ensemble's error beside the single networks' errors,
with the numbers that say why it helps: how often the networks disagree and how many test images the average
gets right although most networks get them wrong.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from cnnkit.experiment import ex15_6
from cnnkit.experiment.analysis import ensemble_errors, model_probabilities
from cnnkit.experiment.plan import Entry, Job, Programme, ReportContext, check_parts
from cnnkit.experiment.report import configuration_lines, figures, pct, write_files

PARTS = ("ensemble",)
TITLES = {"ensemble": "Averaging the softmax outputs of SK-0.2 networks trained with seven seeds (15.6(i))"}
DATA = "mnist"


def plan(parts: tuple[str, ...] = PARTS, epochs: int = 20, max_train: int | None = None, test_limit: int | None = None,
         matconvnet: bool = True) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """Exercise 15.6(i)'s seven runs (its keys, so ex15.6's finished runs are reused) as the rows of ``ensemble``.

    Examples
    --------
    >>> jobs, table = plan()
    >>> jobs == ex15_6.plan(("i",))[0], [e.label for e in table["ensemble"]][:3]
    (True, ['seed 0', 'seed 1', 'seed 12'])
    """
    check_parts(parts, PARTS)
    jobs, table = ex15_6.plan(("i",), epochs, max_train, test_limit, matconvnet)
    return (jobs, {"ensemble": table["i"]}) if "ensemble" in parts else ({}, {})


def ensemble_lines(labels: list[str], analysis: dict[str, Any]) -> list[str]:
    """Commentary from :func:`~cnnkit.experiment.analysis.ensemble_errors`'s numbers (``labels``: the networks').

    Examples
    --------
    >>> a = {"single": [0.02, 0.022, 0.021], "ensemble": [0.02, 0.019, 0.016], "oracle": 0.008, "disagreement": 0.012,
    ...      "fixed": 30, "broken": 5, "n": 10000}
    >>> for line in ensemble_lines(["seed 0", "seed 1", "seed 12"], a): print(line)
    Averaging all 3 networks' probabilities gives 1.60% test error; the single networks give 2.10% ± 0.10%
    (mean ± sd), from 2.00% (seed 0) to 2.20% (seed 1).
    The average is 0.50 points below the mean single network (24% fewer errors) and 0.40 points below the best one.
    Error of the average of the first k networks, k = 1..3: 2.00%, 1.90%, 1.60%.
    Why: two networks disagree on 1.20% of the test images on average, about as often as each errs, so their errors
    are far from identical; the average gets 30 images right that most of the networks get wrong (and 5 the other
    way); 0.80% of the images are wrong for every network, a floor no averaging removes.
    """
    single, ens = analysis["single"], analysis["ensemble"]
    if not single:
        return []
    k = len(single)
    m = statistics.fmean(single)
    sd = statistics.stdev(single) if k > 1 else 0.0
    lo, hi = min(range(k), key=single.__getitem__), max(range(k), key=single.__getitem__)
    out = [f"Averaging all {k} networks' probabilities gives {pct(ens[-1])} test error; the single networks give {pct(m)} ± {pct(sd)} "
           f"(mean ± sd), from {pct(single[lo])} ({labels[lo]}) to {pct(single[hi])} ({labels[hi]})."]
    d_mean, d_best = m - ens[-1], single[lo] - ens[-1]
    rel = d_mean / m if m else 0.0
    out.append(f"The average is {100 * abs(d_mean):.2f} points {'below' if d_mean >= 0 else 'above'} the mean single network "
               f"({100 * rel:.0f}% {'fewer' if d_mean >= 0 else 'more'} errors) and {100 * abs(d_best):.2f} points "
               f"{'below' if d_best >= 0 else 'above'} the best one.")
    out.append(f"Error of the average of the first k networks, k = 1..{k}: " + ", ".join(pct(v) for v in ens) + ".")
    dis = analysis["disagreement"]
    compare = "about as often as" if 0.5 * m <= dis <= 2 * m else ("more often than" if dis > m else "less often than")
    out.append(f"Why: two networks disagree on {pct(dis)} of the test images on average, {compare} each errs, so their errors "
               f"are far from identical; the average gets {analysis['fixed']} images right that most of the networks get wrong "
               f"(and {analysis['broken']} the other way); {pct(analysis['oracle'])} of the images are wrong for every network, "
               f"a floor no averaging removes.")
    return out


def report(ctx: ReportContext) -> Path:
    """Evaluate the ensemble from the saved models and write ``report-ex15.5b.md``, its plot and ``results-ex15.5b.json``.

    Examples
    --------
    Without finished runs there is nothing to average; the report says so:

    >>> import tempfile
    >>> from cnnkit.experiment import PROGRAMMES
    >>> jobs, table = plan()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     text = report(ReportContext(Path(d), PROGRAMMES["ex15.5b"], jobs, table, {}, {"runs": 7})).read_text()
    >>> "No finished runs with model files" in text
    True
    """
    entries = ctx.table.get("ensemble", [])
    have = [e for e in entries if e.job in ctx.results and (ctx.exp_dir / "runs" / e.job / "model.npz").is_file()]
    lines = ["# Exercise 15.5(b): averaging several networks' predictions", ""]
    lines += [f"- {k}: {v}" for k, v in ctx.meta.items()] + [""]
    lines += [f"## {TITLES['ensemble']}", ""]
    analysis: dict[str, Any] = {}
    if not have:
        lines += ["No finished runs with model files in this directory: nothing to average.", ""]
    else:
        probs, labels = model_probabilities([ctx.exp_dir / "runs" / e.job / "model.npz" for e in have], DATA, ctx.data_dir,
                                            ctx.test_limit)
        analysis = ensemble_errors(probs, labels)
        analysis["networks"] = [e.label for e in have]
        n = analysis["n"]
        lines += [f"Test set: the first {n:,} MNIST test images. The average is of the softmax probabilities of the saved "
                  "final models, in the order below.", ""]
        lines += ["| network | test error (run) | test error (saved model, recomputed) | average of networks 1..k |",
                  "| --- | --- | --- | --- |"]
        for i, e in enumerate(have):
            lines.append(f"| {e.label} | {pct(ctx.results[e.job].get('test_error'))} | {pct(analysis['single'][i])} | "
                         f"{pct(analysis['ensemble'][i])} |")
        comments = ensemble_lines([e.label for e in have], analysis)
        analysis["commentary"] = comments
        lines += [""] + [f"- {c}" for c in comments] + [""]
        missing = [e.label for e in entries if e not in have]
        if missing:
            lines += [f"- Not in the average (no finished run): {', '.join(missing)}.", ""]
        with figures(ctx.exp_dir, "ex15.5b-") as figs:
            if figs is not None:
                fig, ax = figs.new()
                k = range(1, len(have) + 1)
                ax.plot(k, [100 * v for v in analysis["ensemble"]], "-o", label="average of the first k networks")
                ax.plot(k, [100 * v for v in analysis["single"]], "s", label="network k alone")
                ax.axhline(100 * statistics.fmean(analysis["single"]), color="grey", lw=0.8, label="mean single network")
                ax.set(xlabel="k", ylabel="test error (%)", title="ensemble of SK-0.2 networks (seeds)")
                ax.grid(True, alpha=0.3)
                ax.legend()
                figs.save(fig, "ensemble.png")
                lines += ["## Plots", ""] + [f"![{p}]({p})" for p in figs.made] + [""]
    lines += ["## Configuration", "", *configuration_lines(ctx.jobs, [(e.label, e.job) for e in entries])]
    payload = {"meta": ctx.meta, "analysis": analysis, "parts": {p: [vars(e) for e in es] for p, es in ctx.table.items()},
               "results": ctx.results}
    return write_files(ctx.exp_dir, ctx.programme.report_name, ctx.results_name, lines, payload)


PROGRAMME = Programme("ex15.5b", "Exercise 15.5(b): averaging networks (15.6(i)'s seven seeds)", PARTS, TITLES, plan, report,
                      20, "runs/ex15.6", DATA, frozenset({"matconvnet"}))
