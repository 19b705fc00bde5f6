"""An image-folder dataset: ``root/<class>/<image>``, decoded with Pillow (the optional ``images`` extra).

:func:`load_image_folder` decodes every image into memory at once; :class:`ImageFolder` is the same folder
as a source (:mod:`cnnkit.data.source`) that decodes the images of each batch when they are asked for,
keeping decoded images in a cache of bounded size, so that a folder larger than memory still trains.
Both decode through :func:`cnnkit.data.images.decode_image`, as ``cnnkit predict`` does, so the same guards
apply: only regular files are opened, an image's header is checked against ``LIMITS.image_pixels`` before
it is decoded, and a malformed file raises DatasetError naming it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from cnnkit.backend import Array
from cnnkit.data.dataset import Dataset
from cnnkit.data.errors import DatasetError, DatasetNotFoundError
from cnnkit.data.images import COLOR_MODES, decode_image, pillow, read_image_size
from cnnkit.limits import LIMITS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File name endings (case-insensitive) taken as images; other files are ignored."""



def require_pillow() -> ModuleType:
    """``PIL.Image``, imported on first use; :class:`~cnnkit.errors.MissingDependencyError` (an ImportError naming
    the ``images`` extra) when Pillow is not installed.

    Examples
    --------
    >>> from cnnkit.data.folder import require_pillow
    >>> require_pillow().__name__
    'PIL.Image'
    """
    return pillow()


