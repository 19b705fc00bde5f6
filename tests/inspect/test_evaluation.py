"""Confusion matrices and worst errors: on arrays with a Python-built network, and on the trained BASE with its
model file (cnnkit eval's evaluation) through the functions and the commands."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cnnkit.errors import MismatchError
from cnnkit.inspect import confusion, worst_errors
from cnnkit.inspect.evaluation import load_split, preprocess, probabilities
from cnnkit.models.file import ModelFile, load_model
from cnnkit.nn import Flatten, Linear, Sequential
from cnnkit.train.run import evaluate_model_file
from tests.inspect.conftest import FOLDER_SIZE, png_size, run_command


def _linear(rng: np.random.Generator) -> tuple[Sequential, np.ndarray, np.ndarray]:
    net = Sequential(Flatten(), Linear(8, 3, rng=rng))
    x = rng.standard_normal((40, 2, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    return net, x, y


def test_confusion_of_a_network() -> None:
    net, x, y = _linear(np.random.default_rng(0))
    m = confusion(net, (x, y))
    pred = net.forward(x, train=False).argmax(axis=1)
    assert m.shape == (3, 3) and m.sum() == 40
    for i in range(3):
        for j in range(3):
            assert m[i, j] == int(np.sum((y == i) & (pred == j)))
    with pytest.raises(ValueError, match="preprocessed inputs, labels"):
        confusion(net, x)


def test_worst_errors_of_a_network() -> None:
    net, x, y = _linear(np.random.default_rng(1))
    e = worst_errors(net, (x, y), count=5, classes=["a", "b", "c"])
    p = probabilities(net, x)
    p_true = p[np.arange(40), y]
    assert np.array_equal(e.indices, np.argsort(p_true, kind="stable")[:5])
    assert np.allclose(e.p_true, np.sort(p_true)[:5])
    assert np.array_equal(e.predicted, p[e.indices].argmax(axis=1))
    assert np.allclose(e.p_predicted, p[e.indices].max(axis=1))
    assert e.images.shape == (5, 2, 2, 2) and e.classes == ["a", "b", "c"]
    assert len(worst_errors(net, (x, y), count=100).indices) == 40


def test_pictures_of_a_network(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    net, x, y = _linear(np.random.default_rng(2))
    confusion(net, (x, y), classes=["cat", "dog", "<bird>"], out=tmp_path / "c.png")
    w, h = png_size(tmp_path / "c.png")
    assert 0.8 < w / h < 1.6
    worst_errors(net, (x, y), count=12, out=tmp_path / "e.png")
    w, h = png_size(tmp_path / "e.png")
    assert w > h  # 8 columns, 2 rows


def test_model_file_confusion_is_cnnkit_eval(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    m = confusion(trained.run, str(trained.folder), out=tmp_path / "c.png")
    expected = evaluate_model_file(trained.run / "model.npz", str(trained.folder), "test", None)["confusion"]
    assert m.tolist() == expected and m.sum() == FOLDER_SIZE
    assert png_size(tmp_path / "c.png")[0] > 300
    # the same from the decoded split through the network
    mf = load_model(trained.run / "model.npz")
    s = load_split(mf, str(trained.folder))
    assert np.array_equal(confusion(mf, (preprocess(mf, s.images), s.labels)), m)
    assert np.array_equal(confusion(mf, str(trained.folder)), m)


def test_model_file_worst_errors(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    e = worst_errors(trained.run / "model.npz", count=10, limit=300, out=tmp_path / "e.png")  # the registered mnist/test
    mf = load_model(trained.run / "model.npz")
    p = probabilities(mf.network, preprocess(mf, trained.test_images[:300]))
    p_true = p[np.arange(300), trained.test_labels[:300]]
    assert np.array_equal(e.indices, np.argsort(p_true, kind="stable")[:10])
    assert np.array_equal(e.images, trained.test_images[e.indices])  # raw pixels are drawn
    assert (e.predicted != e.labels).all()  # the worst ten are mistakes
    w, h = png_size(tmp_path / "e.png")
    assert w > h
    bad = tmp_path / "bad" / "test" / "cat"
    bad.mkdir(parents=True)
    shutil.copy(next((trained.folder / "test").glob("*/*.png")), bad / "a.png")
    with pytest.raises(MismatchError, match="classes the model does not know"):
        worst_errors(trained.run, str(tmp_path / "bad"))


def test_model_without_a_dataset(tmp_path) -> None:
    import cnnkit

    net = Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    cnnkit.save(net, str(tmp_path / "model.npz"), input_shape=(2, 2, 1), classes=["a", "b"])
    with pytest.raises(ValueError, match="does not record its dataset; pass --data"):
        worst_errors(tmp_path)
    mf = ModelFile(net, (2, 2, 1), ["a", "b"])
    e = worst_errors(mf, (np.zeros((3, 2, 2, 1), np.float32), np.array([0, 1, 1])), count=2)
    assert len(e.indices) == 2


def test_commands_on_trained_base(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    r = run_command(["show", "confusion", trained.run, "--data", trained.folder, "--out", tmp_path / "c.png"])
    assert r.code == 0 and r.out.count("\n") == 1
    assert r.out.startswith(f"wrote {tmp_path / 'c.png'}: confusion matrix of {FOLDER_SIZE} images, accuracy ")
    r = run_command(["show", "errors", trained.run, "--count", "6", "--limit", "200", "--out", tmp_path / "e.png"])
    assert "the 6 images with the lowest probability" in r.out
    w, h = png_size(tmp_path / "e.png")
    assert w > 2 * h  # one row of six
    r = run_command(["show", "errors", trained.run, "--data", trained.folder, "--count", "4", "--out", tmp_path / "f.png"])
    assert r.code == 0
