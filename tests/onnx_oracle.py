"""ONNX's reference implementation (onnx.reference.ReferenceEvaluator) as a test-only oracle for single operators.

``run_node("MaxPool", {"x": x_nchw}, kernel_shape=[3, 3])`` builds a one-node model and returns its outputs.
Inputs are NCHW as ONNX defines them; :func:`to_nchw` / :func:`to_nhwc` move cnnkit's NHWC arrays there and back.
Tests that need it skip cleanly when ``onnx`` is not installed; onnxruntime, for the operators the reference
no longer implements (Resize-11's tf_half_pixel_for_nn), is optional the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

_TYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 11, np.dtype(np.int64): 7}  # TensorProto FLOAT, DOUBLE, INT64


def require_onnx():
    """Return the onnx module, or skip the test when it is not installed."""
    return pytest.importorskip("onnx")


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC (or any channels-last array of rank >= 3) -> channels at axis 1."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """Channels at axis 1 -> channels last."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def make_model(op: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1, opset: int = 19, **attrs: Any):
    """A one-node model of ``op`` whose inputs are named by ``inputs`` (None: an omitted optional input)."""
    onnx = require_onnx()
    helper = onnx.helper
    names = [name if value is not None else "" for name, value in inputs.items()]
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(name, _TYPES[np.asarray(value).dtype], list(np.asarray(value).shape))
        for name, value in inputs.items()
        if value is not None
    ]
    first = next(np.asarray(v) for v in inputs.values() if v is not None)
    graph_outputs = [helper.make_tensor_value_info(name, _TYPES[first.dtype], None) for name in outputs]  # the first input's type
    graph = helper.make_graph([node], "single", graph_inputs, graph_outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_node(op: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1, opset: int = 19, **attrs: Any) -> list[np.ndarray]:
    """Run one ONNX operator with onnx.reference.ReferenceEvaluator; returns its outputs."""
    require_onnx()
    from onnx.reference import ReferenceEvaluator

    model = make_model(op, inputs, n_outputs, opset, **attrs)
    feeds = {name: np.asarray(value) for name, value in inputs.items() if value is not None}
    return list(ReferenceEvaluator(model).run(None, feeds))


def run_onnxruntime(op: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1, opset: int = 19, **attrs: Any) -> list[np.ndarray]:
    """Run one ONNX operator with onnxruntime (skips when it is not installed)."""
    ort = pytest.importorskip("onnxruntime")
    model = make_model(op, inputs, n_outputs, opset, **attrs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {name: np.asarray(value) for name, value in inputs.items() if value is not None}
    return list(session.run(None, feeds))
