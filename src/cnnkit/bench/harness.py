"""The timing harness: per-call timing after a warm-up, the machine's SGEMM ceiling and thread pinning.

Everything here runs inside one child process of ``cnnkit bench`` (:mod:`cnnkit.bench.child`): the parent
never times anything itself, so that no engine's thread pool (PyTorch's OpenMP threads wait 200 ms after each
parallel region; OpenBLAS and onnxruntime spin too) can take cores from another engine's measurement.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cnnkit.bench.engines import Engine

MAX_CALLS = 100_000
"""At most this many timed calls per measurement (a call of a few microseconds would otherwise take millions)."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
"""Environment variables that size the BLAS and OpenMP pools when a library loads; a child gets them all set."""


def time_calls(fn: Callable[[], Any], min_time: float = 1.0, warmup: int = 2, min_repeats: int = 3,
               warmup_time: float = 0.0, max_calls: int = MAX_CALLS) -> list[float]:
    """Seconds of each call of ``fn``: after at least ``warmup`` calls and ``warmup_time`` seconds of warm-up,
    at least ``min_repeats`` calls and ``min_time`` seconds (at most ``max_calls`` calls).

    >>> times = time_calls(lambda: None, min_time=0.0, warmup=1, min_repeats=4)
    >>> len(times), all(t >= 0 for t in times)
    (4, True)
    """
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_time:
        fn()
        done += 1
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_time and len(times) < max_calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def timeit(fn: Callable[[], Any], min_time: float = 1.0, warmup: int = 2, min_repeats: int = 3) -> float:
    """Median seconds per call over at least ``min_repeats`` calls and ``min_time`` seconds, after warm-up."""
    return statistics.median(time_calls(fn, min_time, warmup, min_repeats))


def sgemm_ceiling(n: int = 2048, min_time: float = 1.0) -> float:
    """GFLOP/s of NumPy's float32 (n x n) @ (n x n)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t = timeit(lambda: np.matmul(a, b, out=out), min_time)
    return 2 * n**3 / t / 1e9


def set_threads(threads: int, engines: Iterable[Engine]) -> Any:
    """Pin NumPy's BLAS (and any OpenMP runtime already loaded) and each of ``engines`` to ``threads``; returns
    the threadpoolctl limiter (keep it alive). Load the engines first, so that their own runtimes are limited too."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    for engine in engines:
        engine.set_threads(threads)
    return limiter


def child_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process pinned to ``threads``: :data:`THREAD_VARIABLES` set, so that every pool
    is sized when its library loads (the child pins them again at run time).

    >>> child_env(2, {"PATH": "/bin", "OMP_NUM_THREADS": "8"})["OMP_NUM_THREADS"]
    '2'
    """
    env = dict(os.environ if base is None else base)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says; else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
