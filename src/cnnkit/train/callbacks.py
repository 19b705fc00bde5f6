"""Callbacks for :func:`cnnkit.fit`: early stopping, keeping the best model, learning-rate reduction, logs.

Each is a :class:`~cnnkit.train.loop.Callback`. Those with state (the best value so far, epochs without
improvement) have ``state_dict``/``load_state_dict``, which a run directory stores in its checkpoint so
that a resumed run decides exactly as an uninterrupted one would.

Early stopping is the stopping rule of the book (§15.2.3): keep a validation set apart, watch its loss
(or error) after every epoch, and stop when it has not improved for ``patience`` epochs.

Examples
--------
>>> stop = EarlyStopping(patience=2)
>>> for epoch, val_loss in enumerate([1.0, 0.8, 0.85, 0.9, 0.7]):
...     stop.update({"epoch": epoch + 1, "val_loss": val_loss})
...     if stop.should_stop:
...         break
>>> stop.best, stop.best_epoch, epoch + 1
(0.8, 2, 4)
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.backend import Array, to_numpy, xp
from cnnkit.errors import StateError
from cnnkit.serialize import atomic_write_text
from cnnkit.train.loop import Callback, LoopState


class _Monitor:
    """Which record entry is watched, and which direction is better."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        if mode == "auto":
            mode = "max" if monitor.endswith("accuracy") else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best: float | None = None
        self.best_epoch: int | None = None

    def value(self, record: dict[str, Any]) -> float:
        if self.monitor not in record:
            have = sorted(k for k in record if k.endswith(("_loss", "_error", "_accuracy")))
            raise StateError(
                f"{type(self).__name__}: the epoch's record has no {self.monitor!r} (it has {have}); "
                f"give validation data (validation_split=... or validation_data=...) or monitor another entry"
            )
        return float(record[self.monitor])

    def improved(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best = None if d.get("best") is None else float(d["best"])
        self.best_epoch = None if d.get("best_epoch") is None else int(d["best_epoch"])


class EarlyStopping(_Monitor, Callback):
    """Stop when ``monitor`` (default the validation loss) has not improved for ``patience`` epochs.

    ``min_delta``: the smallest change that counts as an improvement. ``restore_best_weights``: at the end,
    put back the weights of the best epoch (kept in memory).

    Examples
    --------
    Validation labels that are the training labels flipped: the validation loss gets worse from the first
    epoch on, so training stops after ``patience`` more epochs and the first epoch's weights are put back.

    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import EarlyStopping
    >>> x = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> stop = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    >>> history = cnnkit.fit(net, (x, y), epochs=20, batch_size=8, optimizer=SGD(net, lr=0.1), validation_data=(x, 1 - y),
    ...                      callbacks=[stop])
    >>> history.epochs, stop.best_epoch, stop.stopped_epoch
    ([1, 2, 3], 1, 3)
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.restore_best_weights = restore_best_weights
        self._weights: dict[str, Array] | None = None

    def update(self, record: dict[str, Any]) -> None:
        """Take one epoch's record; sets :attr:`should_stop`."""
        value = self.value(record)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, int(record["epoch"]), 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = int(record["epoch"])

    @property
    def should_stop(self) -> bool:
        return self.wait >= self.patience

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        before = self.best_epoch
        self.update(record)
        if self.restore_best_weights and self.best_epoch != before:
            self._weights = {k: xp.array(v, copy=True) for k, v in state.model.state_dict().items()}
        if self.should_stop:
            state.stop = True

    def on_train_end(self, state: LoopState) -> None:
        if self.restore_best_weights and self._weights is not None:
            state.model.load_state_dict(self._weights)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.wait = int(d.get("wait", 0))
        self.stopped_epoch = None if d.get("stopped_epoch") is None else int(d["stopped_epoch"])


class KeepBest(_Monitor, Callback):
    """Keep the model of the best epoch by ``monitor``: in memory (:attr:`weights`) and, with ``save``, on disk.

    ``save(model)`` is called after each improving epoch (e.g. writing ``best.npz`` atomically).

    Examples
    --------
    Validation accuracy 0.125, 0.5, 0.75, 0.75, 0.75: epochs 1 to 3 improve (and are saved), a tie does not.

    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import KeepBest
    >>> x = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> saves = []
    >>> best = KeepBest("val_accuracy", save=lambda model: saves.append(model.params["weight"].copy()))
    >>> history = cnnkit.fit(net, (x, y), epochs=5, batch_size=8, optimizer=SGD(net, lr=0.1), validation_split=0.25,
    ...                      callbacks=[best])
    >>> best.best_epoch, best.best, len(saves), sorted(best.weights)
    (3, 0.75, 3, ['bias', 'weight'])
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", save: Callable[[Any], None] | None = None) -> None:
        super().__init__(monitor, mode, 0.0)
        self.save = save
        self.weights: dict[str, Array] | None = None

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        value = self.value(record)
        if self.improved(value):
            self.best, self.best_epoch = value, int(record["epoch"])
            self.weights = {k: xp.array(v, copy=True) for k, v in state.model.state_dict().items()}
            if self.save is not None:
                self.save(state.model)


class ReduceLROnPlateau(_Monitor, Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    The reduction scales whatever rate the epoch would otherwise have (a schedule's), never below ``min_lr``.

    Examples
    --------
    The validation loss (flipped labels) never improves after the first epoch: with ``patience=1`` the rate
    halves after every second epoch without improvement.

    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import ReduceLROnPlateau
    >>> x = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> history = cnnkit.fit(net, (x, y), epochs=5, batch_size=8, optimizer=SGD(net, lr=0.1), validation_data=(x, 1 - y),
    ...                      callbacks=[ReduceLROnPlateau("val_loss", factor=0.5, patience=1)])
    >>> history.history["lr"]
    [0.1, 0.1, 0.05, 0.025, 0.0125]
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 2, min_lr: float = 0.0,
                 mode: str = "auto", min_delta: float = 0.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.min_lr = float(factor), int(patience), float(min_lr)
        self.scale = 1.0
        self.wait = 0

    def on_epoch_begin(self, state: LoopState) -> None:
        state.optimizer.lr = max(state.optimizer.lr * self.scale, self.min_lr)

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        value = self.value(record)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, int(record["epoch"]), 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.scale *= self.factor
            self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "wait": self.wait, "scale": self.scale}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.wait, self.scale = int(d.get("wait", 0)), float(d.get("scale", 1.0))


class MetricsLog(Callback):
    """Write every epoch's record to ``path`` as JSON lines (``.jsonl``) or CSV (``.csv``), atomically.

    The whole file is rewritten after each epoch from the records so far, so a resumed run's log matches an
    uninterrupted one's. Confusion matrices are left out of CSV files.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train import MetricsLog
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = cnnkit.fit(net, (np.eye(2, dtype=np.float32), np.array([0, 1])), epochs=3, callbacks=[MetricsLog(Path(d) / "log.jsonl")])
    ...     lines = (Path(d) / "log.jsonl").read_text().splitlines()
    >>> len(lines), sorted(json.loads(lines[-1]))
    (3, ['epoch', 'images_per_s', 'lr', 'seconds', 'train_accuracy', 'train_loss', 'train_top1_error'])
    """

    root_only = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".jsonl", ".csv"):
            raise ValueError(f"MetricsLog: the file must end in .jsonl or .csv, got {self.path.name!r}")

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        self.write(state.records)

    def write(self, records: list[dict[str, Any]]) -> None:
        if self.path.suffix == ".jsonl":
            atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            return
        keys = sorted({k for r in records for k, v in r.items() if not isinstance(v, list)})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        atomic_write_text(self.path, buf.getvalue())


class History(Callback):
    """What :func:`cnnkit.fit` returns: every epoch's record, and each entry as a list (Keras' ``history``).

    Examples
    --------
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Linear
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> history = cnnkit.fit(net, (np.eye(2, dtype=np.float32), np.array([0, 1])), epochs=3)
    >>> history, history.epochs, sorted(history.history)
    (History(epochs=3), [1, 2, 3], ['images_per_s', 'lr', 'seconds', 'train_accuracy', 'train_loss', 'train_top1_error'])
    >>> history.history["train_accuracy"] == [r["train_accuracy"] for r in history.records]
    True
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_train_begin(self, state: LoopState) -> None:
        self.records = list(state.records)

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        self.records.append(record)

    @property
    def history(self) -> dict[str, list[Any]]:
        keys = [k for k in (self.records[0] if self.records else {}) if k != "epoch"]
        return {k: [r.get(k) for r in self.records] for k in keys}

    @property
    def epochs(self) -> list[int]:
        return [int(r["epoch"]) for r in self.records]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.records)})"


