"""The onnxruntime engine (CPU, inference only): the network cnnkit times, with its very weights, written to
ONNX by :func:`cnnkit.onnx.export` and run by an ``InferenceSession``.

The model is built exactly as the cnnkit engine builds it (the network string, seed 0, He initialisation), so
the weights and the input are the same numbers; the exported graph takes NCHW float32 input. The session is
pinned like the other engines: ``intra_op_num_threads`` = the thread count, ``inter_op_num_threads`` = 1,
sequential execution, all graph optimisations on. Without onnxruntime or onnx installed the engine is
skipped (:meth:`OrtEngine.available`).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from cnnkit.bench.engines.base import ConvCalls, Engine
from cnnkit.bench.workloads import ConvLayer, Network, Shape


def have_onnxruntime() -> bool:
    """Whether onnxruntime and onnx (for the exporter) are both installed (found, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def ort_session(net: Any, input_shape: Shape, threads: int) -> Any:
    """An onnxruntime CPU session of cnnkit network ``net`` (exported through a temporary file), pinned to ``threads``."""
    import onnxruntime as ort

    import cnnkit.onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        cnnkit.onnx.export(net, input_shape, path)
        return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_inference(spec: str, input_shape: Shape, batch: int, threads: int) -> Callable[[], None]:
    """One inference call of a network string on onnxruntime: the same weights and input as ``cnnkit_step``'s."""
    from cnnkit.models import BuildOptions, build

    rng = np.random.default_rng(0)
    net = build(spec, input_shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    sess = ort_session(net, input_shape, threads)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}

    def infer() -> None:
        sess.run(None, feed)

    return infer


class OrtEngine(Engine):
    """onnxruntime on the CPU, inference only; skipped where onnxruntime or onnx is not installed."""

    name: ClassVar[str] = "ort"
    layouts: ClassVar[tuple[str, ...]] = ("nchw",)
    trains: ClassVar[bool] = False

    def __init__(self) -> None:
        self.threads = os.cpu_count() or 1

    def available(self) -> bool:
        return have_onnxruntime()

    def load(self) -> None:
        import importlib

        for module in ("onnx", "onnxruntime", "cnnkit.onnx"):
            importlib.import_module(module)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"onnxruntime": version("onnxruntime"), "onnx": version("onnx")}

    def set_threads(self, threads: int) -> None:
        self.threads = threads  # the sessions built from now on take it

    def train_step(self, network: Network, layout: str) -> Callable[[], None]:
        raise ValueError("onnxruntime runs inference only")

    def inference(self, network: Network, layout: str) -> Callable[[], None]:
        return ort_inference(network.spec, network.input_shape, network.batch, self.threads)

    def conv_calls(self, layer: ConvLayer, layout: str) -> ConvCalls:
        """The convolution alone as a one-layer network (its forward only; weights drawn by the build)."""
        from cnnkit.models import BuildOptions, build

        self.check_layout(layout)
        rng = np.random.default_rng(0)
        x, _, _ = layer.inputs(rng)
        net = build(layer.text, layer.in_shape, rng, BuildOptions(init="he"))
        sess = ort_session(net, layer.in_shape, self.threads)
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}

        def forward() -> None:
            sess.run(None, feed)

        return ConvCalls(forward, None)
