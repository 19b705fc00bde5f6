"""Where training and evaluation take their mini-batches from: ``(x, y)`` batches by example index.

A *source* has a length, the class names (when known) and ``take(indices, rng)``, which returns the
network inputs and the integer labels of those examples. The loop (:mod:`cnnkit.train.loop`) asks for the
batches of a shuffled order; it passes a generator seeded by ``(seed, epoch, batch)`` to a source whose
``random`` is True (augmentation), so that a resumed run draws the same augmentations again.

:class:`ArraySource` serves arrays held in memory: raw images with a transform (e.g. a fitted
:class:`~cnnkit.data.Preprocessor`) applied per batch, or inputs already prepared. Augmentations
(:mod:`cnnkit.data.augment`) act on the raw images before the transform.

Examples
--------
>>> import numpy as np
>>> from cnnkit.data import Preprocessor
>>> images = np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2, 1)
>>> src = ArraySource(images, np.array([0, 1, 0, 1]), classes=("a", "b"), transform=Preprocessor("scale"))
>>> x, y = src.take(np.array([3, 0]))
>>> x.dtype, x.shape, y.tolist(), len(src)
(dtype('float32'), (2, 2, 2, 1), [1, 0], 4)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cnnkit.backend import Array
from cnnkit.errors import ShapeError

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""An augmentation: (raw batch (N, H, W, C), generator) -> a batch of the same shape."""


@runtime_checkable
class Source(Protocol):
    """Labelled examples by index (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import ArraySource, Source
    >>> isinstance(ArraySource(np.zeros((2, 1)), np.array([0, 1])), Source)
    True
    >>> isinstance((np.zeros((2, 1)), np.array([0, 1])), Source)  # a pair of arrays is not; see as_source
    False
    """

    @property
    def classes(self) -> tuple[str, ...] | None: ...

    @property
    def random(self) -> bool: ...

    def __len__(self) -> int: ...

    def take(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> tuple[Array, Array]: ...


class ArraySource:
    """Examples held in memory: ``x`` (N, ...) and integer labels ``y`` (N,).

    ``transform`` (e.g. a fitted Preprocessor) turns a batch of ``x`` into network inputs; ``augment``
    changes a batch of ``x`` at random before that (training only: it is applied when ``take`` is given a
    generator). Neither is applied to the whole array at once, so ``x`` can stay uint8.

    Examples
    --------
    The augmentation applies only when ``take`` is given a generator (training), the transform always:

    >>> import numpy as np
    >>> from cnnkit.data.augment import horizontal_flip
    >>> from cnnkit.data.source import ArraySource
    >>> x = np.array([[1, 2]], np.uint8).reshape(1, 1, 2, 1)
    >>> src = ArraySource(x, np.array([0]), ("a",), transform=lambda b: b * 10.0, augment=lambda b, rng: b[:, :, ::-1])
    >>> src.random
    True
    >>> src.take(np.array([0]))[0].ravel(), src.take(np.array([0]), np.random.default_rng(0))[0].ravel()
    (array([10., 20.]), array([20., 10.]))
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        classes: Sequence[str] | None = None,
        transform: Callable[[Any], Array] | None = None,
        augment: Augment | None = None,
    ) -> None:
        n = getattr(x, "shape", (None,))[0]
        y = np.asarray(y)
        if y.ndim != 1 or n != y.shape[0]:
            raise ShapeError(
                f"inputs and labels disagree: {n} examples (x shape {getattr(x, 'shape', None)}) but labels of shape {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ShapeError(f"labels must be integers (class indices), got dtype {y.dtype}")
        self.x, self.y = x, y
        self._classes = tuple(classes) if classes is not None else None
        self.transform, self.augment = transform, augment

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self._classes

    @property
    def random(self) -> bool:
        return self.augment is not None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> tuple[Array, Array]:
        x = self.x[indices]
        if self.augment is not None and rng is not None:
            x = self.augment(x, rng)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.y[indices]

    def subset(self, indices: np.ndarray) -> ArraySource:
        """The examples at ``indices``, with the same transform and augmentation."""
        return ArraySource(self.x[indices], self.y[indices], self._classes, self.transform, self.augment)


def as_source(data: Any, classes: Sequence[str] | None = None) -> Source:
    """A :class:`Source` from a source, or from an ``(x, y)`` pair of arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import as_source
    >>> src = as_source((np.zeros((3, 2)), np.array([1, 0, 1])), classes=["no", "yes"])
    >>> type(src).__name__, len(src), src.classes, as_source(src) is src
    ('ArraySource', 3, ('no', 'yes'), True)
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return ArraySource(data[0], data[1], classes)
    raise TypeError(f"expected (x, y) arrays or a cnnkit.data source, got {type(data).__name__}")


class SubsetSource:
    """The examples of ``source`` at ``indices`` (a validation split, a slice), indexed 0..len-1.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import ArraySource, SubsetSource
    >>> src = ArraySource(np.arange(5.0).reshape(5, 1), np.array([0, 1, 2, 3, 4]))
    >>> part = SubsetSource(src, np.array([4, 2]))
    >>> len(part), part.take(np.array([0, 1]))
    (2, (array([[4.],
           [2.]]), array([4, 2])))
    """

    def __init__(self, source: Source, indices: np.ndarray) -> None:
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self.source.classes

    @property
    def random(self) -> bool:
        return self.source.random

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def take(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> tuple[Array, Array]:
        return self.source.take(self.indices[indices], rng)


def split(source: Source, fraction: float, seed: int = 0) -> tuple[Source, Source]:
    """(training part, validation part): ``fraction`` of the examples, drawn by a generator seeded by ``seed``,
    are held out (at least one each way). Both parts keep the examples' original order.

    Examples
    --------
    >>> import numpy as np
    >>> train, val = split(ArraySource(np.zeros((10, 1)), np.arange(10)), 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    n = len(source)
    if not 0 < fraction < 1:
        raise ValueError(f"a validation split must be a fraction in (0, 1), got {fraction}")
    n_val = min(max(1, round(n * fraction)), n - 1)
    if n < 2:
        raise ValueError(f"cannot hold out a validation split from {n} example(s)")
    perm = np.random.default_rng([seed, 0x5A1]).permutation(n)
    return SubsetSource(source, np.sort(perm[n_val:])), SubsetSource(source, np.sort(perm[:n_val]))


def labels_of(source: Source) -> np.ndarray | None:
    """All labels of a source when they are at hand without decoding inputs (None otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import ArraySource, SubsetSource, labels_of
    >>> src = ArraySource(np.zeros((4, 1)), np.array([3, 1, 2, 0]))
    >>> labels_of(SubsetSource(src, np.array([0, 2])))
    array([3, 2])
    """
    if isinstance(source, ArraySource):
        return source.y
    if isinstance(source, SubsetSource):
        inner = labels_of(source.source)
        return None if inner is None else inner[source.indices]
    y = getattr(source, "labels", None)
    return None if y is None else np.asarray(y)
