"""A training run as configured: the loop (:mod:`cnnkit.train.loop`) writing a run directory
(:mod:`cnnkit.train.rundir`), with exact resume after an interruption (even ``kill -9``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.backend import Array
from cnnkit.protocols import LossFunction, Model
from cnnkit.train.config import TrainConfig
from cnnkit.train.loop import TrainingDiverged, run_epochs
from cnnkit.train.rundir import EpochLog, RunDirectory


class Trainer:
    """Trains ``model`` with ``loss`` on preprocessed arrays as ``config`` says; writes the run directory ``out``.

    ``train`` and ``test`` are ``(x, labels)`` pairs (``test`` may be None). The optimiser is built from the
    configuration when the trainer is, so it can be inspected (or wrapped) before :meth:`run`.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: Model,
        loss: LossFunction,
        train: tuple[Array, Array],
        test: tuple[Array, Array] | None,
        out: str | Path,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config, self.model, self.loss = config, model, loss
        self.train, self.test = train, test
        self.run_dir = RunDirectory(out, config, title=f"{config.model} on {config.data}")
        self.progress, self.log = progress, log
        self.optimizer = config.make_optimizer(model)
        self.records: list[dict[str, Any]] = []

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs (continuing a checkpoint when ``resume``); returns the last record."""
        cfg = self.config
        start, self.records = self.run_dir.start(self.model, self.optimizer, resume)
        if start:
            self.log(f"resuming {self.run_dir.path} after epoch {start}")
        try:
            state = run_epochs(
                self.model, self.loss, self.optimizer, *self.train,
                epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, lr_at=cfg.make_schedule().lr_at,
                test=self.test, eval_batch_size=cfg.eval_batch_size, start_epoch=start, records=self.records,
                callbacks=[self.run_dir, EpochLog(self.log)], progress=self.progress,
            )
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc}; {self.run_dir.kept(exc.epoch)}", exc.epoch) from None
        self.records = state.records
        return self.records[-1] if self.records else {}
