"""Classic kernels' properties (cnnkit.kernels) and ``cnnkit filter``: blurs keep a constant image and sum to
1, sharpening leaves a constant image alone, Sobel finds edges of its orientation only, bias + ReLU keeps one
polarity, the Gaussian is separable; the command writes a scaled PNG that says how it was scaled."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import kernels
from cnnkit.inspect import filter_image
from cnnkit.inspect.filtering import to_pixels
from tests.inspect.conftest import run_command

BLURS = ["box", "box:2", "box:5", "gaussian", "gaussian:3", "gaussian:7:1.5", "gaussian:4:0.8"]


@pytest.mark.parametrize("name", BLURS)
def test_blurs_sum_to_one_and_keep_a_constant_image(name: str) -> None:
    k = kernels.get(name)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert (k >= 0).all()
    flat = np.full((9, 11, 3), 37.5)
    for border in ("replicate", "zero"):
        out = kernels.apply(k, flat, border=border)
        assert out.shape == flat.shape
        r = k.shape[0]
        inner = out[r : -r or None, r : -r or None]
        assert np.allclose(inner, 37.5)  # away from a zero border every window sees the constant
        if border == "replicate":
            assert np.allclose(out, 37.5) and out.mean() == pytest.approx(37.5)


def test_blur_keeps_the_mean_of_a_periodic_image() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((12, 12))
    tiled = np.tile(image, (3, 3))  # the middle tile sees its periodic neighbours: no border effect
    out = kernels.apply(kernels.get("gaussian:5:1"), tiled)[12:24, 12:24]
    assert out.mean() == pytest.approx(image.mean(), abs=1e-12)
    assert out.std() < image.std()  # and smooths


@pytest.mark.parametrize("amount", [0.5, 1.0, 2.0])
def test_sharpen_leaves_a_constant_image_unchanged(amount: float) -> None:
    k = kernels.sharpen(amount)
    assert k.sum() == pytest.approx(1.0)
    flat = np.full((6, 7), 200.0)
    assert np.allclose(kernels.apply(k, flat), flat)
    ramp = np.add.outer(np.arange(6.0), 2 * np.arange(7.0))  # a linear image: the Laplacian is 0 inside
    assert np.allclose(kernels.apply(k, ramp)[1:-1, 1:-1], ramp[1:-1, 1:-1])
    edge = np.zeros((5, 8))
    edge[:, 4:] = 1
    assert kernels.apply(k, edge)[2, 4] > 1 and kernels.apply(k, edge)[2, 3] < 0  # overshoot on both sides


@pytest.mark.parametrize("family", ["sobel", "prewitt"])
def test_edge_kernels_respond_to_their_orientation_only(family: str) -> None:
    vertical_edge = np.zeros((8, 10))
    vertical_edge[:, 5:] = 100.0  # dark left, bright right: a change along x
    horizontal_edge = vertical_edge.T.copy()  # a change along y
    kx, ky = kernels.get(f"{family}-x"), kernels.get(f"{family}-y")
    assert kx.sum() == 0 and ky.sum() == 0
    rx = kernels.apply(kx, vertical_edge)
    assert (rx[:, 4:6] > 0).all()  # fires on the two columns around the step
    assert np.allclose(rx[:, :4], 0) and np.allclose(rx[:, 6:], 0)  # ~0 on the flat parts
    assert np.allclose(kernels.apply(ky, vertical_edge), 0)  # the other orientation sees nothing
    ry = kernels.apply(ky, horizontal_edge)
    assert (ry[4:6] > 0).all() and np.allclose(ry[:4], 0) and np.allclose(ry[6:], 0)
    assert np.allclose(kernels.apply(kx, horizontal_edge), 0)
    assert np.allclose(kernels.apply(kx, np.full((5, 5), 9.0)), 0)


def test_bias_and_relu_keep_one_polarity() -> None:
    bar = np.zeros((6, 12))
    bar[:, 4:8] = 50.0  # a rising edge at column 4, a falling one at column 8
    raw = kernels.apply(kernels.sobel("x"), bar)
    assert raw.max() > 0 and raw.min() < 0  # both polarities
    kept = kernels.apply(kernels.sobel("x"), bar, bias=-10.0, relu=True)
    assert (kept >= 0).all()
    assert (kept[:, 3:5] > 0).all()  # the rising edge stays
    assert np.allclose(kept[:, 7:9], 0)  # the falling edge is gone
    assert np.allclose(kept, np.maximum(raw - 10.0, 0))
    weak = np.zeros((6, 12))
    weak[:, 6:] = 1.0  # a faint rising edge (response 4) below the threshold
    assert np.allclose(kernels.apply(kernels.sobel("x"), weak, bias=-10.0, relu=True), 0)


@pytest.mark.parametrize(("size", "sigma"), [(5, 1.0), (7, 1.5), (4, 0.7), (9, None)])
def test_gaussian_is_separable(size: int, sigma: float | None) -> None:
    g = kernels.gaussian_blur(size, sigma)
    s = np.linalg.svd(g, compute_uv=False)
    assert s[1] < 1e-12 * s[0]  # rank one
    row = g.sum(axis=0, keepdims=True)  # the 1-D kernel (1, k); the column one is its transpose
    assert np.allclose(g, row.T @ row)
    image = np.random.default_rng(1).random((13, 15))
    for border in ("replicate", "zero"):
        two_d = kernels.apply(g, image, border=border)
        twice = kernels.apply(row.T, kernels.apply(row, image, border=border), border=border)
        assert np.allclose(two_d, twice, atol=1e-12)
    assert np.allclose(g, g.T) and np.allclose(g, g[::-1, ::-1])


def test_to_pixels_scaling() -> None:
    pixels, lo, hi = to_pixels(np.array([[0.0, 1.0], [2.0, 4.0]]))
    assert (lo, hi) == (0.0, 4.0) and pixels.tolist() == [[0, 64], [128, 255]]
    pixels, lo, hi = to_pixels(np.array([-4.0, 0.0, 2.0]))
    assert (lo, hi) == (-4.0, 4.0) and pixels.tolist() == [0, 128, 191]
    assert to_pixels(np.zeros((2, 2)))[0].tolist() == [[0, 0], [0, 0]]


def test_filter_command(tmp_path) -> None:
    Image = pytest.importorskip("PIL.Image")

    image = np.zeros((20, 30), np.uint8)
    image[:, 10:20] = 200  # a bright bar: rising and falling edges
    Image.fromarray(image).save(tmp_path / "bar.png")
    out = tmp_path / "edges.png"
    r = run_command(["filter", "sobel-x", tmp_path / "bar.png", "-o", out])
    assert r.code == 0 and r.out.count("\n") == 1
    assert "lo = -800, hi = 800 (0 is mid grey 127.5)" in r.out
    with Image.open(out) as im:
        assert im.size == (30, 20) and im.mode == "L"
        assert "lo = -800, hi = 800" in im.text["cnnkit-scaling"] and im.text["cnnkit-kernel"] == "sobel-x"
        pixels = np.asarray(im)
    assert pixels[5, 0] == 128 and pixels[5, 9] == 255 and pixels[5, 19] == 0
    r = run_command(["filter", "sobel-x", tmp_path / "bar.png", "-o", out, "--bias", "-100", "--relu", "--border", "zero"])
    assert "(0 is black)" in r.out
    with Image.open(out) as im:
        pixels = np.asarray(im)
    assert pixels[5, 9] == 255 and pixels[5, 19] == 0 and pixels[5, 0] == 0
    assert pixels[0, 0] == 0  # zero border: no response to the black edge either
    r = run_command(["filter", "gaussian:7:1.5", tmp_path / "bar.png", "-o", out, "--color", "rgb"])
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (30, 20)
    f = filter_image("box:3", image)
    assert f.response.shape == (20, 30) and f.hi == pytest.approx(200.0)


def test_filter_command_usage_errors(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        run_command(["filter", "emboss", "x.png", "-o", tmp_path / "y.png"])
    assert info.value.code == 2 and "unknown kernel 'emboss'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_command(["filter", "sobel-x", "x.png", "-o", tmp_path / "y.png", "--bias", "nan"])
    with pytest.raises(FileNotFoundError):
        run_command(["filter", "sobel-x", tmp_path / "missing.png", "-o", tmp_path / "y.png"])
