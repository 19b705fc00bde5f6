"""What one ``cnnkit bench`` run measures: the options :func:`cnnkit.bench.run` takes (the CLI builds them)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchOptions:
    """``threads``: the thread counts, each its own set of rows (an int is one count; None: 1 and all cores);
    ``rounds``: fresh child processes per measurement, interleaving the engines; ``min_time``: seconds of timed
    calls per measurement and round (per-convolution rows: at least 0.2 s); ``no_torch`` / ``no_ort``: leave
    PyTorch / onnxruntime out; ``layers``: the per-convolution rows; ``memory``: VGG-16 training peak memory,
    each engine in a child process; ``scaling``: the scaling curves, drawn to ``plot`` (a PNG path; None: no
    plot); ``json`` / ``markdown``: write the results / the README-ready table there; ``ex156``: a finished
    ``cnnkit experiment ex15.6`` directory whose wall time becomes a row."""

    threads: tuple[int, ...] | int | None = None
    rounds: int = 3
    min_time: float = 1.0
    no_torch: bool = False
    no_ort: bool = False
    layers: bool = False
    memory: bool = True
    scaling: bool = False
    plot: str | None = "bench_scaling.png"
    json: str | None = None
    markdown: str | None = None
    ex156: str | None = None

    def __post_init__(self) -> None:
        threads = (self.threads,) if isinstance(self.threads, int) else self.threads
        if threads is not None:
            if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
                raise ValueError(f"threads: expected positive integers, got {self.threads}")
            object.__setattr__(self, "threads", tuple(dict.fromkeys(threads)))  # in order, once each
        if self.rounds < 1:
            raise ValueError(f"rounds: expected a positive integer, got {self.rounds}")
        if not (self.min_time >= 0 and math.isfinite(self.min_time)):
            raise ValueError(f"min_time: expected a finite number >= 0, got {self.min_time}")

    def thread_counts(self) -> tuple[int, ...]:
        """The thread counts to run: ``threads``, or 1 and all cores (once, on a one-core machine)."""
        from cnnkit.bench.harness import cores

        if isinstance(self.threads, tuple):
            return self.threads
        return tuple(dict.fromkeys((1, cores())))
