"""What ``cnnkit bench`` times, as data: the networks, the convolutions taken alone, the scaling curves'
points and the peak-memory step. Engines turn these into callables; the runner times them.

A :class:`Network` is plain data (a network string, an input shape, a batch size, training or inference)
and round-trips through JSON, so a child process can be told which work to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.models import infer_shapes, parse
from cnnkit.models.zoo import VGG16_SPEC, base_spec, sk_spec

Shape = tuple[int, int, int]

VGG_STACK = (
    "conv3x3x3x64p1,relu,conv3x3x64x64p1,relu,pool2,"
    "conv3x3x64x128p1,relu,conv3x3x128x128p1,relu,pool2,"
    "conv3x3x128x256p1,relu,conv3x3x256x256p1,relu,pool2,fc10"
)


@dataclass(frozen=True)
class Network:
    """One network step on random float32 data: a training step (forward, loss, backward, SGD update) or,
    with ``train=False``, one inference forward. ``name`` labels its row in the report."""

    name: str
    spec: str
    input_shape: Shape
    batch: int
    train: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "input_shape": list(self.input_shape),
                "batch": self.batch, "train": self.train}

    @classmethod
    def from_json(cls, data: Any) -> Network:
        """The inverse of :meth:`to_json`; raises ValueError on anything else."""
        if not isinstance(data, dict) or set(data) != {"name", "spec", "input_shape", "batch", "train"}:
            raise ValueError("a workload is an object with exactly: name, spec, input_shape, batch, train")
        shape = data["input_shape"]
        if not (isinstance(shape, list) and len(shape) == 3 and all(_positive_int(v) for v in shape)):
            raise ValueError(f"workload input_shape: expected [H, W, C] of positive integers, got {shape!r}")
        if not (isinstance(data["name"], str) and isinstance(data["spec"], str)):
            raise ValueError("workload name and spec: expected strings")
        if not _positive_int(data["batch"]):
            raise ValueError(f"workload batch: expected a positive integer, got {data['batch']!r}")
        if not isinstance(data["train"], bool):
            raise ValueError(f"workload train: expected true or false, got {data['train']!r}")
        h, w, c = shape
        return cls(data["name"], data["spec"], (h, w, c), data["batch"], data["train"])


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


# -- whole networks: one report row each -------------------------------------------------------

NETWORKS: tuple[Network, ...] = (
    Network("BASE training, batch 100", base_spec(), (28, 28, 1), 100, True),
    Network("BASE inference, batch 100", base_spec(), (28, 28, 1), 100, False),
    Network("BASE inference latency, batch 1", base_spec(), (28, 28, 1), 1, False),
    Network("SK-2 training, batch 100", sk_spec(2.0), (28, 28, 1), 100, True),
    Network("VGG-style 3x3 stack 32x32x3 training, batch 64", VGG_STACK, (32, 32, 3), 64, True),
    Network("VGG-style 3x3 stack 32x32x3 inference, batch 64", VGG_STACK, (32, 32, 3), 64, False),
)


def unit_of(network: Network) -> str:
    """A row's unit: milliseconds per call for single-image inference (latency), else images per second.

    >>> [unit_of(n) for n in NETWORKS[1:3]]
    ['img/s', 'ms']
    """
    return "ms" if network.batch == 1 and not network.train else "img/s"


# -- (--memory) one VGG-16 training step at 224x224x3, each engine in a fresh process ----------------

MEMORY_NETWORK = Network("VGG-16 224x224x3 training, batch 8", VGG16_SPEC, (224, 224, 3), 8, True)

# -- exercise 15.6, whole (not run by bench: ``cnnkit bench --ex156 DIR`` reads a finished run) -------------

EX156_ROW = "exercise 15.6, all parts: wall time"

# -- the targets of the speed work: ratios from one run, at every thread count ------------------------------


@dataclass(frozen=True)
class Target:
    """A goal for one row: its ratio against ``peer`` ("torch": PyTorch's best layout, "ort": onnxruntime;
    "": the row's own cnnkit value, in ``unit``) at least (``at_least``) or at most ``bound``."""

    row: str
    peer: str
    bound: float
    at_least: bool = True
    unit: str = ""

    def describe(self) -> str:
        """The target in words.

        >>> Target("BASE training, batch 100", "torch", 1.5).describe()
        'BASE training, batch 100: >= 1.5x PyTorch'
        """
        what = {"torch": "x PyTorch", "ort": "x onnxruntime"}.get(self.peer, f" {self.unit}")
        return f"{self.row}: {'>=' if self.at_least else '<='} {self.bound:.1f}{what}"

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None: not measured)."""
        if value is None or value != value:
            return None
        return value >= self.bound if self.at_least else value <= self.bound


MEMORY_ROW = f"{MEMORY_NETWORK.name}, peak RSS"

TARGETS: tuple[Target, ...] = (
    Target(NETWORKS[0].name, "torch", 1.5),
    Target(NETWORKS[1].name, "torch", 1.5),
    Target(NETWORKS[1].name, "ort", 1.0),
    Target(NETWORKS[2].name, "ort", 1.0),
    Target(NETWORKS[4].name, "torch", 1.5),
    Target(NETWORKS[3].name, "torch", 1.5),
    Target(MEMORY_ROW, "torch", 1.2, at_least=False),
    Target(EX156_ROW, "", 15.0, at_least=False, unit="min"),
)
"""The issue's targets; a row's ratio is cnnkit's speed over the peer's (for memory: cnnkit's peak over the peer's)."""

# -- every convolution of these networks alone: forward and backward rows ---------------------------

CONV_NETWORKS: tuple[tuple[str, str, Shape, int], ...] = (  # (row prefix, network string, input shape, batch)
    ("BASE", base_spec(), (28, 28, 1), 100),
    ("stack", VGG_STACK, (32, 32, 3), 64),
)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a network, alone: its token text and arguments, input and output shapes (H, W, C),
    batch, and whether it is the network's first layer (which never needs dX)."""

    net: str
    text: str
    args: dict[str, Any]
    in_shape: Shape
    out_shape: Shape
    batch: int
    first: bool

    @property
    def flops(self) -> float:
        """Forward multiply-adds times two."""
        kh, kw = self.args["kernel"]
        ho, wo, _ = self.out_shape
        return 2.0 * self.batch * ho * wo * kh * kw * self.in_shape[2] * self.args["out"]

    def inputs(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random x (N, H, W, C), weights (kh, kw, C, out) and zero bias, drawn from ``rng`` in that order."""
        h, w, c = self.in_shape
        x = rng.standard_normal((self.batch, h, w, c), dtype=np.float32)
        wgt = rng.standard_normal((*self.args["kernel"], c, self.args["out"]), dtype=np.float32) * 0.01
        return x, wgt, np.zeros(self.args["out"], dtype=np.float32)


def conv_layers(net: str, spec: str, input_shape: Shape, batch: int) -> list[ConvLayer]:
    """Every convolution of a network string, in order."""
    tokens = parse(spec)
    outs = infer_shapes(tokens, input_shape)
    ins = [tuple(input_shape), *outs[:-1]]
    convs = [(t, i, o) for t, i, o in zip(tokens, ins, outs) if t.kind == "conv"]
    return [ConvLayer(net, t.text, t.args, _hwc(i), _hwc(o), batch, n == 0) for n, (t, i, o) in enumerate(convs)]


def _hwc(shape: tuple[int, ...]) -> Shape:
    h, w, c = shape
    return h, w, c


# -- (--scaling) throughput against batch size, channel multiplier and image size ---------------------

@dataclass(frozen=True)
class ScalingPoint:
    """One point of a scaling curve: its x value and the training step measured there."""

    x: float
    network: Network


SCALING: dict[str, tuple[ScalingPoint, ...]] = {
    "batch": tuple(ScalingPoint(b, Network(f"BASE batch {b}", base_spec(), (28, 28, 1), b))
                   for b in (1, 4, 16, 64, 128, 256, 512)),
    "multiplier": tuple(ScalingPoint(s, Network(f"SK-{s:g} batch 100", sk_spec(s), (28, 28, 1), 100))
                        for s in (0.2, 0.5, 1.0, 1.5, 2.0)),
    "image_size": tuple(ScalingPoint(n, Network(f"VGG-style stack {n}x{n}x3", VGG_STACK, (n, n, 3), 64 if n <= 64 else 16))
                        for n in (32, 64, 128, 224)),
}
