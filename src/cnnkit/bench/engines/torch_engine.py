"""The PyTorch (CPU) engine, in NCHW and ``channels_last``: the network translator (table-driven, from the
token table's PyTorch entries), training and inference steps, and one convolution alone."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from cnnkit.bench.engines.base import ConvCalls, Engine
from cnnkit.bench.workloads import ConvLayer, Network, Shape


def have_torch() -> bool:
    """Whether PyTorch is installed (found, not imported: the parent of ``cnnkit bench`` never loads it)."""
    return importlib.util.find_spec("torch") is not None


def torch_model(spec: str, input_shape: Shape) -> Any:
    """The same network string as a torch.nn.Sequential (NCHW), from the token table's PyTorch entries."""
    import torch.nn as tnn

    from cnnkit.models import infer_shapes, parse
    from cnnkit.models.tokens import entry

    tokens = parse(spec)
    shapes = infer_shapes(tokens, input_shape)
    layers: list[Any] = []
    prev: tuple[int, ...] = tuple(input_shape)
    for t, shape in zip(tokens, shapes):
        layers += entry(t.kind).torch(t.args, prev)
        prev = shape
    layers.append(tnn.Flatten())
    return tnn.Sequential(*layers)


def torch_step(spec: str, input_shape: Shape, batch: int, train: bool, channels_last: bool) -> Callable[[], None]:
    """One training step (SGD with momentum and weight decay, as cnnkit's) or one inference forward."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch_model(spec, input_shape)
    h, w, c = input_shape
    x = torch.randn(batch, c, h, w)
    labels = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if not train:
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x)

        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        opt.step()

    return step


def torch_conv_calls(x: np.ndarray, w: np.ndarray, b: np.ndarray, a: dict[str, Any], channels_last: bool, first: bool) -> ConvCalls:
    """One convolution alone through ``F.conv2d`` and ``torch.autograd.grad``, on cnnkit's NHWC arrays."""
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xt = torch.tensor(x.transpose(0, 3, 1, 2)).contiguous(memory_format=fmt).requires_grad_(not first)
    wt = torch.tensor(w.transpose(3, 2, 0, 1)).contiguous(memory_format=fmt).requires_grad_(True)
    bt = torch.tensor(b).requires_grad_(True)
    pad = a["padding"]

    def fwd() -> Any:
        with torch.no_grad():
            return F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])

    y = F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])
    dy = torch.randn_like(y)
    inputs = [wt, bt] + ([] if first else [xt])

    def both() -> None:
        out = F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])
        torch.autograd.grad(out, inputs, dy)

    return ConvCalls(fwd, both)


class TorchEngine(Engine):
    """PyTorch on the CPU; skipped where it is not installed."""

    name: ClassVar[str] = "torch"
    layouts: ClassVar[tuple[str, ...]] = ("nchw", "channels_last")

    def available(self) -> bool:
        return have_torch()

    def load(self) -> None:
        importlib.import_module("torch")

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": version("torch")}

    def set_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already set, or parallel work already started in this process
            torch.set_num_interop_threads(1)  # one operator at a time, as the other engines

    def train_step(self, network: Network, layout: str) -> Callable[[], None]:
        return torch_step(network.spec, network.input_shape, network.batch, True, layout == "channels_last")

    def inference(self, network: Network, layout: str) -> Callable[[], None]:
        return torch_step(network.spec, network.input_shape, network.batch, False, layout == "channels_last")

    def conv_calls(self, layer: ConvLayer, layout: str) -> ConvCalls:
        self.check_layout(layout)
        x, w, b = layer.inputs(np.random.default_rng(0))
        return torch_conv_calls(x, w, b, layer.args, layout == "channels_last", layer.first)
