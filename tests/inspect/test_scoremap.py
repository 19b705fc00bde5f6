"""Score maps: the fully convolutional network over a larger image equals the original network on every crop
at its total stride (without padding); the trained BASE over a mosaic of four test digits."""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import numpy as np
import pytest

from cnnkit.errors import MismatchError
from cnnkit.inspect import score_map_json, score_map_picture, score_maps
from cnnkit.inspect.cli import score_map_command
from cnnkit.inspect.evaluation import preprocess
from cnnkit.models import build
from cnnkit.models.file import ModelFile, load_model
from cnnkit.models.spec import BuildOptions
from tests.inspect.conftest import png_size

VGG_LIKE = "conv3x3x3x4p1,relu,pool2,conv3x3x4x8p1,relu,pool2,fc16,relu,fc5"
VGG_LIKE_VALID = VGG_LIKE.replace("p1", "")


def _model(spec: str) -> ModelFile:
    net = build(spec, (16, 16, 3), np.random.default_rng(0), BuildOptions(init="he", dtype=np.float64))
    return ModelFile(net, (16, 16, 3), ["a", "b", "c", "d", "e"])


def test_map_equals_the_network_on_every_crop() -> None:
    """16x16 -> 14 -> 7 -> 5 -> 2 (fc on 2x2x8); on 32x32: 30 -> 15 -> 13 -> 6 -> 5x5 windows, stride 2*2 = 4."""
    m = _model(VGG_LIKE_VALID)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    s = score_maps(m, image)
    assert s.scores.shape == (5, 5, 5) and s.stride == 4 and s.window == (16, 16)
    x = image.astype(np.float64)  # no preprocessing recorded: raw pixels
    for a in range(5):
        for b in range(5):
            crop = x[None, 4 * a : 4 * a + 16, 4 * b : 4 * b + 16]
            assert np.allclose(s.scores[a, b], m.network.forward(crop, train=False)[0], rtol=1e-10, atol=1e-8), (a, b)
    assert s.to_json()["classes"][2][3] == m.classes[int(s.scores[2, 3].argmax())]


def test_padded_network_gives_the_same_grid() -> None:
    """With padding 1: 32 -> 32 -> 16 -> 16 -> 8, fc as a 4x4 convolution: 5x5 windows at stride 4 as well; on
    16x16 the single cell is the network's output. Inner crops differ (the map pads only the image's border)."""
    m = _model(VGG_LIKE)
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    s = score_maps(m, image)
    assert s.scores.shape == (5, 5, 5) and s.stride == 4
    one = score_maps(m, image[:16, :16])
    assert one.scores.shape == (1, 1, 5)
    assert np.allclose(one.scores[0, 0], m.network.forward(image[None, :16, :16].astype(np.float64), train=False)[0])
    inner = m.network.forward(image[None, 8:24, 8:24].astype(np.float64), train=False)[0]
    assert not np.allclose(s.scores[2, 2], inner)


def test_json_and_errors() -> None:
    m = _model(VGG_LIKE_VALID)
    d = score_map_json(m, np.zeros((20, 24, 3), np.uint8))
    assert d["map_shape"] == [2, 3] and d["stride"] == 4 and d["window"] == [16, 16]
    assert all(c in m.classes for row in d["classes"] for c in row)
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(MismatchError, match="smaller than the model's 16x16"):
        score_maps(m, np.zeros((12, 40, 3), np.uint8))
    with pytest.raises(MismatchError, match="3-channel"):
        score_maps(m, np.zeros((20, 20, 1), np.uint8))
    with pytest.raises(MismatchError, match="input shape"):
        score_maps(ModelFile(m.network, None), np.zeros((20, 20, 3), np.uint8))


def test_picture(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    scores = score_map_picture(_model(VGG_LIKE), np.zeros((32, 40, 3), np.uint8), out=tmp_path / "m.png")
    assert scores.shape == (5, 7, 5)
    w, h = png_size(tmp_path / "m.png")
    assert w > 400 and h > 400


def _mosaic(images: np.ndarray) -> np.ndarray:
    out = np.zeros((56, 56, 1), np.uint8)
    for k in range(4):
        r, c = divmod(k, 2)
        out[28 * r : 28 * r + 28, 28 * c : 28 * c + 28] = images[k]
    return out


def test_trained_base_on_a_mosaic_of_four_digits(trained, tmp_path) -> None:
    mf = load_model(trained.run / "model.npz")
    x = preprocess(mf, trained.test_images[:500])
    pred = mf.network.forward(x, train=False).reshape(500, 10).argmax(axis=1)
    right = pred == trained.test_labels[:500]
    picks: list[int] = []
    for i in np.flatnonzero(right):  # four correctly classified digits of four classes
        if trained.test_labels[i] not in trained.test_labels[picks]:
            picks.append(int(i))
        if len(picks) == 4:
            break
    assert len(picks) == 4
    mosaic = _mosaic(trained.test_images[picks])
    s = score_maps(mf, mosaic)
    assert s.scores.shape == (8, 8, 10) and s.stride == 4  # (56 - 28) / 4 + 1 windows
    corners = [(0, 0), (0, 7), (7, 0), (7, 7)]  # windows at 0 and 7 * 4 = 28: exactly the four digits
    for (a, b), i in zip(corners, picks):
        # the mean image is repeated over the mosaic, so each corner window is preprocessed as in training
        alone = mf.network.forward(x[i : i + 1], train=False).reshape(10)
        assert np.allclose(s.scores[a, b], alone, rtol=1e-4, atol=1e-3)
        assert mf.classes[int(s.predicted[a, b])] == str(int(trained.test_labels[i]))
    # the first four test digits, whatever the model makes of them: the corners are the digits' own predictions
    first = score_maps(mf, _mosaic(trained.test_images[:4]))
    assert [int(first.predicted[a, b]) for a, b in corners] == pred[:4].tolist()


def test_score_map_command(trained, tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "mosaic.png"
    Image.fromarray(_mosaic(trained.test_images[:4])[:, :, 0]).save(path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert score_map_command(argparse.Namespace(model_file=str(trained.run), images=[str(path)], json=False)) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == f"score map of {path}: 8x8 windows of 28x28 at stride 4, best class per window:"
    assert len(lines) == 9 and all(len(line.split()) == 8 for line in lines[1:])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        score_map_command(argparse.Namespace(model_file=str(trained.run / "model.npz"), images=[str(path), str(path)], json=True))
    data = json.loads(out.getvalue())
    assert len(data) == 2 and data[0]["file"] == str(path) and data[0]["map_shape"] == [8, 8]
    assert [row.split() for row in lines[1:]] == data[0]["classes"]
    with pytest.raises(MismatchError, match="--size 56x56: a score map reads each image at its own size"):
        score_map_command(argparse.Namespace(model_file=str(trained.run), images=[str(path)], json=False, size="56x56"))
    with pytest.raises(MismatchError, match="--color rgb would not fit"):
        score_map_command(argparse.Namespace(model_file=str(trained.run), images=[str(path)], json=False, color="rgb"))
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        score_map_command(argparse.Namespace(model_file=str(trained.run), images=[str(path)], json=False,
                                             out=str(tmp_path / "map.png")))
    assert out.getvalue().splitlines()[-1] == f"wrote {tmp_path / 'map.png'}"
    assert png_size(tmp_path / "map.png")[0] > 400
