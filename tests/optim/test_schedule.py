"""Learning-rate schedules: values against torch.optim.lr_scheduler, MatConvNet's list form, the parser."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pytest

from cnnkit.optim import SGD, ConstantLR, CosineAnnealingLR, ListLR, StepLR, schedule_from_spec
from tests.oracle import require_torch


def _torch_lrs(make_scheduler: Any, base_lr: float, epochs: int) -> list[float]:
    """The lr torch uses in each epoch 0..epochs-1 (scheduler.step() at the end of every epoch)."""
    torch = require_torch()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("base_lr,step_size,gamma", [(0.1, 7, 0.3), (0.05, 1, 0.5), (1.0, 10, 0.1)])
def test_step_lr_matches_torch(base_lr: float, step_size: int, gamma: float) -> None:
    want = _torch_lrs(lambda s, o: s.StepLR(o, step_size=step_size, gamma=gamma), base_lr, 30)
    got = StepLR(base_lr, step_size, gamma).lrs(30)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("base_lr,t_max,eta_min", [(0.1, 10, 0.0), (0.05, 7, 1e-4), (1.0, 1, 0.1)])
def test_cosine_matches_torch(base_lr: float, t_max: int, eta_min: float) -> None:
    epochs = 2 * t_max + 5  # past T_max the cosine rises again, in torch as here
    want = _torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), base_lr, epochs)
    sched = CosineAnnealingLR(base_lr, t_max, eta_min)
    np.testing.assert_allclose(sched.lrs(epochs), want, rtol=1e-10, atol=1e-15)
    assert sched.lr_at(0) == base_lr
    assert sched.lr_at(t_max) == pytest.approx(eta_min, abs=1e-15)


def test_cosine_half_way_by_hand() -> None:
    assert CosineAnnealingLR(0.2, 20, 0.0).lr_at(10) == pytest.approx(0.1, rel=1e-15)
    assert CosineAnnealingLR(0.2, 20, 0.1).lr_at(10) == pytest.approx(0.15, rel=1e-15)


def test_list_lr_keeps_last_value_like_matconvnet() -> None:
    sched = ListLR([0.05, 0.05, 0.01])
    assert sched.lrs(6) == [0.05, 0.05, 0.01, 0.01, 0.01, 0.01]
    assert sched.lr_at(1000) == 0.01
    # MatConvNet's classic logspace schedule as a list
    lrs = list(np.logspace(-2, -4, 5))
    np.testing.assert_allclose(ListLR(lrs).lrs(7), lrs + [lrs[-1]] * 2, rtol=0)


def test_constant_lr() -> None:
    assert ConstantLR(0.03).lrs(4) == [0.03] * 4


def test_step_sets_optimizer_lr() -> None:
    class Model:
        params: ClassVar[dict[str, np.ndarray]] = {"w": np.zeros(2)}
        grads: ClassVar[dict[str, np.ndarray]] = {"w": np.zeros(2)}

    opt = SGD(Model(), lr=1.0)
    sched = StepLR(0.1, 2, 0.5)
    seen = []
    for epoch in range(5):
        returned = sched.step(opt, epoch)
        seen.append(opt.lr)
        assert returned == opt.lr
    assert seen == [0.1, 0.1, 0.05, 0.05, 0.025]
    # resuming needs no history: the closed form answers any epoch directly
    sched.step(opt, 4)
    assert opt.lr == 0.025


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: StepLR(0.1, 0), "step_size"),
        (lambda: StepLR(0.1, 2.5), "step_size"),
        (lambda: StepLR(-0.1, 2), "base_lr"),
        (lambda: CosineAnnealingLR(0.1, 0), "T_max"),
        (lambda: CosineAnnealingLR(0.1, 5, -1.0), "eta_min"),
        (lambda: ListLR([]), "empty"),
        (lambda: ListLR([0.1, -0.1]), r"lrs\[1\]"),
        (lambda: ConstantLR(0.1).lr_at(-1), "epoch"),
        (lambda: StepLR(0.1, 2).lr_at(1.5), "epoch"),
    ],
)
def test_bad_arguments(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("constant", [0.1, 0.1, 0.1]),
        ("step:2", [0.1, 0.1, 0.1 * 0.1]),
        ("step:1:0.5", [0.1, 0.05, 0.025]),
        ("cosine:2", [0.1, 0.05, 0.0]),
        ("cosine:2:1e-3", [0.1, 0.0505, 1e-3]),
        ("list:0.05,0.05,0.01", [0.05, 0.05, 0.01]),
        (" Step : 2 : 0.5 ", [0.1, 0.1, 0.05]),
    ],
)
def test_schedule_from_spec(spec: str, expected: list[float]) -> None:
    np.testing.assert_allclose(schedule_from_spec(spec, 0.1).lrs(3), expected, rtol=1e-14, atol=1e-17)


def test_schedule_from_spec_types() -> None:
    assert isinstance(schedule_from_spec("constant", 0.1), ConstantLR)
    assert isinstance(schedule_from_spec("step:10:0.1", 0.1), StepLR)
    sched = schedule_from_spec("cosine:20:1e-5", 0.1)
    assert isinstance(sched, CosineAnnealingLR) and sched.T_max == 20 and sched.eta_min == 1e-5
    assert isinstance(schedule_from_spec("list:0.05,0.05,0.01", 0.1), ListLR)


@pytest.mark.parametrize(
    "spec,token",
    [
        ("warmup:5", "'warmup'"),
        ("", "''"),
        ("constant:3", "'3'"),
        ("step", "'step'"),
        ("step:x", "'x'"),
        ("step:0", "'0'"),
        ("step:2.5", "'2.5'"),
        ("step:10:abc", "'abc'"),
        ("step:10:-0.1", "'-0.1'"),
        ("step:10:0.1:7", "'7'"),
        ("cosine", "'cosine'"),
        ("cosine:-3", "'-3'"),
        ("cosine:20:nan", "'nan'"),
        ("list:", "''"),
        ("list:0.1,,0.2", "''"),
        ("list:0.1,abc", "'abc'"),
        ("list:0.1:0.2", "'0.2'"),
    ],
)
def test_schedule_from_spec_errors_name_the_token(spec: str, token: str) -> None:
    with pytest.raises(ValueError) as info:
        schedule_from_spec(spec, 0.1)
    assert token in str(info.value), str(info.value)


def test_closed_forms_are_plain_floats() -> None:
    for sched in (StepLR(0.1, 3), CosineAnnealingLR(0.1, 5), ListLR([0.1]), ConstantLR(0.1)):
        assert all(isinstance(v, float) and math.isfinite(v) for v in sched.lrs(8))
