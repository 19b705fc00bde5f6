"""Nearest-neighbour resizing (ONNX Resize, mode="nearest"): every coordinate_transformation_mode and
nearest_mode against onnx.reference (tf_half_pixel_for_nn, dropped from the reference, against onnxruntime's
Resize-11 and by hand), PyTorch's interpolate(mode="nearest"/"nearest-exact") as oracle for forward and
backward, gradient checks of the scatter-add backward."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.pool import (
    COORDINATE_TRANSFORMATION_MODES,
    NEAREST_MODES,
    nearest_source_indices,
    resize_nearest2d_backward,
    resize_nearest2d_forward,
    upsample_nearest2d_backward,
    upsample_nearest2d_forward,
)
from tests.onnx_oracle import run_node, run_onnxruntime, to_nchw, to_nhwc
from tests.oracle import assert_close, nchw, nhwc, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

SIZES = [(7, 8), (3, 3), (1, 5), (9, 2), (4, 5)]  # from a 4 x 5 input: up, down, to one row, mixed, identity
SCALES = [(2.0, 3.0), (0.5, 0.75), (1.5, 0.625), (1.75, 1.2)]  # 1.2 is not exact in float32: rounded as ONNX stores it


def f32(v: float) -> float:
    """The scale as an ONNX model holds it (float32)."""
    return float(np.float32(v))


def onnx_resize(x: np.ndarray, mode: str, nearest: str, size=None, scale=None, opset: int = 19, runner=run_node) -> np.ndarray:
    empty = np.zeros(0, np.float32)  # Resize-11 needs roi and scales present, if empty
    inputs: dict[str, np.ndarray | None] = {"x": to_nchw(x), "roi": empty if opset < 13 else None}
    if size is not None:
        inputs["scales"] = empty if opset < 13 else None
        inputs["sizes"] = np.array([x.shape[0], x.shape[3], *size], np.int64)
    else:
        inputs["scales"] = np.array([1.0, 1.0, *scale], np.float32)
    (y,) = runner("Resize", inputs, opset=opset, mode="nearest", coordinate_transformation_mode=mode, nearest_mode=nearest)
    return to_nhwc(y)


@pytest.mark.parametrize("mode", [m for m in COORDINATE_TRANSFORMATION_MODES if m != "tf_half_pixel_for_nn"])
def test_matches_onnx_reference(mode: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 3))
    for nearest in NEAREST_MODES:
        for size in SIZES:
            y, _ = resize_nearest2d_forward(x, size=size, coordinate_transformation_mode=mode, nearest_mode=nearest)
            np.testing.assert_array_equal(y, onnx_resize(x, mode, nearest, size=size), err_msg=f"{mode} {nearest} size={size}")
        for scale in SCALES:
            y, _ = resize_nearest2d_forward(
                x, scale_factor=(f32(scale[0]), f32(scale[1])), coordinate_transformation_mode=mode, nearest_mode=nearest
            )
            np.testing.assert_array_equal(y, onnx_resize(x, mode, nearest, scale=scale), err_msg=f"{mode} {nearest} scale={scale}")


def test_tf_half_pixel_for_nn() -> None:
    """Resize-11's x = (y + 0.5)/scale (the reference implementation dropped the mode with Resize-13)."""
    x = np.arange(1, 6, dtype=np.float64).reshape(1, 1, 5, 1)
    y, _ = resize_nearest2d_forward(x, size=(1, 3), coordinate_transformation_mode="tf_half_pixel_for_nn")
    np.testing.assert_array_equal(y.ravel(), [2, 3, 5])  # x = 0.83, 2.5, 4.17: halves round down
    y, _ = resize_nearest2d_forward(x, size=(1, 8), coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    np.testing.assert_array_equal(y.ravel(), [1, 1, 2, 3, 3, 4, 5, 5])  # x = 0.31, 0.94, 1.56, ...
    xs = np.random.default_rng(1).standard_normal((1, 4, 5, 2)).astype(np.float32)
    for nearest, size in itertools.product(NEAREST_MODES, [(7, 8), (3, 3), (8, 2)]):
        y, _ = resize_nearest2d_forward(xs, size=size, coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode=nearest)
        ref = onnx_resize(xs, "tf_half_pixel_for_nn", nearest, size=size, opset=11, runner=run_onnxruntime)
        np.testing.assert_array_equal(y, ref, err_msg=f"{nearest} {size}")


def test_onnx_worked_examples() -> None:
    """Expected outputs written in onnx/backend/test/case/node/resize.py."""
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    y, _ = resize_nearest2d_forward(x, size=8, coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_ceil")
    np.testing.assert_array_equal(y[0, :2, :, 0], [[1, 2, 2, 3, 3, 4, 4, 4], [5, 6, 6, 7, 7, 8, 8, 8]])
    y, _ = resize_nearest2d_forward(x, size=8, nearest_mode="ceil")  # test_resize_upsample_sizes_nearest_ceil_half_pixel
    np.testing.assert_array_equal(y[0, 0, :, 0], [1, 2, 2, 3, 3, 4, 4, 4])
    x2 = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)
    y, _ = resize_nearest2d_forward(x2, scale_factor=(2.0, 3.0))  # test_resize_upsample_scales_nearest
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4], [3, 3, 3, 4, 4, 4]])
    y, _ = resize_nearest2d_forward(x2, size=(7, 8))  # test_resize_upsample_sizes_nearest
    np.testing.assert_array_equal(y[0, :, 0, 0], [1, 1, 1, 1, 3, 3, 3])
    np.testing.assert_array_equal(y[0, 0, :, 0], [1, 1, 1, 1, 2, 2, 2, 2])


