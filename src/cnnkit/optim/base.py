"""The optimiser contract shared by SGD, Adam, RMSProp and Adagrad.

An optimiser drives a *model*: any object exposing ``params`` and ``grads``, dicts name -> array with
the same keys (a :class:`~cnnkit.nn.base.Layer` or a container, whose dicts may be rebuilt on every
access, so they are read afresh at each step). ``params`` holds the live parameters; every update is
written into them *in place* (``p -= ...``), never by rebinding. An optional ``model.no_decay`` (a
set of parameter names, e.g. batch-norm scale/shift) exempts parameters from weight decay.

Usage (one mini-batch, seed eq. 15.9 generalised)::

    opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.backward(dloss); opt.step(); opt.zero_grad()

Per-parameter state (momentum buffers, moments, step counts) lives in ``opt.state[name]``, in the
parameter's dtype. :meth:`Optimizer.state_dict` exports it as plain arrays, numbers and strings
(no pickle needed) and :meth:`Optimizer.load_state_dict` restores it exactly, so an interrupted run
continues bit-identically.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError, StateError


def _check_real(value: Any, name: str, low: float = 0.0, high: float = math.inf, *, closed_high: bool = True) -> float:
    """``float(value)``, raising ValueError unless low <= value <= high (or < high when not closed)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    inside = v >= low and (v <= high if closed_high else v < high)
    if math.isnan(v) or not inside:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must lie in [{low}, {high}{bracket}, got {value!r}")
    return v


class Optimizer:
    """Base class: holds the model, the learning rate, the step count and per-parameter state.

    Subclasses implement :meth:`_update` for one parameter and list the keys of their per-parameter
    state in ``_array_keys`` (arrays shaped like the parameter) and ``_scalar_keys`` (ints).

    Examples
    --------
    Any object with ``params`` and ``grads`` dicts is a model; the state survives a round trip.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import SGD
    >>> model = SimpleNamespace(params={"w": np.array([1.0, 2.0])}, grads={"w": np.array([0.5, -1.0])})
    >>> opt = SGD(model, lr=0.1, momentum=0.9)
    >>> opt.step()
    >>> saved = opt.state_dict()
    >>> saved["step"], saved["state"]["w"]["momentum_buffer"]
    (1, array([ 0.5, -1. ]))
    >>> opt.zero_grad()
    >>> model.grads["w"]
    array([0., 0.])
    """

    _array_keys: frozenset[str] = frozenset()
    _scalar_keys: frozenset[str] = frozenset()

    def __init__(self, model: Any, lr: float) -> None:
        if not hasattr(model, "params") or not hasattr(model, "grads"):
            raise TypeError(f"{type(self).__name__}: the model must expose `params` and `grads` dicts, got {model!r}")
        self.model = model
        self.lr = lr
        #: number of completed :meth:`step` calls
        self.step_count = 0
        #: name -> {state key -> array (parameter's dtype and shape) or int}
        self.state: dict[str, dict[str, Any]] = {}
        # reusable scratch memory, (dtype, slot) -> flat array; never part of the state
        self._work: dict[tuple[str, int], Array] = {}

    # -- learning rate ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate eta of eq. 15.9; schedules assign it between epochs."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_real(value, "lr")

    # -- the training-loop API ----------------------------------------------------------------
    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        for name, p, g, decay in self._parameters():
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = {}
            self._update(p, g, st, decay)
        self.step_count += 1

    def zero_grad(self) -> None:
        """Set every gradient of the model to zero, in place."""
        for g in self.model.grads.values():
            if g is not None:
                g[...] = 0

    def _update(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def _parameters(self) -> Iterator[tuple[str, Array, Array, bool]]:
        """(name, parameter, gradient, weight-decay applies) for every parameter with a gradient.

        A gradient that is ``None`` skips its parameter (a frozen parameter); a missing key or a
        gradient of another shape is a user error.
        """
        params, grads = self.model.params, self.model.grads
        no_decay = getattr(self.model, "no_decay", None) or frozenset()
        for name, p in params.items():
            if name not in grads:
                raise StateError(
                    f"{type(self).__name__}.step: parameter {name!r} has no entry in model.grads "
                    f"(grads has {sorted(grads)})"
                )
            g = grads[name]
            if g is None:
                continue
            if g.shape != p.shape:
                raise ShapeError(
                    f"{type(self).__name__}.step: gradient of {name!r} has shape {g.shape}, "
                    f"expected the parameter's shape {p.shape}"
                )
            yield name, p, g, name not in no_decay

    # -- helpers for subclasses ---------------------------------------------------------------
    def _scratch(self, p: Array, slot: int) -> Array:
        """A reusable work array shaped and typed like ``p`` (contents undefined).

        Each (dtype, slot) owns one flat buffer grown to the largest parameter seen, so steady-state
        steps allocate nothing.
        """
        key = (p.dtype.str, slot)
        buf = self._work.get(key)
        if buf is None or buf.size < p.size:
            buf = self._work[key] = xp.empty(p.size, dtype=p.dtype)
        return buf[: p.size].reshape(p.shape)

    @staticmethod
    def _buffer(st: dict[str, Any], key: str, p: Array, fill: float = 0.0) -> Array:
        """The state array ``st[key]``, created filled with ``fill`` on first use.

        The state follows the parameter's dtype (converted if the model was cast); a shape change
        means the state belongs to another model and raises ShapeError.
        """
        b = st.get(key)
        if b is None:
            b = st[key] = xp.full(p.shape, fill, dtype=p.dtype)
        elif b.shape != p.shape:
            raise ShapeError(f"optimizer state {key!r} has shape {b.shape}, but its parameter has shape {p.shape}")
        elif b.dtype != p.dtype:
            b = st[key] = b.astype(p.dtype)
        return b

    @staticmethod
    def _lerp_(a: Array, b: Array, w: float, tmp: Array) -> None:
        """a <- a + w * (b - a) in place (the two-sided form torch's lerp uses; ``tmp`` is scratch)."""
        xp.subtract(b, a, out=tmp)
        if abs(w) < 0.5:
            tmp *= w
            a += tmp
        else:
            tmp *= 1.0 - w
            xp.subtract(b, tmp, out=a)

    @staticmethod
    def _decayed(p: Array, g: Array, wd: float, out: Array) -> Array:
        """g + wd * p: L2 weight decay added to the gradient (into ``out``; ``g`` itself when wd is 0)."""
        if wd == 0.0:
            return g
        xp.multiply(p, wd, out=out)
        out += g
        return out

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A copy of the optimiser's state as plain values.

        ``{"optimizer": class name, "lr": float, "step": int, "state": {name: {key: array | int}}}``;
        arrays are copies, so later steps do not change a saved dict.
        """
        state = {
            name: {k: (int(v) if k in self._scalar_keys else v.copy()) for k, v in st.items()}
            for name, st in self.state.items()
        }
        return {"optimizer": type(self).__name__, "lr": self.lr, "step": self.step_count, "state": state}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (arrays copied into the parameters' dtypes).

        Numbers may arrive as 0-d arrays (e.g. read back from an ``.npz``). Raises StateError for a
        dict of another optimiser or for unknown parameter names or state keys, ShapeError when a
        state array does not match its parameter's shape.
        """
        cls = type(self).__name__
        kind = d.get("optimizer", cls)
        if str(kind) != cls:
            raise StateError(f"{cls}.load_state_dict: the state dict was written by {kind}, not {cls}")
        missing = [k for k in ("lr", "step", "state") if k not in d]
        if missing:
            raise StateError(f"{cls}.load_state_dict: missing keys {missing} (got {sorted(d)})")
        params = self.model.params
        state: dict[str, dict[str, Any]] = {}
        for name, entries in d["state"].items():
            if name not in params:
                raise StateError(f"{cls}.load_state_dict: state for unknown parameter {name!r}")
            p = params[name]
            st: dict[str, Any] = {}
            for key, value in entries.items():
                if key in self._scalar_keys:
                    st[key] = int(value)
                elif key in self._array_keys:
                    arr = xp.array(value, dtype=p.dtype)  # a copy in the parameter's dtype
                    if arr.shape != p.shape:
                        raise ShapeError(
                            f"{cls}.load_state_dict: state {key!r} of {name!r} has shape {arr.shape}, "
                            f"expected the parameter's shape {p.shape}"
                        )
                    st[key] = arr
                else:
                    known = sorted(self._array_keys | self._scalar_keys)
                    raise StateError(
                        f"{cls}.load_state_dict: unknown state key {key!r} for {name!r} (expected {known})"
                    )
            state[name] = st
        self.lr = float(d["lr"])
        self.step_count = int(d["step"])
        self.state = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return f"lr={self.lr}"
