"""The cnnkit engine: networks built from their network strings, convolutions from :mod:`cnnkit.ops.conv`."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from cnnkit.bench.engines.base import ConvCalls, Engine
from cnnkit.bench.workloads import ConvLayer, Network, Shape


def cnnkit_step(spec: str, input_shape: Shape, batch: int, train: bool) -> Callable[[], None]:
    """One training step (forward, loss, backward, SGD update) or one inference forward of a network string."""
    from cnnkit.models import BuildOptions, build
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    rng = np.random.default_rng(0)
    net = build(spec, input_shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)
    if not train:

        def infer() -> None:
            net.forward(x, train=False)

        return infer
    loss = SoftmaxCrossEntropy()
    opt = SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss.forward(net.forward(x, train=True), labels)
        net.backward(loss.backward())
        opt.step()

    return step


def cnnkit_conv_calls(layer: ConvLayer) -> ConvCalls:
    """One convolution alone through ``conv2d_forward`` / ``conv2d_backward`` (NHWC)."""
    from cnnkit.ops.conv import conv2d_backward, conv2d_forward

    rng = np.random.default_rng(0)
    x, w, b = layer.inputs(rng)
    a = layer.args
    y, _ = conv2d_forward(x, w, b, a["stride"], a["padding"], a["dilation"])
    dy = rng.standard_normal(y.shape, dtype=np.float32)

    def forward() -> object:
        return conv2d_forward(x, w, b, a["stride"], a["padding"], a["dilation"])

    def forward_backward() -> object:
        return conv2d_backward(dy, conv2d_forward(x, w, b, a["stride"], a["padding"], a["dilation"])[1], need_dx=not layer.first)

    return ConvCalls(forward, forward_backward)


class CnnkitEngine(Engine):
    """cnnkit itself, in its one layout (NHWC); its BLAS threads are NumPy's, pinned by the harness, and its
    compiled kernels' are numba's."""

    name: ClassVar[str] = "cnnkit"
    layouts: ClassVar[tuple[str, ...]] = ("nhwc",)

    def set_threads(self, threads: int) -> None:
        """numba's pool (cnnkit's compiled kernels), where numba is installed; BLAS is pinned by the harness."""
        import importlib.util

        if importlib.util.find_spec("numba") is None:
            return
        import numba

        from cnnkit import jit

        # cnnkit starts numba's pool itself, with OpenMP's waiting threads asleep (jit._start_pool): started here
        # by set_num_threads instead, GNU OpenMP's threads would spin between loops and take the cores from
        # OpenBLAS's (measured: BASE training at 2 threads fell from ~3,000 to ~1,300 img/s)
        jit._start_pool()
        numba.set_num_threads(max(1, min(threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", threads)))))

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"numba": version("numba")}
        except PackageNotFoundError:
            return {}

    def load(self) -> None:
        import importlib

        for module in ("cnnkit.models", "cnnkit.nn", "cnnkit.ops.conv", "cnnkit.optim"):
            importlib.import_module(module)

    def train_step(self, network: Network, layout: str) -> Callable[[], None]:
        return cnnkit_step(network.spec, network.input_shape, network.batch, True)

    def inference(self, network: Network, layout: str) -> Callable[[], None]:
        return cnnkit_step(network.spec, network.input_shape, network.batch, False)

    def conv_calls(self, layer: ConvLayer, layout: str) -> ConvCalls:
        self.check_layout(layout)
        return cnnkit_conv_calls(layer)
