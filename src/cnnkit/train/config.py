"""The configuration of a training run: everything that defines it, stored in the run's ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from cnnkit.errors import quote
from cnnkit.optim import LRSchedule, Optimizer, make_optimizer, schedule_from_spec
from cnnkit.protocols import Parameterised

_INT, _FLOAT, _STR, _BOOL = (int,), (int, float), (str,), (bool,)
_TYPES: dict[str, tuple[type, ...]] = {
    "model": _STR, "data": _STR, "train_limit": _INT, "train_range": _STR, "epochs": _INT, "batch_size": _INT,
    "lr": _FLOAT, "schedule": _STR, "optimizer": _STR, "momentum": _FLOAT, "weight_decay": _FLOAT, "seed": _INT,
    "preprocess": _STR, "dtype": _STR, "eval_batch_size": _INT, "test_limit": _INT, "val_split": _FLOAT,
    "early_stopping": _INT, "keep_best": _BOOL, "init_from": _STR, "color": _STR, "size": _STR, "augment": _STR,
}

#: entries that may differ when a run is continued with ``--resume`` (more epochs extend a finished run)
RESUMABLE_CHANGES = frozenset({"epochs"})


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are MatConvNet 1.0-beta20's MNIST settings.

    ``lr`` and ``preprocess`` left as None take the model's own defaults (:meth:`resolved`): the book's
    networks MatConvNet's 0.001 and the mean image, the He-initialised zoo models 0.01 and per-channel
    standardisation.

    Examples
    --------
    >>> cfg = TrainConfig(model="bn", epochs=5)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> TrainConfig(model="cifar").resolved().lr, TrainConfig(model="base").resolved().preprocess
    (0.01, 'mean_image')
    """

    model: str = "base"
    data: str = "mnist"
    train_limit: int | None = None
    train_range: str | None = None  # "10001-20000", 1-based inclusive
    epochs: int = 20
    batch_size: int = 100
    lr: float | None = None
    schedule: str = "constant"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    preprocess: str | None = None
    dtype: str = "float32"
    eval_batch_size: int = 1000
    test_limit: int | None = None  # evaluate on the first N test images only (quick runs)
    val_split: float | None = None  # hold out this fraction of the training examples as validation data
    early_stopping: int | None = None  # stop after this many epochs without a better validation loss
    keep_best: bool = False  # keep best.npz, the model of the epoch with the lowest validation loss
    init_from: str | None = None  # start from the weights of this model file (fine-tuning)
    color: str | None = None  # image folders: "grayscale" or "rgb" (default: the model's input channels)
    size: str | None = None  # image folders: "HxW" to resize to (default: a named model's input size)
    augment: str | None = None  # e.g. "crop:4,flip" (see cnnkit.data.augment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The configuration a dict (e.g. a ``config.json``) holds; unknown keys are ignored, and a known key of
        the wrong type is a ValueError naming it (a hand-edited or foreign file must not start a wrong run)."""
        if not isinstance(d, dict):
            raise ValueError(f"a run configuration must be a JSON object, got {type(d).__name__}")
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            kinds = _TYPES[f.name]
            ok = (v is None and f.default is None) or (isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds))
            if not ok:
                raise ValueError(f"run configuration: {f.name} is {quote(v, 60)}, expected {' or '.join(k.__name__ for k in kinds)}")
            out[f.name] = v
        return cls(**out)

    def resolved(self) -> TrainConfig:
        """A copy with ``lr`` and ``preprocess`` filled in from the model's defaults."""
        from cnnkit.models import resolve

        d = resolve(self.model)
        return replace(self, lr=self.lr if self.lr is not None else d.lr,
                       preprocess=self.preprocess if self.preprocess is not None else d.preprocess)

    def differences(self, other: TrainConfig, ignore: frozenset[str] = RESUMABLE_CHANGES) -> dict[str, tuple[Any, Any]]:
        """``{name: (self's, other's)}`` for every entry that differs, except ``ignore``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in ignore}

    def make_optimizer(self, model: Parameterised) -> Optimizer:
        """The optimiser this configuration names, over ``model``'s parameters."""
        lr = self.lr if self.lr is not None else self.resolved().lr
        return make_optimizer(self.optimizer, model, float(lr), self.momentum, self.weight_decay)  # type: ignore[arg-type]

    def make_schedule(self) -> LRSchedule:
        """The learning-rate schedule this configuration names."""
        lr = self.lr if self.lr is not None else self.resolved().lr
        return schedule_from_spec(self.schedule, float(lr))  # type: ignore[arg-type]
