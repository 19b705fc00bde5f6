"""The training loop: model, loss, optimiser and data in; one record per epoch out.

Mini-batch SGD as in seed eq. 15.9, epoch by epoch: set the epoch's learning rate, reseed the layers
that draw random numbers, shuffle, then for every mini-batch forward, loss, backward and one optimiser
step; evaluate; check that everything is finite; hand the epoch's record to the callbacks.

Determinism: everything random in an epoch comes from generators seeded by ``(seed, epoch)``: the
shuffling permutation and, through ``model.reseed([seed, epoch])``, each dropout layer's masks. The
state at an epoch boundary is therefore parameters, buffers, optimiser state and the epoch count, and
a run continued from it (``start_epoch``) repeats the uninterrupted run bit for bit.

The loop knows no files: the run directory (:mod:`cnnkit.train.rundir`) is a callback.

Several processes (:mod:`cnnkit.train.distributed`): ``parallel`` (a
:class:`~cnnkit.train.distributed.DataParallel`) gives each process its slice of every mini-batch and of
every evaluation set, sums the weighted gradients of all processes before each step and the tallies after
each pass; without it the loop is the single-process one, unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.backend import Array, to_device, to_numpy, xp
from cnnkit.data.source import Source, as_source
from cnnkit.protocols import LossFunction, Model
from cnnkit.train.metrics import topk_wrong

SHUFFLE_STREAM = 0x5EED  # distinguishes the shuffling generator from the dropout ones
AUGMENT_STREAM = 0xA46  # and the augmentation generators


class TrainingDiverged(RuntimeError):  # noqa: N818 - a public name (cnnkit.train, docs), kept
    """The loss, a metric or a parameter became NaN or infinite; ``epoch`` is the 0-based epoch.

    Examples
    --------
    Training stops in the first batch whose loss is not finite:

    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import TrainingDiverged, run_epochs
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][0, 0] = np.nan
    >>> try:
    ...     run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.1), (np.ones((4, 2), np.float32), np.array([0, 1, 0, 1])),
    ...                epochs=3, batch_size=2, seed=0)
    ... except TrainingDiverged as exc:
    ...     print(exc, "| epoch", exc.epoch)
    the loss became nan in epoch 1, batch 1 | epoch 0
    """

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


@dataclass
class LoopState:
    """What the callbacks see: the objects being trained, the epoch (0-based) and the records so far.

    A callback sets ``stop`` to end training after the current epoch (early stopping).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import run_epochs
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.1), (np.eye(2, dtype=np.float32), np.array([0, 1])),
    ...                    epochs=3, batch_size=2, seed=0)
    >>> state.model is net, state.epoch, state.epochs, len(state.records), state.stop  # epoch: the last one, 0-based
    (True, 2, 3, 3, False)
    """

    model: Model
    loss: LossFunction
    optimizer: Any
    epoch: int
    epochs: int
    records: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False


class Callback:
    """Hooks into the loop; every method is optional. Called in the order the callbacks were given.

    Examples
    --------
    A callback that logs each epoch's learning rate and ends training after the second epoch:

    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import Callback, run_epochs
    >>> class StopAfterTwo(Callback):
    ...     def on_epoch_end(self, state, record):
    ...         print(f"epoch {record['epoch']}: lr {record['lr']}")
    ...         state.stop = record["epoch"] >= 2
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.1), (np.eye(2, dtype=np.float32), np.array([0, 1])),
    ...                    epochs=10, batch_size=2, seed=0, lr_at=lambda epoch: 0.1 / (epoch + 1), callbacks=[StopAfterTwo()])
    epoch 1: lr 0.1
    epoch 2: lr 0.05
    """

    #: True for callbacks that write files or logs: with several processes (``fit(distributed=...)``) they run
    #: on rank 0 only
    root_only: bool = False

    def on_train_begin(self, state: LoopState) -> None:
        """Before the first epoch (of this call; a resumed run starts at ``state.epoch``)."""

    def on_epoch_begin(self, state: LoopState) -> None:
        """After the epoch's learning rate is set, before its first batch."""

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        """After the epoch's record (already in ``state.records``) was computed and checked finite."""

    def on_train_end(self, state: LoopState) -> None:
        """After the last epoch, or after the epoch in which a callback set ``stop``."""