class MomentumReset(Callback):
    """Zero the optimiser's momentum buffers at the start of every epoch, as MatConvNet 1.0-beta20's ``cnn_train``
    does (its ``process_epoch`` starts every training epoch with ``momentum{j} = 0``).

    Only the ``momentum_buffer`` entries of the optimiser's state are touched (SGD's and RMSProp's); the
    first step of an epoch is then a plain gradient step (v = 0.9 * 0 + g). A run resumed from an epoch
    checkpoint zeroes them at the same moment, so it still repeats the uninterrupted run bit for bit.

    Examples
    --------
    Epochs of one mini-batch each: with the reset, every step is a plain gradient step, so the momentum buffer
    after the last one is that step's gradient; without it, the buffer remembers the earlier epochs.

    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import MomentumReset, run_epochs
    >>> data = (np.eye(2, dtype=np.float32), np.array([0, 1]))
    >>> for callbacks in ([], [MomentumReset()]):
    ...     net = Linear(2, 2, rng=np.random.default_rng(0)); opt = SGD(net, lr=0.1, momentum=0.9)
    ...     _ = run_epochs(net, SoftmaxCrossEntropy(), opt, data, epochs=3, batch_size=2, seed=0, callbacks=callbacks)
    ...     print(bool(np.allclose(opt.state["weight"]["momentum_buffer"], net.grads["weight"])))
    False
    True
    """

    def on_epoch_begin(self, state: LoopState) -> None:
        for st in (getattr(state.optimizer, "state", None) or {}).values():
            buf = st.get("momentum_buffer")
            if buf is not None:
                buf[...] = 0


