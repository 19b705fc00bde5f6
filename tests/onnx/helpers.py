"""What the ONNX tests share: onnxruntime sessions, layout changes and the float32 tolerance.

Tolerance: cnnkit's float32 output against onnxruntime's (and torch's) with ``rtol=1e-4`` and
``atol=1e-5 * max(1, max|expected|)``: an absolute error of 1e-5 relative to the output's scale (deep
networks with random weights give outputs in the hundreds, whose float32 rounding alone is ~1e-5).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-4
ATOL = 1e-5

F = TypeVar("F", bound=Callable[..., Any])


def slow(test: F) -> F:
    """Mark a test slow (over 10 s): it runs only with CNNKIT_SLOW_TESTS=1, so that the default run stays fast."""
    skip = pytest.mark.skipif(not os.environ.get("CNNKIT_SLOW_TESTS"), reason="slow: set CNNKIT_SLOW_TESTS=1 to run it")
    return pytest.mark.slow(skip(test))  # type: ignore[no-any-return]


def nchw(x: np.ndarray) -> np.ndarray:
    """An NHWC batch as ONNX's NCHW (other ranks unchanged)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def nhwc(y: np.ndarray) -> np.ndarray:
    """An NCHW batch as cnnkit's NHWC (other ranks unchanged)."""
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1)) if y.ndim == 4 else y


def run_ort(model: Any, x: np.ndarray) -> np.ndarray:
    """The ONNX model (a ModelProto or a path) on ``x`` (already in the model's layout and dtype)."""
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x})[0])


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str = "") -> float:
    """Float32 agreement (see the module docstring); returns the largest absolute difference."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale, err_msg=what)
    return max_diff(actual, expected)


def randomize_batch_norms(net: Any, rng: np.random.Generator) -> None:
    """Running statistics, scales and shifts away from their initial 0/1, so that exporting them is tested."""
    from cnnkit.nn import BatchNorm1d, BatchNorm2d

    for m in net.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            c = m.num_features
            if "running_mean" in m.buffers:
                m.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
                m.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
            if "weight" in m.params:
                m.params["weight"][...] = rng.uniform(0.5, 1.5, c)
                m.params["bias"][...] = rng.normal(0, 0.2, c)


def export_and_compare(net: Any, shape: tuple[int, ...], path: Path, x: np.ndarray, **kw: Any) -> tuple[Any, np.ndarray, float]:
    """Export ``net``, check the model, run it in onnxruntime and compare with cnnkit's evaluation output.

    Returns (the ModelProto, cnnkit's output, the largest absolute difference).
    """
    import cnnkit.onnx

    model = cnnkit.onnx.export(net, shape, path, **kw)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    expected = np.asarray(net.forward(x, train=False))
    got = nhwc(run_ort(path, nchw(x)))
    return model, expected, assert_close(got, expected, "onnxruntime vs cnnkit")