class _Tally:
    """Running loss, top-1/top-5 errors and confusion matrix over the batches of a pass."""

    def __init__(self) -> None:
        self.total = self.top1 = self.top5 = 0.0
        self.seen = 0
        self.confusion: np.ndarray | None = None
        self.k = 0  # outputs per example (0 until a batch was seen)

    def add(self, scores: Array, labels: Array, value: float, confusion: bool) -> None:
        n = len(labels)
        self.total += value * n
        self.top1 += topk_wrong(scores, labels, 1)
        self.top5 += topk_wrong(scores, labels, 5)
        self.seen += n
        self.k = int(np.prod(scores.shape[1:]))
        if confusion:
            k = self.k
            if self.confusion is None:
                self.confusion = np.zeros((k, k), dtype=np.int64)
            pred = to_numpy(scores.reshape(n, k).argmax(axis=1))  # one device-to-host copy per batch (n labels)
            np.add.at(self.confusion, (to_numpy(labels), pred), 1)

    def result(self, classes: int) -> dict[str, Any]:
        n = max(self.seen, 1)
        out: dict[str, Any] = {"loss": self.total / n, "top1_error": self.top1 / n}
        if classes > 5:  # top-5 error is 0 by definition with 5 classes or fewer
            out["top5_error"] = self.top5 / n
        out["accuracy"] = 1.0 - self.top1 / n
        if self.confusion is not None:
            out["confusion"] = self.confusion.tolist()
        return out


def evaluate(
    model: Model,
    loss: LossFunction,
    data: Array | Source,
    labels: Array | None = None,
    batch_size: int = 1000,
    progress: bool = False,
    parallel: Any = None,
) -> dict[str, Any]:
    """Loss, top-1/top-5 error, accuracy and confusion matrix of ``model`` in evaluation mode.

    ``data``: preprocessed inputs with ``labels``, or a :class:`~cnnkit.data.source.Source`. The
    confusion matrix counts (true class, predicted class); top-5 error is left out with 5 classes or fewer.
    ``parallel`` (a :class:`~cnnkit.train.distributed.DataParallel`): each process evaluates its contiguous
    share of the examples and every process returns the figures of the whole set.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> net = Linear(4, 3, rng=np.random.default_rng(0))
    >>> m = evaluate(net, SoftmaxCrossEntropy(), np.eye(4, dtype=np.float32), np.array([0, 1, 2, 0]))
    >>> sorted(m), len(m["confusion"])
    (['accuracy', 'confusion', 'loss', 'top1_error'], 3)
    """
    source = as_source((data, labels) if labels is not None else data)
    n = len(source)
    lo, hi = (0, n) if parallel is None else parallel.share(n)
    tally = _Tally()
    bar = _bar(progress, hi - lo, "evaluating")
    try:
        for start in range(lo, hi, batch_size):
            xb, yb = source.take(np.arange(start, min(start + batch_size, hi)))
            xb, yb = to_device(xb), to_device(yb)  # onto the GPU once per batch (no-op under NumPy)
            scores = model.forward(xb, train=False)
            tally.add(scores, yb, loss.forward(scores, yb), confusion=True)
            if bar is not None:
                bar.update(len(yb))
    finally:
        if bar is not None:
            bar.close()
    if parallel is not None:
        tally = parallel.reduce_tally(tally, confusion=True)
    return tally.result(tally.k)