class GradientNorms(Callback):
    """Record the norm ||dL/dW|| of the gradient reaching every layer's weights (exercises 15.2 and 15.4).

    ``steps``: the optimiser steps (counted from 0 over the whole run: 0 is the first mini-batch, at
    initialisation) at which every weight's norm is recorded, before that step's update. The weights are the
    parameters of two or more dimensions (convolution kernels and fully connected matrices; not biases or
    batch-norm scales), in network order. Each epoch's record gets, in network order:

    * ``grad_norm_layers``: the weights' names;
    * ``grad_norm_steps``: ``[{"step": s, "norms": [...]}]`` for the listed steps that fell in the epoch;
    * ``grad_norm_mean``: every weight's norm averaged over the epoch's mini-batches.

    The gradient is that of the mini-batch's mean loss (weight decay not included), as the optimiser receives
    it. The loop is unchanged: the callback wraps the optimiser's ``step`` for the duration of training, and
    a resumed run records the same numbers (the step count is part of the checkpoint). Give it before the
    callbacks that write records (a run directory, ``MetricsLog``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import create
    >>> from cnnkit.nn import SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import GradientNorms, run_epochs
    >>> net = create("conv3x3x1x4p1,relu,conv3x3x4x4p1,relu,gap,fc3", np.random.default_rng(0), init="he")
    >>> x = np.random.default_rng(1).standard_normal((8, 6, 6, 1)).astype(np.float32); y = np.arange(8) % 3
    >>> state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.1), (x, y), epochs=2, batch_size=4, seed=0,
    ...                    callbacks=[GradientNorms(steps=(0, 3))])
    >>> r1, r2 = state.records
    >>> r1["grad_norm_layers"], [s["step"] for s in r1["grad_norm_steps"]], [s["step"] for s in r2["grad_norm_steps"]]
    (['0.weight', '2.weight', '6.weight'], [0], [3])
    >>> len(r1["grad_norm_steps"][0]["norms"]), all(n > 0 for n in r2["grad_norm_mean"])
    (3, True)
    """

    def __init__(self, steps: Sequence[int] | str = (0,)) -> None:
        self.steps = frozenset(parse_steps(steps) if isinstance(steps, str) else (int(s) for s in steps))
        if any(s < 0 for s in self.steps):
            raise ValueError(f"GradientNorms: steps must be >= 0, got {sorted(self.steps)}")
        self._wrapped: tuple[Any, Any] | None = None  # (optimiser, its own instance-level step or None)
        self._names: list[str] = []
        self._at: list[dict[str, Any]] = []
        self._sum: np.ndarray | None = None
        self._count = 0

    def _observe(self, model: Any, step: int) -> None:
        grads = model.grads
        if not self._names:
            self._names = [k for k, p in model.params.items() if np.ndim(p) >= 2 and grads.get(k) is not None]
        host = (to_numpy(grads[k]).astype(np.float64, copy=False) for k in self._names)  # a GPU gradient: copied here
        norms = np.array([math.sqrt(float(np.vdot(g, g))) for g in host])
        if step in self.steps:
            self._at.append({"step": int(step), "norms": [float(v) for v in norms]})
        self._sum = norms if self._sum is None else self._sum + norms
        self._count += 1

    def on_train_begin(self, state: LoopState) -> None:
        opt, model = state.optimizer, state.model
        original = opt.step

        def step() -> None:
            self._observe(model, int(opt.step_count))
            original()

        own = "step" in vars(opt)  # a stand-in set on the instance (kept), else the class's method
        opt.step = step
        self._wrapped = (opt, original if own else None)

    def on_epoch_begin(self, state: LoopState) -> None:
        self._at, self._sum, self._count = [], None, 0

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        record["grad_norm_layers"] = list(self._names)
        record["grad_norm_steps"] = list(self._at)
        record["grad_norm_mean"] = [] if self._sum is None else [float(v) for v in self._sum / max(self._count, 1)]

    def on_train_end(self, state: LoopState) -> None:
        if self._wrapped is not None:
            opt, original = self._wrapped
            if original is not None:
                opt.step = original
            elif "step" in vars(opt):
                del opt.step  # the class's method again
            self._wrapped = None


def parse_steps(text: str) -> list[int]:
    """The optimiser steps of a ``grad_norms`` setting: comma-separated non-negative integers.

    Examples
    --------
    >>> parse_steps("0, 10,100")
    [0, 10, 100]
    >>> parse_steps("0,ten")
    Traceback (most recent call last):
    ...
    ValueError: grad_norms: 'ten' is not a step number; expected comma-separated steps such as 0,10,100
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"grad_norms: {part!r} is not a step number; expected comma-separated steps such as 0,10,100")
        out.append(int(part))
    return out
