"""Training: the loop (model, loss, optimiser, data in; records out), run directories and checkpoints."""

from cnnkit.train.callbacks import (
    EarlyStopping,
    GradientNorms,
    History,
    KeepBest,
    MetricsLog,
    MomentumReset,
    ReduceLROnPlateau,
)
from cnnkit.train.config import TrainConfig
from cnnkit.train.loop import Callback, LoopState, TrainingDiverged, evaluate, run_epochs
from cnnkit.train.rundir import EpochLog, RunDirectory
from cnnkit.train.trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "EpochLog", "GradientNorms", "History", "KeepBest", "LoopState", "MetricsLog",
           "MomentumReset", "ReduceLROnPlateau", "RunDirectory", "TrainConfig", "Trainer", "TrainingDiverged", "evaluate", "run_epochs"]