def _bar(progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar on stderr when ``progress`` and stderr is a terminal (tqdm decides), else None."""
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", unit_scale=True, desc=desc, leave=False, dynamic_ncols=True, disable=None)


def shuffled(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` training examples (a function of seed and epoch).

    Examples
    --------
    >>> from cnnkit.train.loop import shuffled
    >>> shuffled(6, seed=0, epoch=0), shuffled(6, seed=0, epoch=1)
    (array([3, 1, 5, 4, 2, 0]), array([4, 1, 0, 2, 3, 5]))
    >>> bool((shuffled(6, 0, 1) == shuffled(6, 0, 1)).all())  # a function of (seed, epoch) only
    True
    """
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(n)


def train_epoch(
    state: LoopState,
    source: Source,
    order: np.ndarray,
    batch_size: int,
    seed: int = 0,
    progress: bool = False,
    parallel: Any = None,
) -> dict[str, Any]:
    """One pass over ``source`` in the order ``order``, in mini-batches; returns the training loss and errors.

    A source with augmentation gets, for batch b of epoch e, a generator seeded by (seed, e, b).
    Raises :class:`TrainingDiverged` as soon as a batch's loss is not finite. With ``parallel`` (a
    :class:`~cnnkit.train.distributed.DataParallel`) this process runs its slice of every mini-batch, and the
    step applies the gradient of the whole mini-batch (summed over the processes).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import as_source
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train.loop import LoopState, shuffled, train_epoch
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> state = LoopState(net, SoftmaxCrossEntropy(), SGD(net, lr=0.1), epoch=0, epochs=1)
    >>> result = train_epoch(state, as_source((np.eye(2, dtype=np.float32), np.array([0, 1]))), shuffled(2, 0, 0), batch_size=1)
    >>> sorted(result)
    ['accuracy', 'loss', 'top1_error']
    """
    model, loss, optimizer = state.model, state.loss, state.optimizer
    n = len(order)
    bar = _bar(progress, n, f"epoch {state.epoch + 1}/{state.epochs}")
    tally = _Tally()
    try:
        for b, start in enumerate(range(0, n, batch_size)):
            rng = np.random.default_rng([seed, AUGMENT_STREAM, state.epoch, b]) if source.random else None
            rows = order[start : start + batch_size]
            if parallel is not None:  # this process's slice, and a generator that draws as for the whole batch
                rows, rng = parallel.local_batch(model, rows, rng)
            value = 0.0
            if len(rows):
                xb, yb = source.take(rows, rng)
                xb, yb = to_device(xb), to_device(yb)  # onto the GPU once per batch (no-op under NumPy)
                scores = model.forward(xb, train=True)
                value = loss.forward(scores, yb)
                if parallel is None and not math.isfinite(value):
                    raise TrainingDiverged(f"the loss became {value} in epoch {state.epoch + 1}, batch {b + 1}", state.epoch)
                model.backward(loss.backward())
            if parallel is not None:  # the mini-batch's gradient and mean loss, summed over the processes
                whole = parallel.reduce_gradients(model, value)
                if not math.isfinite(whole):
                    raise TrainingDiverged(f"the loss became {whole} in epoch {state.epoch + 1}, batch {b + 1}", state.epoch)
            optimizer.step()
            if len(rows):
                tally.add(scores, yb, value, confusion=False)
            if bar is not None:
                bar.update(min(batch_size, n - start))
                if b % 10 == 0 and tally.seen:
                    bar.set_postfix(loss=f"{tally.total / tally.seen:.4f}", err=f"{100 * tally.top1 / tally.seen:.2f}%")
    finally:
        if bar is not None:
            bar.close()
    if parallel is not None:
        tally = parallel.reduce_tally(tally, confusion=False)
    return tally.result(tally.k)


def check_finite(model: Model, record: dict[str, Any], epoch: int, optimizer: Any = None) -> None:
    """Raise :class:`TrainingDiverged` when an epoch left non-finite losses, parameters or optimiser state
    (momentum, moments: a state that overflowed would poison every later step and the checkpoint).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train.loop import TrainingDiverged, check_finite
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> check_finite(net, {"train_loss": 0.7, "test_loss": 0.8}, epoch=0)  # all finite: nothing happens
    >>> net.params["bias"][1] = np.inf
    >>> check_finite(net, {"train_loss": 0.7, "test_loss": float("nan")}, epoch=4)
    Traceback (most recent call last):
        ...
    cnnkit.train.loop.TrainingDiverged: test loss, parameter bias became non-finite in epoch 5
    """
    bad = [k.replace("_", " ") for k, v in record.items() if k.endswith("_loss") and not math.isfinite(v)]
    bad += [f"parameter {name}" for name, p in model.params.items() if not xp.isfinite(p).all()]
    for name, st in (getattr(optimizer, "state", None) or {}).items():
        bad += [f"optimizer state {key} of {name}" for key, v in st.items()
                if isinstance(v, (np.ndarray, xp.ndarray)) and v.dtype.kind == "f" and not xp.isfinite(v).all()]
    if bad:
        raise TrainingDiverged(f"{', '.join(bad[:3])} became non-finite in epoch {epoch + 1}", epoch)


def run_epochs(
    model: Model,
    loss: LossFunction,
    optimizer: Any,
    train: Source | tuple[Array, Array],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr_at: Callable[[int], float] | None = None,
    evaluate_on: dict[str, Source | tuple[Array, Array]] | None = None,
    eval_batch_size: int = 1000,
    start_epoch: int = 0,
    records: list[dict[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    parallel: Any = None,
) -> LoopState:
    """Train epochs ``start_epoch .. epochs-1``; returns the final :class:`LoopState` (records included).

    ``train``: a source or ``(x, y)`` arrays. ``lr_at(epoch)`` gives each epoch's learning rate (the
    optimiser's own is kept without it). ``evaluate_on`` names the sets evaluated after every epoch, e.g.
    ``{"val": ..., "test": ...}`` (record keys ``val_loss``, ``test_top1_error`` ...). ``records`` are those
    of the epochs before ``start_epoch`` (a resumed run). ``parallel``: a
    :class:`~cnnkit.train.distributed.DataParallel` shared by the processes that train together (it is also
    the first callback).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> rng = np.random.default_rng(0)
    >>> net = Linear(4, 2, rng=rng)
    >>> x = rng.standard_normal((64, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.5), (x, y), epochs=5, batch_size=16, seed=0)
    >>> [r["epoch"] for r in state.records], state.records[-1]["train_loss"] < state.records[0]["train_loss"]
    ([1, 2, 3, 4, 5], True)
    """
    source = as_source(train)
    sets = {name: as_source(data) for name, data in (evaluate_on or {}).items()}
    if lr_at is None:  # the rate is set afresh every epoch, so callbacks that scale it never compound
        base_lr = optimizer.lr

        def lr_at(epoch: int) -> float:
            return base_lr

    state = LoopState(model, loss, optimizer, start_epoch, epochs, list(records or []))
    if parallel is not None:
        callbacks = [parallel, *callbacks]
    for cb in callbacks:
        cb.on_train_begin(state)
    n = len(source)
    for epoch in range(start_epoch, epochs):
        state.epoch = epoch
        optimizer.lr = lr_at(epoch)
        model.reseed([seed, epoch])
        for cb in callbacks:
            cb.on_epoch_begin(state)
        t0 = time.perf_counter()
        result = train_epoch(state, source, shuffled(n, seed, epoch), batch_size, seed, progress, parallel)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.lr, "seconds": round(seconds, 3),
                                  "images_per_s": round(n / max(seconds, 1e-9), 1)}
        record.update({f"train_{k}": v for k, v in result.items()})
        for name, data in sets.items():
            metrics = evaluate(model, loss, data, None, eval_batch_size, progress, parallel)
            record.update({f"{name}_{k}": v for k, v in metrics.items()})
        check_finite(model, record, epoch, optimizer)  # never hand a diverged model to the callbacks (checkpoints)
        state.records.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state, record)
        if state.stop:
            break
    for cb in callbacks:
        cb.on_train_end(state)
    return state
