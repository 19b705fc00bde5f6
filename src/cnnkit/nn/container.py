"""Containers: Sequential chains, residual blocks and channel concatenation (DAG networks, exercise 15.4).

A container is itself a :class:`~cnnkit.nn.base.Layer`. Its ``params``, ``grads`` and ``buffers`` are
built on access from its children with dotted names (``"0.weight"``, ``"2.body.1.bias"``); the arrays are
the children's own, so in-place updates through the container change the children.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer


class _Gathered:
    """Descriptor: the children's dicts (``params``, ``grads``, ``buffers``) merged under dotted names."""

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __get__(self, obj, objtype=None):  # noqa: ANN001, ANN204
        if obj is None:
            return self
        out: dict[str, Array] = {}
        for cname, child in obj._children.items():
            for k, v in getattr(child, self.attr).items():
                out[f"{cname}.{k}"] = v
        return out

    def __set__(self, obj, value) -> None:  # noqa: ANN001
        if value:
            raise AttributeError(f"a container's {self.attr} are its children's; set them on the children")


def _composite(cls: type) -> type:
    """Give a Layer subclass holding ``self._children`` the container behaviour (no extra base class)."""

    def no_decay(self) -> frozenset[str]:  # noqa: ANN001
        return frozenset(f"{c}.{k}" for c, child in self._children.items() for k in child.no_decay)

    def dtype(self):  # noqa: ANN001, ANN202
        return next((v.dtype for v in self.params.values()), None)

    def zero_grad(self) -> None:  # noqa: ANN001
        for child in self._children.values():
            child.zero_grad()

    def astype(self, dtype):  # noqa: ANN001, ANN202
        for child in self._children.values():
            child.astype(dtype)
        return self

    def named_children(self) -> Iterator[tuple[str, Layer]]:  # noqa: ANN001
        return iter(self._children.items())

    def modules(self) -> Iterator[Layer]:  # noqa: ANN001
        """Every layer below this one, depth first (containers included, self first)."""
        yield self
        for child in self._children.values():
            if hasattr(child, "_children"):
                yield from child.modules()
            else:
                yield child

    def __repr__(self) -> str:  # noqa: ANN001
        inner = "\n".join(f"  ({k}): {v!r}".replace("\n", "\n  ") for k, v in self._children.items())
        return f"{type(self).__name__}(\n{inner}\n)"

    for attr in ("params", "grads", "buffers"):
        setattr(cls, attr, _Gathered(attr))
    cls.no_decay = property(no_decay)
    cls.dtype = property(dtype)
    for fn in (zero_grad, astype, named_children, modules, __repr__):
        setattr(cls, fn.__name__, fn)
    return cls


@_composite
class Sequential(Layer):
    """Layers applied one after another; backward runs them in reverse (the chain rule of §15.3)."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        self._children: dict[str, Layer] = {}
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, expected a Layer")
            self._children[str(i)] = layer

    @property
    def layers(self) -> list[Layer]:
        return list(self._children.values())

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def append(self, layer: Layer) -> "Sequential":
        self._children[str(len(self._children))] = layer
        return self

    def forward(self, x: Array, train: bool = False) -> Array:
        for layer in self._children.values():
            x = layer.forward(x, train)
        self._cache = True
        return x

    def backward(self, dy: Array) -> Array:
        self._saved()
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:  # a first layer that skips dX
                break
        return dy


@_composite
class Residual(Layer):
    """y = body(x) + shortcut(x) (ResNet block); the shortcut is the identity when None.

    Backward: dx = body.backward(dy) + shortcut.backward(dy) (the two paths' gradients add).
    """

    def __init__(self, body: Layer, shortcut: Optional[Layer] = None) -> None:
        super().__init__()
        self._children: dict[str, Layer] = {}
        self._children["body"] = body
        if shortcut is not None:
            self._children["shortcut"] = shortcut

    def forward(self, x: Array, train: bool = False) -> Array:
        y = self._children["body"].forward(x, train)
        s = self._children["shortcut"].forward(x, train) if "shortcut" in self._children else x
        if y.shape != s.shape:
            raise ShapeError(
                f"Residual: body output {y.shape} and shortcut output {s.shape} differ; expected equal shapes "
                f"(give a shortcut, e.g. a 1x1 Conv2d, when channels or size change)"
            )
        self._cache = True
        return y + s

    def backward(self, dy: Array) -> Array:
        self._saved()
        dx = self._children["body"].backward(dy)
        ds = self._children["shortcut"].backward(dy) if "shortcut" in self._children else dy
        return dx + ds


@_composite
class Concat(Layer):
    """Branches applied to the same input, outputs concatenated on the channel axis (GoogLeNet style).

    Every branch must give the same (N, H, W); the output has the sum of their channels. Backward splits
    dy by channel and sums the branches' input gradients.
    """

    def __init__(self, *branches: Layer) -> None:
        super().__init__()
        self._children: dict[str, Layer] = {}
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(branches):
            self._children[str(i)] = b

    def forward(self, x: Array, train: bool = False) -> Array:
        outs = [b.forward(x, train) for b in self._children.values()]
        lead = outs[0].shape[:-1]
        for i, o in enumerate(outs):
            if o.shape[:-1] != lead:
                raise ShapeError(
                    f"Concat: branch {i} gives {o.shape}, branch 0 gives {outs[0].shape}; expected the same "
                    f"(N, H, W) for every branch"
                )
        self._cache = [o.shape[-1] for o in outs]
        return xp.concatenate(outs, axis=-1)

    def backward(self, dy: Array) -> Array:
        widths: Sequence[int] = self._saved()
        dx = None
        start = 0
        for b, w in zip(self._children.values(), widths):
            g = b.backward(dy[..., start : start + w])
            start += w
            dx = g if dx is None else dx + g
        return dx  # type: ignore[return-value]

