"""``cnnkit bench``: cnnkit against PyTorch (CPU) and onnxruntime, every measurement in its own process.

What is timed (float32, random data, SGD with momentum and weight decay in both trainers):

* BASE (28x28x1) training and inference at batch 100, and inference latency at batch 1;
* SK-2 training (batch 100); a VGG-style stack of 3x3 convolutions on 32x32x3 (batch 64), training and inference;
* peak memory of one VGG-16 training step on 224x224x3 at batch 8 (``--no-memory`` leaves it out);
* (``--layers``) every convolution of BASE and of that stack alone: forward and backward GFLOP/s;
* (``--ex156 DIR``) the wall time of a finished ``cnnkit experiment ex15.6``, read from its results;
* (``--scaling``) throughput against batch size, channel multiplier and image size, as a table and a PNG;
* the SGEMM ceiling (NumPy's float32 matrix product) at each thread count.

Honest timing: each (workload, engine, layout) is timed in a fresh child process pinned to the thread count
(threadpoolctl for BLAS, ``torch.set_num_threads``, onnxruntime's intra-op threads with one inter-op thread
and sequential execution), so no engine's spinning thread pool takes cores from another; R rounds
(``--rounds``, default 3) interleave the engines; a figure is the median over rounds of each round's median
call, and its spread ((max - min) / median) flags the row ``~`` above 10% and ``!`` above 25%. Each thread
count (``--threads``, default 1 and all cores) has its own rows. PyTorch runs in NCHW and ``channels_last``;
onnxruntime (inference only) runs the same network and weights exported by :func:`cnnkit.onnx.export`.
An engine that is not installed is left out.

The package, one concern per module: :mod:`~cnnkit.bench.workloads` (what is timed, and the targets, as data),
:mod:`~cnnkit.bench.engines` (cnnkit, PyTorch, onnxruntime behind one interface), :mod:`~cnnkit.bench.harness`
(per-call timing, thread pinning), :mod:`~cnnkit.bench.stats` (rounds, medians, spreads, flags),
:mod:`~cnnkit.bench.runner` (one run), :mod:`~cnnkit.bench.report` (rows, tables, targets, JSON, Markdown),
:mod:`~cnnkit.bench.machine` (the machine's description), :mod:`~cnnkit.bench.ex156`, :mod:`~cnnkit.bench.plots`,
:mod:`~cnnkit.bench.memory` and the child process (:mod:`~cnnkit.bench.jobs`, ``python -m cnnkit.bench.child``).
"""

from __future__ import annotations

# Re-exported for reading; to replace one in a test, patch it where it is defined: the other modules look it
# up there.
from cnnkit.bench.engines import ENGINES, Engine, cnnkit_step, have_onnxruntime, have_torch, torch_model, torch_step
from cnnkit.bench.harness import set_threads, sgemm_ceiling, time_calls, timeit
from cnnkit.bench.options import BenchOptions
from cnnkit.bench.plots import plot_scaling
from cnnkit.bench.report import Row, format_markdown, format_scaling_table, format_table
from cnnkit.bench.runner import run
from cnnkit.bench.stats import Summary, flag, summarize
from cnnkit.bench.workloads import NETWORKS, TARGETS, VGG_STACK, conv_layers

__all__ = [
    "ENGINES",
    "NETWORKS",
    "TARGETS",
    "VGG_STACK",
    "BenchOptions",
    "Engine",
    "Row",
    "Summary",
    "cnnkit_step",
    "conv_layers",
    "flag",
    "format_markdown",
    "format_scaling_table",
    "format_table",
    "have_onnxruntime",
    "have_torch",
    "plot_scaling",
    "run",
    "set_threads",
    "sgemm_ceiling",
    "summarize",
    "time_calls",
    "timeit",
    "torch_model",
    "torch_step",
]
