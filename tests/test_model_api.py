"""The model-level API on networks built in Python: fit, evaluate, predict, save, load and summary; training and
evaluation modes; state dicts; the callbacks (early stopping, keep-best, learning-rate reduction, metric logs).

Regression tests for the issue "Your own data and your own models": F7 (a backward after an evaluation-mode
forward used to compute with stale caches), F8 (networks built in Python could not be saved, or lost their
weight sharing) and F10 (labels beyond the network's outputs were trained on silently). Every case runs on
tiny random arrays in well under a second.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import MismatchError, ModelFileError, StateError
from cnnkit.models.file import load_model, save_model
from cnnkit.nn import (
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    MaxUnpool2d,
    ReLU,
    Residual,
    Sequential,
    SoftmaxCrossEntropy,
)
from cnnkit.optim import SGD
from cnnkit.serialize import load_arrays, save_arrays
from cnnkit.train.callbacks import EarlyStopping, History, KeepBest, MetricsLog, ReduceLROnPlateau
from cnnkit.train.loop import Callback, LoopState

# -- data and networks ------------------------------------------------------------------------------


def separable(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points in 2-D whose class (0, 1, 2) is the sign pattern of two coordinates: learnable by a linear layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = np.where(x[:, 0] < 0, 0, np.where(x[:, 1] < 0, 1, 2)).astype(np.int64)
    return x, y


def noise_labels(n: int = 80, d: int = 20, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs with random labels: a wide network memorises the training part, so the validation loss rises."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n).astype(np.int64)


def mlp(d: int = 20, k: int = 3, seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(Linear(d, 64, rng=rng), ReLU(), Linear(64, k, rng=rng))


def small_cnn(seed: int = 0, dropout: float = 0.0) -> Sequential:
    """(N, 6, 6, 1) -> (N, 3)."""
    rng = np.random.default_rng(seed)
    layers: list[Layer] = [Conv2d(1, 4, 3, padding=1, rng=rng), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, rng=rng))
    layers += [Flatten(), Linear(4 * 6 * 6, 3, rng=rng)]
    return Sequential(*layers)


def dag_net(seed: int = 0) -> Sequential:
    """A residual block with a 1x1 shortcut and a two-branch concatenation, (N, 6, 6, 2) -> (N, 4)."""
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(2, 4, 3, padding=1, rng=rng),
        Residual(Sequential(Conv2d(4, 6, 3, padding=1, rng=rng), ReLU()), Conv2d(4, 6, 1, rng=rng)),
        Concat(Conv2d(6, 2, 1, rng=rng), Sequential(Conv2d(6, 3, 3, padding=1, rng=rng), ReLU())),
        Flatten(),
        Linear(5 * 6 * 6, 4, rng=rng),
    )


class Snapshots(Callback):
    """Copies of the model's state after every epoch (epoch e at index e - 1)."""

    def __init__(self) -> None:
        self.states: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        self.states.append({k: np.array(v, copy=True) for k, v in state.model.state_dict().items()})


# -- fit, History and the callbacks -----------------------------------------------------------------


def test_fit_returns_a_history_with_validation_entries() -> None:
    """fit(..., validation_split=0.25, callbacks=[EarlyStopping(patience=2)]) returns a History whose records
    carry val_* entries (and no test_*), with history["val_loss"] one value per epoch."""
    x, y = separable()
    net = Linear(2, 3, rng=np.random.default_rng(0))
    history = cnnkit.fit(net, (x, y), 4, 20, SoftmaxCrossEntropy(), SGD(net, lr=0.5, momentum=0.9), validation_split=0.25,
                         callbacks=[EarlyStopping(patience=2)])
    assert isinstance(history, History)
    assert 1 <= len(history.records) <= 4
    assert [r["epoch"] for r in history.records] == list(range(1, len(history.records) + 1))
    for r in history.records:
        for key in ("train_loss", "val_loss", "val_top1_error", "val_accuracy", "val_confusion"):
            assert key in r, key
        assert not any(k.startswith("test_") for k in r)
        assert np.sum(r["val_confusion"]) == 30  # a quarter of 120 held out
    assert history.history["val_loss"] == [r["val_loss"] for r in history.records]
    assert history.records[-1]["val_accuracy"] > 0.8


