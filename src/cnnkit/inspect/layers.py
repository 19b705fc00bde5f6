"""Naming the places of a network and watching what flows through them during one forward or backward pass.

Places are named as in :func:`cnnkit.summary.summary` (the layers' dotted paths, ``"3.body.0"``, plus a row of
their own where branches meet: ``"1.add"`` for a residual sum, ``"2.concat"`` for a concatenation, the node's
name for a graph's merge) and listed in the order of its rows, so an index counts the summary's rows from 0.

The watching is done with hooks installed on the layer objects for the duration of one pass and removed
after it (an instance attribute shadows the class's method), so it works on any network built from cnnkit
layers, without the layers' cooperation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError, quote
from cnnkit.nn.base import Layer
from cnnkit.nn.container import Concat, Container, Residual, Sequential
from cnnkit.nn.graph import Add, Graph, Merge


class LayerError(CnnkitError, ValueError):
    """A request the network cannot answer: no layer of that name or index, or a layer of another kind than
    the picture needs (filters of a pooling layer).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU, Sequential
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), ReLU())
    >>> find_place(net, "conv")
    Traceback (most recent call last):
    ...
    cnnkit.inspect.layers.LayerError: the network has no layer 'conv'; its layers are 0 (Conv2d), 1 (ReLU)
    >>> isinstance(LayerError("x"), ValueError)
    True
    """


@dataclass(frozen=True)
class Place:
    """One place of a network: its dotted ``name``, its ``kind`` (class name, or "add"/"concat" where branches
    meet), the object whose pass is watched there and how (``"layer"``: a layer's forward and backward;
    ``"join"``: a Residual or Concat container's own output; ``"merge"``: a graph's merge layer).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Residual, Sequential
    >>> net = Sequential(Conv2d(1, 1, 3, padding=1, rng=np.random.default_rng(0)),
    ...                  Residual(Conv2d(1, 1, 3, padding=1, rng=np.random.default_rng(1))))
    >>> [(p.name, p.kind, p.via) for p in places(net)]
    [('0', 'Conv2d', 'layer'), ('1.body', 'Conv2d', 'layer'), ('1.add', 'add', 'join')]
    """

    name: str
    kind: str
    obj: Layer
    via: str

    @property
    def path(self) -> list[str]:
        """The name's parts (empty for the network itself)."""
        return self.name.split(".") if self.name else []


def places(net: Layer) -> list[Place]:
    """Every place of ``net`` in the order of its summary rows (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(), Linear(36, 2, rng=rng))
    >>> [p.name for p in places(net)]
    ['0', '1', '2', '3']
    """
    out: list[Place] = []

    def walk(layer: Layer, name: str) -> None:
        dot = f"{name}." if name else ""
        if isinstance(layer, Sequential):
            for k, child in layer.named_children():
                walk(child, dot + k)
        elif isinstance(layer, Residual):
            for k, child in layer.named_children():
                walk(child, dot + k)
            out.append(Place(dot + "add", "add", layer, "join"))
        elif isinstance(layer, Concat):
            for k, child in layer.named_children():
                walk(child, dot + k)
            out.append(Place(dot + "concat", "concat", layer, "join"))
        elif isinstance(layer, Graph):
            children = dict(layer.named_children())
            for node in layer.nodes:
                child = children[node.name]
                if isinstance(child, Merge):
                    kind = "add" if isinstance(child, Add) else "concat"  # as the summary names them
                    out.append(Place(dot + node.name, kind, child, "merge"))
                else:
                    walk(child, dot + node.name)
        else:
            out.append(Place(name, type(layer).__name__, layer, "layer"))

    walk(net, "")
    return out


def _describe(ps: list[Place]) -> str:
    text = ", ".join(f"{p.name or '(network)'} ({p.kind})" for p in ps[:40])
    return text + (f", ... ({len(ps)} in all)" if len(ps) > 40 else "")


def find_place(net: Layer, layer: str | int) -> Place:
    """The place named ``layer`` (a dotted name), or the ``layer``-th place (an int, from 0; negative counts
    from the end; a string of digits that names no place is taken as an index). LayerError otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, MaxPool2d, Sequential
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), MaxPool2d(2))
    >>> find_place(net, "1").kind, find_place(net, -1).name, find_place(net, 0).kind
    ('MaxPool2d', '1', 'Conv2d')
    """
    ps = places(net)
    if isinstance(layer, str):
        for p in ps:
            if p.name == layer:
                return p
        text = layer.strip()
        if not (text.lstrip("-").isdigit() and text.count("-") <= 1):
            raise LayerError(f"the network has no layer {quote(layer, 80)}; its layers are {_describe(ps)}")
        index = int(text)
    elif isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        index = int(layer)
    else:
        raise LayerError(f"a layer is named by a dotted name or an index, got {quote(layer, 80)}")
    if not -len(ps) <= index < len(ps):
        raise LayerError(f"layer index {index} is out of range: the network has {len(ps)} layers ({_describe(ps)})")
    return ps[index]


