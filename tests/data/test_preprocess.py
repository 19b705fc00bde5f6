"""Preprocessor: statistics fitted on training data, transforms, and the plain-dict round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cnnkit.data import Preprocessor
from cnnkit.errors import ShapeError, StateError


@pytest.fixture
def images(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(9, 4, 5, 3), dtype=np.uint8)


def test_none_and_scale(images: np.ndarray) -> None:
    x = images.astype(np.float64)
    out = Preprocessor("none").transform(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, x)
    out = Preprocessor("scale").fit(images).transform(images)
    np.testing.assert_allclose(out, x / 255, rtol=1e-7)
    assert out.min() >= 0 and out.max() <= 1
    out64 = Preprocessor("scale").transform(images, dtype=np.float64)
    assert out64.dtype == np.float64 and np.array_equal(out64, x / 255)


def test_mean_image(images: np.ndarray, rng: np.random.Generator) -> None:
    pre = Preprocessor("mean_image").fit(images)
    mean = images.astype(np.float64).mean(axis=0)
    assert pre.mean is not None and pre.mean.dtype == np.float32 and pre.mean.shape == (4, 5, 3)
    np.testing.assert_allclose(pre.mean, mean, rtol=1e-6)
    test = rng.integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)  # new data gets the training mean
    np.testing.assert_allclose(pre.transform(test), test - mean, atol=1e-4)
    np.testing.assert_allclose(pre.transform(images).mean(axis=0), 0, atol=1e-4)
    with pytest.raises(ShapeError, match=r"fitted on images of shape \(N, 4, 5, 3\), got \(2, 5, 4, 3\)"):
        pre.transform(np.zeros((2, 5, 4, 3), np.uint8))


def test_per_channel(images: np.ndarray) -> None:
    pre = Preprocessor("per_channel").fit(images)
    x = images.astype(np.float64) / 255
    m, s = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    np.testing.assert_allclose(pre.mean, m, rtol=1e-6)
    np.testing.assert_allclose(pre.std, s, rtol=1e-6)
    out = pre.transform(images)
    np.testing.assert_allclose(out, (x - m) / s, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-5)
    with pytest.raises(ShapeError, match="fitted on 3 channels, got images of shape"):
        pre.transform(np.zeros((1, 4, 5, 1), np.uint8))


def test_per_channel_chunked_and_constant_channel(rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(4100, 2, 2, 2), dtype=np.uint8)  # more than one fit chunk
    images[..., 1] = 17  # a constant channel: std would be 0
    pre = Preprocessor("per_channel").fit(images)
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(pre.std[0], x[..., 0].std(), rtol=1e-6)
    assert pre.std[1] == 1.0
    np.testing.assert_allclose(pre.transform(images[:3])[..., 1], 0, atol=1e-7)


@pytest.mark.parametrize("mode", ["none", "scale", "mean_image", "per_channel"])
def test_round_trip_dict_and_npz(mode: str, images: np.ndarray) -> None:
    pre = Preprocessor(mode).fit(images)
    d = pre.to_dict()
    assert d["mode"] == mode
    assert all(isinstance(v, (str, np.ndarray)) for v in d.values())
    again = Preprocessor.from_dict(d)
    np.testing.assert_array_equal(again.transform(images), pre.transform(images))
    buf = io.BytesIO()  # through numpy's npz, loaded without pickle
    np.savez(buf, **d)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        loaded = Preprocessor.from_dict({k: z[k] for k in z.files})
    assert loaded.mode == mode
    np.testing.assert_array_equal(loaded.transform(images), pre.transform(images))


def test_errors(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        Preprocessor("zca")
    for mode in ("mean_image", "per_channel"):
        with pytest.raises(StateError, match="transform called before fit"):
            Preprocessor(mode).transform(images)
    with pytest.raises(ShapeError, match=r"expected images of shape \(N, H, W, C\), got shape \(4, 5, 3\)"):
        Preprocessor("mean_image").fit(images[0])
    with pytest.raises(ShapeError, match="need at least one image"):
        Preprocessor("mean_image").fit(images[:0])
    with pytest.raises(ValueError, match="missing 'mode'"):
        Preprocessor.from_dict({})
    with pytest.raises(ShapeError, match="per_channel needs 'mean' and 'std'"):
        Preprocessor.from_dict({"mode": "per_channel", "mean": np.zeros(3)})