def test_early_stopping_stops_by_itself_when_the_validation_loss_rises() -> None:
    """On noise labels a wide network overfits: the validation loss rises and EarlyStopping ends training
    `patience` epochs after its best epoch, long before the 50 epochs asked for (deterministic: fixed seeds)."""
    x, y = noise_labels()
    net = mlp()
    stop = EarlyStopping(patience=2)
    history = cnnkit.fit(net, (x, y), epochs=50, batch_size=8, optimizer=SGD(net, lr=0.1, momentum=0.9),
                         validation_split=0.25, callbacks=[stop])
    val = history.history["val_loss"]
    assert len(history.records) < 50
    assert stop.best_epoch == int(np.argmin(val)) + 1
    assert stop.best == pytest.approx(min(val))
    assert stop.stopped_epoch == len(history.records) == stop.best_epoch + 2
    assert val[-1] > stop.best


def test_early_stopping_restore_best_weights() -> None:
    """EarlyStopping(restore_best_weights=True) leaves the model with the weights of its best epoch."""
    x, y = noise_labels()
    net = mlp()
    snaps = Snapshots()
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    cnnkit.fit(net, (x, y), epochs=50, batch_size=8, optimizer=SGD(net, lr=0.1, momentum=0.9), validation_split=0.25,
               callbacks=[snaps, stop])
    assert stop.best_epoch is not None and stop.best_epoch < len(snaps.states)
    best = snaps.states[stop.best_epoch - 1]
    for k, v in net.state_dict().items():
        assert np.array_equal(v, best[k]), k


def test_keep_best_keeps_the_best_epochs_weights() -> None:
    """KeepBest holds (and hands to save=) the weights of the epoch with the lowest validation loss, not the last."""
    x, y = noise_labels()
    net = mlp()
    snaps = Snapshots()
    saved: list[int] = []
    keep = KeepBest(save=lambda model: saved.append(len(snaps.states)))
    history = cnnkit.fit(net, (x, y), epochs=8, batch_size=8, optimizer=SGD(net, lr=0.1, momentum=0.9),
                         validation_split=0.25, callbacks=[snaps, keep])
    val = history.history["val_loss"]
    assert keep.best_epoch == int(np.argmin(val)) + 1
    assert keep.best_epoch < len(val)  # the problem overfits: the best epoch is not the last
    assert keep.weights is not None
    best = snaps.states[keep.best_epoch - 1]
    assert keep.weights.keys() == best.keys()
    for k in best:
        assert np.array_equal(keep.weights[k], best[k]), k
    assert not all(np.array_equal(net.state_dict()[k], best[k]) for k in best)  # the model itself moved on
    assert saved and saved[-1] == keep.best_epoch  # save() called after each improving epoch, last at the best


def test_reduce_lr_on_plateau_lowers_the_learning_rate() -> None:
    """ReduceLROnPlateau multiplies the rate by `factor` once the validation loss stops improving."""
    x, y = noise_labels()
    net = mlp()
    history = cnnkit.fit(net, (x, y), epochs=8, batch_size=8, optimizer=SGD(net, lr=0.1, momentum=0.9), validation_split=0.25,
                         callbacks=[ReduceLROnPlateau(factor=0.5, patience=1)])
    lrs = history.history["lr"]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[-1] < 0.1
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs))
    for lr in lrs:  # every rate is 0.1 halved some number of times
        halvings = np.log2(0.1 / lr)
        assert halvings == pytest.approx(round(halvings), abs=1e-6)


def test_metrics_log_writes_jsonl_and_csv(tmp_path: Path) -> None:
    """MetricsLog writes every epoch's record: JSON lines (with the confusion matrix) or CSV (without it)."""
    x, y = separable()
    net = Linear(2, 3, rng=np.random.default_rng(0))
    jl, cs = tmp_path / "m.jsonl", tmp_path / "m.csv"
    history = cnnkit.fit(net, (x, y), epochs=3, batch_size=20, optimizer=SGD(net, lr=0.5), validation_split=0.25,
                         callbacks=[MetricsLog(jl), MetricsLog(cs)])
    lines = [json.loads(s) for s in jl.read_text().splitlines() if s.strip()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["val_loss"] for r in lines] == pytest.approx(history.history["val_loss"])
    assert "val_confusion" in lines[0]
    with cs.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert "val_loss" in rows[0] and "train_loss" in rows[0] and "val_confusion" not in rows[0]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])
    with pytest.raises(ValueError, match=r"\.jsonl or \.csv"):
        MetricsLog(tmp_path / "m.txt")


# -- evaluate and predict ---------------------------------------------------------------------------


