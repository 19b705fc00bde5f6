"""An experiment programme is a plan (independent training jobs keyed by configuration, and table rows) and a
report; :func:`run_programme` runs whatever jobs are not finished yet (local processes or Ray, resumable) and
writes the report.

Programmes may share an experiment directory: their runs live in ``<out>/runs/<key>/`` and a run one programme
finished is reused by any other that plans the same configuration (exercise 15.5(b) averages the seven seeds of
15.6(i), so ``cnnkit experiment ex15.5b`` defaults to ex15.6's directory). Each writes its own report:
``report.md``/``results.json`` for ex15.6, ``report-<name>.md``/``results-<name>.json`` for the others.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.experiment import ex15_1_5c, ex15_2_4a, ex15_4c, ex15_5a, ex15_5b, ex15_6
from cnnkit.experiment.plan import Programme, ReportContext
from cnnkit.experiment.report import write_report
from cnnkit.experiment.runner import load_result, run_local, run_ray

__all__ = ["PROGRAMMES", "estimated_cost", "run_programme"]


def _ex15_6_report(ctx: ReportContext) -> Path:
    return write_report(ctx.exp_dir, ctx.table, ctx.results, ctx.meta)




def estimated_cost(cfg: dict) -> float:
    """A run's relative cost: images seen x (forward FLOPs per image + a fixed per-image overhead).

    Used to start the longest runs first (longest-processing-time order), so that the programme does not
    end with one worker busy on a 60,000-example run while the other idles. Only the order depends on it.

    Examples
    --------
    >>> small = estimated_cost({"model": "sk-0.2", "train_limit": 1000, "epochs": 1})
    >>> big = estimated_cost({"model": "sk-2", "train_limit": 1000, "epochs": 1})
    >>> big > small > 0
    True
    """
    from cnnkit.data import parse_subset
    from cnnkit.models import resolve
    from cnnkit.summary import summarize

    model = resolve(cfg["model"])
    flops = summarize(model.spec, model.input_shape).total_flops
    n = len(parse_subset(cfg.get("train_range") or cfg.get("train_limit"), 60000))  # (Fashion-)MNIST's training set
    test = cfg.get("test_limit") or 10000
    per_image = flops + 2e6  # ~2 MFLOP-equivalents of per-image overhead (im2row, pooling, data handling)
    return cfg["epochs"] * (3 * n + test) * per_image  # training ~3x a forward


def run_programme(
    name: str,
    out: str | Path | None = None,
    parts: tuple[str, ...] | None = None,
    data_dir: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    epochs: int | None = None,
    max_train: int | None = None,
    test_limit: int | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> Path:
    """Run (or finish) programme ``name``'s parts into ``out`` and write its report; returns the report's path.

    Default parallelism: one worker process per core with one BLAS thread each (measured faster than one
    process using all cores on these small networks; see the README). ``epochs``, ``max_train`` and
    ``test_limit`` shrink a programme (None: its own settings); ``options`` go to its plan.

    Examples
    --------
    >>> run_programme("ex15.9")
    Traceback (most recent call last):
    ...
    ValueError: unknown programme 'ex15.9'; expected one of ex15.6, ex15.2-4a, ex15.4c, ex15.5a, ex15.5b, ex15.1-5c
    """
    if name not in PROGRAMMES:
        raise ValueError(f"unknown programme {name!r}; expected one of {', '.join(PROGRAMMES)}")
    prog = PROGRAMMES[name]
    unknown_options = sorted(set(options) - prog.options)
    if unknown_options:
        raise ValueError(f"{name} takes no option(s) {', '.join(unknown_options)}")
    parts = tuple(parts) if parts else prog.parts
    epochs = epochs or prog.epochs
    out = Path(out if out is not None else prog.out)
    jobs, table = prog.plan(parts, epochs, max_train, test_limit, **options)
    out.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    if workers is None:
        workers = cpus if threads is None else max(1, cpus // threads)
    threads = threads or max(1, cpus // workers)
    results: dict[str, dict] = {}
    todo: list[tuple[str, dict]] = []
    for key, job in jobs.items():
        cfg = job.config.to_dict()
        done = load_result(out, key, cfg)
        if done is not None:
            results[key] = done
        else:
            todo.append((key, cfg))
    costs = {key: estimated_cost(cfg) for key, cfg in todo}
    todo.sort(key=lambda kc: -costs[kc[0]])  # longest first: the last runs to finish are short ones
    what = "exercise 15.6" if name == "ex15.6" else name
    log(f"{what} parts {','.join(parts)}: {len(jobs)} runs, {len(results)} already finished, {len(todo)} to do "
        f"({executor} executor, {workers if executor == 'local' else 'cluster'} worker(s) x {threads} thread(s))")
    reused = len(results)
    t0 = time.perf_counter()
    if todo:
        if executor == "local":
            results.update(run_local(todo, str(out), data_dir, workers, threads, log, costs))
        elif executor == "ray":
            results.update(run_ray(todo, str(out), data_dir, address, threads, log, costs))
        else:
            raise ValueError(f"unknown executor {executor!r}; expected 'local' or 'ray'")
    meta: dict[str, Any] = {"parts": ",".join(parts), "runs": len(jobs), "epochs": epochs, "executor": executor,
                            "workers x threads": f"{workers} x {threads}",
                            "wall time of this invocation": f"{time.perf_counter() - t0:.0f} s",
                            "sum of run wall times": f"{sum(r.get('wall_seconds', 0) for r in results.values()):.0f} s"}
    if name != "ex15.6":
        meta = {"programme": name, **meta, "runs already finished before this invocation": reused}
    if "matconvnet" in prog.options:
        meta["settings"] = ("MatConvNet 1.0-beta20 (SGD momentum zeroed every epoch, BN epsilon 1e-4)"
                            if options.get("matconvnet", True) else
                            "cnnkit (SGD momentum kept across epochs, BN epsilon 1e-5)")
    if max_train:
        meta["max_train (shrunken run)"] = max_train
    if test_limit:
        meta["test_limit"] = test_limit
    ctx = ReportContext(out, prog, jobs, table, results, meta, data_dir, test_limit, log)
    report = prog.report(ctx)
    log(f"report: {report}")
    return report


#: every programme, by name (``cnnkit experiment NAME``)
PROGRAMMES: dict[str, Programme] = {p.name: p for p in (
    Programme("ex15.6", "Exercise 15.6: MNIST experiments (b)-(j)", ex15_6.PARTS, ex15_6.TITLES, ex15_6.plan,
              _ex15_6_report, 20, "runs/ex15.6", "mnist", frozenset({"matconvnet"})),
    ex15_2_4a.PROGRAMME, ex15_4c.PROGRAMME, ex15_5a.PROGRAMME, ex15_5b.PROGRAMME, ex15_1_5c.PROGRAMME,
)}
