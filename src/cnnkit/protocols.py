"""The model contract, typed: what optimisers, the training loop and storage need from a network.

Every :class:`cnnkit.nn.Layer` and container satisfies :class:`Model`; code that only updates
parameters (the optimisers) asks for the smaller :class:`Parameterised`. These are structural types
(``typing.Protocol``): anything with the right attributes fits, no base class is required.

Examples
--------
>>> import numpy as np
>>> from cnnkit.nn import Linear
>>> from cnnkit.protocols import Model
>>> isinstance(Linear(3, 2, rng=np.random.default_rng(0)), Model)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from cnnkit.backend import Array


@runtime_checkable
class Parameterised(Protocol):
    """Parameters and their gradients: dicts name -> array with the same keys (read afresh at each use)."""

    @property
    def params(self) -> dict[str, Array]: ...

    @property
    def grads(self) -> dict[str, Array]: ...


@runtime_checkable
class Model(Parameterised, Protocol):
    """A trainable network: forward and explicit backward, parameters, gradients and buffers.

    ``forward(x, train)`` returns the output and keeps what ``backward`` needs; ``backward(dy)`` writes
    the parameter gradients into ``grads`` and returns dL/dx (None for a first layer that skips it).
    ``buffers`` hold non-trained state (batch-norm statistics); ``no_decay`` names parameters exempt
    from weight decay; ``reseed(key)`` gives layers that draw random numbers a new generator.
    """

    @property
    def buffers(self) -> dict[str, Array]: ...

    @property
    def no_decay(self) -> frozenset[str]: ...

    @property
    def dtype(self) -> Any: ...

    def forward(self, x: Array, train: bool = False) -> Array: ...

    def backward(self, dy: Array) -> Array | None: ...

    def reseed(self, key: Sequence[int]) -> None: ...

    def modules(self) -> Iterator[Any]: ...


@runtime_checkable
class LossFunction(Protocol):
    """``value = loss.forward(prediction, target)`` (a float, the batch mean), then ``loss.backward()``."""

    def forward(self, prediction: Array, target: Array) -> float: ...

    def backward(self) -> Array: ...
