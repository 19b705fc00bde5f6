"""The in-memory dataset every loader returns: uint8 NHWC images, int64 labels, class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.errors import ShapeError

SPLITS = ("train", "test")
"""The splits every registered dataset has."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image set held in host memory.

    Attributes:
        images: uint8 array (N, H, W, C), raw pixel values 0..255 (see ``preprocess`` to convert).
        labels: int64 array (N,), each in ``range(len(classes))``.
        classes: class names; ``classes[labels[i]]`` names example ``i``.
        name: a short description such as ``"mnist/train"``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import Dataset
    >>> ds = Dataset(np.zeros((4, 28, 28, 1), np.uint8), np.array([0, 1, 1, 2]), ("a", "b", "c"), "toy")
    >>> len(ds), ds.image_shape, ds.num_classes, ds.class_counts()
    (4, (28, 28, 1), 3, array([1, 2, 1]))
    >>> ds.subset(slice(1, 3)).labels
    array([1, 1])
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ShapeError(f"Dataset {self.name!r}: images must be (N, H, W, C), got shape {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ShapeError(
                f"Dataset {self.name!r}: labels must have shape ({self.images.shape[0]},) to match images "
                f"{self.images.shape}, got {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        _, h, w, c = self.images.shape  # 4-D: checked in __post_init__
        return (int(h), int(w), int(c))

    def subset(self, indices: np.ndarray | slice, name: str | None = None) -> Dataset:
        """The examples at ``indices`` (an index array or a slice), as a new Dataset.

        A slice gives views of this dataset's arrays; an index array gives copies.
        """
        return Dataset(
            images=self.images[indices],
            labels=self.labels[indices],
            classes=self.classes,
            name=self.name if name is None else name,
        )

    def class_counts(self) -> np.ndarray:
        """int64 (num_classes,): how many examples each class has."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)
