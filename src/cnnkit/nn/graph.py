"""Graph: a network as a directed acyclic graph of layers, for what a chain cannot write.

Every node applies one layer to the outputs of earlier nodes (or to the graph's input) and names its own
output. Single-input layers take one input; the merge layers :class:`Add` and :class:`Concatenate` take
several (a residual sum, an Inception concatenation). The forward pass runs the nodes in the order they
were added (each node's inputs must exist already, so the order is topological); the backward pass runs
them in reverse, and where one output feeds several nodes its gradients add up (the total derivative of
§15.3's chain rule over every path). ONNX models are imported as graphs; residual networks and Inception
modules can be written as graphs directly.

Examples
--------
>>> import numpy as np
>>> from cnnkit.nn import Conv2d, ReLU
>>> rng = np.random.default_rng(0)
>>> g = Graph()
>>> h = g.add("conv", Conv2d(3, 3, 3, padding=1, rng=rng), "input")
>>> h = g.add("relu", ReLU(), h)
>>> out = g.add("sum", Add(), h, "input")          # y = relu(conv(x)) + x
>>> g.set_output(out)
>>> x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
>>> y = g.forward(x, train=True)
>>> dx = g.backward(np.ones_like(y))
>>> y.shape, dx.shape, sorted(g.params)
((2, 5, 5, 3), (2, 5, 5, 3), ['conv.bias', 'conv.weight'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError, StateError
from cnnkit.nn.base import Layer, LayerInfo, Trace, TraceRow
from cnnkit.nn.container import Container


class Merge(Layer):
    """A layer of several inputs (only inside a :class:`Graph`): ``merge(xs)`` and ``split(dy, cache)``.

    Examples
    --------
    >>> import numpy as np
    >>> isinstance(Add(), Merge), Add().merged_shape([(2, 2, 3), (2, 2, 3)])
    (True, (2, 2, 3))
    """

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return self.merge([x], keep)

    def backward(self, dy: Array) -> Array | None:
        return self.split(dy, self._saved())[0]

    def merge(self, xs: Sequence[Array], keep: bool) -> tuple[Array, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def split(self, dy: Array, cache: Any) -> list[Array]:  # pragma: no cover - abstract
        raise NotImplementedError

    def merged_shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}


class Add(Merge):
    """Elementwise sum of inputs of one shape (a residual connection): y = x_1 + ... + x_k; each dx_i = dy.

    Examples
    --------
    >>> import numpy as np
    >>> y, _ = Add().merge([np.ones((1, 2)), np.full((1, 2), 2.0)], keep=False)
    >>> y
    array([[3., 3.]])
    """

    def merge(self, xs: Sequence[Array], keep: bool) -> tuple[Array, Any]:
        self.merged_shape([tuple(x.shape[1:]) for x in xs])
        y = xs[0] + xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            y += x
        return y, len(xs)

    def split(self, dy: Array, cache: Any) -> list[Array]:
        return [dy] * int(cache)

    def merged_shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        for s in shapes[1:]:
            if s != shapes[0]:
                raise ShapeError(f"Add: inputs of shapes {list(shapes)} cannot be added; expected one shape")
        return shapes[0]


class Concatenate(Merge):
    """Concatenation of inputs along ``axis`` (default the channel axis of NHWC, -1); backward splits dy.

    Examples
    --------
    >>> import numpy as np
    >>> y, cache = Concatenate().merge([np.zeros((1, 2, 2, 3)), np.ones((1, 2, 2, 1))], keep=True)
    >>> y.shape, [d.shape for d in Concatenate().split(np.ones_like(y), cache)]
    ((1, 2, 2, 4), [(1, 2, 2, 3), (1, 2, 2, 1)])
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = int(axis)

    def _axis(self, ndim: int) -> int:
        a = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= a < ndim:
            raise ShapeError(f"Concatenate: axis {self.axis} is not a feature axis of inputs with {ndim - 1} axes per example")
        return a

    def merge(self, xs: Sequence[Array], keep: bool) -> tuple[Array, Any]:
        shapes = [tuple(x.shape[1:]) for x in xs]
        self.merged_shape(shapes)
        a = self._axis(xs[0].ndim)
        return xp.concatenate(xs, axis=a), ([int(x.shape[a]) for x in xs], a)

    def split(self, dy: Array, cache: Any) -> list[Array]:
        widths, a = cache
        out, start = [], 0
        for w in widths:
            index = [slice(None)] * dy.ndim
            index[a] = slice(start, start + w)
            out.append(dy[tuple(index)])
            start += w
        return out

    def merged_shape(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        a = self._axis(len(shapes[0]) + 1) - 1
        for s in shapes[1:]:
            if len(s) != len(shapes[0]) or s[:a] + s[a + 1 :] != shapes[0][:a] + shapes[0][a + 1 :]:
                raise ShapeError(f"Concatenate: inputs of shapes {list(shapes)} differ outside axis {self.axis}")
        return (*shapes[0][:a], sum(s[a] for s in shapes), *shapes[0][a + 1 :])

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}


