"""Containers: Sequential chains, residual blocks and channel concatenation (DAG networks, exercise 15.4).

A container is a :class:`~cnnkit.nn.base.Layer` made of layers. Its ``params``, ``grads`` and ``buffers``
are built on access from its children with dotted names (``"0.weight"``, ``"2.body.1.bias"``); the arrays
are the children's own, so in-place updates through the container change the children.

Weight sharing: one layer object may appear at several places of a network (a siamese branch, tied
weights). Its parameters are listed once, under the first name; each use keeps its own forward cache;
and within one backward pass the gradients of the uses add up, as the chain rule requires (the total
derivative through every path, eq. 15.4). A layer used twice therefore gets the same gradient as two
layers holding the same weights would get summed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.activation import ReLU as _ReLU
from cnnkit.nn.base import Layer, LayerInfo, Trace, TraceRow
from cnnkit.nn.pool import MaxPool2d as _MaxPool2d
from cnnkit.ops.activation import LazyReLUCache, ReLUCache
from cnnkit.ops.pool import MaxPoolCache

_FUSABLE: dict[type, str] = {_MaxPool2d: "pool", _ReLU: "relu"}
"""The exact classes Sequential fuses (subclasses may change forward, so they are never fused)."""


class Fused:
    """The cache-list entry of a ReLU that ran inside the neighbouring max pooling's kernel: the pooling's
    backward differentiates both, so the ReLU's is skipped. ``cache`` is the ReLU's own cache, used instead
    when either layer's ``backward`` is patched on the object (cnnkit.inspect injecting a gradient there):
    the two backwards then run one by one, as without fusion.

    Examples
    --------
    >>> from cnnkit.nn import MaxPool2d, ReLU
    >>> from cnnkit.nn.container import Fused
    >>> pool, relu = MaxPool2d(2), ReLU()
    >>> entry = Fused(None, pool, relu)
    >>> entry.split()  # the pooling's backward differentiates both layers
    False
    >>> relu.backward = lambda dy: dy  # a gradient injected on the object, as cnnkit.inspect does
    >>> entry.split(), entry
    (True, Fused(None))
    """

    __slots__ = ("cache", "pool", "relu")

    def __init__(self, cache: Any, pool: Layer, relu: Layer) -> None:
        self.cache, self.pool, self.relu = cache, pool, relu

    def split(self) -> bool:
        """True when the two layers must be differentiated one by one (a backward patched on either)."""
        return "backward" in vars(self.pool) or "backward" in vars(self.relu)

    def __repr__(self) -> str:
        return f"Fused({self.cache!r})"


class _Gathered:
    """Descriptor: the children's dicts (``params``, ``grads``, ``buffers``) merged under dotted names.

    A layer reached twice (weight sharing) contributes its entries once, under its first name.
    """

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __get__(self, obj: Container | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        out: dict[str, Array] = {}
        for name, leaf in obj.named_leaves():
            for k, v in getattr(leaf, self.attr).items():
                out[f"{name}.{k}" if name else k] = v
        return out

    def __set__(self, obj: Container, value: dict[str, Array]) -> None:
        if value:
            raise AttributeError(f"a container's {self.attr} are its children's; set them on the children")


class Container(Layer):
    """Base class of the layers made of layers (``_children``: name -> layer, in order).

    Subclasses implement ``forward`` with :meth:`_forward_child` (which keeps each use's cache) and
    ``_backward`` with :meth:`_backward_child` (which restores it and adds up shared layers' gradients).

    Examples
    --------
    Parameters under dotted names; a layer used twice (weight sharing) is listed once, under its first name.

    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Linear, ReLU, Residual, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 2, 3, rng=rng), ReLU(), Residual(Sequential(Conv2d(2, 2, 3, padding=1, rng=rng), ReLU())))
    >>> sorted(net.params)
    ['0.bias', '0.weight', '2.body.0.bias', '2.body.0.weight']
    >>> [name for name, _ in net.named_leaves()]
    ['0', '1', '2.body.0', '2.body.1']
    >>> fc = Linear(2, 2, rng=rng)
    >>> sorted(Sequential(fc, ReLU(), fc).params)
    ['0.bias', '0.weight']
    """

    params = _Gathered("params")
    grads = _Gathered("grads")
    buffers = _Gathered("buffers")

    def __init__(self) -> None:
        super().__init__()
        self._children: dict[str, Layer] = {}

    # -- structure ------------------------------------------------------------------------------
    def _add(self, name: str, layer: Layer, mark: bool = True) -> None:
        """Add a child; ``mark=False`` leaves :meth:`_mark_shared` to the caller (once, after adding many)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__}: item {name} is {type(layer).__name__}, expected a Layer")
        self._children[name] = layer
        if mark:
            self._mark_shared()

    def _mark_shared(self) -> None:
        """Flag every leaf reached more than once below this container (see the module docstring).

        A layer met a second time is reached by several paths, and so is everything below it. Each layer is
        visited once (twice at most when shared), so the cost is the network's size, never its number of paths:
        containers used inside each other many times over (a file's references) cannot make it explode."""
        seen: set[int] = set()
        again: list[Layer] = []
        stack = list(self._children.values())
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                again.append(layer)
            else:
                seen.add(id(layer))
                if isinstance(layer, Container):
                    stack.extend(layer._children.values())
        marked: set[int] = set()
        while again:
            layer = again.pop()
            if id(layer) in marked:
                continue
            marked.add(id(layer))
            if isinstance(layer, Container):
                again.extend(layer._children.values())
            else:
                layer.shared = True

    def wiring(self) -> dict[str, Any] | None:
        """What the architecture data needs besides the children (a graph's connections); None for the rest."""
        return None

    @classmethod
    def from_children(cls, kids: list[tuple[str, Layer]], wiring: dict[str, Any] | None) -> Container:
        """Rebuild from named children (the inverse of :func:`cnnkit.nn.architecture.to_data`)."""
        raise ValueError(f"{cls.__name__} cannot be rebuilt from data")

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return iter(self._children.items())

    def named_leaves(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """(dotted name, layer) of every non-container layer below, each layer once (first name)."""
        seen: set[int] = set()
        stack: list[tuple[str, Layer]] = [(prefix, self)]
        while stack:
            name, layer = stack.pop()
            if isinstance(layer, Container):
                stack += [(f"{name}.{k}" if name else k, c) for k, c in reversed(layer._children.items())]
            elif id(layer) not in seen:
                seen.add(id(layer))
                yield name, layer

    def modules(self) -> Iterator[Layer]:
        """Every layer below this one, depth first (containers included, self first), each once."""
        seen: set[int] = set()

        def walk(layer: Layer) -> Iterator[Layer]:
            if id(layer) in seen:
                return
            seen.add(id(layer))
            yield layer
            if isinstance(layer, Container):
                for child in layer._children.values():
                    yield from walk(child)

        yield from walk(self)

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """The network's output shape and total costs for one example (per-layer rows: :meth:`trace`)."""
        rows: list[TraceRow] = []
        out = self.trace(Trace(tuple(int(v) for v in in_shape)), "", rows)
        flops = [r.info.flops for r in rows]
        return LayerInfo(
            out.shape, self.num_params(), None if None in flops else sum(f for f in flops if f is not None),
            max((r.info.workspace for r in rows), default=0), flattens=any(r.info.flattens for r in rows),
        )

    def num_params(self) -> int:
        return sum(leaf.num_params() for _, leaf in self.named_leaves())

    # -- what the children share -------------------------------------------------------------------
    @property
    def no_decay(self) -> frozenset[str]:  # type: ignore[override]  # read-only view of the leaves'; Layer's is a class attribute
        return frozenset(f"{name}.{k}" for name, leaf in self.named_leaves() for k in leaf.no_decay)

    @property
    def dtype(self) -> Any:
        return next((v.dtype for v in self.params.values()), None)

    def zero_grad(self) -> None:
        for _, leaf in self.named_leaves():
            leaf.zero_grad()

    def astype(self, dtype: Any) -> Container:
        for _, leaf in self.named_leaves():
            leaf.astype(dtype)
        return self

    def reseed(self, key: Sequence[int]) -> None:
        """Give every layer below that draws random numbers the generator ``key + [i]`` (i counts them)."""
        for i, layer in enumerate(m for m in self.modules() if m.draws_random):
            layer.reseed([*key, i])

    # -- forward and backward with per-use caches ------------------------------------------------------
    def _forward_child(self, name: str, x: Array, train: bool, keep: bool, caches: list[Any]) -> Array:
        """Run child ``name`` and keep the cache of this use in ``caches`` (a shared layer overwrites its own).

        A ShapeError from inside is re-raised naming the child (index and class), then its parents.
        """
        child = self._children[name]
        try:
            y = child.forward(x, train, grad=keep)
        except ShapeError as exc:
            raise exc.within(name, type(child).__name__) from None
        caches.append(child._cache)
        return y

    def _trace_child(self, name: str, t: Trace, prefix: str, rows: list[TraceRow]) -> Trace:
        child = self._children[name]
        try:
            return child.trace(t, f"{prefix}{name}", rows)
        except ShapeError as exc:
            raise exc.within(name, type(child).__name__) from None

    def backward(self, dy: Array) -> Array | None:
        return self._backward(dy, set())

    def _backward(self, dy: Array, done: set[int]) -> Array | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _backward_child(child: Layer, cache: Any, dy: Array, done: set[int]) -> Array | None:
        """``child.backward(dy)`` for the use that left ``cache``; ``done`` holds the layers already
        differentiated in this pass, whose gradients the new ones are added to."""
        child._cache = cache
        if isinstance(child, Container):
            return child._backward(dy, done)
        if id(child) not in done:
            done.add(id(child))
            return child.backward(dy)
        earlier = {k: g.copy() for k, g in child.grads.items() if g is not None}
        dx = child.backward(dy)
        for k, g in earlier.items():
            child.grads[k] += g
        return dx

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({k}): {v!r}".replace("\n", "\n  ") for k, v in self._children.items())
        return f"{type(self).__name__}(\n{inner}\n)"


def _check_branches(shapes: list[tuple[int, ...]], what: str) -> None:
    for i, sh in enumerate(shapes):
        if sh[:-1] != shapes[0][:-1]:
            raise ShapeError(f"Concat: branch {i} gives {sh}, branch 0 gives {shapes[0]}; expected the same {what} for every branch")


def _sum_input_grads(a: Array | None, b: Array | None) -> Array | None:
    """The input gradient of two paths that read the same input; None (not computed) if either path skipped it."""
    if a is None or b is None:
        return None
    return a + b


class Sequential(Container):
    """Layers applied one after another; backward runs them in reverse (the chain rule, eqs. 15.11-15.12).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, ReLU, Sequential
    >>> net = Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(0)), ReLU(), Flatten())
    >>> x = np.ones((2, 5, 5, 1), np.float32)
    >>> y = net.forward(x, train=True)           # (2, 3, 3, 4) flattened in NHWC order
    >>> y.shape, net.backward(np.ones_like(y)).shape
    ((2, 36), (2, 5, 5, 1))
    >>> sorted(net.params)
    ['0.bias', '0.weight']
    """

    @classmethod
    def from_children(cls, kids: list[tuple[str, Layer]], wiring: dict[str, Any] | None) -> Container:
        names = [n for n, _ in kids]
        if names != [str(i) for i in range(len(kids))]:
            raise ValueError(f"{cls.__name__} children must be named 0, 1, ... in order, got {names[:5]}")
        return cls(*[layer for _, layer in kids])

    def __init__(self, *layers: Layer | Sequence[Layer]) -> None:
        super().__init__()
        items: Sequence[Any] = layers[0] if len(layers) == 1 and isinstance(layers[0], (list, tuple)) else layers
        for i, layer in enumerate(items):
            self._add(str(i), layer, mark=False)
        self._mark_shared()  # once: marking after every child would cost the square of their number

    @property
    def layers(self) -> list[Layer]:
        return list(self._children.values())

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def append(self, layer: Layer) -> Sequential:
        self._add(str(len(self._children)), layer)
        return self

    #: run a MaxPool2d and a ReLU next to each other as one kernel (see :meth:`_forward_fused`); False: never
    fuse: bool = True

    def _add(self, name: str, layer: Layer, mark: bool = True) -> None:
        super()._add(name, layer, mark)
        self._plan: tuple[list[str], frozenset[int]] | None = None  # recomputed on the next forward

    def _fusion_plan(self) -> tuple[list[str], frozenset[int]]:
        """(child names, positions i where children i and i + 1 are a MaxPool2d and a ReLU in either order)."""
        plan = getattr(self, "_plan", None)
        if plan is None or len(plan[0]) != len(self._children):
            names = list(self._children)
            kinds = [_FUSABLE.get(type(c)) for c in self._children.values()]
            pairs = frozenset(i for i in range(len(names) - 1) if kinds[i] and kinds[i + 1] and kinds[i] != kinds[i + 1])
            plan = self._plan = (names, pairs)
        return plan

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        caches: list[Any] = []
        names, pairs = self._fusion_plan()
        if not pairs or not self.fuse:
            for name in names:
                x = self._forward_child(name, x, train, keep, caches)
            return x, caches
        i, n = 0, len(names)
        while i < n:
            if i in pairs:
                y = self._forward_fused(names[i], names[i + 1], i == 0, x, keep, caches)
                if y is not None:
                    x = y
                    i += 2
                    continue
            x = self._forward_child(names[i], x, train, keep, caches)
            i += 1
        return x, caches

    def _forward_fused(self, first: str, second: str, at_input: bool, x: Array, keep: bool, caches: list[Any]) -> Array | None:
        """Run a max pooling and a ReLU next to each other (either order) as one compiled kernel, or return None.

        Pooling commutes with ReLU, and the fused kernel gives the bits of the two layers run one after the
        other, forward and backward. Each layer is left as if it had run (its cache, for a backward or the
        pooling's ``switches``); this container's cache list marks the ReLU's entry :class:`Fused`, so that its
        backward is skipped (the pooling's applies it). Not fused: a shared or mirrored layer, a subclass, a
        layer whose ``forward`` is watched (patched on the object, as cnnkit.inspect does to read intermediate
        outputs), a ReLU before a padded window, an in-place ReLU that would overwrite this container's input,
        or input the compiled kernels do not take.
        """
        a, b = self._children[first], self._children[second]
        if type(a) is _MaxPool2d and type(b) is _ReLU:
            pool, relu, before = a, b, False
        elif type(a) is _ReLU and type(b) is _MaxPool2d:
            relu, pool, before = a, b, True
        else:
            return None
        watched = "forward" in vars(relu) or "forward" in vars(pool) or "_forward" in vars(relu) or "_forward" in vars(pool)
        if (relu.shared or watched or (before and relu.inplace and at_input)
                or not isinstance(x, xp.ndarray) or not pool.can_fuse_relu(x, before)):
            return None
        pool_name = second if before else first
        try:
            y, cache = pool._pool(x, keep, 2 if before else 1)
        except ShapeError as exc:
            raise exc.within(pool_name, type(pool).__name__) from None
        pool._cache, pool._kept = cache, keep
        relu._cache = ((LazyReLUCache(x) if before else ReLUCache(y)) if keep else None)
        relu._kept = keep
        entry = Fused(relu._cache, pool, relu) if keep else None
        caches += [entry, cache] if before else [cache, entry]
        return y

    def trace(self, t: Trace, prefix: str, rows: list[TraceRow]) -> Trace:
        for name in self._children:
            t = self._trace_child(name, t, f"{prefix}." if prefix else "", rows)
        return t

    def _backward(self, dy: Array, done: set[int]) -> Array | None:
        caches = self._saved()
        layers = self.layers
        dx: Array | None = dy
        for i in range(len(layers) - 1, -1, -1):
            layer, cache = layers[i], caches[i]
            if type(cache) is Fused:  # a ReLU run inside the neighbouring pooling's kernel, which differentiates both
                if not cache.split():
                    continue
                cache = cache.cache
            elif type(cache) is MaxPoolCache and cache.relu:  # that pooling: its ReLU's entry is next to it
                partner = caches[i + 1] if cache.relu == 1 else caches[i - 1]
                if type(partner) is Fused and partner.split():
                    cache = replace(cache, relu=0)
            dx = self._backward_child(layer, cache, dy, done)
            if dx is None:  # a first layer that skips dX
                break
            dy = dx
        return dx


class Residual(Container):
    """y = body(x) + shortcut(x) (ResNet block); the shortcut is the identity when None.

    Backward: dx = body.backward(dy) + shortcut.backward(dy) (the two paths' gradients add).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Residual
    >>> block = Residual(Conv2d(3, 3, 3, padding=1, rng=np.random.default_rng(0)))
    >>> block(np.ones((1, 4, 4, 3), np.float32)).shape
    (1, 4, 4, 3)
    """

    @classmethod
    def from_children(cls, kids: list[tuple[str, Layer]], wiring: dict[str, Any] | None) -> Container:
        names = [n for n, _ in kids]
        if names not in (["body"], ["body", "shortcut"]):
            raise ValueError(f"Residual children must be 'body' (and 'shortcut'), got {names}")
        return cls(kids[0][1], kids[1][1] if len(kids) > 1 else None)

    def __init__(self, body: Layer, shortcut: Layer | None = None) -> None:
        super().__init__()
        self._add("body", body)
        if shortcut is not None:
            self._add("shortcut", shortcut)

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        caches: list[Any] = []
        y = self._forward_child("body", x, train, keep, caches)
        s = self._forward_child("shortcut", x, train, keep, caches) if "shortcut" in self._children else x
        _check_same(tuple(y.shape), tuple(s.shape))
        return y + s, caches

    def trace(self, t: Trace, prefix: str, rows: list[TraceRow]) -> Trace:
        dot = f"{prefix}." if prefix else ""
        tb = self._trace_child("body", t, dot, rows)
        ts = self._trace_child("shortcut", t, dot, rows) if "shortcut" in self._children else t
        _check_same(tb.shape, ts.shape)
        out = Trace(tb.shape, _max_rf(tb.rf, ts.rf), tb.jump)
        rows.append(TraceRow(f"{dot}add", "add", t.shape, LayerInfo(tb.shape, 0, math.prod(tb.shape)), out.rf))
        return out

    def _backward(self, dy: Array, done: set[int]) -> Array | None:
        caches = self._saved()
        dx = self._backward_child(self._children["body"], caches[0], dy, done)
        if "shortcut" in self._children:
            ds = self._backward_child(self._children["shortcut"], caches[1], dy, done)
        else:
            ds = dy
        return _sum_input_grads(dx, ds)


def _check_same(body: tuple[int, ...], shortcut: tuple[int, ...]) -> None:
    if body != shortcut:
        raise ShapeError(
            f"Residual: body output {body} and shortcut output {shortcut} differ; expected equal shapes "
            f"(give a shortcut, e.g. a 1x1 Conv2d, when channels or size change)"
        )


def _max_rf(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


class Concat(Container):
    """Branches applied to the same input, outputs concatenated on the channel axis (GoogLeNet style).

    Every branch must give the same (N, H, W); the output has the sum of their channels. Backward splits
    dy by channel and sums the branches' input gradients.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Concat, Conv2d
    >>> rng = np.random.default_rng(0)
    >>> block = Concat(Conv2d(3, 2, 1, rng=rng), Conv2d(3, 5, 3, padding=1, rng=rng))
    >>> block(np.ones((1, 4, 4, 3), np.float32)).shape
    (1, 4, 4, 7)
    """

    @classmethod
    def from_children(cls, kids: list[tuple[str, Layer]], wiring: dict[str, Any] | None) -> Container:
        names = [n for n, _ in kids]
        if names != [str(i) for i in range(len(kids))]:
            raise ValueError(f"{cls.__name__} children must be named 0, 1, ... in order, got {names[:5]}")
        return cls(*[layer for _, layer in kids])

    def __init__(self, *branches: Layer | Sequence[Layer]) -> None:
        super().__init__()
        items: Sequence[Any] = branches[0] if len(branches) == 1 and isinstance(branches[0], (list, tuple)) else branches
        if not items:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(items):
            self._add(str(i), b, mark=False)
        self._mark_shared()

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        caches: list[Any] = []
        outs = [self._forward_child(name, x, train, keep, caches) for name in self._children]
        _check_branches([tuple(o.shape) for o in outs], "(N, H, W)")
        return xp.concatenate(outs, axis=-1), (caches, [o.shape[-1] for o in outs])

    def trace(self, t: Trace, prefix: str, rows: list[TraceRow]) -> Trace:
        dot = f"{prefix}." if prefix else ""
        outs = [self._trace_child(name, t, dot, rows) for name in self._children]
        _check_branches([o.shape for o in outs], "(H, W)")
        shape = (*outs[0].shape[:-1], sum(o.shape[-1] for o in outs))
        rf = outs[0].rf
        for o in outs[1:]:
            rf = _max_rf(rf, o.rf)
        rows.append(TraceRow(f"{dot}concat", "concat", t.shape, LayerInfo(shape, 0, 0), rf))
        return Trace(shape, rf, outs[0].jump)

    def _backward(self, dy: Array, done: set[int]) -> Array | None:
        caches, widths = self._saved()
        dx: Array | None = None
        start = 0
        for i, (b, cache, w) in enumerate(zip(self._children.values(), caches, widths)):
            g = self._backward_child(b, cache, dy[..., start : start + w], done)
            start += w
            dx = g if i == 0 else _sum_input_grads(dx, g)
        return dx
