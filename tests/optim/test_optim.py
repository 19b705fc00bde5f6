"""Optimisers: PyTorch oracle, no_decay, state_dict round trips, error paths and a tiny overfit run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.nn.conv import Conv2d
from cnnkit.optim import SGD, Adagrad, Adam, CosineAnnealingLR, Optimizer, RMSProp
from tests.oracle import assert_close, require_torch

SHAPES = {"w": (3, 4), "b": (4,), "k": (2, 2, 3, 2)}


class FakeModel:
    """The smallest thing an optimiser drives: params/grads dicts (and optionally no_decay)."""

    def __init__(self, params: dict[str, np.ndarray], no_decay: set[str] | None = None) -> None:
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        if no_decay is not None:
            self.no_decay = frozenset(no_decay)


class PropertyModel:
    """A container-like model whose dicts are rebuilt, with prefixed names, on every access."""

    def __init__(self, *children: FakeModel) -> None:
        self.children = children

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, c in enumerate(self.children) for k, v in c.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, c in enumerate(self.children) for k, v in c.grads.items()}


def _start(seed: int = 0, steps: int = 6) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Initial parameters and, per step, the noise part of the gradients (g = noise + 0.5 * p)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    noise = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(steps)]
    return params, noise


LR_FACTORS = (1.0, 1.0, 0.5, 0.2, 0.2, 0.1)  # the lr changes mid-run, as a schedule would


def _fill_grads(model: Any, noise: dict[str, np.ndarray]) -> None:
    grads = model.grads
    for name, p in model.params.items():
        grads[name][...] = noise[name].astype(p.dtype) + 0.5 * p


def _run_ours(opt: Optimizer, model: Any, noise: list[dict[str, np.ndarray]], lr0: float, start: int = 0) -> None:
    for k, nz in enumerate(noise, start):
        opt.lr = lr0 * LR_FACTORS[k]
        _fill_grads(model, nz)
        opt.step()


CONFIGS = [
    ("sgd", SGD, "SGD", dict(lr=0.1)),
    ("sgd_wd", SGD, "SGD", dict(lr=0.1, weight_decay=0.05)),
    ("sgd_mom", SGD, "SGD", dict(lr=0.1, momentum=0.9)),
    ("sgd_mom_wd", SGD, "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    ("sgd_damp", SGD, "SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("sgd_damp_wd", SGD, "SGD", dict(lr=0.1, momentum=0.7, dampening=0.3, weight_decay=0.05)),
    ("sgd_nesterov", SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd_nesterov_wd", SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("adam", Adam, "Adam", dict(lr=0.01)),
    ("adam_wd", Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam_amsgrad", Adam, "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam_amsgrad_wd", Adam, "Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1, eps=1e-3)),
    ("adam_low_betas", Adam, "Adam", dict(lr=0.01, betas=(0.3, 0.5))),  # lerp's other branch
    ("rmsprop", RMSProp, "RMSprop", dict(lr=0.01)),
    ("rmsprop_wd", RMSProp, "RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop_centered", RMSProp, "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop_momentum", RMSProp, "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop_all", RMSProp, "RMSprop", dict(lr=0.01, alpha=0.3, centered=True, momentum=0.5, weight_decay=0.1)),
    ("adagrad", Adagrad, "Adagrad", dict(lr=0.1)),
    ("adagrad_decay", Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.3)),
    ("adagrad_all", Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5)),
]
CONFIG_IDS = [c[0] for c in CONFIGS]


def _torch_run(
    torch_name: str,
    kw: dict[str, Any],
    params0: dict[str, np.ndarray],
    noise: list[dict[str, np.ndarray]],
    dtype: Any,
    no_decay: frozenset[str] = frozenset(),
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    torch = require_torch()
    tp = {k: torch.tensor(v.astype(dtype), requires_grad=True) for k, v in params0.items()}
    groups = [{"params": [t for k, t in tp.items() if k not in no_decay]}]
    if no_decay:
        groups.append({"params": [t for k, t in tp.items() if k in no_decay], "weight_decay": 0.0})
    opt = getattr(torch.optim, torch_name)(groups, **kw)
    for k, nz in enumerate(noise):
        for g in opt.param_groups:
            g["lr"] = kw["lr"] * LR_FACTORS[k]
        for name, t in tp.items():
            t.grad = torch.tensor(nz[name].astype(dtype) + 0.5 * t.detach().numpy())
        opt.step()
    out = {k: t.detach().numpy() for k, t in tp.items()}
    state = {k: {sk: sv.numpy() for sk, sv in opt.state[t].items()} for k, t in tp.items()}
    return out, state


@pytest.mark.parametrize("name,cls,torch_name,kw", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch_float64(name: str, cls: type, torch_name: str, kw: dict[str, Any]) -> None:
    params0, noise = _start()
    model = FakeModel({k: v.copy() for k, v in params0.items()})
    opt = cls(model, **kw)
    _run_ours(opt, model, noise, kw["lr"])
    want, want_state = _torch_run(torch_name, kw, params0, noise, np.float64)
    for k in SHAPES:
        np.testing.assert_allclose(model.params[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
        # same state names as torch, same values (torch keeps "step" as a tensor)
        assert set(opt.state[k]) == set(want_state[k]), (opt.state[k].keys(), want_state[k].keys())
        for sk, sv in want_state[k].items():
            np.testing.assert_allclose(opt.state[k][sk], sv, rtol=1e-12, atol=1e-12, err_msg=f"{k}.{sk}")
    assert opt.step_count == len(noise)


@pytest.mark.parametrize(
    "cls,torch_name,kw",
    [
        (SGD, "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True)),
        (Adam, "Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
        (RMSProp, "RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
        (Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.1)),
    ],
    ids=["sgd", "adam", "rmsprop", "adagrad"],
)
def test_matches_torch_float32(cls: type, torch_name: str, kw: dict[str, Any]) -> None:
    params0, noise = _start(1)
    model = FakeModel({k: v.astype(np.float32) for k, v in params0.items()})
    opt = cls(model, **kw)
    _run_ours(opt, model, noise, kw["lr"])
    want, _ = _torch_run(torch_name, kw, params0, noise, np.float32)
    for k in SHAPES:
        assert model.params[k].dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state[k].values() if isinstance(v, np.ndarray))
        assert_close(model.params[k], want[k], np.float32)


@pytest.mark.parametrize(
    "cls,torch_name,kw",
    [
        (SGD, "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.3)),
        (Adam, "Adam", dict(lr=0.01, weight_decay=0.3)),
        (RMSProp, "RMSprop", dict(lr=0.01, weight_decay=0.3, momentum=0.5)),
        (Adagrad, "Adagrad", dict(lr=0.1, weight_decay=0.3)),
    ],
    ids=["sgd", "adam", "rmsprop", "adagrad"],
)
def test_no_decay_matches_torch_param_groups(cls: type, torch_name: str, kw: dict[str, Any]) -> None:
    params0, noise = _start(2)
    no_decay = frozenset({"b"})
    model = FakeModel({k: v.copy() for k, v in params0.items()}, no_decay=set(no_decay))
    _run_ours(cls(model, **kw), model, noise, kw["lr"])
    want, _ = _torch_run(torch_name, kw, params0, noise, np.float64, no_decay)
    for k in SHAPES:
        np.testing.assert_allclose(model.params[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    # and the exemption matters: with decay on every parameter "b" ends elsewhere
    everywhere = FakeModel({k: v.copy() for k, v in params0.items()})
    _run_ours(cls(everywhere, **kw), everywhere, noise, kw["lr"])
    assert not np.allclose(everywhere.params["b"], model.params["b"])
    np.testing.assert_array_equal(everywhere.params["w"], model.params["w"])


def test_sgd_weight_decay_by_hand() -> None:
    """One plain step: w - lr * (g + wd * w); the no_decay parameter gets w - lr * g."""
    w, b = np.array([1.0, -2.0]), np.array([3.0])
    model = FakeModel({"w": w, "b": b}, no_decay={"b"})
    model.grads["w"][...] = [0.5, 0.25]
    model.grads["b"][...] = [1.0]
    SGD(model, lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(w, [1.0 - 0.1 * (0.5 + 0.5), -2.0 - 0.1 * (0.25 - 1.0)], rtol=0, atol=1e-15)
    np.testing.assert_allclose(b, [3.0 - 0.1], rtol=0, atol=1e-15)


def _is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, (np.ndarray, int, float, str)) and not isinstance(value, bool)


@pytest.mark.parametrize("name,cls,torch_name,kw", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_is_bit_identical(name: str, cls: type, torch_name: str, kw: dict[str, Any]) -> None:
    params0, noise = _start(3)
    whole = FakeModel({k: v.copy() for k, v in params0.items()})
    whole_opt = cls(whole, **kw)
    _run_ours(whole_opt, whole, noise, kw["lr"])

    first = FakeModel({k: v.copy() for k, v in params0.items()})
    first_opt = cls(first, **kw)
    _run_ours(first_opt, first, noise[:3], kw["lr"])
    saved = first_opt.state_dict()
    saved_params = {k: v.copy() for k, v in first.params.items()}  # what a checkpoint stores
    assert _is_plain(saved) and saved["step"] == 3 and saved["optimizer"] == cls.__name__
    _run_ours(first_opt, first, noise[3:], kw["lr"], start=3)  # later steps must not alter `saved`

    resumed = FakeModel(saved_params)
    opt = cls(resumed, **kw)
    opt.load_state_dict(saved)
    assert opt.step_count == 3
    _run_ours(opt, resumed, noise[3:], kw["lr"], start=3)
    for k in SHAPES:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k], err_msg=k)
        for sk, sv in whole_opt.state[k].items():
            np.testing.assert_array_equal(opt.state[k][sk], sv, err_msg=f"{k}.{sk}")
    assert opt.step_count == whole_opt.step_count == 6


def test_load_state_dict_restores_lr_and_accepts_0d_arrays() -> None:
    params0, noise = _start(4)
    model = FakeModel({k: v.copy() for k, v in params0.items()})
    opt = Adam(model, lr=0.01)
    _run_ours(opt, model, noise[:2], 0.01)
    opt.lr = 0.0123
    saved = opt.state_dict()
    # as if read back from an .npz: numbers become 0-d arrays
    as_npz = {
        "optimizer": np.array(saved["optimizer"]),
        "lr": np.array(saved["lr"]),
        "step": np.array(saved["step"]),
        "state": {n: {k: np.asarray(v) for k, v in st.items()} for n, st in saved["state"].items()},
    }
    other = Adam(FakeModel({k: v.copy() for k, v in model.params.items()}))
    other.load_state_dict(as_npz)
    assert other.lr == 0.0123 and other.step_count == 2
    assert other.state["w"]["step"] == 2 and isinstance(other.state["w"]["step"], int)
    # loaded arrays are copies
    as_npz["state"]["w"]["exp_avg"][...] = 99.0
    assert not np.any(other.state["w"]["exp_avg"] == 99.0)


def test_load_state_dict_errors() -> None:
    params0, noise = _start(5)
    model = FakeModel({k: v.copy() for k, v in params0.items()})
    opt = SGD(model, lr=0.1, momentum=0.9)
    _run_ours(opt, model, noise[:1], 0.1)
    saved = opt.state_dict()
    with pytest.raises(StateError, match="SGD"):
        Adam(model).load_state_dict(saved)
    unknown = {**saved, "state": {**saved["state"], "nope": {"momentum_buffer": np.zeros(2)}}}
    with pytest.raises(StateError, match="nope"):
        SGD(model, momentum=0.9).load_state_dict(unknown)
    bad_key = {**saved, "state": {"w": {"exp_avg": np.zeros((3, 4))}}}
    with pytest.raises(StateError, match="exp_avg"):
        SGD(model, momentum=0.9).load_state_dict(bad_key)
    bad_shape = {**saved, "state": {"w": {"momentum_buffer": np.zeros((4, 3))}}}
    with pytest.raises(ShapeError, match=r"\(4, 3\).*\(3, 4\)"):
        SGD(model, momentum=0.9).load_state_dict(bad_shape)
    with pytest.raises(StateError, match="lr"):
        SGD(model).load_state_dict({"step": 0, "state": {}})


def test_updates_in_place_and_container_dicts_rebuilt_on_access() -> None:
    params0, noise = _start(6)
    flat = FakeModel({k: v.copy() for k, v in params0.items()})
    children = (FakeModel({"w": params0["w"].copy()}), FakeModel({k: params0[k].copy() for k in ("b", "k")}))
    held = [c.params[k] for c in children for k in c.params]  # references taken before training
    nested = PropertyModel(*children)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=0.01)
    opt_flat, opt_nested = SGD(flat, **kw), SGD(nested, **kw)
    for nz in noise:
        _fill_grads(flat, nz)
        _fill_grads(nested, {"0.w": nz["w"], "1.b": nz["b"], "1.k": nz["k"]})
        opt_flat.step()
        opt_nested.step()
    now = [c.params[k] for c in children for k in c.params]
    assert all(a is b for a, b in zip(held, now))  # updated in place: the same array objects
    np.testing.assert_array_equal(children[0].params["w"], flat.params["w"])
    np.testing.assert_array_equal(children[1].params["k"], flat.params["k"])
    assert set(opt_nested.state) == {"0.w", "1.b", "1.k"}


def test_zero_grad_and_gradient_errors() -> None:
    model = FakeModel({"w": np.ones((2, 2)), "b": np.ones(2)})
    model.grads["w"][...] = 3.0
    grad_w = model.grads["w"]
    opt = SGD(model, lr=0.1)
    opt.zero_grad()
    assert grad_w is model.grads["w"] and not grad_w.any()
    model.grads["b"] = None  # a frozen parameter is skipped
    model.grads["w"][...] = 1.0
    opt.step()
    np.testing.assert_array_equal(model.params["b"], np.ones(2))
    np.testing.assert_allclose(model.params["w"], np.full((2, 2), 0.9))
    model.grads["b"] = np.ones(3)
    with pytest.raises(ShapeError, match=r"'b'.*\(3,\).*\(2,\)"):
        opt.step()
    del model.grads["b"]
    with pytest.raises(StateError, match="'b'"):
        opt.step()
    with pytest.raises(TypeError, match="params"):
        SGD(object())


def test_state_follows_parameter_dtype() -> None:
    model = FakeModel({"w": np.ones((2, 3), dtype=np.float32)})
    opt = Adam(model, lr=0.1)
    model.grads["w"][...] = 1.0
    opt.step()
    assert opt.state["w"]["exp_avg"].dtype == np.float32
    model.params = {"w": model.params["w"].astype(np.float64)}  # the model was cast
    model.grads = {"w": np.ones((2, 3))}
    opt.step()
    assert opt.state["w"]["exp_avg"].dtype == np.float64 and opt.state["w"]["step"] == 2


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda m: SGD(m, lr=-0.1), "lr"),
        (lambda m: SGD(m, momentum=-1.0), "momentum"),
        (lambda m: SGD(m, nesterov=True), "nesterov"),
        (lambda m: SGD(m, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda m: SGD(m, weight_decay=float("nan")), "weight_decay"),
        (lambda m: Adam(m, betas=(1.0, 0.999)), "beta1"),
        (lambda m: Adam(m, betas=(0.9, -0.1)), "beta2"),
        (lambda m: Adam(m, betas=(0.9,)), "betas"),
        (lambda m: Adam(m, eps=-1e-8), "eps"),
        (lambda m: RMSProp(m, alpha=1.5), "alpha"),
        (lambda m: Adagrad(m, lr_decay=-0.1), "lr_decay"),
        (lambda m: Adagrad(m, lr="fast"), "lr"),
    ],
)
def test_bad_hyperparameters(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(FakeModel({"w": np.zeros(2)}))


def test_lr_setter_validates() -> None:
    opt = SGD(FakeModel({"w": np.zeros(2)}), lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0


def test_matconvnet_momentum_equivalence() -> None:
    """v = mu*v - lr*(g + wd*w); w += v equals SGD(momentum, weight_decay) while lr is constant."""
    params0, noise = _start(7)
    mu, wd = 0.9, 0.01

    def matconvnet(lrs: list[float]) -> np.ndarray:
        w = params0["w"].copy()
        v = np.zeros_like(w)
        for lr, nz in zip(lrs, noise):
            g = nz["w"] + 0.5 * w
            v = mu * v - lr * (g + wd * w)
            w = w + v
        return w

    def ours(lrs: list[float]) -> np.ndarray:
        model = FakeModel({"w": params0["w"].copy()})
        opt = SGD(model, lr=lrs[0], momentum=mu, weight_decay=wd)
        for lr, nz in zip(lrs, noise):
            opt.lr = lr
            _fill_grads(model, nz)
            opt.step()
        return model.params["w"]

    constant = [0.05] * 6
    np.testing.assert_allclose(ours(constant), matconvnet(constant), rtol=1e-12, atol=1e-12)
    dropped = [0.05] * 3 + [0.005] * 3  # after a 10x drop the two forms part ways
    assert not np.allclose(ours(dropped), matconvnet(dropped), rtol=1e-6, atol=1e-6)


OVERFIT = [
    ("sgd", lambda m: SGD(m, lr=0.1), False),
    ("sgd_momentum", lambda m: SGD(m, lr=0.05, momentum=0.9), False),
    ("sgd_nesterov", lambda m: SGD(m, lr=0.05, momentum=0.9, nesterov=True), False),
    ("adam", lambda m: Adam(m, lr=0.05), False),
    ("adam_amsgrad", lambda m: Adam(m, lr=0.05, amsgrad=True), False),
    ("rmsprop_cosine", lambda m: RMSProp(m, lr=0.01), True),
    ("rmsprop_centered_momentum", lambda m: RMSProp(m, lr=0.002, momentum=0.9, centered=True), False),
    ("adagrad", lambda m: Adagrad(m, lr=0.5), False),
]


@pytest.mark.parametrize("name,make,cosine", OVERFIT, ids=[o[0] for o in OVERFIT])
def test_one_conv_network_overfits(name: str, make: Any, cosine: bool) -> None:
    """A 3x3 conv regressing a random (8, 1, 1, 2) target: 28 weights per output channel for 8
    samples, so zero loss is reachable; z = 1/2 ||y - t||^2 averaged over the batch (eq. 15.6)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 3, 3, 3))
    target = rng.standard_normal((8, 1, 1, 2))
    net = Conv2d(3, 2, 3, rng=rng, dtype=np.float64, need_input_grad=False)
    opt = make(net)
    steps = 300
    schedule = CosineAnnealingLR(opt.lr, steps) if cosine else None

    def loss() -> tuple[float, np.ndarray]:
        r = net(x, train=True) - target
        return 0.5 * float(np.sum(r * r)) / len(x), r / len(x)

    initial, _ = loss()
    for i in range(steps):
        if schedule is not None:
            schedule.step(opt, i)
        _, dy = loss()
        net.backward(dy)
        opt.step()
        opt.zero_grad()
    final, _ = loss()
    assert final < 1e-3 * initial, (initial, final)