def test_integer_factors_equal_upsampling() -> None:
    """At integer factors PyTorch's nearest (asymmetric, floor) and ONNX's default (half_pixel, round_prefer_floor)
    both copy each pixel into a block: the same output and gradient as upsample_nearest2d."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 2))
    for scale in [(2, 3), (1, 4), (3, 1)]:
        ref, rc = upsample_nearest2d_forward(x, scale)
        dy = rng.standard_normal(ref.shape)
        for mode, nearest in [("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil")]:
            y, c = resize_nearest2d_forward(x, scale_factor=scale, coordinate_transformation_mode=mode, nearest_mode=nearest)
            np.testing.assert_array_equal(y, ref)
            np.testing.assert_allclose(resize_nearest2d_backward(dy, c), upsample_nearest2d_backward(dy, rc), rtol=1e-12)


@pytest.mark.parametrize("mode", COORDINATE_TRANSFORMATION_MODES)
def test_gradcheck(mode: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 2))
    for target in [dict(size=(7, 3)), dict(scale_factor=(0.75, 1.6)), dict(size=(4, 5))]:
        y, cache = resize_nearest2d_forward(x, coordinate_transformation_mode=mode, nearest_mode="round_prefer_ceil", **target)
        r = rng.standard_normal(y.shape)
        dx = resize_nearest2d_backward(r, cache)

        def f(target=target, r=r) -> float:
            y = resize_nearest2d_forward(x, coordinate_transformation_mode=mode, nearest_mode="round_prefer_ceil", **target)[0]
            return float(np.sum(r * y))

        assert max_rel_error(dx, numerical_grad(f, x)) < 1e-8
        # the scatter-add: each input pixel sums dy over the outputs that copied it
        expected = np.zeros_like(x)
        np.add.at(expected, (slice(None), cache.rows[:, None], cache.cols[None, :]), r)
        np.testing.assert_allclose(dx, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "torch_mode,mode,nearest", [("nearest", "asymmetric", "floor"), ("nearest-exact", "half_pixel", "round_prefer_ceil")]
)
def test_matches_torch_interpolate(torch_mode: str, mode: str, nearest: str) -> None:
    torch = require_torch()
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 7, 3))
    targets = [dict(size=s) for s in [(10, 14), (3, 4), (8, 11), (13, 5), (1, 1)]]
    targets += [dict(scale_factor=s) for s in [(2.0, 0.5), (1.5, 2.5), (0.75, 1.25)]]
    for target in targets:
        y, cache = resize_nearest2d_forward(x, coordinate_transformation_mode=mode, nearest_mode=nearest, **target)
        xt = nchw(x)
        yt = F.interpolate(xt, mode=torch_mode, **target)
        dy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        assert_close(y, nhwc(yt))
        assert_close(resize_nearest2d_backward(dy, cache), nhwc(xt.grad))


def test_source_indices_by_hand() -> None:
    # align_corners with one output pixel reads the first input pixel; pytorch_half_pixel reads x = -0.5 -> 0
    assert nearest_source_indices(5, 1, coordinate_transformation_mode="align_corners").tolist() == [0]
    assert nearest_source_indices(5, 1, coordinate_transformation_mode="pytorch_half_pixel").tolist() == [0]
    # half_pixel 5 -> 1: x = (0 + 0.5)*5 - 0.5 = 2
    assert nearest_source_indices(5, 1).tolist() == [2]
    # rounding of halves: asymmetric 2 -> 4 at scale 2 gives x = 0, 0.5, 1, 1.5
    assert nearest_source_indices(2, 4, 2.0, "asymmetric", "round_prefer_floor").tolist() == [0, 0, 1, 1]
    assert nearest_source_indices(2, 4, 2.0, "asymmetric", "round_prefer_ceil").tolist() == [0, 1, 1, 1]  # 1.5 -> 2, clipped
    assert nearest_source_indices(2, 4, 2.0, "asymmetric", "ceil").tolist() == [0, 1, 1, 1]


def test_errors() -> None:
    x = np.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="exactly one"):
        resize_nearest2d_forward(x)
    with pytest.raises(ValueError, match="exactly one"):
        resize_nearest2d_forward(x, size=2, scale_factor=2.0)
    with pytest.raises(ValueError, match="coordinate_transformation_mode"):
        resize_nearest2d_forward(x, size=2, coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(ValueError, match="nearest_mode"):
        resize_nearest2d_forward(x, size=2, nearest_mode="round")
    with pytest.raises(ShapeError, match="no output"):
        resize_nearest2d_forward(x, scale_factor=0.2)
    with pytest.raises(ValueError, match="> 0"):
        resize_nearest2d_forward(x, scale_factor=(1.0, -2.0))
    with pytest.raises(ShapeError, match="positive"):
        resize_nearest2d_forward(x, size=(0, 3))
    with pytest.raises(ShapeError, match=r"\(4, 4\)"):
        resize_nearest2d_forward(np.zeros((4, 4)), size=2)
    _, cache = resize_nearest2d_forward(x, size=(2, 3))
    with pytest.raises(ShapeError, match=r"dy has shape \(1, 3, 2, 1\)"):
        resize_nearest2d_backward(np.zeros((1, 3, 2, 1)), cache)