def test_evaluate_returns_loss_accuracy_errors_and_confusion() -> None:
    """evaluate gives loss, accuracy, top1_error and the confusion matrix; top5_error only with more than 5 classes."""
    x, y = separable(90)
    net = Linear(2, 3, rng=np.random.default_rng(0))
    m = cnnkit.evaluate(net, (x, y))
    assert {"loss", "accuracy", "top1_error", "confusion"} <= set(m)
    assert "top5_error" not in m
    assert np.isfinite(m["loss"]) and m["accuracy"] + m["top1_error"] == pytest.approx(1.0)
    conf = np.asarray(m["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == 90
    assert conf.sum(axis=1).tolist() == np.bincount(y, minlength=3).tolist()
    assert np.trace(conf) / 90 == pytest.approx(m["accuracy"])

    rng = np.random.default_rng(1)
    x7, y7 = rng.standard_normal((50, 4)).astype(np.float32), rng.integers(0, 7, 50)
    m7 = cnnkit.evaluate(Linear(4, 7, rng=rng), (x7, y7))
    assert "top5_error" in m7 and 0.0 <= m7["top5_error"] <= m7["top1_error"] <= 1.0
    assert np.asarray(m7["confusion"]).shape == (7, 7)


def test_predict_gives_probabilities_in_evaluation_mode() -> None:
    """predict returns (N, K) probabilities summing to 1, computed in evaluation mode (dropout off) whatever the
    network's mode, and leaves the mode as it was."""
    x = np.random.default_rng(0).standard_normal((7, 6, 6, 1)).astype(np.float32)
    net = small_cnn(dropout=0.5)
    assert net.training
    p = np.asarray(cnnkit.predict(net, x, batch_size=3))
    assert p.shape == (7, 3)
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(p, np.asarray(cnnkit.predict(net, x, batch_size=3)))  # no dropout draws: the same answer twice
    assert np.allclose(p, np.asarray(cnnkit.predict(net, x)), atol=1e-6)  # and the batch size does not matter
    assert net.training


# -- F10: labels the network has no output for ----------------------------------------------------------


def test_f10_fit_with_labels_beyond_the_outputs_raises_mismatch() -> None:
    """F10: fit (and evaluate) refuse labels >= the number of outputs instead of training on them silently."""
    x, _ = separable(40)
    y = np.arange(40) % 5  # labels 0..4 for a network with 3 outputs
    net = Linear(2, 3, rng=np.random.default_rng(0))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(MismatchError, match="3 outputs"):
        cnnkit.fit(net, (x, y), epochs=1, batch_size=8)
    for k, v in net.state_dict().items():
        assert np.array_equal(v, before[k]), k  # refused before any step
    with pytest.raises(MismatchError):
        cnnkit.evaluate(net, (x, y))
    with pytest.raises(MismatchError):
        cnnkit.fit(net, separable(40), epochs=1, batch_size=8, validation_data=(x, y))


# -- F7: training and evaluation modes ------------------------------------------------------------------


def test_f7_backward_after_an_evaluation_forward_raises_state_error() -> None:
    """F7: net.eval(); out = net(x); loss; net.backward(...) raises StateError naming .train() and grad=True,
    instead of differentiating with the caches of an earlier training forward."""
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    net = small_cnn()
    loss = SoftmaxCrossEntropy()
    net.backward(np.ones_like(net(x)))  # a training forward and backward first: caches exist
    net.eval()
    out = net(x)
    loss.forward(out, y)
    with pytest.raises(StateError) as info:
        net.backward(loss.backward())
    assert ".train()" in str(info.value) and "grad=True" in str(info.value)


def test_f7_a_fresh_network_is_in_training_mode() -> None:
    """F7: a new network trains: net.training is True on it and on every layer, and net(x) applies dropout."""
    net = Sequential(Linear(8, 8, rng=np.random.default_rng(0)), Dropout(0.5, rng=np.random.default_rng(1)))
    assert net.training and all(m.training for m in net.modules())
    x = np.ones((16, 8), np.float32)
    drop = Sequential(Dropout(0.5, rng=np.random.default_rng(2)))
    y = np.asarray(drop(x))
    assert np.any(y == 0) and np.any(y != 0)  # units dropped, the rest scaled by 1/(1-p)
    assert np.allclose(y[y != 0], 2.0)
    assert np.array_equal(np.asarray(drop(x, train=False)), x)
    drop.eval()
    assert np.array_equal(np.asarray(drop(x)), x)


def test_f7_eval_and_train_set_the_mode_on_every_nested_layer() -> None:
    """F7: net.eval() / net.train() reach every layer inside containers (Sequential, Residual, Concat)."""
    net = dag_net()
    nested = list(net.modules())
    assert len(nested) > 8
    assert net.eval() is net
    assert all(not m.training for m in nested)
    assert net.train() is net
    assert all(m.training for m in nested)
    net.train(False)
    assert all(not m.training for m in nested)
    inner = net[1]
    inner.train()
    assert all(m.training for m in inner.modules()) and not net.training and not net[0].training


def test_f7_evaluation_forward_with_grad_keeps_what_backward_needs() -> None:
    """F7: forward(x, train=False, grad=True) keeps the caches, so an evaluation-mode network can be
    differentiated (a saliency map): the input gradient equals that of a training forward when the network
    has no dropout or batch normalisation."""
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 1)).astype(np.float32)
    net = small_cnn()
    dy = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
    out = net.forward(x, train=True)
    dx_train = np.asarray(net.backward(dy))
    net.eval()
    out_eval = net.forward(x, train=False, grad=True)
    assert np.allclose(out_eval, out)
    dx_eval = np.asarray(net.backward(dy))
    assert np.allclose(dx_eval, dx_train, atol=1e-6)
    net(x, grad=True)  # the mode's forward (evaluation) with grad=True as well
    assert np.allclose(np.asarray(net.backward(dy)), dx_train, atol=1e-6)


