"""MatConvNet 1.0-beta20's settings for the book's networks (SGD momentum zeroed at every epoch, BN epsilon 1e-4),
the option to train cnnkit's own way, per-layer gradient norms, and exact resume with both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.models import create, get_model_def
from cnnkit.nn import SoftmaxCrossEntropy
from cnnkit.optim import SGD
from cnnkit.train import GradientNorms, MomentumReset, TrainConfig, Trainer, run_epochs

SPEC = "conv5x5x1x4nobias,bn,relu,pool2,conv5x5x4x8,relu,pool2,conv4x4x8x10"
SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 10, 96)
    x += (np.arange(28)[None, :] * 10 // 28 == y[:, None])[:, :, None, None]
    return x, y


def _trainer(out: Path, data: tuple, log: Any = None, **overrides: Any) -> Trainer:
    cfg = TrainConfig(**{"model": SPEC, "epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 1, **overrides}).resolved()
    model = create(SPEC, np.random.default_rng(cfg.seed), input_shape=SHAPE, init=cfg.init, bn_eps=cfg.bn_eps)
    return Trainer(cfg, model, SoftmaxCrossEntropy(), data, None, out, progress=False, log=log or (lambda s: None))


def _params(t: Trainer) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in t.model.params.items()}


@pytest.mark.parametrize("name", ["base", "bn", "sk", "sk-0.2", "sk-0.2-sigmoid", "bn-dropout", "base-sigmoid"])
def test_book_models_default_to_matconvnet(name: str) -> None:
    d = get_model_def(name)
    assert (d.bn_eps, d.momentum_reset) == (1e-4, True)
    cfg = TrainConfig(model=name).resolved()
    assert (cfg.bn_eps, cfg.momentum_reset, cfg.init, cfg.lr, cfg.preprocess) == (1e-4, True, "matconvnet", 0.001, "mean_image")
    assert all(layer.eps == 1e-4 for layer in create(name) if hasattr(layer, "eps"))
    own = TrainConfig(model=name, momentum_reset=False, bn_eps=1e-5).resolved()  # cnnkit's way, on request
    assert (own.momentum_reset, own.bn_eps) == (False, 1e-5)
    assert all(layer.eps == 1e-5 for layer in create(name, bn_eps=own.bn_eps) if hasattr(layer, "eps"))


@pytest.mark.parametrize("name", ["resnet20-mnist", "cnn-gap-mnist", "lenet5", SPEC])
def test_other_models_keep_cnnkit_defaults(name: str) -> None:
    cfg = TrainConfig(model=name).resolved()
    assert (cfg.bn_eps, cfg.momentum_reset) == (1e-5, False)


def test_config_round_trip_and_types() -> None:
    cfg = TrainConfig(model="sk-0.2", grad_norms="0,10").resolved()
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="momentum_reset"):
        TrainConfig.from_dict({"momentum_reset": "yes"})
    with pytest.raises(ValueError, match="bn_eps"):
        TrainConfig.from_dict({"bn_eps": "small"})


def test_momentum_reset_makes_each_epoch_start_with_a_plain_step(toy: tuple) -> None:
    """One mini-batch per epoch: with the reset every step is w -= lr * (g + wd * w), as SGD without momentum."""
    x, y = toy[0][:32], toy[1][:32]

    def train(momentum: float, callbacks: list) -> dict[str, np.ndarray]:
        net = create(SPEC, np.random.default_rng(0), input_shape=SHAPE)
        run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.01, momentum=momentum, weight_decay=5e-4), (x, y), epochs=3,
                   batch_size=32, seed=0, callbacks=callbacks)
        return {k: v.copy() for k, v in net.params.items()}

    reset, plain, kept = train(0.9, [MomentumReset()]), train(0.0, []), train(0.9, [])
    for k in reset:
        np.testing.assert_allclose(reset[k], plain[k], rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(reset[k], kept[k]) for k in reset)


def test_trainer_applies_the_configured_reset(tmp_path: Path, toy: tuple) -> None:
    a = _trainer(tmp_path / "reset", toy, momentum_reset=True)
    b = _trainer(tmp_path / "kept", toy, momentum_reset=False)
    assert any(isinstance(cb, MomentumReset) for cb in a.callbacks) and not any(isinstance(cb, MomentumReset) for cb in b.callbacks)
    a.run()
    b.run()
    assert any(not np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)
    assert json.loads((tmp_path / "reset" / "config.json").read_text())["momentum_reset"] is True


class _Stop(Exception):  # noqa: N818 - a control-flow signal
    pass


@pytest.mark.parametrize("reset", [True, False])
def test_resume_is_exact_with_momentum_reset_and_gradient_norms(tmp_path: Path, toy: tuple, reset: bool) -> None:
    settings = {"momentum_reset": reset, "grad_norms": "0,2,4,7"}
    ref = _trainer(tmp_path / "ref", toy, **settings)
    ref.run()

    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("epoch   1"):
            raise _Stop

    out = tmp_path / "run"
    with pytest.raises(_Stop):
        _trainer(out, toy, log=stop_after_epoch_1, **settings).run()
    resumed = _trainer(out, toy, **settings)
    resumed.run(resume=True)
    for k in ref.model.params:
        assert np.array_equal(ref.model.params[k], resumed.model.params[k]), k
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in ref.records]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in resumed.records] == strip
    # three mini-batches per epoch: steps 0, 2 in epoch 1; 4 in epoch 2; 7 in epoch 3
    assert [[s["step"] for s in r["grad_norm_steps"]] for r in ref.records] == [[0, 2], [4], [7]]
    assert ref.records[0]["grad_norm_layers"] == ["0.weight", "4.weight", "7.weight"]
    assert all(len(r["grad_norm_mean"]) == 3 and min(r["grad_norm_mean"]) > 0 for r in ref.records)
    saved = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["grad_norm_steps"] for r in saved] == [r["grad_norm_steps"] for r in ref.records]


def test_gradient_norms_do_not_change_training(tmp_path: Path, toy: tuple) -> None:
    a = _trainer(tmp_path / "a", toy)
    b = _trainer(tmp_path / "b", toy, grad_norms="0")
    a.run()
    b.run()
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    assert "step" not in vars(b.optimizer)  # the wrapper is gone after training
    norms = b.records[0]["grad_norm_steps"][0]["norms"]
    net = create(SPEC, np.random.default_rng(1), input_shape=SHAPE)  # the same initial network and first batch
    from cnnkit.train.loop import shuffled

    rows = shuffled(len(toy[1]), 1, 0)[:32]
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(toy[0][rows], train=True), toy[1][rows])
    net.backward(loss.backward())
    want = [float(np.linalg.norm(net.grads[k].astype(np.float64))) for k in ("0.weight", "4.weight", "7.weight")]
    np.testing.assert_allclose(norms, want, rtol=1e-6)


def test_gradient_norm_steps_are_checked() -> None:
    with pytest.raises(ValueError, match="not a step number"):
        GradientNorms("0,x")


def test_run_from_before_the_settings_resumes_only_where_they_did_not_change(tmp_path: Path, toy: tuple) -> None:
    """A config.json without the new entries ran with momentum kept and epsilon 1e-5: a network string (whose defaults
    are just that) resumes; a book model, whose defaults changed, is refused with the difference named."""
    def interrupted(out: Path, **overrides: Any) -> None:
        def stop(line: str) -> None:
            if line.startswith("epoch   1"):
                raise _Stop
        with pytest.raises(_Stop):
            _trainer(out, toy, log=stop, **overrides).run()
        saved = json.loads((out / "config.json").read_text())
        for key in ("bn_eps", "momentum_reset", "init", "grad_norms"):
            saved.pop(key)
        (out / "config.json").write_text(json.dumps(saved))

    interrupted(tmp_path / "string")
    _trainer(tmp_path / "string", toy).run(resume=True)
    assert len((tmp_path / "string" / "metrics.jsonl").read_text().splitlines()) == 3

    interrupted(tmp_path / "book", momentum_reset=True, bn_eps=1e-4)
    with pytest.raises(ValueError, match="momentum_reset"):
        _trainer(tmp_path / "book", toy, momentum_reset=True, bn_eps=1e-4).run(resume=True)
