"""The timing harness: median-of-calls timing, the machine's SGEMM ceiling and thread pinning."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cnnkit.bench.engines import Engine


def timeit(fn: Callable[[], Any], min_time: float = 1.0, warmup: int = 2, min_repeats: int = 3) -> float:
    """Median seconds per call over at least ``min_repeats`` calls and ``min_time`` seconds, after warm-up."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) > 10000:
            break
    return statistics.median(times)


def sgemm_ceiling(n: int = 2048, min_time: float = 1.0) -> float:
    """GFLOP/s of NumPy's float32 (n x n) @ (n x n)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t = timeit(lambda: np.matmul(a, b, out=out), min_time)
    return 2 * n**3 / t / 1e9


def set_threads(threads: int, engines: Iterable[Engine]) -> Any:
    """Pin NumPy's BLAS and each of ``engines`` to ``threads``; returns the threadpoolctl limiter (keep it alive)."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    for engine in engines:
        engine.set_threads(threads)
    return limiter