def test_f7_evaluation_forward_keeps_no_cache() -> None:
    """F7: forward(x, train=False) keeps nothing for backward, also in a network whose last forward trained."""
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1)).astype(np.float32)
    net = small_cnn()
    net.forward(x, train=True)
    assert net[0]._cache is not None
    net.forward(x, train=False)
    assert net._cache is None
    assert all(leaf._cache is None for leaf in net.modules())
    with pytest.raises(StateError, match=r"\.train\(\)"):
        net.backward(np.ones((2, 3), np.float32))


# -- F8: saving and loading networks built in Python ----------------------------------------------------


def _conv_zoo() -> tuple[Layer, np.ndarray]:
    rng = np.random.default_rng(0)
    net = Sequential(
        Conv2d(2, 4, 3, padding=((0, 1), (2, 1)), dilation=2, groups=2, rng=rng),
        BatchNorm2d(4),
        ReLU(),
        MaxPool2d(2),
        Dropout(0.3, rng=rng),
        Flatten(),
        Linear(4 * 3 * 4, 5, rng=rng),
    )
    return net, rng.standard_normal((3, 9, 9, 2)).astype(np.float32)


def _dag() -> tuple[Layer, np.ndarray]:
    return dag_net(), np.random.default_rng(1).standard_normal((2, 6, 6, 2)).astype(np.float32)


def _shared() -> tuple[Layer, np.ndarray]:
    rng = np.random.default_rng(0)
    tied = Conv2d(3, 3, 3, padding=1, rng=rng)
    net = Sequential(Conv2d(1, 3, 3, padding=1, rng=rng), tied, ReLU(), tied, Flatten(), Linear(3 * 5 * 5, 2, rng=rng))
    return net, rng.standard_normal((2, 5, 5, 1)).astype(np.float32)


def _unpool() -> tuple[Layer, np.ndarray]:
    rng = np.random.default_rng(0)
    pool = MaxPool2d(2)
    net = Sequential(Conv2d(1, 3, 3, padding=1, rng=rng), pool, Conv2d(3, 3, 3, padding=1, rng=rng), MaxUnpool2d(pool=pool),
                     Flatten(), Linear(3 * 7 * 7, 4, rng=rng))
    return net, rng.standard_normal((2, 7, 7, 1)).astype(np.float32)


NETWORKS = {"conv_bn_pool_dropout": _conv_zoo, "residual_concat": _dag, "weight_sharing": _shared, "unpool": _unpool}


def _save_cnnkit(net: Layer, path: Path) -> None:
    cnnkit.save(net, str(path))


def _save_model_file(net: Layer, path: Path) -> None:
    save_model(path, net)  # no spec: the architecture is stored as data