# -- hooks ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def patched(obj: Any, method: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """``obj.method`` replaced by ``wrapper(original)`` on this object only, for the duration of the block.

    Examples
    --------
    >>> from cnnkit.nn import ReLU
    >>> relu = ReLU()
    >>> with patched(relu, "extra_repr", lambda orig: lambda: "watched " + orig()):
    ...     print(relu)
    ReLU(watched )
    >>> print(relu)
    ReLU()
    """
    had = method in vars(obj)
    saved = vars(obj).get(method)
    original = getattr(obj, method)
    setattr(obj, method, wrapper(original))
    try:
        yield
    finally:
        if had:
            setattr(obj, method, saved)
        else:
            delattr(obj, method)


def capture_outputs(net: Layer, x: Any, ps: list[Place] | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """Run ``net`` on ``x`` in evaluation mode and return (its output, {place name: the output there}).

    Each output is copied as it appears (a later in-place activation does not change it). A layer used at
    several places gives each place the output of its own use; a graph node the output does not depend on
    is not run and has no entry.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU, Sequential
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), ReLU(inplace=True))
    >>> y, outs = capture_outputs(net, np.random.default_rng(1).standard_normal((1, 5, 5, 1)).astype(np.float32))
    >>> sorted(outs), outs["0"].shape, bool((outs["0"] < 0).any()), bool(np.array_equal(outs["1"], y))
    (['0', '1'], (1, 3, 3, 2), True, True)
    """
    ps = places(net) if ps is None else ps
    records: dict[int, list[np.ndarray]] = {}

    def forward_hook(obj: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                y = orig(*args, **kwargs)
                records.setdefault(id(obj), []).append(np.array(y, copy=True))
                return y
            return run
        return wrap

    def merge_hook(obj: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                y, cache = orig(*args, **kwargs)
                records.setdefault(id(obj), []).append(np.array(y, copy=True))
                return y, cache
            return run
        return wrap

    with contextlib.ExitStack() as stack:
        seen: set[int] = set()
        for p in ps:
            if id(p.obj) in seen:
                continue
            seen.add(id(p.obj))
            if p.via == "merge":
                stack.enter_context(patched(p.obj, "merge", merge_hook(p.obj)))
            else:
                stack.enter_context(patched(p.obj, "forward", forward_hook(p.obj)))
        y = net.forward(x, train=False)
    used: dict[int, int] = {}
    out: dict[str, np.ndarray] = {}
    for p in ps:
        k = used.get(id(p.obj), 0)
        got = records.get(id(p.obj), [])
        if k < len(got):
            out[p.name or p.kind] = got[k]
        used[id(p.obj)] = k + 1
    return y, out


@contextlib.contextmanager
def input_gradients(net: Layer) -> Iterator[None]:
    """Every layer of ``net`` computes its input gradient for the duration of the block (a first layer built
    with ``need_input_grad=False`` skips it otherwise, and a saliency map needs it).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d
    >>> conv = Conv2d(1, 1, 3, need_input_grad=False, rng=np.random.default_rng(0))
    >>> with input_gradients(conv):
    ...     y = conv.forward(np.ones((1, 3, 3, 1), np.float32), train=False, grad=True)
    ...     dx = conv.backward(np.ones_like(y))
    >>> dx.shape, conv.need_input_grad
    ((1, 3, 3, 1), False)
    """
    changed = [m for m in net.modules() if getattr(m, "need_input_grad", True) is False]
    for m in changed:
        m.need_input_grad = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for m in changed:
            m.need_input_grad = False  # type: ignore[attr-defined]


def inject_gradient(place: Place, dy: Any) -> contextlib.AbstractContextManager[None]:
    """During the block, the backward pass through ``place`` starts from ``dy`` whatever arrives from above
    (a network's backward from zeros then gives the gradient of whatever ``dy`` weighs at that place).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU, Sequential
    >>> net = Sequential(Conv2d(1, 1, 1, bias=False, rng=np.random.default_rng(0)), ReLU())
    >>> net[0].params["weight"][...] = 2.0
    >>> y = net.forward(np.ones((1, 2, 2, 1), np.float32), train=False, grad=True)
    >>> with inject_gradient(find_place(net, "0"), np.ones((1, 2, 2, 1), np.float32)):
    ...     dx = net.backward(np.zeros_like(y))
    >>> dx[0, :, :, 0]  # d(sum of the convolution's outputs)/dx = 2 everywhere
    array([[2., 2.],
           [2., 2.]], dtype=float32)
    """
    if place.via == "merge":
        return patched(place.obj, "split", lambda orig: lambda _dy, cache: orig(dy, cache))
    if place.via == "join" or isinstance(place.obj, Container):
        return patched(place.obj, "_backward", lambda orig: lambda _dy, done: orig(dy, done))
    return patched(place.obj, "backward", lambda orig: lambda _dy: orig(dy))
