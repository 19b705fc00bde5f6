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
    "init": _STR, "bn_eps": _FLOAT, "momentum_reset": _BOOL, "grad_norms": _STR,
}

#: what a ``config.json`` written before an entry existed meant by its absence (the behaviour of that time)
LEGACY_DEFAULTS: dict[str, Any] = {"bn_eps": 1e-5, "momentum_reset": False, "grad_norms": None}

#: entries that may differ when a run is continued with ``--resume`` (more epochs extend a finished run)
RESUMABLE_CHANGES = frozenset({"epochs"})


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are MatConvNet 1.0-beta20's MNIST settings.

    ``lr``, ``preprocess``, ``init``, ``bn_eps`` and ``momentum_reset`` left as None take the model's own
    defaults (:meth:`resolved`): the book's networks MatConvNet's 0.001, the mean image, 0.01*N(0,1) weights,
    BN epsilon 1e-4 and the SGD momentum zeroed at the start of every epoch (``cnn_train``); the
    He-initialised zoo models 0.01 (0.1 for the ResNets), per-channel standardisation, epsilon 1e-5 and
    momentum kept across epochs. ``grad_norms`` (e.g. ``"0,10,100"``) records every weight's gradient norm
    ||dL/dW|| at those optimiser steps (0: at initialisation) and its mean over each epoch
    (:class:`~cnnkit.train.GradientNorms`).

    Examples
    --------
    >>> cfg = TrainConfig(model="bn", epochs=5)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> TrainConfig(model="cifar").resolved().lr, TrainConfig(model="base").resolved().preprocess
    (0.01, 'mean_image')
    >>> r = TrainConfig(model="sk-0.2").resolved(); r.bn_eps, r.momentum_reset, r.init
    (0.0001, True, 'matconvnet')
    >>> r = TrainConfig(model="resnet20-mnist").resolved(); r.bn_eps, r.momentum_reset, r.init
    (1e-05, False, 'he')
    >>> TrainConfig(model="sk-0.2", momentum_reset=False, bn_eps=1e-5).resolved().momentum_reset  # cnnkit's own way
    False
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
    init: str | None = None  # weight initialisation: "matconvnet", "he" or "pytorch" (default: the model's)
    bn_eps: float | None = None  # batch normalisation's epsilon (default: the model's; 1e-4 for the book's networks)
    momentum_reset: bool | None = None  # zero SGD momentum at every epoch's start (default: the model's; MatConvNet's)
    grad_norms: str | None = None  # record per-layer gradient norms at these optimiser steps, e.g. "0,10,100"

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
        """A copy with ``lr``, ``preprocess``, ``init``, ``bn_eps`` and ``momentum_reset`` filled in from the model's defaults."""
        from cnnkit.models import resolve

        d = resolve(self.model)
        return replace(self, lr=self.lr if self.lr is not None else d.lr,
                       preprocess=self.preprocess if self.preprocess is not None else d.preprocess,
                       init=self.init if self.init is not None else d.init,
                       bn_eps=self.bn_eps if self.bn_eps is not None else d.bn_eps,
                       momentum_reset=self.momentum_reset if self.momentum_reset is not None else d.momentum_reset)

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
