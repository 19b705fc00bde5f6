"""A run directory: the files of one training run, and continuing a run from them.

``config.json`` (the run's settings), ``metrics.jsonl`` (one JSON object per epoch), ``curves.png``
(learning curves), ``checkpoint.npz`` (after every epoch) and ``model.npz`` (the final model, written by
the caller). Every file is written atomically. The run directory is a :class:`~cnnkit.train.loop.Callback`
of the training loop: after each epoch it writes the checkpoint (which also carries the metric records),
then ``metrics.jsonl``, then the plot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError, quote
from cnnkit.limits import LIMITS
from cnnkit.protocols import Model
from cnnkit.serialize import atomic_write_text, open_regular, remove_stale_temporaries
from cnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from cnnkit.train.config import LEGACY_DEFAULTS, TrainConfig
from cnnkit.train.loop import Callback, LoopState


def config_bytes() -> int:
    """The size a ``config.json`` may have: its longest entry is a network string (``LIMITS.spec_chars``
    characters, each at most 6 bytes escaped), the rest is a few hundred bytes; 1 MiB at least.

    Examples
    --------
    >>> from cnnkit.limits import LIMITS
    >>> from cnnkit.train.rundir import config_bytes
    >>> config_bytes() >= max(1 << 20, 6 * LIMITS.spec_chars)
    True
    >>> old, LIMITS.spec_chars = LIMITS.spec_chars, 1_000_000  # longer network strings allowed: larger files
    >>> config_bytes()  # 6 * 1_000_000 + 64 KiB
    6065536
    >>> LIMITS.spec_chars = old
    """
    return max(1 << 20, 6 * LIMITS.spec_chars + (64 << 10))


class RunDirectory(Callback):
    """The files of one run in ``path``; ``config`` is the run's :class:`TrainConfig`.

    Examples
    --------
    Two epochs written to a run directory, then the run continued to three (``--resume --epochs 3``):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import RunDirectory, TrainConfig, run_epochs
    >>> data = (np.eye(2, dtype=np.float32), np.array([0, 1]))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     net = Linear(2, 2, rng=np.random.default_rng(0)); opt = SGD(net, lr=0.1)
    ...     run = RunDirectory(Path(d) / "run", TrainConfig(model="fc2", epochs=2))
    ...     print(run.start(net, opt, resume=False))
    ...     _ = run_epochs(net, SoftmaxCrossEntropy(), opt, data, epochs=2, batch_size=2, seed=0, callbacks=[run])
    ...     run.unlock()  # start() locked the directory for this process
    ...     print(sorted(p.name for p in run.path.iterdir() if p.suffix != ".png"))  # curves.png needs matplotlib
    ...     fresh = Linear(2, 2, rng=np.random.default_rng(1))
    ...     again = RunDirectory(run.path, TrainConfig(model="fc2", epochs=3))
    ...     done, records = again.start(fresh, SGD(fresh, lr=0.1), resume=True)  # restores fresh in place
    ...     print(done, [r["epoch"] for r in records], bool((fresh.params["weight"] == net.params["weight"]).all()))
    ...     again.unlock()
    (0, [])
    ['checkpoint.npz', 'config.json', 'metrics.jsonl']
    2 [1, 2] True
    """

    root_only = True

    def __init__(self, path: str | Path, config: TrainConfig, title: str = "", stateful: Sequence[Any] = ()) -> None:
        self.path = Path(path)
        self.config = config
        self.title = title
        #: callbacks whose ``state_dict`` goes into every checkpoint and is restored on resume
        self.stateful = [cb for cb in stateful if hasattr(cb, "state_dict")]
        self._lock: int | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.npz"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @property
    def model_path(self) -> Path:
        return self.path / "model.npz"

    # -- starting or continuing ---------------------------------------------------------------
    def start(self, model: Model, optimizer: Any, resume: bool) -> tuple[int, list[dict[str, Any]]]:
        """Prepare the directory; returns (finished epochs, their records).

        With ``resume`` and a checkpoint present, the model and optimiser are restored in place (the saved
        configuration must equal this one); otherwise a new run starts, which refuses a directory that
        already holds one.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if resume and self.checkpoint_path.exists():
            return self._resume(model, optimizer)
        if self.checkpoint_path.exists():
            raise ValueError(f"{self.path} already holds a run (checkpoint.npz); pass --resume to continue it or choose another --out")
        atomic_write_text(self.config_path, json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        self.write_metrics([])
        return 0, []

    def lock(self) -> None:
        """Hold ``.lock`` in the directory for as long as this process trains into it (released by :meth:`unlock`,
        or by the system when the process ends, even by ``kill -9``). A second process is refused at once."""
        if self._lock is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise CheckpointError(f"another cnnkit process (pid {other}) is training into {self.path}; "
                                  f"wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd

    @property
    def locked(self) -> bool:
        """Whether this object holds the directory's lock."""
        return self._lock is not None

    def unlock(self) -> None:
        """Release and remove the lock (after the run, whatever its end)."""
        if self._lock is None:
            return
        fd, self._lock = self._lock, None
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _resume(self, model: Model, optimizer: Any) -> tuple[int, list[dict[str, Any]]]:
        try:
            with open_regular(self.config_path, CheckpointError, config_bytes()) as f:  # not a FIFO, not megabytes
                saved_dict = json.loads(f.read().decode("utf-8"))
            if isinstance(saved_dict, dict):  # a run from before an entry existed ran as its absence then meant
                saved_dict = {**LEGACY_DEFAULTS, "init": self.config.init, **saved_dict}
            saved = TrainConfig.from_dict(saved_dict)
        except FileNotFoundError:
            raise CheckpointError(f"{self.path} has a checkpoint but no config.json; it cannot be resumed") from None
        except CheckpointError:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{self.config_path}: cannot be read as a run configuration ({quote(str(exc), 150)})") from None
        diff = saved.differences(self.config)
        if diff:
            raise CheckpointError(f"--resume: the run in {self.path} was started with other settings (saved, now): {quote(diff, 300)}")
        meta = load_checkpoint(self.checkpoint_path, model, optimizer)
        states = meta.get("callbacks") or []
        if not isinstance(states, list):
            raise CheckpointError(f"{self.checkpoint_path}: its callback states are malformed")
        for cb, st in zip(self.stateful, states):
            try:
                cb.load_state_dict(st)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                raise CheckpointError(f"{self.checkpoint_path}: cannot restore {type(cb).__name__}: {quote(str(exc), 120)}") from None
        if saved.epochs != self.config.epochs:  # --resume --epochs N: the run's settings now say N
            atomic_write_text(self.config_path, json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        remove_stale_temporaries(self.path)  # a kill -9 in the middle of an atomic write
        done = int(meta["epoch"])
        # the checkpoint carries the records of its epochs: a kill between writing the checkpoint and
        # metrics.jsonl must not lose a line
        if "records" in meta:
            records = meta["records"]
        elif self.metrics_path.exists():  # checkpoints written before records were stored in them
            records = self._read_metrics()
        else:
            records = []
        records = [r for r in records if r["epoch"] <= done]
        self.write_metrics(records)
        if meta.get("stopped"):  # ended by early stopping: there is nothing left to run
            return max(done, self.config.epochs), records
        return done, records

    def _read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``: one object per line, each with an integer ``epoch``."""
        try:
            with open_regular(self.metrics_path, CheckpointError, LIMITS.meta_bytes) as f:
                records = [json.loads(s) for s in f.read().decode("utf-8").splitlines() if s.strip()]
        except CheckpointError:
            raise
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CheckpointError(f"{self.metrics_path}: cannot be read as per-epoch records ({quote(str(exc), 150)})") from None
        if not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records):
            raise CheckpointError(f"{self.metrics_path}: every line must be an object with an integer 'epoch'")
        return records

    # -- after every epoch --------------------------------------------------------------------
    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        save_checkpoint(self.checkpoint_path, state.model, state.optimizer, state.epoch + 1,
                        {"config": self.config.to_dict(), "records": state.records,
                         "callbacks": [cb.state_dict() for cb in self.stateful], "stopped": state.stop})
        self.write_metrics(state.records)
        self.plot(state.records)

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def plot(self, records: list[dict[str, Any]]) -> None:
        from cnnkit.train.plots import learning_curves

        learning_curves(records, self.path / "curves.png", title=self.title)

    def kept(self, epoch: int) -> str:
        """What is left on disk when training stops in ``epoch`` (0-based): the end of a divergence message."""
        if epoch == 0:
            return "training stopped; no epoch finished with finite values, so no checkpoint was written; try a smaller --lr"
        return f"training stopped. The last good checkpoint ({self.checkpoint_path}, after epoch {epoch}) is kept; try a smaller --lr"


class EpochLog(Callback):
    """One line per finished epoch: training loss and error, speed, and the test figures when there are any.

    Examples
    --------
    >>> from cnnkit.train import EpochLog
    >>> EpochLog.line({"epoch": 3, "train_loss": 0.1234, "train_top1_error": 0.025, "images_per_s": 1500.4,
    ...                "test_loss": 0.2, "test_top1_error": 0.04})
    'epoch   3  train loss 0.1234 err 2.50%  1500 img/s  | test loss 0.2000 err 4.00%'
    """

    root_only = True

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        self.log(self.line(record))

    @staticmethod
    def line(r: dict[str, Any]) -> str:
        s = (f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f} err {100 * r['train_top1_error']:.2f}%  "
             f"{r['images_per_s']:.0f} img/s")
        for name in ("val", "test"):
            if f"{name}_loss" in r:
                s += f"  | {name} loss {r[f'{name}_loss']:.4f} err {100 * r[f'{name}_top1_error']:.2f}%"
                if f"{name}_top5_error" in r:
                    s += f" top5 {100 * r[f'{name}_top5_error']:.2f}%"
        return s
