"""What one ``cnnkit bench`` run measures: the options :func:`cnnkit.bench.run` takes (the CLI builds them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchOptions:
    """``threads``: for every engine (None: all cores); ``min_time``: seconds per measurement; ``no_torch``: time
    cnnkit only; ``no_layers``: skip the per-convolution rows; ``memory``: VGG-16 peak memory, each engine in a
    child process; ``scaling``: the scaling curves, drawn to ``plot`` (a PNG path; None: no plot); ``json``:
    write the results there."""

    threads: int | None = None
    min_time: float = 1.0
    no_torch: bool = False
    no_layers: bool = False
    memory: bool = False
    scaling: bool = False
    plot: str | None = "bench_scaling.png"
    json: str | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: expected a positive integer, got {self.threads}")
