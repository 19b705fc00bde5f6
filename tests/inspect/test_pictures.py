"""Filters, feature maps and saliency: the arrays on Python-built networks, the pictures and the commands on
the trained BASE network."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import MismatchError, MissingDependencyError, ShapeError
from cnnkit.inspect import LayerError, features, filters, saliency
from cnnkit.inspect.layers import capture_outputs, places
from cnnkit.models.file import load_model
from cnnkit.nn import (
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from cnnkit.nn.base import Trace, TraceRow
from tests.inspect.conftest import png_size, run_command


def _rgb_net(rng: np.random.Generator) -> Sequential:
    return Sequential(Conv2d(3, 6, 5, rng=rng), ReLU(inplace=True), MaxPool2d(2),
                      Residual(Sequential(Conv2d(6, 6, 3, padding=1, rng=rng), ReLU())),
                      Concat(Conv2d(6, 2, 1, rng=rng), Conv2d(6, 3, 3, padding=1, rng=rng)),
                      Flatten(), Linear(5 * 6 * 6, 4, rng=rng))


# -- filters ----------------------------------------------------------------------------------------------
def test_filters_first_layer_rgb_and_deeper_layer() -> None:
    net = _rgb_net(np.random.default_rng(0))
    tiles = filters(net)
    assert tiles.shape == (6, 5, 5, 3)
    w = net[0].params["weight"]
    lo, hi = w[..., 2].min(), w[..., 2].max()
    assert np.allclose(tiles[2], (w[..., 2] - lo) / (hi - lo))  # each tile min-max scaled on its own (all 3 colours)
    deeper = filters(net, "3.body.0")
    assert deeper.shape == (6, 6, 3, 3)  # (C_in, C_out, kh, kw)
    assert np.allclose(deeper.min(axis=(2, 3)), 0) and np.allclose(deeper.max(axis=(2, 3)), 1)
    by_index = filters(net, [p.name for p in places(net)].index("4.1"))
    assert by_index.shape == (6, 3, 3, 3)
    grey = filters(Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(1))))
    assert grey.shape == (1, 4, 3, 3)


def test_filters_errors() -> None:
    net = _rgb_net(np.random.default_rng(0))
    with pytest.raises(LayerError, match="is a ReLU, not a convolution"):
        filters(net, "1")
    with pytest.raises(LayerError, match="no layer 'conv9'"):
        filters(net, "conv9")
    with pytest.raises(LayerError, match="out of range"):
        filters(net, 99)
    with pytest.raises(LayerError, match="no convolution"):
        filters(Sequential(Flatten(), Linear(4, 2, rng=np.random.default_rng(0))))


def test_filters_pictures(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    net = _rgb_net(np.random.default_rng(0))
    filters(net, out=tmp_path / "first.png")
    filters(net, "3.body.0", out=tmp_path / "deeper.png")
    w1, h1 = png_size(tmp_path / "first.png")
    w2, h2 = png_size(tmp_path / "deeper.png")
    assert min(w1, h1, w2, h2) > 150
    big = Sequential(Conv2d(1, 8, 3, rng=np.random.default_rng(0)), Conv2d(8, 100, 3, rng=np.random.default_rng(1)))
    assert filters(big, "1", out=tmp_path / "wide.png").shape == (8, 100, 3, 3)  # drawn: 64 of the 100 outputs
    w, h = png_size(tmp_path / "wide.png")
    assert w > 2 * h  # 8 rows of 64 tiles


def test_without_matplotlib_arrays_still_work(monkeypatch, tmp_path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    net = _rgb_net(np.random.default_rng(0))
    assert filters(net).shape == (6, 5, 5, 3)
    with pytest.raises(MissingDependencyError, match=r"drawing pictures needs matplotlib.*cnnkit\[plot\]"):
        filters(net, out=tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


# -- features ---------------------------------------------------------------------------------------------
def test_features_every_layer_of_a_dag() -> None:
    rng = np.random.default_rng(2)
    net = _rgb_net(rng)
    x = rng.standard_normal((16, 16, 3)).astype(np.float32)
    maps = features(net, x)
    rows: list[TraceRow] = []
    net.trace(Trace((16, 16, 3)), "", rows)
    assert list(maps) == [r.name for r in rows]  # the summary's rows, in order
    assert all(maps[r.name].shape == r.info.out_shape for r in rows)
    conv = net[0].forward(x[None], train=False)[0]
    assert np.allclose(maps["0"], conv)  # before the in-place ReLU overwrote it
    assert np.allclose(maps["1"], np.maximum(conv, 0))
    assert np.allclose(maps["6"], net.forward(x[None], train=False)[0], atol=1e-6)
    assert np.allclose(maps["3.add"], maps["2"] + maps["3.body.1"], atol=1e-6)
    assert np.allclose(maps["4.concat"], np.concatenate([maps["4.0"], maps["4.1"]], axis=-1))


def test_features_of_a_shared_layer_use_by_use() -> None:
    rng = np.random.default_rng(3)
    conv = Conv2d(2, 2, 3, padding=1, rng=rng)
    net = Sequential(conv, ReLU(), conv)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    y, outs = capture_outputs(net, x)
    assert not np.allclose(outs["0"], outs["2"])
    assert np.allclose(outs["2"], y)


def test_features_picture_is_tall(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(4)
    net = Sequential(Conv2d(1, 40, 3, rng=rng), BatchNorm2d(40), ReLU(), MaxPool2d(2), Dropout(0.5),
                     Conv2d(40, 8, 3, rng=rng), Flatten(), Linear(8 * 4 * 4, 10, rng=rng))
    maps = features(net.eval(), rng.standard_normal((14, 14, 1)), out=tmp_path / "f.png")
    assert len(maps) == 8
    w, h = png_size(tmp_path / "f.png")
    assert h > w


def test_features_wrong_input() -> None:
    net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)))
    with pytest.raises(ShapeError, match="one preprocessed image"):
        features(net, np.zeros((2, 5, 5, 1)))


# -- saliency ---------------------------------------------------------------------------------------------
def _tiny64(rng: np.random.Generator) -> Sequential:
    return Sequential(Conv2d(2, 3, 3, padding=1, dtype=np.float64, need_input_grad=False, rng=rng), ReLU(),
                      MaxPool2d(2), Conv2d(3, 4, 2, dtype=np.float64, rng=rng), ReLU(), Flatten(),
                      Linear(4 * 2 * 2, 3, dtype=np.float64, rng=rng))


def test_saliency_is_the_numerical_gradient() -> None:
    rng = np.random.default_rng(5)
    net = _tiny64(rng)
    x = rng.standard_normal((6, 6, 2))
    for k in range(3):
        s = saliency(net, x, class_index=k)
        eps = 1e-6
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            num[idx] = (net.forward(xp[None], train=False)[0, k] - net.forward(xm[None], train=False)[0, k]) / (2 * eps)
        assert np.allclose(s.gradient, num, atol=1e-7), k
        assert np.allclose(s.saliency, np.abs(num).max(axis=2))
        assert np.allclose(s.grad_x_input, (num * x).sum(axis=2), atol=1e-7)
    assert net[0].need_input_grad is False  # restored
    default = saliency(net, x)
    assert default.class_index == int(np.argmax(net.forward(x[None], train=False)))
    with pytest.raises(ShapeError, match="class 3 does not exist"):
        saliency(net, x, class_index=3)


def test_saliency_picture(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    net = _tiny64(np.random.default_rng(6))
    saliency(net, np.random.default_rng(7).standard_normal((6, 6, 2)), out=tmp_path / "s.png", classes=["a", "b", "c"])
    w, h = png_size(tmp_path / "s.png")
    assert w > 2 * h


# -- on the trained BASE ----------------------------------------------------------------------------------
def test_functions_on_trained_base(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    m = load_model(trained.run / "model.npz")
    from cnnkit.inspect.evaluation import preprocess

    x = preprocess(m, trained.test_images[:1])[0]
    assert filters(m.network, out=tmp_path / "f.png").shape == (1, 20, 5, 5)
    maps = features(m.network, x, out=tmp_path / "maps.png")
    assert [a.shape for a in maps.values()] == [(24, 24, 20), (12, 12, 20), (8, 8, 50), (4, 4, 50), (1, 1, 500),
                                                (1, 1, 500), (1, 1, 10)]
    s = saliency(m.network, x, out=tmp_path / "s.png", classes=m.classes)
    assert s.gradient.shape == (28, 28, 1) and np.abs(s.gradient).max() > 0
    for name in ("f.png", "maps.png", "s.png"):
        assert png_size(tmp_path / name)[0] > 200


def test_commands_on_trained_base(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    r = run_command(["show", "filters", trained.run, "--out", tmp_path / "f.png"])
    assert r.code == 0 and r.out.startswith(f"wrote {tmp_path / 'f.png'}: filters of layer 0 (Conv2d, weight 5x5x1x20)")
    w, h = png_size(tmp_path / "f.png")
    assert 0.5 < w / h < 2  # a square grid of 20 tiles
    r = run_command(["show", "filters", trained.run / "model.npz", "--layer", "2", "--out", tmp_path / "f2.png"])
    assert "weight 5x5x20x50" in r.out
    w, h = png_size(tmp_path / "f2.png")
    assert w > h  # 20 rows of 50 tiles
    r = run_command(["show", "features", trained.run, trained.digits[0], "--out", tmp_path / "maps.png"])
    assert r.code == 0 and "feature maps of 7 layers" in r.out and r.out.count("\n") == 1
    w, h = png_size(tmp_path / "maps.png")
    assert h > w
    label = trained.digits[0].stem.split("-")[1]
    r = run_command(["show", "saliency", trained.run, trained.digits[0], "--class", label, "--out", tmp_path / "s.png"])
    assert r.code == 0 and f"saliency of class '{label}'" in r.out
    w, h = png_size(tmp_path / "s.png")
    assert w > 2 * h
    with pytest.raises(MismatchError, match="neither a class name nor an index"):
        run_command(["show", "saliency", trained.run, trained.digits[0], "--class", "cat", "--out", tmp_path / "x.png"])
    with pytest.raises(LayerError, match="is a MaxPool2d"):
        run_command(["show", "filters", trained.run, "--layer", "1", "--out", tmp_path / "x.png"])
    with pytest.raises(FileNotFoundError, match="no model file"):
        run_command(["show", "filters", tmp_path / "nothing", "--out", tmp_path / "x.png"])
    assert not (tmp_path / "x.png").exists()