@pytest.mark.parametrize("save", [_save_cnnkit, _save_model_file], ids=["cnnkit.save", "save_model"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_f8_networks_built_in_python_round_trip(name: str, save: Any, tmp_path: Path) -> None:
    """F8: any network built from cnnkit layers saves and loads back: identical evaluation-mode outputs and
    state dicts (batch-norm statistics included), and a pickle-free file."""
    net, x = NETWORKS[name]()
    for _ in range(2):  # move the batch-norm running statistics away from their initial values
        net.forward(x, train=True)
    expected = np.asarray(net.forward(x, train=False))
    path = tmp_path / "net.npz"
    save(net, path)
    with np.load(path, allow_pickle=False) as z:  # numbers and text only, never pickled objects
        for k in z.files:
            assert z[k].dtype != object
    loaded = cnnkit.load(str(path))
    assert type(loaded) is type(net)
    assert np.array_equal(np.asarray(loaded.forward(x, train=False)), expected)
    a, b = net.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k
    assert load_model(path).network.state_dict().keys() == a.keys()


def test_f8_weight_sharing_is_preserved(tmp_path: Path) -> None:
    """F8: a layer object used twice is saved once and loaded as one object used twice (tied weights stay tied)."""
    net, x = _shared()
    assert net[1] is net[3]
    cnnkit.save(net, str(tmp_path / "tied.npz"))
    loaded = cnnkit.load(str(tmp_path / "tied.npz"))
    assert loaded[1] is loaded[3]
    assert loaded[1] is not loaded[0]
    assert sorted(loaded.params) == sorted(net.params)
    assert sum(1 for k in loaded.params if k.startswith("3.")) == 0  # listed once, under the first use
    loaded[1].params["weight"][...] += 1.0  # one object: changing it changes both uses
    assert not np.allclose(np.asarray(loaded.forward(x, train=False)), np.asarray(net.forward(x, train=False)))


def test_f8_unpool_mirrors_its_pool_after_loading(tmp_path: Path) -> None:
    """F8: a MaxUnpool2d built with pool=<its MaxPool2d> is loaded mirroring the loaded MaxPool2d."""
    net, x = _unpool()
    cnnkit.save(net, str(tmp_path / "unpool.npz"))
    loaded = cnnkit.load(str(tmp_path / "unpool.npz"))
    assert isinstance(loaded[3], MaxUnpool2d) and isinstance(loaded[1], MaxPool2d)
    assert loaded[3].pool is loaded[1]
    assert np.array_equal(np.asarray(loaded.forward(x, train=False)), np.asarray(net.forward(x, train=False)))


def _unknown_class(arch: dict) -> None:
    arch["children"][0][1]["class"] = "os.system"


def _unknown_nested_class(arch: dict) -> None:
    arch["children"][1][1]["children"][0][1]["children"][0][1]["class"] = "Evil"


def _unknown_argument(arch: dict) -> None:
    arch["children"][0][1]["config"]["evil"] = 1


def _rng_argument(arch: dict) -> None:
    arch["children"][0][1]["config"]["rng"] = 0


@pytest.mark.parametrize("edit, fragment", [
    (_unknown_class, "unknown layer class"),
    (_unknown_nested_class, "unknown layer class"),
    (_unknown_argument, "evil"),
    (_rng_argument, "rng"),
])
def test_f8_architecture_naming_unknown_code_is_refused(edit: Any, fragment: str, tmp_path: Path) -> None:
    """F8: a file whose architecture names a class that is not a cnnkit layer, or an argument its constructor
    does not take, fails with ModelFileError (nothing is looked up or called by name)."""
    net, _ = _dag()
    good = tmp_path / "good.npz"
    cnnkit.save(net, str(good))
    arrays, meta = load_arrays(good)
    edit(meta["architecture"])
    bad = tmp_path / "bad.npz"
    save_arrays(bad, arrays, meta)
    with pytest.raises(ModelFileError, match=fragment):
        cnnkit.load(str(bad))


# -- state_dict ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_between_networks() -> None:
    """state_dict holds parameters and buffers by dotted name; load_state_dict copies them into another network
    in place (then both compute the same), and refuses a dict with missing entries."""
    a, x = _conv_zoo()
    a.forward(x, train=True)
    b, _ = _conv_zoo()
    b[0].params["weight"][...] = 0
    sd = a.state_dict()
    assert {"0.weight", "0.bias", "1.running_mean", "1.running_var", "6.weight"} <= set(sd)
    weight_before = b[0].params["weight"]
    b.load_state_dict(sd)
    assert b[0].params["weight"] is weight_before  # copied in place
    assert np.array_equal(np.asarray(b.forward(x, train=False)), np.asarray(a.forward(x, train=False)))
    partial = {k: v for k, v in sd.items() if k != "6.weight"}
    with pytest.raises(StateError, match=r"6\.weight"):
        b.load_state_dict(partial)


# -- summary ------------------------------------------------------------------------------------------------


def test_summary_of_a_dag_network() -> None:
    """summary(net, input_shape) works for a DAG: rows for the residual sum and the concatenation, and the
    parameter total equals the network's own count."""
    net = dag_net()
    s = cnnkit.summary(net, (6, 6, 2))
    kinds = [r.kind for r in s.rows]
    assert "add" in kinds and "concat" in kinds
    assert s.total_params == sum(p.size for p in net.params.values())
    assert s.rows[-1].out_shape == (4,)
    concat = next(r for r in s.rows if r.kind == "concat")
    assert concat.out_shape == (6, 6, 5)
    assert "concat" in s.format() and "add" in s.format()
