"""A training run as configured: :func:`~cnnkit.train.fit.fit` writing a run directory
(:mod:`cnnkit.train.rundir`), with exact resume after an interruption (even ``kill -9``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnkit.backend import Array
from cnnkit.data.source import Source
from cnnkit.protocols import LossFunction, Model
from cnnkit.train.callbacks import EarlyStopping, GradientNorms, KeepBest, MomentumReset
from cnnkit.train.config import TrainConfig
from cnnkit.train.fit import fit
from cnnkit.train.loop import Callback, TrainingDiverged
from cnnkit.train.rundir import EpochLog, RunDirectory


class Trainer:
    """Trains ``model`` with ``loss`` as ``config`` says; writes the run directory ``out``.

    ``train``, ``test`` and ``validation`` are sources or ``(x, labels)`` pairs (``test`` and ``validation``
    may be None). With ``config.val_split`` the validation set is held out of ``train``. The optimiser is
    built from the configuration when the trainer is, so it can be inspected (or wrapped) before :meth:`run`.
    ``save_best(model)`` writes the best model when ``config.keep_best`` is set.

    ``distributed`` (a :class:`~cnnkit.train.distributed.Communicator` or ``DataParallel``): this process is one
    of several training together (:mod:`cnnkit.train.distributed`); they compare their configurations first, and
    only rank 0 reads and writes the run directory and logs (it sends a resumed state to the others).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.train import Trainer, TrainConfig
    >>> data = (np.eye(2, dtype=np.float32), np.array([0, 1]))
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> config = TrainConfig(model="fc2", epochs=3, batch_size=2, lr=0.1, preprocess="scale")
    >>> lines = []
    >>> with tempfile.TemporaryDirectory() as d:
    ...     trainer = Trainer(config, net, SoftmaxCrossEntropy(), data, data, Path(d) / "run", progress=False, log=lines.append)
    ...     last = trainer.run()
    ...     files = sorted(p.name for p in (Path(d) / "run").iterdir() if p.suffix != ".png")
    >>> type(trainer.optimizer).__name__, last["epoch"], len(lines), files
    ('SGD', 3, 3, ['checkpoint.npz', 'config.json', 'metrics.jsonl'])
    """

    def __init__(
        self,
        config: TrainConfig,
        model: Model,
        loss: LossFunction,
        train: Source | tuple[Array, Array],
        test: Source | tuple[Array, Array] | None,
        out: str | Path,
        progress: bool = True,
        log: Callable[[str], None] = print,
        *,
        validation: Source | tuple[Array, Array] | None = None,
        callbacks: Sequence[Callback] = (),
        save_best: Callable[[Any], None] | None = None,
        distributed: Any = None,
    ) -> None:
        from cnnkit.train.distributed import as_parallel

        self.parallel = as_parallel(distributed)
        self.root = self.parallel is None or self.parallel.root
        self.config = config.resolved()
        self.model, self.loss = model, loss
        self.train, self.test, self.validation = train, test, validation
        self.progress, self.log = progress, log
        self.optimizer = self.config.make_optimizer(model)
        self.callbacks: list[Callback] = list(callbacks)
        if self.config.momentum_reset:  # MatConvNet's cnn_train: every epoch starts with zero momentum
            self.callbacks.insert(0, MomentumReset())
        if self.config.grad_norms:  # before the run directory, which writes the records
            self.callbacks.append(GradientNorms(self.config.grad_norms))
        watched = self.config.val_split is not None or validation is not None
        if self.config.early_stopping is not None:
            if not watched:
                raise ValueError("early stopping watches the validation loss: give --val-split (or validation data)")
            self.callbacks.append(EarlyStopping("val_loss", patience=self.config.early_stopping))
        self.keep_best: KeepBest | None = None
        if self.config.keep_best:
            if not watched:
                raise ValueError("--keep-best keeps the model with the lowest validation loss: give --val-split (or validation data)")
            self.keep_best = KeepBest("val_loss", save=save_best if self.root else None)
            self.callbacks.append(self.keep_best)
        self.run_dir = RunDirectory(out, self.config, title=f"{self.config.model} on {self.config.data}", stateful=self.callbacks)
        self.records: list[dict[str, Any]] = []

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train up to ``config.epochs`` epochs (continuing a checkpoint when ``resume``); returns the last record."""
        held_before = self.run_dir.locked
        try:
            return self._run(resume)
        finally:
            if not held_before:  # whoever locked the directory releases it
                self.run_dir.unlock()

    def _run(self, resume: bool) -> dict[str, Any]:
        cfg = self.config
        par = self.parallel
        if par is None:
            start, self.records = self.run_dir.start(self.model, self.optimizer, resume)
        else:
            with par.guard():
                par.check_same(config=cfg.to_dict(), resume=resume)
                start, self.records = par.start_run(self.run_dir, self.model, self.optimizer, resume)
        if start and self.root:
            self.log(f"resuming {self.run_dir.path} after epoch {start}")
        files = [self.run_dir, EpochLog(self.log)] if self.root else []
        try:
            history = fit(
                self.model, self.train, cfg.epochs, cfg.batch_size, self.loss, self.optimizer,
                validation_data=self.validation, validation_split=cfg.val_split, test_data=self.test,
                callbacks=[*self.callbacks, *files], seed=cfg.seed, schedule=cfg.make_schedule(),
                initial_epoch=start, records=self.records, eval_batch_size=cfg.eval_batch_size,
                progress=self.progress and self.root, distributed=par,
            )
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc}; {self.run_dir.kept(exc.epoch)}", exc.epoch) from None
        self.records = history.records
        return self.records[-1] if self.records else {}
