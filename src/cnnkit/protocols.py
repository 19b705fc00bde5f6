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

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cnnkit.backend import Array


@runtime_checkable
class Parameterised(Protocol):
    """Parameters and their gradients: dicts name -> array with the same keys (read afresh at each use).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from cnnkit.protocols import Parameterised
    >>> isinstance(SimpleNamespace(params={}, grads={}), Parameterised), isinstance(object(), Parameterised)
    (True, False)
    """

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

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.models import build
    >>> from cnnkit.protocols import Model
    >>> isinstance(build("conv3x3x1x2,relu,fc2", (4, 4, 1), np.random.default_rng(0)), Model)
    True
    >>> isinstance(SimpleNamespace(params={}, grads={}), Model)  # parameters alone are not a model
    False
    """

    @property
    def buffers(self) -> dict[str, Array]: ...

    @property
    def no_decay(self) -> frozenset[str]: ...

    @property
    def dtype(self) -> Any: ...

    def forward(self, x: Array, train: bool | None = None, *, grad: bool | None = None) -> Array: ...

    def backward(self, dy: Array) -> Array | None: ...

    def reseed(self, key: Sequence[int]) -> None: ...

    def modules(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Array]: ...

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@runtime_checkable
class LossFunction(Protocol):
    """``value = loss.forward(prediction, target)`` (a float, the batch mean), then ``loss.backward()``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn.loss import SoftmaxCrossEntropy
    >>> from cnnkit.protocols import LossFunction
    >>> loss = SoftmaxCrossEntropy()
    >>> isinstance(loss, LossFunction), round(loss.forward(np.zeros((2, 4)), np.array([0, 3])), 4)
    (True, 1.3863)
    """

    def forward(self, prediction: Array, target: Array) -> float: ...

    def backward(self) -> Array: ...
