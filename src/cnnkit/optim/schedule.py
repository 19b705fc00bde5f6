"""Learning-rate schedules: the lr eta of eq. 15.9 as a function of the (0-based) epoch.

Each schedule is a small stateless object: ``lr_at(epoch)`` returns the rate for an epoch and
``step(optimizer, epoch)`` assigns it to ``optimizer.lr`` (call it at the start of every epoch).
Being closed forms, they can resume at any epoch after a checkpoint without replaying history.
:func:`schedule_from_spec` parses the compact strings a command line takes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from cnnkit.optim.base import _check_real


def _epoch(epoch: int) -> int:
    try:
        e = operator.index(epoch)
    except TypeError:
        raise ValueError(f"epoch must be an integer, got {epoch!r}") from None
    if e < 0:
        raise ValueError(f"epoch must be >= 0 (epochs are 0-based), got {e}")
    return e


class LRSchedule:
    """Base class: subclasses implement :meth:`lr_at`.

    Examples
    --------
    >>> from cnnkit.optim import LRSchedule
    >>> class Halving(LRSchedule):
    ...     def lr_at(self, epoch):
    ...         return 1.0 / 2**epoch
    >>> Halving().lrs(4)
    [1.0, 0.5, 0.25, 0.125]
    """

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, optimizer: Any, epoch: int) -> float:
        """Set ``optimizer.lr`` to the rate of ``epoch`` (0-based) and return it."""
        lr = self.lr_at(epoch)
        optimizer.lr = lr
        return lr

    def lrs(self, epochs: int) -> list[float]:
        """The rates of epochs 0 .. epochs-1 (for logging and plots)."""
        return [self.lr_at(e) for e in range(_epoch(epochs))]


class ConstantLR(LRSchedule):
    """The same rate every epoch.

    (Not torch's ``ConstantLR``, which multiplies the rate by a factor for the first iterations.)

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import SGD, ConstantLR
    >>> opt = SGD(SimpleNamespace(params={}, grads={}), lr=1.0)
    >>> ConstantLR(0.05).step(opt, epoch=3), opt.lr
    (0.05, 0.05)
    """

    def __init__(self, base_lr: float) -> None:
        self.base_lr = _check_real(base_lr, "base_lr")

    def lr_at(self, epoch: int) -> float:
        _epoch(epoch)
        return self.base_lr

    def __repr__(self) -> str:
        return f"ConstantLR(base_lr={self.base_lr})"


class StepLR(LRSchedule):
    """base_lr * gamma ** (epoch // step_size): divide by 1/gamma every ``step_size`` epochs.

    The closed form of torch.optim.lr_scheduler.StepLR.

    Examples
    --------
    >>> from cnnkit.optim import StepLR
    >>> StepLR(1.0, step_size=2, gamma=0.5).lrs(6)
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.base_lr = _check_real(base_lr, "base_lr")
        try:
            self.step_size = operator.index(step_size)
        except TypeError:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}") from None
        if self.step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.gamma = _check_real(gamma, "gamma")

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (_epoch(epoch) // self.step_size)

    def __repr__(self) -> str:
        return f"StepLR(base_lr={self.base_lr}, step_size={self.step_size}, gamma={self.gamma})"


class CosineAnnealingLR(LRSchedule):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.

    The closed form of torch.optim.lr_scheduler.CosineAnnealingLR: base_lr at epoch 0, eta_min at
    epoch T_max; past T_max the cosine continues (the rate rises again, period 2 * T_max), as torch's.

    Examples
    --------
    >>> from cnnkit.optim import CosineAnnealingLR
    >>> [round(lr, 4) for lr in CosineAnnealingLR(1.0, T_max=4).lrs(6)]
    [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.1464]
    """

    def __init__(self, base_lr: float, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 - torch's name
        self.base_lr = _check_real(base_lr, "base_lr")
        try:
            self.T_max = operator.index(T_max)
        except TypeError:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive integer, got {T_max!r}") from None
        if self.T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive integer, got {T_max!r}")
        self.eta_min = _check_real(eta_min, "eta_min")

    def lr_at(self, epoch: int) -> float:
        e = _epoch(epoch)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2

    def __repr__(self) -> str:
        return f"CosineAnnealingLR(base_lr={self.base_lr}, T_max={self.T_max}, eta_min={self.eta_min})"


class ListLR(LRSchedule):
    """An explicit rate per epoch, like MatConvNet's ``opts.learningRate`` vector.

    Epoch e uses ``lrs[e]``; epochs past the end keep the last value.

    Examples
    --------
    >>> from cnnkit.optim import ListLR
    >>> ListLR([0.05, 0.05, 0.01]).lrs(5)
    [0.05, 0.05, 0.01, 0.01, 0.01]
    """

    def __init__(self, lrs: Sequence[float]) -> None:
        values = list(lrs)
        if not values:
            raise ValueError("ListLR: the list of learning rates is empty")
        self.values = [_check_real(v, f"ListLR: lrs[{i}]") for i, v in enumerate(values)]

    def lr_at(self, epoch: int) -> float:
        return self.values[min(_epoch(epoch), len(self.values) - 1)]

    def __repr__(self) -> str:
        return f"ListLR({self.values})"


_SPEC_FORMS = "'constant', 'step:<epochs>[:<gamma>]', 'cosine:<T_max>[:<eta_min>]' or 'list:<lr>,<lr>,...'"


def _spec_int(token: str, what: str, spec: str) -> int:
    try:
        v = int(token)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"learning-rate schedule {spec!r}: {what} {token!r} is not a positive integer")
    return v


def _spec_float(token: str, what: str, spec: str) -> float:
    try:
        v = float(token)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"learning-rate schedule {spec!r}: {what} {token!r} is not a non-negative number")
    return v


def schedule_from_spec(spec: str, base_lr: float) -> LRSchedule:
    """Parse a command-line schedule.

    ``"constant"`` -> ConstantLR(base_lr); ``"step:10"`` / ``"step:10:0.5"`` -> StepLR (gamma 0.1 by
    default); ``"cosine:20"`` / ``"cosine:20:1e-5"`` -> CosineAnnealingLR (eta_min 0 by default);
    ``"list:0.05,0.05,0.01"`` -> ListLR (``base_lr`` unused). Raises ValueError naming the bad token.

    Examples
    --------
    >>> from cnnkit.optim import schedule_from_spec
    >>> schedule_from_spec("step:10:0.5", base_lr=0.1)
    StepLR(base_lr=0.1, step_size=10, gamma=0.5)
    >>> schedule_from_spec("list:0.05,0.01", base_lr=0.1).lrs(3)
    [0.05, 0.01, 0.01]
    >>> schedule_from_spec("step:ten", base_lr=0.1)
    Traceback (most recent call last):
    ...
    ValueError: learning-rate schedule 'step:ten': step size 'ten' is not a positive integer
    """
    if not isinstance(spec, str):
        raise ValueError(f"learning-rate schedule must be a string such as {_SPEC_FORMS}, got {spec!r}")
    tokens = [t.strip() for t in spec.strip().split(":")]
    kind, args = tokens[0].lower(), tokens[1:]

    def arity(lo: int, hi: int, form: str) -> None:
        if len(args) < lo:
            raise ValueError(f"learning-rate schedule {spec!r}: {kind!r} needs an argument, as in {form!r}")
        if len(args) > hi:
            raise ValueError(f"learning-rate schedule {spec!r}: unexpected token {args[hi]!r} (the form is {form!r})")

    if kind == "constant":
        arity(0, 0, "constant")
        return ConstantLR(base_lr)
    if kind == "step":
        arity(1, 2, "step:<epochs>[:<gamma>]")
        step_size = _spec_int(args[0], "step size", spec)
        gamma = _spec_float(args[1], "gamma", spec) if len(args) > 1 else 0.1
        return StepLR(base_lr, step_size, gamma)
    if kind == "cosine":
        arity(1, 2, "cosine:<T_max>[:<eta_min>]")
        t_max = _spec_int(args[0], "T_max", spec)
        eta_min = _spec_float(args[1], "eta_min", spec) if len(args) > 1 else 0.0
        return CosineAnnealingLR(base_lr, t_max, eta_min)
    if kind == "list":
        arity(1, 1, "list:<lr>,<lr>,...")
        return ListLR([_spec_float(t.strip(), "learning rate", spec) for t in args[0].split(",")])
    raise ValueError(f"learning-rate schedule {spec!r}: unknown kind {tokens[0]!r}; expected {_SPEC_FORMS}")
