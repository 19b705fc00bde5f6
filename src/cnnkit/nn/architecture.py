"""A network's architecture as plain data (JSON-able), and the network built back from it.

Every cnnkit layer describes itself with :meth:`~cnnkit.nn.base.Layer.config` (its constructor's
arguments); containers are described by their children. A layer used at several places (weight sharing)
is written once and referred to by the path of its first use (``{"ref": "0.body"}``), as is a layer named
in another's configuration (the MaxPool2d a MaxUnpool2d mirrors). Reading accepts only cnnkit's own
layer classes and only their constructors' argument names, so a file from a stranger can describe a
network but never name code to run; nesting depth and layer count are bounded.

Examples
--------
>>> import numpy as np
>>> from cnnkit.nn import Conv2d, ReLU, Sequential
>>> net = Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(0)), ReLU())
>>> data = to_data(net)
>>> data["class"], [c["class"] for _, c in data["children"]]
('Sequential', ['Conv2d', 'ReLU'])
>>> again = from_data(data)
>>> again[0].params["weight"].shape
(3, 3, 1, 4)
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from cnnkit.errors import ModelFileError, quote
from cnnkit.nn.base import Layer
from cnnkit.nn.container import Container
from cnnkit.nn.graph import Merge

MAX_DEPTH = 64
"""Deepest nesting of containers accepted when reading."""
MAX_LAYERS = 100_000
"""Most layers accepted when reading."""


def layer_classes() -> dict[str, type[Layer]]:
    """The classes an architecture may name: every layer exported by :mod:`cnnkit.nn`.

    Examples
    --------
    >>> from cnnkit.nn.architecture import layer_classes
    >>> classes = layer_classes()
    >>> classes["Conv2d"].__name__, "Sequential" in classes, "Layer" in classes  # base classes are not buildable
    ('Conv2d', True, False)
    """
    import cnnkit.nn as nn

    out: dict[str, type[Layer]] = {}
    for name in nn.__all__:
        obj = getattr(nn, name)
        if isinstance(obj, type) and issubclass(obj, Layer) and obj not in (Layer, Container, Merge):
            out[name] = obj
    return out


def to_data(net: Layer) -> dict[str, Any]:
    """The architecture of ``net`` as JSON-able data (no weights).

    Raises NotImplementedError for a layer class that does not describe its configuration.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear, ReLU, Sequential
    >>> from cnnkit.nn.architecture import to_data
    >>> fc = Linear(2, 2, rng=np.random.default_rng(0))
    >>> data = to_data(Sequential(fc, ReLU(), fc))  # fc used twice: the second use refers to the first
    >>> data["children"][0][1]
    {'class': 'Linear', 'config': {'in_features': 2, 'out_features': 2, 'bias': True, 'need_input_grad': True}}
    >>> data["children"][2]
    ['2', {'ref': '0'}]
    """
    paths: dict[int, str] = {}
    known = layer_classes()

    def walk(layer: Layer, path: str) -> dict[str, Any]:
        if id(layer) in paths:
            return {"ref": paths[id(layer)]}
        paths[id(layer)] = path
        cls = type(layer).__name__
        if known.get(cls) is not type(layer):
            raise NotImplementedError(f"{cls} at {path or 'the top'} is not a cnnkit layer, so its architecture cannot be saved as data")
        if isinstance(layer, Container):
            children = [[name, walk(child, f"{path}.{name}" if path else name)] for name, child in layer.named_children()]
            node: dict[str, Any] = {"class": cls, "children": children}
            wiring = layer.wiring()
            if wiring is not None:
                node["wiring"] = wiring
            return node
        config = {k: _value(v, paths, f"{cls}.{k}") for k, v in layer.config().items()}
        return {"class": cls, "config": config}

    return walk(net, "")


def _value(v: Any, paths: dict[int, str], what: str) -> Any:
    if isinstance(v, Layer):
        if id(v) not in paths:
            raise NotImplementedError(f"{what} names a layer that comes later or is not part of the network")
        return {"ref": paths[id(v)]}
    if isinstance(v, tuple):
        return [_value(e, paths, what) for e in v]
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return v


def from_data(data: Any, dtype: Any = None, rng: np.random.Generator | None = None) -> Layer:
    """Build the network an architecture describes (fresh weights; load a state dict into it after).

    Raises :class:`~cnnkit.errors.ModelFileError` naming the place of anything malformed: an unknown
    class, an argument its constructor does not take, a reference to nothing, too deep or too many layers.

    Examples
    --------
    >>> from cnnkit.nn.architecture import from_data
    >>> net = from_data({"class": "Sequential", "children": [
    ...     ["0", {"class": "Conv2d", "config": {"in_channels": 1, "out_channels": 4, "kernel_size": 3}}],
    ...     ["1", {"class": "ReLU"}]]})
    >>> net
    Sequential(
      (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=0, dilation=(1, 1), groups=1, bias=True)
      (1): ReLU()
    )
    >>> from_data({"class": "Linear", "config": {"in_features": 2, "out_features": 2, "command": "rm -rf /"}})
    Traceback (most recent call last):
        ...
    cnnkit.errors.ModelFileError: architecture, at the top: Linear takes no argument(s) ['command']
    """
    classes = layer_classes()
    built: dict[str, Layer] = {}
    count = [0]
    uses: dict[int, int] = {}  # id of a built layer -> how many leaf layers one forward pass through it applies
    rng = rng if rng is not None else np.random.default_rng(0)

    def fail(path: str, why: str) -> ModelFileError:
        # one line, and what the file says quoted short: a child's name or a bad value may be of any length
        where = path if len(path) <= 120 and path.isprintable() else quote(path, 120)
        why = " ".join(why.split())
        return ModelFileError(f"architecture, at {where or 'the top'}: {why if len(why) <= 300 else why[:297] + '...'}")

    def resolve(ref: Any, path: str) -> Layer:
        if not isinstance(ref, str) or ref not in built:
            raise fail(path, f"reference {quote(ref, 80)} names no earlier layer")
        return built[ref]

    def arg(v: Any, path: str) -> Any:
        if isinstance(v, dict):
            if set(v) != {"ref"}:
                raise fail(path, f"unexpected object {quote(v, 80)} as an argument")
            return resolve(v["ref"], path)
        if isinstance(v, list):
            return [arg(e, path) for e in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise fail(path, f"unexpected value {quote(v, 80)}")

    def walk(node: Any, path: str, depth: int) -> Layer:
        if depth > MAX_DEPTH:
            raise fail(path, f"nested more than {MAX_DEPTH} containers deep")
        count[0] += 1
        if count[0] > MAX_LAYERS:
            raise fail(path, f"more than {MAX_LAYERS} layers")
        if not isinstance(node, dict):
            raise fail(path, f"expected an object, got {quote(node, 80)}")
        if set(node) == {"ref"}:
            return resolve(node["ref"], path)
        name = node.get("class")
        cls = classes.get(name) if isinstance(name, str) else None
        if cls is None:
            raise fail(path, f"unknown layer class {quote(name, 80)}")
        if issubclass(cls, Container):
            children = node.get("children")
            if not isinstance(children, list) or not {"class", "children"} <= set(node) <= {"class", "children", "wiring"}:
                raise fail(path, f"a {name} needs exactly 'class', a list of 'children' (and its 'wiring')")
            kids: list[tuple[str, Layer]] = []
            for item in children:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise fail(path, f"a child must be [name, layer], got {quote(item, 80)}")
                kids.append((item[0], walk(item[1], f"{path}.{item[0]}" if path else item[0], depth + 1)))
            try:
                layer: Layer = cls.from_children(kids, node.get("wiring"))
            except (TypeError, ValueError) as exc:
                raise fail(path, str(exc)) from None
            # a child named by reference is applied again: containers referring to each other can describe
            # a network whose forward pass applies exponentially many layers, from a few lines of data
            applied = sum(uses.get(id(child), 1) for _, child in kids)
            if applied > MAX_LAYERS:
                raise fail(path, f"applies {applied:,} layers in one forward pass (its references repeat them), "
                                 f"more than {MAX_LAYERS:,}")
            uses[id(layer)] = applied
        else:
            config = node.get("config", {})
            if not isinstance(config, dict) or not set(node) <= {"class", "config"}:
                raise fail(path, f"a {name} needs 'class' and an object 'config'")
            params = inspect.signature(cls.__init__).parameters
            unknown = sorted(k for k in config if k not in params or k in ("self", "rng", "dtype"))
            if unknown:
                raise fail(path, f"{name} takes no argument(s) {unknown[:5]}")
            kwargs = {k: arg(v, f"{path}.{k}") for k, v in config.items()}
            if "dtype" in params and dtype is not None:
                kwargs["dtype"] = dtype
            if "rng" in params:
                kwargs["rng"] = rng
            try:
                layer = cls(**kwargs)
            except (TypeError, ValueError) as exc:  # ShapeError is a ValueError
                raise fail(path, f"{name}: {exc}") from None
            if dtype is not None and layer.params and "dtype" not in params:
                layer.astype(dtype)
        built[path] = layer
        return layer

    return walk(data, "", 0)
