"""The engine interface: what ``cnnkit bench`` needs from a framework it times.

An engine builds callables (a training step, an inference call, one convolution's forward and
forward-plus-backward) from the workloads' data; it never times them itself, so the same engine serves the
in-process runner and a child process (:mod:`cnnkit.bench.child`). An engine may run in several memory
layouts (PyTorch: NCHW and ``channels_last``); each layout is its own column of the report. An engine that
only runs inference (onnxruntime) says so with ``trains = False``: it has no column in training rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from cnnkit.bench.workloads import ConvLayer, Network


class ConvCalls(NamedTuple):
    """One convolution alone: its forward, and its forward followed by its backward (dW, db and, unless it is
    the network's first layer, dX). Backward time is the second's time less the first's. An inference-only
    engine has no ``forward_backward`` (None)."""

    forward: Callable[[], Any]
    forward_backward: Callable[[], Any] | None


class Engine(ABC):
    """A framework under test. ``name`` keys it in :data:`cnnkit.bench.engines.ENGINES` and in child jobs."""

    name: ClassVar[str]
    layouts: ClassVar[tuple[str, ...]]
    trains: ClassVar[bool] = True

    def available(self) -> bool:
        """Whether the framework is installed."""
        return True

    def load(self) -> None:  # noqa: B027 - an optional hook: a no-op unless the engine overrides it
        """Import the framework, so that a memory baseline taken afterwards leaves the import out."""

    def versions(self) -> dict[str, str]:
        """Version strings for the results' ``info`` (beyond NumPy's, which is always there)."""
        return {}

    def set_threads(self, threads: int) -> None:  # noqa: B027 - an optional hook: a no-op unless the engine overrides it
        """Pin the framework's own thread pool (NumPy's BLAS is pinned by the harness for everyone)."""

    def check_layout(self, layout: str) -> None:
        if layout not in self.layouts:
            raise ValueError(f"engine {self.name!r} has no layout {layout!r}; expected one of {', '.join(self.layouts)}")

    def step(self, network: Network, layout: str) -> Callable[[], None]:
        """A training step or an inference call, as ``network.train`` says."""
        self.check_layout(layout)
        if network.train and not self.trains:
            raise ValueError(f"engine {self.name!r} runs inference only; {network.name!r} is a training step")
        return self.train_step(network, layout) if network.train else self.inference(network, layout)

    @abstractmethod
    def train_step(self, network: Network, layout: str) -> Callable[[], None]:
        """One training step (forward, softmax cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4)."""

    @abstractmethod
    def inference(self, network: Network, layout: str) -> Callable[[], None]:
        """One inference forward."""

    @abstractmethod
    def conv_calls(self, layer: ConvLayer, layout: str) -> ConvCalls:
        """The calls that time one convolution alone, on :meth:`ConvLayer.inputs` drawn from seed 0."""
