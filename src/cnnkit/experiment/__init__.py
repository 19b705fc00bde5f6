"""Experiment programmes: exercise 15.6 of the seed chapter, run as parallel, resumable jobs with a report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.experiment.ex15_6 import PARTS, Job, plan
from cnnkit.experiment.report import write_report
from cnnkit.experiment.runner import load_result, run_local, run_ray

__all__ = ["PARTS", "Job", "plan", "run_ex15_6"]


def estimated_cost(cfg: dict) -> float:
    """A run's relative cost: images seen x (forward FLOPs per image + a fixed per-image overhead).

    Used to start the longest runs first (longest-processing-time order), so that the programme does not
    end with one worker busy on a 60,000-example run while the other idles. Only the order depends on it.
    """
    from cnnkit.data import parse_subset
    from cnnkit.models import resolve
    from cnnkit.summary import summarize

    model = resolve(cfg["model"])
    flops = summarize(model.spec, model.input_shape).total_flops
    n = len(parse_subset(cfg.get("train_range") or cfg.get("train_limit"), 60000))  # MNIST's training set
    test = cfg.get("test_limit") or 10000
    per_image = flops + 2e6  # ~2 MFLOP-equivalents of per-image overhead (im2row, pooling, data handling)
    return cfg["epochs"] * (3 * n + test) * per_image  # training ~3x a forward


def run_ex15_6(
    out: str | Path,
    parts: tuple[str, ...] = PARTS,
    data_dir: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    epochs: int = 20,
    max_train: int | None = None,
    test_limit: int | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or finish) exercise 15.6's parts into ``out`` and write its report; returns report.md's path.

    Default parallelism: one worker process per core with one BLAS thread each (measured faster than one
    process using all cores on these small networks; see the README).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, table = plan(tuple(parts), epochs, max_train, test_limit)
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
    log(f"exercise 15.6 parts {','.join(parts)}: {len(jobs)} runs, {len(results)} already finished, {len(todo)} to do "
        f"({executor} executor, {workers if executor == 'local' else 'cluster'} worker(s) x {threads} thread(s))")
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
    if max_train:
        meta["max_train (shrunken run)"] = max_train
    if test_limit:
        meta["test_limit"] = test_limit
    report = write_report(out, table, results, meta)
    log(f"report: {report}")
    return report