@dataclass(frozen=True)
class Node:
    """One node: the child layer ``name`` applied to the tensors ``inputs``; its output is named ``name``.

    Examples
    --------
    >>> Node("sum", ("conv", "input")).inputs
    ('conv', 'input')
    """

    name: str
    inputs: tuple[str, ...]


class Graph(Container):
    """A DAG of layers with one input (named ``input_name``) and one output (see the module docstring).

    Build it with :meth:`add` (in an order where every input already exists) and :meth:`set_output`.

    Examples
    --------
    An Inception-style block: two branches of the same input, concatenated on the channel axis.

    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d
    >>> rng = np.random.default_rng(0)
    >>> g = Graph()
    >>> _ = g.add("b1", Conv2d(3, 2, 1, rng=rng), "input")
    >>> _ = g.add("b3", Conv2d(3, 4, 3, padding=1, rng=rng), "input")
    >>> g.set_output(g.add("cat", Concatenate(), "b1", "b3"))
    >>> g(np.ones((1, 5, 5, 3), np.float32)).shape
    (1, 5, 5, 6)
    """

    def __init__(self, input_name: str = "input") -> None:
        super().__init__()
        self.input_name = input_name
        self.nodes: list[Node] = []
        self.output_name: str | None = None
        self._last_use: dict[str, int] = {}
        self._live: set[str] = set()
        self._bulk = False  # from_children: shared layers and uses are worked out once, after the last node

    # -- building -------------------------------------------------------------------------------
    def add(self, name: str, layer: Layer, *inputs: str) -> str:
        """Append node ``name`` applying ``layer`` to ``inputs`` (tensor names); returns ``name`` (its output)."""
        if not isinstance(name, str) or not name or "." in name or name == self.input_name or name in self._children:
            raise ValueError(f"Graph.add: node name {name!r} must be new, non-empty and without dots")
        missing = [i for i in inputs if i != self.input_name and i not in self._children]
        if missing:
            raise ValueError(f"Graph.add: node {name!r} reads {missing}, which no earlier node produces")
        if not inputs:
            raise ValueError(f"Graph.add: node {name!r} needs at least one input")
        if len(inputs) > 1 and not isinstance(layer, Merge):
            raise ValueError(f"Graph.add: {type(layer).__name__} takes one input, node {name!r} gives it {len(inputs)}")
        self._add(name, layer, mark=not self._bulk)
        self.nodes.append(Node(name, tuple(inputs)))
        if not self._bulk:
            self._uses()
        return name

    def set_output(self, name: str) -> None:
        """The node whose output is the graph's output (default: the last node added)."""
        if name not in self._children and name != self.input_name:
            raise ValueError(f"Graph.set_output: no node named {name!r}")
        self.output_name = name
        self._uses()

    @property
    def output(self) -> str:
        if self.output_name is not None:
            return self.output_name
        if not self.nodes:
            raise StateError("the graph has no nodes")
        return self.nodes[-1].name

    def _uses(self) -> None:
        """The nodes the output depends on (others are not run), and where each tensor is read last."""
        live = {self.output} if self.nodes else set()
        for node in reversed(self.nodes):
            if node.name in live:
                live.update(node.inputs)
        self._live = live
        last: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in live:
                for name in node.inputs:
                    last[name] = i
        self._last_use = last

    # -- forward and backward ------------------------------------------------------------------
    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        env: dict[str, Array] = {self.input_name: x}
        caches: list[Any] = []
        out = self.output
        for i, node in enumerate(self.nodes):
            if node.name not in self._live:
                caches.append(None)
                continue
            layer = self._children[node.name]
            if isinstance(layer, Merge):
                try:
                    y, cache = layer.merge([env[n] for n in node.inputs], keep)
                except ShapeError as exc:
                    raise exc.within(node.name, type(layer).__name__) from None
                caches.append(cache if keep else None)
            else:
                y = self._forward_child(node.name, env[node.inputs[0]], train, keep, caches)
            env[node.name] = y
            for n in node.inputs:  # free what no later node reads
                if self._last_use.get(n) == i and n != out:
                    env.pop(n, None)
        return env[out], caches

    def _backward(self, dy: Array, done: set[int]) -> Array | None:
        caches = self._saved()
        grads: dict[str, Array | None] = {self.output: dy}
        for node, cache in zip(reversed(self.nodes), reversed(caches)):
            if node.name not in self._live:
                continue
            layer = self._children[node.name]
            g = grads.pop(node.name, None)
            if g is None:  # a later layer skipped its input gradient: nothing flows back through here
                if layer.params:
                    raise StateError(f"Graph: node {node.name!r} has parameters but receives no gradient (a layer "
                                     f"after it was built with need_input_grad=False)")
                for name in node.inputs:
                    grads[name] = None
                continue
            if isinstance(layer, Merge):
                parts: list[Array | None] = list(layer.split(g, cache))
            else:
                parts = [self._backward_child(layer, cache, g, done)]
            for name, part in zip(node.inputs, parts):
                if name in grads:
                    prev = grads[name]
                    grads[name] = None if prev is None or part is None else prev + part
                else:
                    grads[name] = part
        return grads.get(self.input_name)

    # -- shapes, costs, data -------------------------------------------------------------------
    def trace(self, t: Trace, prefix: str, rows: list[TraceRow]) -> Trace:
        dot = f"{prefix}." if prefix else ""
        env: dict[str, Trace] = {self.input_name: t}
        for node in self.nodes:
            layer = self._children[node.name]
            ins = [env[n] for n in node.inputs]
            if isinstance(layer, Merge):
                try:
                    shape = layer.merged_shape([s.shape for s in ins])
                except ShapeError as exc:
                    raise exc.within(node.name, type(layer).__name__) from None
                rfs = [s.rf for s in ins]
                rf = None if any(r is None for r in rfs) else max(r for r in rfs if r is not None)
                kind = "add" if isinstance(layer, Add) else "concat"
                flops = math.prod(shape) * (len(ins) - 1) if kind == "add" else 0
                rows.append(TraceRow(f"{dot}{node.name}", kind, ins[0].shape, LayerInfo(shape, 0, flops), rf))
                env[node.name] = Trace(shape, rf, max(s.jump for s in ins))
            else:
                env[node.name] = self._trace_child(node.name, ins[0], dot, rows)
        return env[self.output]

    def wiring(self) -> dict[str, Any]:
        """What :mod:`cnnkit.nn.architecture` stores besides the children: the inputs of every node."""
        return {"input": self.input_name, "output": self.output, "inputs": {n.name: list(n.inputs) for n in self.nodes}}

    @classmethod
    def from_children(cls, kids: list[tuple[str, Layer]], wiring: dict[str, Any] | None) -> Graph:
        if not isinstance(wiring, dict):
            raise ValueError("a Graph needs its 'wiring'")
        inputs = wiring.get("inputs")
        if not isinstance(inputs, dict):
            raise ValueError("a Graph's wiring needs 'inputs'")
        g = cls(str(wiring.get("input", "input")))
        g._bulk = True  # each add() would otherwise go over the whole graph: the square of its size in all
        try:
            for name, layer in kids:
                ins = inputs.get(name)
                if not isinstance(ins, list) or not all(isinstance(i, str) for i in ins):
                    raise ValueError(f"node {name!r} has no list of inputs")
                g.add(name, layer, *ins)
        finally:
            g._bulk = False
        g._mark_shared()
        g._uses()
        out = wiring.get("output")
        if isinstance(out, str):
            g.set_output(out)
        return g

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({n.name} <- {', '.join(n.inputs)}): {self._children[n.name]!r}".replace("\n", "\n  ")
                          for n in self.nodes)
        return f"Graph(\n{inner}\n)"
