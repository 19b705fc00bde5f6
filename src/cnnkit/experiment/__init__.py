"""Experiment programmes: exercises 15.1-15.6 of the seed chapter, each run as parallel, resumable training jobs
with a report (tables, commentary computed from the numbers, plots).

=============  ======================================================================================
programme      question
=============  ======================================================================================
ex15.6         MNIST experiments (b)-(j): BASE, BN, dropout, SK, SK-s, training-set size, slices, seeds,
               sigmoid (MatConvNet 1.0-beta20's settings)
ex15.2-4a      15.2(c), 15.4(a): gradient norm per layer of a deep plain network with sigmoid vs ReLU;
               plain vs residual networks of 8, 20 and 56 layers (degradation)
ex15.4c        15.4(c): fully connected head vs global average pooling: parameters and error
ex15.5a        15.5(a): ReLU vs tanh, epochs to reach a training error (AlexNet's figure 1)
ex15.5b        15.5(b): averaging the predictions of 15.6(i)'s seven networks
ex15.1-5c      15.1, 15.5(c): dropout's cost in epochs to reach a training loss or validation error
=============  ======================================================================================

Examples
--------
>>> list(PROGRAMMES)
['ex15.6', 'ex15.2-4a', 'ex15.4c', 'ex15.5a', 'ex15.5b', 'ex15.1-5c']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cnnkit.experiment.ex15_6 import PARTS, plan
from cnnkit.experiment.plan import Entry, Job, Programme, ReportContext
from cnnkit.experiment.programme import PROGRAMMES, estimated_cost, run_programme

__all__ = ["PARTS", "PROGRAMMES", "Entry", "Job", "Programme", "ReportContext", "estimated_cost", "plan", "run_ex15_6",
           "run_programme"]


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
    matconvnet: bool = True,
) -> Path:
    """Run (or finish) exercise 15.6's parts into ``out`` and write its report; returns report.md's path
    (:func:`run_programme` for ``ex15.6``). ``matconvnet=False``: cnnkit's momentum and BN epsilon instead.

    Examples
    --------
    >>> run_ex15_6("runs/none", parts=("z",))
    Traceback (most recent call last):
    ...
    ValueError: unknown part(s) z; expected some of b, c, d, e, f, g, h, i, j
    """
    return run_programme("ex15.6", out, parts, data_dir, executor, workers, threads, address, epochs, max_train, test_limit,
                         log, matconvnet=matconvnet)
