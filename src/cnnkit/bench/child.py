"""The child process of ``cnnkit bench``: ``python -m cnnkit.bench.child '<json job>'``.

An internal protocol (see :mod:`cnnkit.bench.jobs`), not a command: it takes exactly one argument, the
job, checks it, pins the threads, runs the measure and prints one JSON line. Exit codes: 0 success; 2 a
malformed job; 1 an engine that is not installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cnnkit.bench import harness
from cnnkit.bench.engines import Engine, get_engine, installed_engines
from cnnkit.bench.jobs import Job
from cnnkit.bench.memory import peak_memory
from cnnkit.bench.workloads import Network

MEASURES: dict[str, Callable[[Engine, str, Network], dict[str, Any]]] = {
    "peak_memory": peak_memory,
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
    engine = get_engine(job.engine)
    if not engine.available():
        return _error(f"engine {job.engine!r} is not installed", 1)
    _limiter = harness.set_threads(job.threads, installed_engines())  # pinned for the child's whole life
    print(json.dumps(MEASURES[job.measure](engine, job.layout, job.workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
