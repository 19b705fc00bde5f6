"""The child process of ``cnnkit bench``: ``python -m cnnkit.bench.child '<json job>'``.

An internal protocol (see :mod:`cnnkit.bench.jobs`), not a command: it takes exactly one argument, the
job, checks it, loads the job's engine (and only that one), pins its threads, runs the measure and prints one
JSON line. Exit codes: 0 success; 2 a malformed job; 1 an engine that is not installed or a measure that failed.

The measures (:data:`MEASURES`) and their ``options``:

* ``time``: the workload's step (a training step or an inference call) is built, warmed up (``warmup`` calls,
  default 2, and at least ``warmup_time`` seconds, default min(0.5, min_time / 4)), then called for at least
  ``min_time`` seconds (default 1.0) and ``min_repeats`` calls (default 3); the answer lists every call's
  seconds (``times``) with the build and warm-up times.
* ``conv``: convolution ``layer`` (an index into :func:`~cnnkit.bench.workloads.conv_layers` of the workload)
  alone, its forward and its forward + backward, each timed as above (``forward``, ``forward_backward``; the
  latter null for an inference-only engine).
* ``sgemm``: NumPy's float32 ``n`` x ``n`` matrix product (default 2048; no workload): per-call ``times`` and
  ``gflops`` of their median.
* ``peak_memory``: ``steps`` steps of the workload (default 2); peak resident memory, over the process and over
  the later step alone (:func:`cnnkit.bench.memory.peak_memory`).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from cnnkit.bench import harness
from cnnkit.bench.engines import Engine, get_engine
from cnnkit.bench.jobs import Job
from cnnkit.bench.memory import peak_memory
from cnnkit.bench.workloads import Network, conv_layers

Measure = Callable[[Engine, Job], dict[str, Any]]


def _number(options: dict[str, Any], key: str, default: float) -> float:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
        raise ValueError(f"option {key}: expected a finite number >= 0, got {v!r}")
    return float(v)


def _count(options: dict[str, Any], key: str, default: int) -> int:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"option {key}: expected an integer >= 0, got {v!r}")
    return v


def _timing(options: dict[str, Any]) -> dict[str, Any]:
    """The timing options of a job, checked, with their defaults."""
    min_time = _number(options, "min_time", 1.0)
    return {"min_time": min_time, "warmup": _count(options, "warmup", 2),
            "warmup_time": _number(options, "warmup_time", min(0.5, min_time / 4)),
            "min_repeats": max(1, _count(options, "min_repeats", 3))}


def _workload(job: Job) -> Network:
    if job.workload is None:
        raise ValueError(f"measure {job.measure!r} needs a workload")
    return job.workload


def _timed(fn: Callable[[], Any], timing: dict[str, Any]) -> dict[str, Any]:
    t = time.perf_counter()
    times = harness.time_calls(fn, timing["min_time"], timing["warmup"], timing["min_repeats"], timing["warmup_time"])
    total = time.perf_counter() - t
    return {"times": [round(x, 9) for x in times], "median": statistics.median(times), "calls": len(times),
            "warmup_seconds": total - sum(times)}


def measure_time(engine: Engine, job: Job) -> dict[str, Any]:
    """The ``time`` measure: per-call seconds of the workload's step."""
    timing = _timing(job.options)
    t = time.perf_counter()
    step = engine.step(_workload(job), job.layout)
    build = time.perf_counter() - t
    return {**_timed(step, timing), "build_seconds": build, "options": timing}


def measure_conv(engine: Engine, job: Job) -> dict[str, Any]:
    """The ``conv`` measure: per-call seconds of one convolution's forward and forward + backward."""
    timing = _timing(job.options)
    net = _workload(job)
    layers = conv_layers(net.name, net.spec, net.input_shape, net.batch)
    index = _count(job.options, "layer", 0)
    if index >= len(layers):
        raise ValueError(f"option layer: {net.name} has {len(layers)} convolutions, got index {index}")
    calls = engine.conv_calls(layers[index], job.layout)
    fb = None if calls.forward_backward is None else _timed(calls.forward_backward, timing)
    return {"layer": layers[index].text, "forward": _timed(calls.forward, timing), "forward_backward": fb, "options": timing}


def measure_sgemm(engine: Engine, job: Job) -> dict[str, Any]:
    """The ``sgemm`` measure: NumPy's float32 matrix product, the ceiling the convolutions are compared with."""
    import numpy as np

    timing = _timing(job.options)
    n = max(1, _count(job.options, "n", 2048))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    result = _timed(lambda: np.matmul(a, b, out=out), timing)
    return {**result, "n": n, "gflops": 2 * n**3 / result["median"] / 1e9}


def measure_peak_memory(engine: Engine, job: Job) -> dict[str, Any]:
    """The ``peak_memory`` measure."""
    steps = _count(job.options, "steps", 2)
    if steps not in (1, 2):
        raise ValueError(f"option steps: expected 1 or 2, got {steps}")
    return peak_memory(engine, job.layout, _workload(job), steps)


MEASURES: dict[str, Measure] = {
    "time": measure_time,
    "conv": measure_conv,
    "sgemm": measure_sgemm,
    "peak_memory": measure_peak_memory,
}


def _error(msg: str, code: int) -> int:
    print(f"cnnkit.bench.child: error: {msg}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        return _error(f"expected one argument, a JSON job; got {len(args)}", 2)
    try:
        job = Job.from_json(args[0])
    except ValueError as exc:
        return _error(str(exc), 2)
    if job.measure not in MEASURES:
        return _error(f"unknown measure {job.measure!r}; expected one of {', '.join(MEASURES)}", 2)
    try:
        _timing(job.options)  # a bad option fails here, before any framework is loaded
    except ValueError as exc:
        return _error(str(exc), 2)
    engine = get_engine(job.engine)
    if not engine.available():
        return _error(f"engine {job.engine!r} is not installed", 1)
    engine.load()  # first, so that the thread limits below reach the runtimes it brings
    _limiter = harness.set_threads(job.threads, [engine])  # pinned for the child's whole life
    try:
        result = MEASURES[job.measure](engine, job)
    except ValueError as exc:
        return _error(str(exc), 2)
    except Exception as exc:  # one line back to the parent, whatever the engine raised
        return _error(f"{type(exc).__name__}: {exc}", 1)
    print(json.dumps({"measure": job.measure, "engine": job.engine, "layout": job.layout, "threads": job.threads, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
