"""``cnnkit bench``: cnnkit and PyTorch (CPU) side by side, in one process, on the same work and threads.

What is timed (float32, random data, SGD with momentum and weight decay in both):

* the SGEMM ceiling: NumPy's float32 matrix product on this machine, measured in this run;
* BASE training step and inference (batch 100, 28x28x1); SK-2 training step (batch 100);
* a VGG-style stack of 3x3 convolutions on 32x32x3 (batch 64), training step;
* every convolution of BASE and of that stack alone: forward and backward GFLOP/s;
* (``--memory``) peak memory of one VGG-16 training step on 224x224x3 at batch 8, each framework in a
  fresh subprocess;
* (``--scaling``) throughput against batch size, channel multiplier and image size, as a table and a PNG.

PyTorch runs both in its default NCHW layout and with ``channels_last``; the faster one is the reference
for the ratios. Without PyTorch installed its columns are skipped. Thread counts are pinned for both
(NumPy's BLAS through threadpoolctl, PyTorch through ``torch.set_num_threads``).

The package, one concern per module: :mod:`~cnnkit.bench.workloads` (what is timed, as data),
:mod:`~cnnkit.bench.engines` (cnnkit and PyTorch behind one interface), :mod:`~cnnkit.bench.harness`
(timing, SGEMM ceiling, thread pinning), :mod:`~cnnkit.bench.runner` (one run), :mod:`~cnnkit.bench.report`
(rows, tables, JSON), :mod:`~cnnkit.bench.plots`, :mod:`~cnnkit.bench.memory` and the child process
(:mod:`~cnnkit.bench.jobs`, ``python -m cnnkit.bench.child``).
"""

from __future__ import annotations

# Re-exported for reading; to replace one in a test, patch it where it is defined (``harness.timeit``,
# ``engines.cnnkit_engine.cnnkit_step``): the other modules look it up there.
from cnnkit.bench.engines import ENGINES, Engine, cnnkit_step, have_torch, torch_model, torch_step
from cnnkit.bench.harness import set_threads, sgemm_ceiling, timeit
from cnnkit.bench.options import BenchOptions
from cnnkit.bench.plots import plot_scaling
from cnnkit.bench.report import Row, format_scaling_table, format_table
from cnnkit.bench.runner import run
from cnnkit.bench.workloads import VGG_STACK, conv_layers

__all__ = [
    "ENGINES",
    "VGG_STACK",
    "BenchOptions",
    "Engine",
    "Row",
    "cnnkit_step",
    "conv_layers",
    "format_scaling_table",
    "format_table",
    "have_torch",
    "plot_scaling",
    "run",
    "set_threads",
    "sgemm_ceiling",
    "timeit",
    "torch_model",
    "torch_step",
]
