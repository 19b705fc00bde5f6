"""Training-time augmentation of raw image batches: random crop after padding, random shift, horizontal flip.

Each transform takes a batch (N, H, W, C) and a ``numpy.random.Generator`` and returns a batch of the
same shape, drawing one choice per image. The loop hands every training batch a generator seeded by
(seed, epoch, batch), so that the augmentations of a resumed run are the uninterrupted run's.
:func:`parse` reads the command line's ``--augment`` (e.g. ``crop:4,flip``).

Examples
--------
>>> import numpy as np
>>> batch = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
>>> out = parse("crop:1,flip")(batch, np.random.default_rng(0))
>>> out.shape, out.dtype
((2, 4, 4, 1), dtype('uint8'))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_crop(padding: int) -> Transform:
    """Pad each image with ``padding`` zeros on every side, then cut an H x W window at a random offset
    (the CIFAR recipe; a shift by up to ``padding`` pixels with zeros coming in).

    Examples
    --------
    An image of ones shifted at random within a 1-pixel zero border: zeros come in where it moved away from.

    >>> import numpy as np
    >>> from cnnkit.data.augment import random_crop
    >>> out = random_crop(1)(np.ones((2, 3, 3, 1), np.uint8), np.random.default_rng(0))
    >>> out.shape, out[0, :, :, 0]
    ((2, 3, 3, 1), array([[1, 1, 1],
           [1, 1, 1],
           [0, 0, 0]], dtype=uint8))
    """
    if int(padding) < 1:
        raise ValueError(f"crop padding must be >= 1, got {padding}")
    p = int(padding)

    def crop(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, h, w, _ = batch.shape
        padded = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = rng.integers(0, 2 * p + 1, size=(n, 2))
        out = np.empty_like(batch)
        for i in range(n):
            top, left = int(offsets[i, 0]), int(offsets[i, 1])
            out[i] = padded[i, top : top + h, left : left + w]
        return out

    return crop


def random_shift(pixels: int) -> Transform:
    """Shift each image by up to ``pixels`` in each direction (a random crop of the zero-padded image).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.augment import random_shift
    >>> batch = np.ones((8, 5, 5, 1), np.uint8)
    >>> out = random_shift(2)(batch, np.random.default_rng(0))
    >>> out.shape, int(out.sum()) < int(batch.sum())  # shifted: some pixels are now zeros
    ((8, 5, 5, 1), True)
    """
    return random_crop(pixels)


def horizontal_flip(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror each image left-right with probability 1/2.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.augment import horizontal_flip
    >>> batch = np.array([[1, 2, 3]] * 4, np.uint8).reshape(4, 1, 3, 1)  # four copies of one row
    >>> horizontal_flip(batch, np.random.default_rng(1))[:, 0, :, 0]  # each mirrored with probability 1/2
    array([[1, 2, 3],
           [1, 2, 3],
           [3, 2, 1],
           [1, 2, 3]], dtype=uint8)
    """
    flip = rng.random(batch.shape[0]) < 0.5
    out = batch.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order (each draws from the same generator).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.augment import compose, horizontal_flip, random_crop
    >>> augment = compose([random_crop(2), horizontal_flip])
    >>> augment(np.zeros((3, 8, 8, 3), np.uint8), np.random.default_rng(0)).shape
    (3, 8, 8, 3)
    """

    def apply(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in transforms:
            batch = t(batch, rng)
        return batch

    return apply


FORMS = "crop:<padding>, shift:<pixels>, flip (comma-separated)"


def parse(spec: str) -> Transform:
    """A transform from a spec such as ``"crop:4,flip"``; ValueError naming the bad part otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.augment import parse
    >>> parse("crop:4,flip")(np.zeros((2, 32, 32, 3), np.uint8), np.random.default_rng(0)).shape
    (2, 32, 32, 3)
    >>> parse("rotate:10")
    Traceback (most recent call last):
    ...
    ValueError: cannot read augmentation 'rotate:10'; expected crop:<padding>, shift:<pixels>, flip (comma-separated)
    """
    parts = [p.strip().lower() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise ValueError(f"empty augmentation; expected {FORMS}")
    out: list[Transform] = []
    for part in parts:
        name, _, arg = part.partition(":")
        if name == "flip" and not arg:
            out.append(horizontal_flip)
        elif name in ("crop", "shift") and arg.isdigit() and int(arg) >= 1:
            out.append(random_crop(int(arg)))
        else:
            raise ValueError(f"cannot read augmentation {part!r}; expected {FORMS}")
    return compose(out)
