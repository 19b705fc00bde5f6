"""The layer and loss contracts every cnnkit module follows.

A :class:`Layer` holds ``params`` and ``grads``: dicts of arrays with the same keys. ``forward(x,
train)`` computes the output (``layer(x)`` is the same with ``train=False``) and keeps what its
backward needs; ``backward(dy)`` returns dL/dx and writes dL/dparam *in place* into ``grads`` (so the
dict's arrays stay the same objects across steps; gradients are overwritten, not accumulated).
Non-trainable state (batch-norm running statistics) lives in ``buffers``. Parameters may be replaced
or assigned into in place; the layer computes in the dtype of its parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.errors import StateError


class Layer:
    """Base class: one level of inheritance, no global state."""

    #: parameter names excluded from weight decay (batch-norm scale and shift)
    no_decay: frozenset[str] = frozenset()
    #: True for layers whose forward pass draws random numbers (dropout); see :meth:`reseed`
    draws_random: bool = False
    #: set by a container when this layer is used at more than one place of a network (weight sharing):
    #: the layer then keeps no reusable scratch memory in its caches, because each use needs its own
    shared: bool = False

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self._cache: Any = None

    def __call__(self, x: Array, train: bool = False) -> Array:
        return self.forward(x, train)

    def forward(self, x: Array, train: bool = False) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: Array) -> Array | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------
    def _saved(self) -> Any:
        """The cache of the last forward; raises :class:`StateError` if there was none."""
        if self._cache is None:
            raise StateError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def _set_grad(self, name: str, value: Array) -> None:
        """Store a gradient in place, keeping the array object in ``grads`` stable."""
        g = self.grads.get(name)
        p = self.params[name]
        if g is None or g.shape != p.shape or g.dtype != p.dtype:
            self.grads[name] = xp.array(value, dtype=p.dtype).reshape(p.shape)
        else:
            g[...] = value.reshape(p.shape)

    def _init_grads(self) -> None:
        """Zero gradients for every parameter (call at the end of a subclass's __init__)."""
        self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}

    @property
    def dtype(self) -> xp.dtype | None:
        """The dtype of the first parameter (None for parameterless layers)."""
        for v in self.params.values():
            return v.dtype
        return None

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g[...] = 0

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters, gradients and buffers to ``dtype`` in place; returns self."""
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.buffers = {k: v.astype(dtype) for k, v in self.buffers.items()}
        self._init_grads()
        return self

    def reseed(self, key: Sequence[int]) -> None:
        """Take a new random generator seeded by ``key`` (layers with ``draws_random``); others ignore it.

        The trainer calls ``model.reseed([seed, epoch])`` at the start of every epoch, so that every random
        draw of an epoch depends on (seed, epoch) only and a resumed run repeats it exactly.
        """

    def modules(self) -> Iterator[Layer]:
        """This layer and every layer inside it (containers override it), each once."""
        yield self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Loss:
    """Base class of the losses: ``value = loss.forward(prediction, target)``, then ``loss.backward()``.

    The value is a Python float, the mean over the batch; backward returns dvalue/dprediction with the
    prediction's shape.
    """

    def __init__(self) -> None:
        self._cache: Any = None

    def __call__(self, prediction: Array, target: Array) -> float:
        return self.forward(prediction, target)

    def forward(self, prediction: Array, target: Array) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _saved(self) -> Any:
        if self._cache is None:
            raise StateError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
