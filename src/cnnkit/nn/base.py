"""The layer and loss contracts every cnnkit module follows.

A :class:`Layer` holds ``params`` and ``grads``: dicts of arrays with the same keys. ``forward(x)``
computes the output and keeps what its backward needs; ``backward(dy)`` returns dL/dx and writes
dL/dparam *in place* into ``grads`` (so the dict's arrays stay the same objects across steps; gradients
are overwritten, not accumulated). Non-trainable state (batch-norm running statistics) lives in
``buffers``. Parameters may be replaced or assigned into in place; the layer computes in the dtype of its
parameters.

Modes, as in PyTorch: a layer starts in training mode; ``net.eval()`` switches it (and every layer
inside it) to evaluation mode and ``net.train()`` back. ``net(x)`` and ``net.forward(x)`` follow the mode;
``forward(x, train=...)`` overrides it for one call. Dropout and batch normalisation behave differently
in the two modes. A training-mode forward keeps what backward needs; an evaluation-mode forward keeps
nothing (inference allocates no caches) unless asked with ``forward(x, grad=True)`` (to differentiate
an evaluation-mode network, e.g. a saliency map), and a backward after a forward that kept nothing
raises :class:`~cnnkit.errors.StateError` saying so.

Writing a layer: implement ``_forward(x, train, keep) -> (y, cache)`` and ``backward(dy)`` (read the
cache with ``self._saved()``); ``describe`` (shapes and costs), ``config`` (the constructor's arguments,
for saving the architecture) complete it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError, StateError
from cnnkit.ops.geometry import Window

Shape = tuple[int, ...]
L = TypeVar("L", bound="Layer")


@dataclass
class LayerInfo:
    """What one layer does to one example: output shape and costs (the summary's columns).

    ``flops`` count a multiply-add as 2 (None when the layer does not know its cost); ``workspace`` is
    the im2row matrix phi(x) in elements; ``window`` is a sliding window's geometry (receptive fields grow
    through it); ``flattens`` marks the end of the spatial part of a network; ``elementwise`` layers keep
    the shape and may work in place (the book's activation count leaves them out).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d
    >>> info = Conv2d(1, 4, 3, rng=np.random.default_rng(0)).describe((28, 28, 1))
    >>> info.out_shape, info.params, info.flops, info.workspace  # flops: 2 * 26*26 outputs * 9 taps * 4 kernels
    ((26, 26, 4), 40, 48672, 6084)
    """

    out_shape: Shape
    params: int = 0
    flops: int | None = 0
    workspace: int = 0
    window: Window | None = None
    flattens: bool = False
    elementwise: bool = False


@dataclass(frozen=True)
class Trace:
    """What flows through a network when shapes are traced: one example's shape, the receptive field of one
    of its units in the network's input (pixels along H; None once flattened) and the input pixels between
    two adjacent units (the product of the strides so far).

    Examples
    --------
    The receptive field (§15.7.2) and the jump grow through each window: 3, then +1 (pool), then +2*2 (conv after a stride of 2).

    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, MaxPool2d, Sequential
    >>> from cnnkit.nn.base import Trace
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), MaxPool2d(2), Conv2d(4, 8, 3, rng=rng))
    >>> net.trace(Trace((28, 28, 1)), "", [])
    Trace(shape=(11, 11, 8), rf=8, jump=2)
    """

    shape: Shape
    rf: int | None = 1
    jump: int = 1


@dataclass
class TraceRow:
    """One layer met while tracing: its dotted name, kind (class name, or "add"/"concat" for a merge),
    input shape, :class:`LayerInfo` and the receptive field after it.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Sequential
    >>> from cnnkit.nn.base import Trace
    >>> rows = []
    >>> _ = Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(0)), Flatten()).trace(Trace((5, 5, 1)), "", rows)
    >>> [(r.name, r.kind, r.in_shape, r.info.out_shape, r.rf) for r in rows]
    [('0', 'Conv2d', (5, 5, 1), (3, 3, 4), 3), ('1', 'Flatten', (3, 3, 4), (36,), None)]
    """

    name: str
    kind: str
    in_shape: Shape
    info: LayerInfo
    rf: int | None
    layer: Any = None  # the layer itself (a layer used twice has its parameters counted once)


class Layer:
    """Base class of every layer (see the module docstring for the contract).

    Examples
    --------
    A layer starts in training mode (as in PyTorch): its forward keeps what backward needs. After ``eval()``
    a forward keeps nothing, and backward says so.

    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
    >>> layer.training, sorted(layer.params), layer.num_params()
    (True, ['bias', 'weight'], 8)
    >>> y = layer(np.ones((4, 3), np.float32))
    >>> layer.backward(np.ones_like(y)).shape, layer.grads["weight"].shape  # dL/dx and dL/dW
    ((4, 3), (3, 2))
    >>> _ = layer.eval()(np.ones((4, 3), np.float32))
    >>> layer.backward(np.ones_like(y))
    Traceback (most recent call last):
        ...
    cnnkit.errors.StateError: Linear.backward: the last forward kept nothing for backward (it ran in evaluation mode); ...
    """

    #: parameter names excluded from weight decay (batch-norm scale and shift)
    no_decay: frozenset[str] = frozenset()
    #: True for layers whose forward pass draws random numbers (dropout); see :meth:`reseed`
    draws_random: bool = False
    #: output has the input's shape and may be computed in place (activations, dropout, normalisation)
    elementwise: bool = False
    #: set by a container when this layer is used at more than one place of a network (weight sharing):
    #: the layer then keeps no reusable scratch memory in its caches, because each use needs its own
    shared: bool = False

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.training = True
        self._cache: Any = None
        self._kept: bool | None = None  # whether the last forward kept its cache (None: no forward yet)

    # -- modes ------------------------------------------------------------------------------------
    def train(self: L, mode: bool = True) -> L:
        """Set training mode (``mode=False``: evaluation mode) on this layer and every layer inside it."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self: L) -> L:
        """Set evaluation mode on this layer and every layer inside it (``train(False)``)."""
        return self.train(False)

    # -- forward and backward ---------------------------------------------------------------------
    def __call__(self, x: Array, train: bool | None = None, *, grad: bool | None = None) -> Array:
        return self.forward(x, train, grad=grad)

    def forward(self, x: Array, train: bool | None = None, *, grad: bool | None = None) -> Array:
        """The layer's output for ``x``.

        ``train``: training (True) or evaluation (False) behaviour; None follows the layer's mode.
        ``grad``: keep what :meth:`backward` needs; None keeps it in training mode only.
        """
        mode = self.training if train is None else bool(train)
        keep = mode if grad is None else bool(grad)
        y, cache = self._forward(x, mode, keep)
        self._cache = cache if keep else None
        self._kept = keep
        return y

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:  # pragma: no cover - abstract
        """(output, cache for backward); the cache is dropped when ``keep`` is False."""
        raise NotImplementedError

    def backward(self, dy: Array) -> Array | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------
    def _saved(self) -> Any:
        """The cache of the last forward; raises :class:`StateError` if it kept none."""
        if self._cache is None:
            name = type(self).__name__
            if self._kept is False:
                raise StateError(
                    f"{name}.backward: the last forward kept nothing for backward (it ran in evaluation mode); "
                    f"call .train() on the network before the forward that backward follows, or use "
                    f"forward(x, grad=True) to differentiate an evaluation-mode forward"
                )
            raise StateError(f"{name}.backward called before forward")
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
        from cnnkit.nn.init import zeros_like

        self.grads = {k: zeros_like(v) for k, v in self.params.items()}

    # -- shapes and costs -------------------------------------------------------------------------
    def output_shape(self, in_shape: Sequence[int]) -> Shape:
        """The shape of one example's output for one example's input ``in_shape`` (no batch axis)."""
        return self.describe(in_shape).out_shape

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """Output shape and costs for one example of shape ``in_shape``; raises ShapeError if it does not fit.

        Elementwise layers keep the shape (one FLOP per element); for other layers this default runs the
        layer on one zero example and does not know the FLOPs; layers override it with their rules.
        """
        if self.elementwise:
            return elementwise_info(self, in_shape)
        dtype = self.dtype or xp.float32
        y = self.forward(xp.zeros((1, *in_shape), dtype=dtype), train=False)
        return LayerInfo(tuple(int(v) for v in y.shape[1:]), self.num_params(), None)

    def trace(self, t: Trace, name: str, rows: list[TraceRow]) -> Trace:
        """Append this layer's row to ``rows`` and return what flows out of it (containers recurse)."""
        info = self.describe(t.shape)
        rf, jump = t.rf, t.jump
        if info.window is not None and rf is not None:
            rf += (info.window.effective_kernel[0] - 1) * jump
            jump *= info.window.stride[0]
        if info.flattens:
            rf = None
        rows.append(TraceRow(name, type(self).__name__, tuple(t.shape), info, rf, self))
        return Trace(info.out_shape, rf, jump)

    def num_params(self) -> int:
        """How many numbers the parameters hold."""
        return sum(math.prod(v.shape) for v in self.params.values())

    # -- state and architecture -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers by (dotted) name: the arrays themselves, not copies (as PyTorch)."""
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy ``state`` into the parameters and buffers in place (converted to their dtypes).

        ``strict``: every entry of the layer must be given and no other. Shapes must match. Raises
        StateError naming the missing or unexpected entries, ShapeError naming a shape that differs.
        """
        targets = self.state_dict()
        missing = sorted(k for k in targets if k not in state and not k.endswith("num_batches_tracked"))
        unexpected = sorted(k for k in state if k not in targets)
        if strict and (missing or unexpected):
            raise StateError(
                f"{type(self).__name__}.load_state_dict: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
        for key, dst in targets.items():
            if key not in state:
                continue
            src = xp.asarray(state[key])
            if tuple(src.shape) != tuple(dst.shape):
                raise ShapeError(f"state entry {key!r} has shape {tuple(src.shape)}; the model expects {tuple(dst.shape)}")
            dst[...] = src

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able); see :mod:`cnnkit.nn.architecture`."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its configuration, so it cannot be saved as data")

    # -- the rest ---------------------------------------------------------------------------------
    @property
    def dtype(self) -> Any:
        """The dtype of the first parameter (None for parameterless layers)."""
        for v in self.params.values():
            return v.dtype
        return None

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g[...] = 0

    def astype(self: L, dtype: Any) -> L:
        """Convert parameters, gradients and floating-point buffers to ``dtype`` in place; returns self."""
        from cnnkit.nn.init import building_shapes_only, filled

        def convert(v: Array) -> Array:  # a placeholder of shapes_only() stays one (astype would allocate it)
            return filled(tuple(v.shape), 0.0, dtype) if building_shapes_only() else v.astype(dtype)

        self.params = {k: convert(v) for k, v in self.params.items()}
        self.buffers = {k: convert(v) if xp.issubdtype(v.dtype, xp.floating) else v for k, v in self.buffers.items()}
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


def elementwise_info(layer: Layer, in_shape: Sequence[int], flops_per_element: int = 1) -> LayerInfo:
    """The :class:`LayerInfo` of a layer that keeps the shape (activations, dropout, normalisation).

    Examples
    --------
    >>> from cnnkit.nn import ReLU
    >>> from cnnkit.nn.base import elementwise_info
    >>> elementwise_info(ReLU(), (4, 4, 3))
    LayerInfo(out_shape=(4, 4, 3), params=0, flops=48, workspace=0, window=None, flattens=False, elementwise=True)
    """
    shape = tuple(int(v) for v in in_shape)
    return LayerInfo(shape, layer.num_params(), flops_per_element * math.prod(shape), elementwise=True)


class Loss:
    """Base class of the losses: ``value = loss.forward(prediction, target)``, then ``loss.backward()``.

    The value is a Python float, the mean over the batch; backward returns dvalue/dprediction with the
    prediction's shape.

    Examples
    --------
    Every loss follows this contract; mean squared error of x = (1, 2) against t = (0, 0):

    >>> import numpy as np
    >>> from cnnkit.nn import MSELoss
    >>> loss = MSELoss()
    >>> loss.forward(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))  # (1 + 4) / 2
    2.5
    >>> loss.backward()  # 2 (x - t) / 2, the prediction's shape
    array([[1., 2.]])
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
