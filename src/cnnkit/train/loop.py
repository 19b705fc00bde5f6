"""The training loop: model, loss, optimiser and data in; one record per epoch out.

Mini-batch SGD as in seed eq. 15.9, epoch by epoch: set the epoch's learning rate, reseed the layers
that draw random numbers, shuffle, then for every mini-batch forward, loss, backward and one optimiser
step; evaluate; check that everything is finite; hand the epoch's record to the callbacks.

Determinism: everything random in an epoch comes from generators seeded by ``(seed, epoch)``: the
shuffling permutation and, through ``model.reseed([seed, epoch])``, each dropout layer's masks. The
state at an epoch boundary is therefore parameters, buffers, optimiser state and the epoch count, and
a run continued from it (``start_epoch``) repeats the uninterrupted run bit for bit.

The loop knows no files: the run directory (:mod:`cnnkit.train.rundir`) is a callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.backend import Array
from cnnkit.protocols import LossFunction, Model
from cnnkit.train.metrics import topk_wrong

SHUFFLE_STREAM = 0x5EED  # distinguishes the shuffling generator from the dropout ones


class TrainingDiverged(RuntimeError):  # noqa: N818 - a public name (cnnkit.train, docs), kept
    """The loss, a metric or a parameter became NaN or infinite; ``epoch`` is the 0-based epoch."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


@dataclass
class LoopState:
    """What the callbacks see: the objects being trained, the epoch (0-based) and the records so far.

    A callback sets ``stop`` to end training after the current epoch (early stopping).
    """

    model: Model
    loss: LossFunction
    optimizer: Any
    epoch: int
    epochs: int
    records: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False


class Callback:
    """Hooks into the loop; every method is optional. Called in the order the callbacks were given."""

    def on_train_begin(self, state: LoopState) -> None:
        """Before the first epoch (of this call; a resumed run starts at ``state.epoch``)."""

    def on_epoch_begin(self, state: LoopState) -> None:
        """After the epoch's learning rate is set, before its first batch."""

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        """After the epoch's record (already in ``state.records``) was computed and checked finite."""

    def on_train_end(self, state: LoopState) -> None:
        """After the last epoch, or after the epoch in which a callback set ``stop``."""


def evaluate(model: Model, loss: LossFunction, x: Array, labels: Array, batch_size: int = 1000) -> dict[str, float]:
    """Mean loss and top-1/top-5 error of ``model`` (evaluation mode) on preprocessed ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> net = Linear(4, 3, rng=np.random.default_rng(0))
    >>> m = evaluate(net, SoftmaxCrossEntropy(), np.eye(4, dtype=np.float32), np.array([0, 1, 2, 0]))
    >>> sorted(m)
    ['loss', 'top1_error', 'top5_error']
    """
    n = len(labels)
    total = top1 = top5 = 0.0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        scores = model.forward(xb, train=False)
        total += loss.forward(scores, yb) * len(yb)
        top1 += topk_wrong(scores, yb, 1)
        top5 += topk_wrong(scores, yb, 5)
    return {"loss": total / n, "top1_error": top1 / n, "top5_error": top5 / n}


def shuffled(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` training examples (a function of seed and epoch)."""
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(n)


def train_epoch(
    state: LoopState,
    x: Array,
    y: Array,
    order: np.ndarray,
    batch_size: int,
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``x[order]`` in mini-batches; returns the mean training loss and top-1/top-5 error.

    Raises :class:`TrainingDiverged` as soon as a batch's loss is not finite.
    """
    model, loss, optimizer = state.model, state.loss, state.optimizer
    n = len(order)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", unit_scale=True, desc=f"epoch {state.epoch + 1}/{state.epochs}", leave=False,
                   dynamic_ncols=True)
    total = top1 = top5 = 0.0
    seen = 0
    try:
        for b, start in enumerate(range(0, n, batch_size)):
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            scores = model.forward(xb, train=True)
            value = loss.forward(scores, yb)
            if not math.isfinite(value):
                raise TrainingDiverged(f"the loss became {value} in epoch {state.epoch + 1}, batch {b + 1}", state.epoch)
            model.backward(loss.backward())
            optimizer.step()
            total += value * len(yb)
            top1 += topk_wrong(scores, yb, 1)
            top5 += topk_wrong(scores, yb, 5)
            seen += len(yb)
            if bar is not None:
                bar.update(len(yb))
                if b % 10 == 0:
                    bar.set_postfix(loss=f"{total / seen:.4f}", err=f"{100 * top1 / seen:.2f}%")
    finally:
        if bar is not None:
            bar.close()
    return {"loss": total / seen, "top1_error": top1 / seen, "top5_error": top5 / seen}


def check_finite(model: Model, record: dict[str, Any], epoch: int) -> None:
    """Raise :class:`TrainingDiverged` when an epoch left non-finite losses or parameters."""
    bad = [k.replace("_", " ") for k in ("train_loss", "test_loss") if k in record and not math.isfinite(record[k])]
    bad += [f"parameter {name}" for name, p in model.params.items() if not np.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(f"{', '.join(bad[:3])} became non-finite in epoch {epoch + 1}", epoch)


def run_epochs(
    model: Model,
    loss: LossFunction,
    optimizer: Any,
    x: Array,
    y: Array,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr_at: Callable[[int], float] | None = None,
    test: tuple[Array, Array] | None = None,
    eval_batch_size: int = 1000,
    start_epoch: int = 0,
    records: list[dict[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> LoopState:
    """Train epochs ``start_epoch .. epochs-1``; returns the final :class:`LoopState` (records included).

    ``lr_at(epoch)`` gives each epoch's learning rate (the optimiser's own is kept without it); ``test``
    is evaluated after every epoch (``test_*`` keys of the record); ``records`` are those of the epochs
    before ``start_epoch`` (a resumed run).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> rng = np.random.default_rng(0)
    >>> net = Linear(4, 2, rng=rng)
    >>> x = rng.standard_normal((64, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.5), x, y, epochs=5, batch_size=16, seed=0)
    >>> [r["epoch"] for r in state.records], state.records[-1]["train_loss"] < state.records[0]["train_loss"]
    ([1, 2, 3, 4, 5], True)
    """
    state = LoopState(model, loss, optimizer, start_epoch, epochs, list(records or []))
    for cb in callbacks:
        cb.on_train_begin(state)
    n = len(y)
    for epoch in range(start_epoch, epochs):
        state.epoch = epoch
        if lr_at is not None:
            optimizer.lr = lr_at(epoch)
        model.reseed([seed, epoch])
        for cb in callbacks:
            cb.on_epoch_begin(state)
        t0 = time.perf_counter()
        train = train_epoch(state, x, y, shuffled(n, seed, epoch), batch_size, progress)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.lr, "seconds": round(seconds, 3),
                                  "images_per_s": round(n / max(seconds, 1e-9), 1)}
        record.update({f"train_{k}": v for k, v in train.items()})
        if test is not None:
            record.update({f"test_{k}": v for k, v in evaluate(model, loss, test[0], test[1], eval_batch_size).items()})
        check_finite(model, record, epoch)  # never hand a diverged model to the callbacks (checkpoints)
        state.records.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state, record)
        if state.stop:
            break
    for cb in callbacks:
        cb.on_train_end(state)
    return state
