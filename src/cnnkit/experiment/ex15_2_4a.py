"""Exercises 15.2(c) and 15.4(a) by experiment: what depth makes hard, and what lets residual networks go deep.

* ``grad``: the norm of the gradient ||dL/dW|| reaching each of the 20 weight layers of a plain network without
  batch normalisation, with sigmoid and with ReLU activations (the same He initialisation, the same data), at
  initialisation and after a few SGD steps. Sigmoid's derivative is at most 1/4, so each layer shrinks the
  gradient on its way back (vanishing gradients); ReLU's is 1 where active.
* ``depth``: plain and residual networks (He et al.'s CIFAR design, with BN) of 8, 20 and 56 layers on
  Fashion-MNIST: training error against depth. A deeper plain network fitting its training set *worse* is the
  degradation problem; shortcuts remove it. The gradient norms at initialisation are recorded for these too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnkit.experiment.analysis import attenuation
from cnnkit.experiment.nets import plain_spec
from cnnkit.experiment.plan import Entry, Job, Planner, Programme, ReportContext, check_parts, make_config
from cnnkit.experiment.report import configuration_lines, figures, pct, write_files

PARTS = ("grad", "depth")
TITLES = {
    "grad": "Gradient norm reaching each layer: a 20-layer plain network without BN, sigmoid vs ReLU",
    "depth": "Plain vs residual networks of 8, 20 and 56 layers: training error against depth",
}
DATA = "fashion-mnist"
GRAD_DEPTH = 20
GRAD_EXAMPLES = 5000  # one epoch of 50 steps
GRAD_STEPS = "0,1,10,49"
DEPTHS = (8, 20, 56)
DEPTH_EXAMPLES = 10000
DEPTH_STEPS = "0,10"


def warm_cosine(epochs: int, lr: float = 0.1, warm: float = 0.01) -> str:
    """A per-epoch schedule string: one warm-up epoch at ``warm`` (He et al. start their deepest networks at 0.01
    until training gets going), then ``lr`` falling on a cosine to 0 over the remaining epochs.

    Examples
    --------
    >>> warm_cosine(5)
    'list:0.01,0.1,0.08536,0.05,0.01464'
    >>> warm_cosine(1)
    'list:0.01'
    """
    rest = epochs - 1
    rates = [warm] + [lr * (1 + math.cos(math.pi * e / rest)) / 2 for e in range(rest)]
    return "list:" + ",".join(f"{r:.4g}" for r in rates)


def plan(parts: tuple[str, ...] = PARTS, epochs: int = 10, max_train: int | None = None,
         test_limit: int | None = None) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """The jobs and table rows of ``parts``.

    ``grad`` trains one epoch (its steps are what is measured); ``depth`` ``epochs`` epochs: one warm-up epoch at
    lr 0.01, then He et al.'s 0.1 falling on a cosine (:func:`warm_cosine`; the training error settles by the end).

    Examples
    --------
    >>> jobs, table = plan()
    >>> [(e.label, e.group, e.x) for e in table["depth"]][:2]
    [('plain-8', 'plain', 8.0), ('residual-8', 'residual', 8.0)]
    >>> cfg = jobs[table["grad"][1].job].config
    >>> "sigmoid" in cfg.model, cfg.init, cfg.epochs, cfg.train_limit, cfg.grad_norms
    (True, 'he', 1, 5000, '0,1,10,49')
    """
    check_parts(parts, PARTS)
    p = Planner()
    for part in parts:
        if part == "grad":
            for act in ("relu", "sigmoid"):
                cfg = make_config(plain_spec(GRAD_DEPTH, act, bn=False), epochs=1, n=GRAD_EXAMPLES, max_train=max_train,
                                  test_limit=test_limit, data=DATA, lr=0.01, init="he", preprocess="per_channel",
                                  grad_norms=GRAD_STEPS)
                p.add("grad", f"plain-{GRAD_DEPTH}, no BN, {act}", cfg, name=f"plain{GRAD_DEPTH}-nobn-{act}", group=act)
        elif part == "depth":
            for depth in DEPTHS:
                for residual in (False, True):
                    kind = "residual" if residual else "plain"
                    cfg = make_config(plain_spec(depth, residual=residual), epochs=epochs, n=DEPTH_EXAMPLES,
                                      max_train=max_train, test_limit=test_limit, data=DATA, lr=0.1, init="he",
                                      preprocess="per_channel", schedule=warm_cosine(epochs), grad_norms=DEPTH_STEPS)
                    p.add("depth", f"{kind}-{depth}", cfg, name=f"{'resnet' if residual else 'plain'}{depth}-mnist",
                          x=float(depth), group=kind)
    return p.jobs, p.table


def _steps(r: dict) -> dict[int, list[float]]:
    g = r.get("grad_norms") or {}
    return {int(s["step"]): s["norms"] for s in g.get("steps", [])}


def grad_lines(entries: list[Entry], results: dict[str, dict], steps: set[int] | None = None) -> list[str]:
    """Commentary on per-layer gradient norms: how much smaller the gradient at the first layer is than at the last,
    per network and recorded step (``steps``: only these), and the geometric mean factor per layer.

    Examples
    --------
    >>> steps = [{"step": 0, "norms": [1e-4, 1e-2, 1.0]}]
    >>> r = {"a": {"grad_norms": {"layers": ["0.weight", "1.weight", "2.weight"], "steps": steps}}}
    >>> for line in grad_lines([Entry("sigmoid", "a")], r): print(line)
    sigmoid, step 0 (at initialisation): the first layer receives a gradient 1e+04 times smaller than the last
    (a factor 0.010 per layer on the way back).
    """
    out = []
    for e in entries:
        r = results.get(e.job)
        if not r:
            continue
        for step, norms in sorted(_steps(r).items()):
            if len(norms) < 2 or (steps is not None and step not in steps):
                continue
            a = attenuation(norms)
            when = "step 0 (at initialisation)" if step == 0 else f"after {step} step{'s' if step > 1 else ''}"
            if math.isinf(a) or a <= 0:
                out.append(f"{e.label}, {when}: the first layer's gradient is zero.")
                continue
            per_layer = a ** (-1 / (len(norms) - 1))
            rel = f"{a:.3g} times smaller than" if a >= 1 else f"{1 / a:.3g} times larger than"
            out.append(f"{e.label}, {when}: the first layer receives a gradient {rel} the last "
                       f"(a factor {per_layer:.3f} per layer on the way back).")
    return out


def depth_lines(entries: list[Entry], results: dict[str, dict]) -> list[str]:
    """Commentary on training error against depth, per family (plain, residual): whether a deeper network fits its
    training set worse (degradation), and the gap between the families at each depth both were trained at.

    Examples
    --------
    >>> res = {"p8": {"train_error": 0.05, "test_error": 0.10}, "p56": {"train_error": 0.09, "test_error": 0.12},
    ...        "r8": {"train_error": 0.05, "test_error": 0.10}, "r56": {"train_error": 0.02, "test_error": 0.09}}
    >>> es = [Entry("plain-8", "p8", 8, "plain"), Entry("residual-8", "r8", 8, "residual"),
    ...       Entry("plain-56", "p56", 56, "plain"), Entry("residual-56", "r56", 56, "residual")]
    >>> for line in depth_lines(es, res): print(line)
    plain: training error 5.00% at 8 layers, 9.00% at 56 layers: the deepest is worse than a shallower one (degradation).
    residual: training error 5.00% at 8 layers, 2.00% at 56 layers: deeper fits the training set at least as well.
    At 8 layers the residual network's training error is 0.00 points below the plain one's (test error 0.00 points below).
    At 56 layers the residual network's training error is 7.00 points below the plain one's (test error 3.00 points below).
    """
    fams: dict[str, list[tuple[float, dict]]] = {}
    for e in entries:
        r = results.get(e.job)
        if r and r.get("train_error") is not None and e.x is not None and e.group:
            fams.setdefault(e.group, []).append((e.x, r))
    out = []
    for fam, pts in fams.items():
        pts.sort(key=lambda t: t[0])
        if len(pts) < 2:
            continue
        seq = ", ".join(f"{pct(r['train_error'])} at {int(d)} layers" for d, r in pts)
        deepest = pts[-1][1]["train_error"]
        best_shallower = min(r["train_error"] for _, r in pts[:-1])
        verdict = ("the deepest is worse than a shallower one (degradation)" if deepest > best_shallower
                   else "deeper fits the training set at least as well")
        out.append(f"{fam}: training error {seq}: {verdict}.")
    if "plain" in fams and "residual" in fams:
        plain, residual = dict(fams["plain"]), dict(fams["residual"])
        for depth in sorted(set(plain) & set(residual)):
            p, r = plain[depth], residual[depth]
            d = p["train_error"] - r["train_error"]
            gap = f"{100 * abs(d):.2f} points {'below' if d >= 0 else 'above'} the plain one's"
            if p.get("test_error") is not None and r.get("test_error") is not None:
                dt = p["test_error"] - r["test_error"]
                gap += f" (test error {100 * abs(dt):.2f} points {'below' if dt >= 0 else 'above'})"
            out.append(f"At {int(depth)} layers the residual network's training error is {gap}.")
    return out


def _grad_table(entries: list[Entry], results: dict[str, dict]) -> list[str]:
    have = [(e, results[e.job]) for e in entries if e.job in results and results[e.job].get("grad_norms")]
    if not have:
        return []
    layers = have[0][1]["grad_norms"]["layers"]
    cols = []
    for e, r in have:
        steps = _steps(r)
        for s in sorted(steps)[:1] + sorted(steps)[-1:] if len(steps) > 1 else sorted(steps):
            cols.append((f"{e.label}, step {s}", steps[s]))
    lines = ["| layer | weight | " + " | ".join(c for c, _ in cols) + " |", "| --- | --- |" + " --- |" * len(cols)]
    for i, name in enumerate(layers):
        lines.append(f"| {i + 1} | {name} | " + " | ".join(f"{v[i]:.3g}" if i < len(v) else "n/a" for _, v in cols) + " |")
    return [*lines, ""]


def _depth_table(entries: list[Entry], results: dict[str, dict]) -> list[str]:
    lines = ["| network | layers | parameters | training error | test error | final training loss | wall time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        r = results.get(e.job, {})
        params = f"{r['params']:,}" if r.get("params") else "n/a"
        loss = f"{r['train_loss']:.4f}" if r.get("train_loss") is not None else "n/a"
        lines.append(f"| {e.label} | {int(e.x or 0)} | {params} | {pct(r.get('train_error'))} | {pct(r.get('test_error'))} | "
                     f"{loss} | {r.get('wall_seconds', float('nan')):.0f} s |")
    return [*lines, ""]


def _plots(ctx: ReportContext) -> list[str]:
    with figures(ctx.exp_dir, "ex15.2-4a-") as figs:
        if figs is None:
            return []
        grad = [(e, ctx.results[e.job]) for e in ctx.table.get("grad", []) if e.job in ctx.results]
        if grad:
            fig, ax = figs.new((7, 4))
            for e, r in grad:
                steps = _steps(r)
                for s, style in zip(sorted(steps)[:1] + sorted(steps)[-1:], ("-o", "--s")):
                    norms = steps[s]
                    ax.plot(range(1, len(norms) + 1), norms, style, markersize=3, label=f"{e.label}, step {s}")
            ax.set_yscale("log")
            ax.set(xlabel="layer (1 = next to the input)", ylabel="||dL/dW||", title="gradient norm reaching each layer")
            figs.save(fig, "grad_norms.png", ax, which="both", legend_size=7)
        depth = [(e, ctx.results[e.job]) for e in ctx.table.get("depth", []) if e.job in ctx.results]
        if depth:
            fig, (ax1, ax2) = figs.new((11, 4), ncols=2)
            depths = sorted({e.x for e, _ in depth if e.x})
            for e, r in depth:
                errs = r.get("train_error_per_epoch") or []
                style = "--" if e.group == "plain" else "-"
                color = f"C{depths.index(e.x) % 10}" if e.x in depths else None
                ax1.plot(range(1, len(errs) + 1), [100 * v for v in errs], style, color=color, label=e.label)
            ax1.set(xlabel="epoch", ylabel="training error (%)", title="training error: plain dashed, residual solid")
            for fam, style in (("plain", "--o"), ("residual", "-o")):
                pts = sorted((e.x, r["train_error"]) for e, r in depth if e.group == fam and e.x)
                if pts:
                    ax2.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, label=fam)
            ax2.set(xlabel="layers", ylabel="final training error (%)", title="training error against depth")
            figs.save(fig, "depth.png", ax1, ax2)
            deepest = max(x.x or 0 for x in ctx.table["depth"])
            at_init = [(e, _steps(r)[0]) for e, r in depth if e.x == deepest and 0 in _steps(r)]
            if at_init:
                fig, ax = figs.new((7, 4))
                for e, norms in at_init:
                    ax.plot(range(1, len(norms) + 1), norms, "--" if e.group == "plain" else "-", label=e.label)
                ax.set_yscale("log")
                ax.set(xlabel="layer", ylabel="||dL/dW|| at initialisation", title="the deepest pair at initialisation")
                figs.save(fig, "depth_grad_norms.png", ax, which="both")
        return figs.made


def report(ctx: ReportContext) -> Path:
    """Write ``report-ex15.2-4a.md``, its plots and ``results-ex15.2-4a.json``; returns the report's path.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.experiment import PROGRAMMES
    >>> jobs, table = plan(("depth",))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = report(ReportContext(Path(d), PROGRAMMES["ex15.2-4a"], jobs, table, {}, {"runs": len(jobs)}))
    ...     text = path.read_text()
    >>> path.name, text.splitlines()[0], "## Configuration" in text
    ('report-ex15.2-4a.md', '# Exercises 15.2(c) and 15.4(a): depth, vanishing gradients and residual connections', True)
    """
    res = ctx.results
    lines = ["# Exercises 15.2(c) and 15.4(a): depth, vanishing gradients and residual connections", ""]
    lines += [f"- {k}: {v}" for k, v in ctx.meta.items()] + [""]
    lines += [f"Data: {DATA}; errors on its test set" + (f" (first {ctx.test_limit})" if ctx.test_limit else "")
              + "; training error is the running error over each epoch's mini-batches.", ""]
    plots = _plots(ctx)
    analysis: dict[str, Any] = {}
    if "grad" in ctx.table:
        entries = ctx.table["grad"]
        lines += [f"## {TITLES['grad']}", ""]
        lines += ["Weights: every convolution kernel and the classifier, in network order (layer 1 next to the input). "
                  "||dL/dW|| of the mini-batch's mean loss, before the step's update (step 0: at initialisation).", ""]
        lines += _grad_table(entries, res)
        comments = grad_lines(entries, res)
        for e in entries:
            r = res.get(e.job)
            if r:
                n = ctx.jobs[e.job].config.train_limit or 60000
                comments.append(f"{e.label}: after {r.get('epochs')} epoch(s) on {n:,} examples, training error "
                                f"{pct(r.get('train_error'))}, test error {pct(r.get('test_error'))}.")
        lines += [f"- {c}" for c in comments] + [""]
        analysis["grad"] = comments
    if "depth" in ctx.table:
        entries = ctx.table["depth"]
        lines += [f"## {TITLES['depth']}", "", *_depth_table(entries, res)]
        comments = depth_lines(entries, res)
        deepest = [e for e in entries if e.x == max((x.x or 0) for x in entries)]
        comments += grad_lines(deepest, res, steps={0})
        lines += [f"- {c}" for c in comments] + [""]
        analysis["depth"] = comments
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Configuration", ""]
    for part, entries in ctx.table.items():
        lines += [f"{TITLES[part]}:", "", *configuration_lines(ctx.jobs, [(e.label, e.job) for e in entries])]
    payload = {"meta": ctx.meta, "analysis": analysis,
               "parts": {p: [vars(e) for e in es] for p, es in ctx.table.items()}, "results": res}
    return write_files(ctx.exp_dir, ctx.programme.report_name, ctx.results_name, lines, payload)


PROGRAMME = Programme("ex15.2-4a", "Exercises 15.2(c), 15.4(a): vanishing gradients; plain vs residual depth", PARTS, TITLES,
                      plan, report, 10, "runs/ex15.2-4a", DATA)
