"""Mini-batch SGD training with per-epoch evaluation, checkpoints, exact resume and learning curves.

Determinism: everything random in an epoch is drawn from generators seeded by ``(seed, epoch)`` (the
shuffling permutation and each dropout layer's masks), and the model is initialised from ``seed``.
The state at an epoch boundary is therefore fully described by the checkpoint (parameters, buffers,
optimiser state, epoch count), and a resumed run, even after ``kill -9``, ends with bit-identical
weights to an uninterrupted one.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per epoch), ``curves.png``,
``checkpoint.npz`` (after every epoch) and ``model.npz`` (the final model, for ``eval``/``predict``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from cnnkit.serialize import atomic_write_text, remove_stale_temporaries

_SHUFFLE_STREAM = 0x5EED  # distinguishes the shuffling generator from the dropout ones


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are MatConvNet 1.0-beta20's MNIST settings."""

    model: str = "base"
    data: str = "mnist"
    train_limit: Optional[int] = None
    train_range: Optional[str] = None  # "10001-20000", 1-based inclusive
    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.001
    schedule: str = "constant"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    preprocess: str = "mean_image"
    dtype: str = "float32"
    eval_batch_size: int = 1000
    test_limit: Optional[int] = None  # evaluate on the first N test images only (quick runs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def make_optimizer(config: TrainConfig, model: Any) -> Any:
    """The optimiser a config names (sgd, adam, rmsprop, adagrad)."""
    from cnnkit.optim import SGD, Adagrad, Adam, RMSProp

    name = config.optimizer.lower()
    if name == "sgd":
        return SGD(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if name == "adam":
        return Adam(model, lr=config.lr, weight_decay=config.weight_decay)
    if name == "rmsprop":
        return RMSProp(model, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
    if name == "adagrad":
        return Adagrad(model, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected sgd, adam, rmsprop or adagrad")


def evaluate(model: Any, loss: Any, x: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> dict[str, float]:
    """Mean loss and top-1/top-5 error of ``model`` (evaluation mode) on preprocessed ``x``."""
    from cnnkit.train.metrics import topk_wrong

    n = len(labels)
    total = top1 = top5 = 0.0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        scores = model.forward(xb, train=False)
        total += loss.forward(scores, yb) * len(yb)
        top1 += topk_wrong(scores, yb, 1)
        top5 += topk_wrong(scores, yb, 5)
    return {"loss": total / n, "top1_error": top1 / n, "top5_error": top5 / n}


def _dropout_layers(model: Any) -> list[Any]:
    from cnnkit.nn import Dropout

    mods = model.modules() if hasattr(model, "modules") else [model]
    return [m for m in mods if isinstance(m, Dropout)]


class Trainer:
    """Trains ``model`` on preprocessed arrays; writes the run directory ``out``."""

    def __init__(
        self,
        config: TrainConfig,
        model: Any,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: Optional[np.ndarray],
        y_test: Optional[np.ndarray],
        out: str | Path,
        progress: bool = True,
        log: Callable[[str], None] = print,
        on_save: Optional[Callable[[Any], None]] = None,
    ) -> None:
        from cnnkit.nn import SoftmaxCrossEntropy
        from cnnkit.optim import schedule_from_spec

        self.config, self.model = config, model
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.out = Path(out)
        self.progress, self.log, self.on_save = progress, log, on_save
        self.loss = SoftmaxCrossEntropy()
        self.optimizer = make_optimizer(config, model)
        self.schedule = schedule_from_spec(config.schedule, config.lr)
        self.records: list[dict[str, Any]] = []

    # -- files ------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.npz"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    def _write_metrics(self) -> None:
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))

    def _resume(self) -> int:
        from cnnkit.train.checkpoint import load_checkpoint

        saved_cfg = json.loads((self.out / "config.json").read_text())
        if TrainConfig.from_dict(saved_cfg) != self.config:
            diff = {k: (saved_cfg.get(k), v) for k, v in self.config.to_dict().items() if saved_cfg.get(k) != v}
            raise ValueError(f"--resume: the run in {self.out} was started with other settings (saved, now): {diff}")
        meta = load_checkpoint(self.checkpoint_path, self.model, self.optimizer)
        remove_stale_temporaries(self.out)  # a kill -9 in the middle of an atomic write
        done = int(meta["epoch"])
        # the checkpoint carries the records of its epochs: a kill between writing the checkpoint and
        # metrics.jsonl must not lose a line
        if "records" in meta:
            records = meta["records"]
        elif self.metrics_path.exists():  # checkpoints written before records were stored in them
            records = [json.loads(s) for s in self.metrics_path.read_text().splitlines() if s.strip()]
        else:
            records = []
        self.records = [r for r in records if r["epoch"] <= done]
        self._write_metrics()
        return done

    # -- the loop ---------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs (continuing a checkpoint when ``resume``); returns the last record."""
        from cnnkit.train.checkpoint import save_checkpoint

        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        start = 0
        if resume and self.checkpoint_path.exists():
            start = self._resume()
            self.log(f"resuming {self.out} after epoch {start}")
        else:
            if self.checkpoint_path.exists():
                raise ValueError(f"{self.out} already holds a run (checkpoint.npz); pass --resume to continue it or choose another --out")
            atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
            self.records = []
            self._write_metrics()
        dropouts = _dropout_layers(self.model)
        n = len(self.y_train)
        for epoch in range(start, cfg.epochs):
            self.optimizer.lr = self.schedule.lr_at(epoch)
            for i, layer in enumerate(dropouts):
                layer.rng = np.random.default_rng([cfg.seed, epoch, i])
            order = np.random.default_rng([cfg.seed, _SHUFFLE_STREAM, epoch]).permutation(n)
            t0 = time.perf_counter()
            train = self._train_epoch(epoch, order)
            seconds = time.perf_counter() - t0
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.lr, "seconds": round(seconds, 3),
                                      "images_per_s": round(n / max(seconds, 1e-9), 1)}
            record.update({f"train_{k}": v for k, v in train.items()})
            if self.x_test is not None and self.y_test is not None:
                test = evaluate(self.model, self.loss, self.x_test, self.y_test, cfg.eval_batch_size)
                record.update({f"test_{k}": v for k, v in test.items()})
            self._check_finite(record, epoch)  # never checkpoint a diverged model
            self.records.append(record)
            save_checkpoint(self.checkpoint_path, self.model, self.optimizer, epoch + 1,
                            {"config": cfg.to_dict(), "records": self.records})
            self._write_metrics()
            self._plot()
            self.log(self._epoch_line(record))
        if self.on_save is not None:
            self.on_save(self.model)
        return self.records[-1] if self.records else {}

    def _train_epoch(self, epoch: int, order: np.ndarray) -> dict[str, float]:
        from cnnkit.train.metrics import topk_wrong

        cfg = self.config
        n, bs = len(order), cfg.batch_size
        batches = range(0, n, bs)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=n, unit="img", unit_scale=True, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        total = top1 = top5 = 0.0
        seen = 0
        try:
            for b, start in enumerate(batches):
                idx = order[start : start + bs]
                xb, yb = self.x_train[idx], self.y_train[idx]
                scores = self.model.forward(xb, train=True)
                value = self.loss.forward(scores, yb)
                if not math.isfinite(value):
                    raise TrainingDiverged(f"the loss became {value} in epoch {epoch + 1}, batch {b + 1}; {self._kept(epoch)}")
                self.model.backward(self.loss.backward())
                self.optimizer.step()
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

    def _kept(self, epoch: int) -> str:
        """The end of a divergence message: what is left on disk after ``epoch`` finished epochs."""
        if epoch == 0:
            return "training stopped; no epoch finished with finite values, so no checkpoint was written; try a smaller --lr"
        return f"training stopped. The last good checkpoint ({self.checkpoint_path}, after epoch {epoch}) is kept; try a smaller --lr"

    def _check_finite(self, record: dict[str, Any], epoch: int) -> None:
        """Raise TrainingDiverged when the epoch's last steps left non-finite parameters or losses."""
        bad = [k.replace("_", " ") for k in ("train_loss", "test_loss") if k in record and not math.isfinite(record[k])]
        bad += [f"parameter {name}" for name, p in self.model.params.items() if not np.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(f"{', '.join(bad[:3])} became non-finite in epoch {epoch + 1}; {self._kept(epoch)}")

    def _plot(self) -> None:
        from cnnkit.train.plots import learning_curves

        learning_curves(self.records, self.out / "curves.png", title=f"{self.config.model} on {self.config.data}")

    @staticmethod
    def _epoch_line(r: dict[str, Any]) -> str:
        s = (f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f} err {100 * r['train_top1_error']:.2f}%  "
             f"{r['images_per_s']:.0f} img/s")
        if "test_loss" in r:
            s += f"  | test loss {r['test_loss']:.4f} err {100 * r['test_top1_error']:.2f}% top5 {100 * r['test_top5_error']:.2f}%"
        return s
