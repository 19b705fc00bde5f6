"""Model files and checkpoints: exact round trips, optimiser state, refusal of the wrong kind of file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import Preprocessor
from cnnkit.models import create
from cnnkit.models.file import load_model, save_model
from cnnkit.nn import SoftmaxCrossEntropy
from cnnkit.serialize import flatten_state, load_arrays, unflatten_state
from cnnkit.train import TrainConfig
from cnnkit.train.checkpoint import load_checkpoint, save_checkpoint

SPEC = "conv3x3x1x4nobias,bn,relu,pool2,conv3x3x4x6,pool2,fc10,dropout0.3"
SHAPE = (10, 10, 1)


def _model(seed: int = 0, dtype: type = np.float32):
    return create(SPEC, np.random.default_rng(seed), dtype, input_shape=SHAPE)


def _batch(n: int = 8, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.standard_normal((n, *SHAPE)).astype(dtype), rng.integers(0, 10, n)


def _steps(model, optimizer, k: int = 2) -> None:
    """k training steps (moves parameters, BN running statistics and the momentum buffers)."""
    loss = SoftmaxCrossEntropy()
    x, y = _batch(dtype=model.dtype)
    for _ in range(k):
        loss.forward(model.forward(x, train=True), y)
        model.backward(loss.backward())
        optimizer.step()


def _assert_same_state(a, b) -> None:
    assert a.params.keys() == b.params.keys() and a.buffers.keys() == b.buffers.keys()
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype and np.array_equal(a.params[k], b.params[k]), k
    for k in a.buffers:
        assert np.array_equal(a.buffers[k], b.buffers[k]), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_file_round_trip(tmp_path: Path, dtype: type) -> None:
    model = _model(dtype=dtype)
    _steps(model, TrainConfig(lr=0.1).make_optimizer(model))
    images = np.random.default_rng(1).integers(0, 256, (20, *SHAPE), dtype=np.uint8)
    pre = Preprocessor("mean_image").fit(images)
    classes = [f"c{i}" for i in range(10)]
    save_model(tmp_path / "model.npz", model, input_shape=SHAPE, classes=classes, preprocess=pre.to_dict(),
               extra={"data": "toy", "note": [1, 2]}, spec=SPEC)
    m = load_model(tmp_path / "model.npz")
    loaded, pre_d, meta = m.network, m.preprocess, m.meta
    _assert_same_state(model, loaded)
    assert loaded.dtype == dtype
    assert meta["spec"] == SPEC and tuple(meta["input_shape"]) == SHAPE and meta["classes"] == classes
    assert meta["data"] == "toy" and meta["note"] == [1, 2]
    pre2 = Preprocessor.from_dict(pre_d)
    assert np.array_equal(pre2.transform(images), pre.transform(images))
    x = pre.transform(images, dtype=dtype)
    assert np.array_equal(loaded.forward(x, train=False), model.forward(x, train=False))


def test_checkpoint_restores_model_and_optimizer_exactly(tmp_path: Path) -> None:
    cfg = TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-4)
    model = _model(0)
    opt = cfg.make_optimizer(model)
    _steps(model, opt, 3)
    save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=4, extra={"config": cfg.to_dict()})
    restored = _model(1)  # another initialisation, overwritten by the checkpoint
    opt2 = cfg.make_optimizer(restored)
    meta = load_checkpoint(tmp_path / "ck.npz", restored, opt2)
    assert meta["epoch"] == 4 and meta["config"] == cfg.to_dict()
    _assert_same_state(model, restored)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["step"] == s2["step"] == 3
    assert s1["state"].keys() == s2["state"].keys()
    for name in s1["state"]:
        for key, v in s1["state"][name].items():
            assert np.array_equal(v, s2["state"][name][key]), (name, key)
    # the same further step from both gives bit-identical parameters (momentum restored, not reset)
    for layer in (model, restored):
        for d in [l for l in layer.modules() if type(l).__name__ == "Dropout"]:
            d.rng = np.random.default_rng(7)
    _steps(model, opt, 1)
    _steps(restored, opt2, 1)
    _assert_same_state(model, restored)


def test_checkpoint_round_trip_adam(tmp_path: Path) -> None:
    cfg = TrainConfig(optimizer="adam", lr=1e-3)
    model = _model()
    opt = cfg.make_optimizer(model)
    _steps(model, opt, 2)
    save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=1)
    restored = _model(3)
    opt2 = cfg.make_optimizer(restored)
    load_checkpoint(tmp_path / "ck.npz", restored, opt2)
    _assert_same_state(model, restored)
    assert opt2.state_dict()["step"] == 2


def test_wrong_kind_of_file_is_refused(tmp_path: Path) -> None:
    model = _model()
    opt = TrainConfig().make_optimizer(model)
    save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=1)
    save_model(tmp_path / "model.npz", model, input_shape=SHAPE, classes=[str(i) for i in range(10)], spec=SPEC)
    with pytest.raises(ValueError, match="not a cnnkit model file"):
        load_model(tmp_path / "ck.npz")
    with pytest.raises(ValueError, match="not a cnnkit checkpoint"):
        load_checkpoint(tmp_path / "model.npz", _model(), TrainConfig().make_optimizer(_model()))


def test_checkpoint_for_another_architecture_is_refused(tmp_path: Path) -> None:
    model = _model()
    opt = TrainConfig().make_optimizer(model)
    save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=1)
    other = create("conv3x3x1x5,fc10", np.random.default_rng(0), input_shape=SHAPE)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "ck.npz", other, TrainConfig().make_optimizer(other))


def test_corrupt_model_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    save_model(path, _model(), input_shape=SHAPE, classes=[str(i) for i in range(10)], spec=SPEC)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=re.escape("model.npz")):
        load_model(path)


def test_files_hold_no_pickles(tmp_path: Path) -> None:
    model = _model()
    opt = TrainConfig().make_optimizer(model)
    _steps(model, opt, 1)
    save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=1)
    arrays, meta = load_arrays(tmp_path / "ck.npz")  # allow_pickle=False inside
    assert all(a.dtype != object for a in arrays.values())
    assert meta["format"] == "cnnkit-checkpoint-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # no temporary files left


def test_flatten_unflatten_round_trip() -> None:
    tree = {
        "a": np.arange(3.0),
        "b": {"c": np.ones((2, 2), np.float32), "d": 3, "e": "text"},
        "f": [np.zeros(1), 2.5, {"g": np.int64(7)}],
        "h": np.float32(1.5),
        "n": None,
    }
    arrays: dict[str, np.ndarray] = {}
    skeleton = flatten_state("root", tree, arrays)
    assert set(arrays) == {"root/a", "root/b/c", "root/f/0"}
    assert skeleton["h"] == 1.5 and type(skeleton["h"]) is float
    assert skeleton["f"][2]["g"] == 7 and type(skeleton["f"][2]["g"]) is int
    back = unflatten_state(skeleton, arrays)
    assert np.array_equal(back["a"], tree["a"]) and np.array_equal(back["b"]["c"], tree["b"]["c"])
    assert back["b"]["d"] == 3 and back["b"]["e"] == "text" and back["n"] is None
    assert np.array_equal(back["f"][0], tree["f"][0]) and back["f"][1] == 2.5
    back["a"][0] = 99  # copies, not views of the loaded arrays
    assert arrays["root/a"][0] == 0