def find_images(root: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (sub-directory names, sorted) and the (path, class index) of every image, sorted by path.

    Hidden entries (starting with ``.``) are skipped.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data.folder import find_images
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("cat/1.png", "cat/2.jpg", "dog/1.png", "dog/notes.txt"):
    ...         (Path(d) / name).parent.mkdir(exist_ok=True)
    ...         _ = (Path(d) / name).write_bytes(b"")
    ...     classes, items = find_images(d)
    ...     print(classes, [(p.relative_to(d).as_posix(), label) for p, label in items])
    ('cat', 'dog') [('cat/1.png', 0), ('cat/2.jpg', 0), ('dog/1.png', 1)]
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: image folder not found (expected root/<class>/<image>)")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DatasetError(f"{root}: no class sub-directories (expected root/<class>/<image>)")
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        items.extend((p, label) for p in files)
    if not items:
        raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {len(classes)} class folders")
    return classes, items


class MixedSizesError(DatasetError):
    """Images of different sizes in a folder read without a target size; names two of them.

    Examples
    --------
    >>> from pathlib import Path
    >>> err = MixedSizesError(Path("b.png"), (8, 8, 1), Path("a.png"), (6, 6, 1))
    >>> isinstance(err, DatasetError), err.shape
    (True, (8, 8, 1))
    """

    def __init__(self, path: Path, shape: tuple[int, ...], first: Path, first_shape: tuple[int, ...]) -> None:
        self.path, self.shape, self.first, self.first_shape = path, shape, first, first_shape
        super().__init__(f"{path}: image of shape {shape} differs from {first}'s {first_shape}; "
                         f"pass size=(H, W) to resize them to one size")

    def __reduce__(self) -> tuple[type, tuple[Path, tuple[int, ...], Path, tuple[int, ...]]]:
        return (type(self), (self.path, self.shape, self.first, self.first_shape))


def _check_options(color: str, size: tuple[int, int] | None) -> None:
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {tuple(COLOR_MODES)}, got {color!r}")
    if size is not None and (len(size) != 2 or min(size) < 1 or size[0] * size[1] > LIMITS.image_pixels):
        raise ValueError(f"size must be (H, W) with positive entries and at most {LIMITS.image_pixels:,} pixels, got {size!r}")


def load_image_folder(
    root: str | os.PathLike,
    *,
    color: str = "rgb",
    size: tuple[int, int] | None = None,
) -> Dataset:
    """All images under ``root/<class>/`` as uint8 (N, H, W, C) and int64 labels (N,).

    Args:
        root: a directory with one sub-directory per class; classes are numbered in sorted name order.
        color: ``"rgb"`` (C = 3) or ``"grayscale"`` (C = 1); images are converted as needed.
        size: ``(H, W)`` to resize every image to (bilinear); without it all images must share one size
            (:class:`MixedSizesError` otherwise).

    Needs Pillow (``pip install 'cnnkit[images]'``). A file Pillow cannot decode raises DatasetError naming it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from cnnkit.data import load_image_folder
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name, value in (("dark", 0), ("light", 255)):
    ...         (Path(d) / name).mkdir()
    ...         Image.new("L", (4, 3), value).save(Path(d) / name / "0.png")
    ...     ds = load_image_folder(d, color="grayscale")
    >>> ds.images.shape, ds.classes, ds.labels, int(ds.images[1].max())
    ((2, 3, 4, 1), ('dark', 'light'), array([0, 1]), 255)
    """
    folder = ImageFolder(root, color=color, size=size, cache_bytes=0)
    images = folder.decode_all()
    return Dataset(images=images, labels=folder.labels, classes=folder.classes, name=f"folder:{Path(root).name}")


DEFAULT_CACHE_BYTES = 1 << 30
"""Decoded images an :class:`ImageFolder` keeps in memory by default (1 GiB)."""


class ImageFolder:
    """An image folder as a source of (images, labels) batches, decoded on demand.

    ``take(indices)`` returns uint8 (n, H, W, C) images (``transform`` applied, e.g. a Preprocessor) and their
    labels. Decoded images are kept, up to ``cache_bytes`` in all, least recently used first out, so a folder
    that fits decodes once and a larger one still trains (decoding again what does not fit). Without ``size``
    every image must have the first one's size (:class:`MixedSizesError` names the first that does not).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name, value in (("a", 10), ("b", 200)):
    ...         (Path(d) / name).mkdir()
    ...         for i in range(3):
    ...             Image.new("RGB", (5, 5), (value,) * 3).save(Path(d) / name / f"{i}.png")
    ...     folder = ImageFolder(d, color="grayscale", size=(4, 4))
    ...     x, y = folder.take(np.array([0, 5]))
    >>> len(folder), folder.classes, x.shape, y.tolist(), folder.image_shape
    (6, ('a', 'b'), (2, 4, 4, 1), [0, 1], (4, 4, 1))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        color: str = "rgb",
        size: tuple[int, int] | None = None,
        transform: Callable[[np.ndarray], Array] | None = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        classes: Sequence[str] | None = None,
    ) -> None:
        """``classes``: number the labels by these names instead of the folder's own (sorted) sub-folders,
        e.g. a test folder holding some of the training classes; a folder class not among them is an error."""
        _check_options(color, size)
        pillow()  # a clear error now rather than at the first batch
        self.root, self.color, self.size = Path(root), color, size
        self.transform, self.augment = transform, augment
        own, items = find_images(root)
        if classes is not None:
            names = list(classes)
            unknown = [c for c in own if c not in names]
            if unknown:
                raise DatasetError(f"{root}: classes {unknown[:10]} are not among {names[:10]}")
            remap = np.array([names.index(c) for c in own], dtype=np.int64)
            self._classes = tuple(names)
        else:
            remap = np.arange(len(own), dtype=np.int64)
            self._classes = own
        self.paths = [p for p, _ in items]
        self.labels = remap[np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))]
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = 0
        first = self._decode(0)
        self._shape: tuple[int, int, int] = (int(first.shape[0]), int(first.shape[1]), int(first.shape[2]))
        self._remember(0, first)
        if size is None:
            self._check_sizes()

    def _check_sizes(self) -> None:
        """MixedSizesError now, from the files' headers (no pixels decoded), rather than in the middle of training."""
        h0, w0 = self._shape[:2]
        for path in self.paths[1:]:
            hw = read_image_size(path)  # regular files only, within the limits; DatasetError otherwise
            if hw != (h0, w0):
                raise MixedSizesError(path, (*hw, self._shape[2]), self.paths[0], self._shape)

    # -- the source interface -----------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    @property
    def random(self) -> bool:
        return self.augment is not None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image (the first image's, or ``size`` with the colour's channels)."""
        return self._shape

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> tuple[Array, Array]:
        x = self.images(indices)
        if self.augment is not None and rng is not None:
            x = self.augment(x, rng)
        return (self.transform(x) if self.transform is not None else x), self.labels[np.asarray(indices)]

    # -- decoding ----------------------------------------------------------------------------------
    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, C): the images at ``indices``, decoded (or from the cache)."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        out = np.empty((len(idx), *self._shape), dtype=np.uint8)
        for k, i in enumerate(idx):
            img = self._cache.get(i)
            if img is None:
                img = self._decode(i)
                self._remember(i, img)
            else:
                self._cache.move_to_end(i)
            out[k] = img
        return out

    def decode_all(self) -> np.ndarray:
        """Every image, decoded into one uint8 (N, H, W, C) array."""
        out = np.empty((len(self), *self._shape), dtype=np.uint8)
        for start in range(0, len(self), 256):
            idx = np.arange(start, min(start + 256, len(self)))
            out[idx] = self.images(idx)
        return out

    def batches(self, batch_size: int = 256) -> Iterator[np.ndarray]:
        """Every image in order, ``batch_size`` at a time (for fitting preprocessing statistics)."""
        for start in range(0, len(self), batch_size):
            yield self.images(np.arange(start, min(start + batch_size, len(self))))

    def _decode(self, i: int) -> np.ndarray:
        arr = decode_image(self.paths[i], self.color, self.size)
        if i and arr.shape != self._shape:
            raise MixedSizesError(self.paths[i], tuple(arr.shape), self.paths[0], self._shape)
        return arr

    def _remember(self, i: int, img: np.ndarray) -> None:
        if img.nbytes > self.cache_bytes:
            return
        self._cache[i] = img
        self._cached += img.nbytes
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
