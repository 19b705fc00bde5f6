"""The configuration of a training run: everything that defines it, stored in the run's ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cnnkit.optim import LRSchedule, Optimizer, make_optimizer, schedule_from_spec
from cnnkit.protocols import Parameterised


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are MatConvNet 1.0-beta20's MNIST settings.

    Examples
    --------
    >>> cfg = TrainConfig(model="bn", epochs=5)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    model: str = "base"
    data: str = "mnist"
    train_limit: int | None = None
    train_range: str | None = None  # "10001-20000", 1-based inclusive
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
    test_limit: int | None = None  # evaluate on the first N test images only (quick runs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def make_optimizer(self, model: Parameterised) -> Optimizer:
        """The optimiser this configuration names, over ``model``'s parameters."""
        return make_optimizer(self.optimizer, model, self.lr, self.momentum, self.weight_decay)

    def make_schedule(self) -> LRSchedule:
        """The learning-rate schedule this configuration names."""
        return schedule_from_spec(self.schedule, self.lr)
