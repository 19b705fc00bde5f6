"""Dropout layer (thin class over :mod:`cnnkit.ops.dropout`); seed 000 §15.7.1 "随机失活层"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.backend import Array
from cnnkit.nn.base import Layer
from cnnkit.nn.init import as_rng
from cnnkit.ops.dropout import check_p, dropout_backward, dropout_forward


class Dropout(Layer):
    """Inverted dropout: in training each entry is zeroed with probability p and the rest scaled by
    1/(1-p); at evaluation (``train=False``) the identity. Any input shape.

    ``rng`` (np.random.Generator) draws the masks; None gives a fresh OS-seeded generator.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Dropout
    >>> drop = Dropout(p=0.5, rng=np.random.default_rng(0))
    >>> x = np.ones((1, 2, 4, 1), np.float32)
    >>> y = drop(x)  # training mode: each entry zeroed with probability p, the rest scaled by 1/(1 - p) = 2
    >>> y[0, :, :, 0]
    array([[2., 2., 2., 0.],
           [0., 0., 0., 0.]], dtype=float32)
    >>> bool((drop.backward(np.ones_like(y)) == y).all())  # the gradient takes the same mask
    True
    >>> bool((drop.eval()(x) == x).all())  # evaluation: the identity
    True
    """

    draws_random = True
    elementwise = True

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = check_p(p)
        self.rng = as_rng(rng)

    def reseed(self, key: Sequence[int]) -> None:
        """Draw the masks from ``np.random.default_rng(key)`` from now on."""
        self.rng = np.random.default_rng(list(key))

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        return dropout_forward(x, self.p, train, self.rng)

    def backward(self, dy: Array) -> Array:
        return dropout_backward(dy, self._saved())

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"
