"""MNIST and Fashion-MNIST loaders (IDX files), returning uint8 (N, 28, 28, 1) images and int64 labels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cnnkit.data.dataset import SPLITS, Dataset
from cnnkit.data.download import require_files
from cnnkit.data.errors import DatasetError
from cnnkit.data.idx import read_idx
from cnnkit.data.registry import DatasetSpec, FileSpec, get_spec

MAX_CLASSES = 100_000
"""Classes a dataset may have: without class names, labels up to ``MAX_CLASSES - 1`` (a label file from a
stranger holding 2**31 would otherwise make two billion names)."""


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def load_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    name: str = "",
    images_file: FileSpec | None = None,
    labels_file: FileSpec | None = None,
) -> Dataset:
    """A Dataset from an IDX image file (N, H, W) or (N, H, W, C) of uint8 and an IDX label file (N,).

    ``images_file``/``labels_file`` (when given) supply the size and md5 each file is checked against.
    ``classes`` defaults to ``"0"``.. up to the largest label (below :data:`MAX_CLASSES`). Both files are
    read by :func:`~cnnkit.data.idx.read_idx`, which checks each header against the file and the limits
    before allocating anything.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import load_idx_pair, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     images = write_idx(Path(d) / "images.idx", np.zeros((3, 2, 2), np.uint8))
    ...     labels = write_idx(Path(d) / "labels.idx", np.array([0, 2, 1], np.uint8))
    ...     ds = load_idx_pair(images, labels, name="toy")
    >>> ds.images.shape, ds.labels, ds.classes
    ((3, 2, 2, 1), array([0, 2, 1]), ('0', '1', '2'))
    """
    images = read_idx(images_path, *_size_md5(images_file))
    labels = read_idx(labels_path, *_size_md5(labels_file))
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (N, H, W) or (N, H, W, C), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{labels_path}: expected integer labels of shape (N,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    labels = labels.astype(np.int64)
    if classes is None:
        top = int(labels.max(initial=-1))
        if top >= MAX_CLASSES:
            raise DatasetError(f"{labels_path}: the largest label is {top}; at most {MAX_CLASSES:,} classes are accepted")
        classes = tuple(str(i) for i in range(top + 1))
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(
            f"{labels_path}: labels must lie in [0, {len(classes)}), got range [{labels.min()}, {labels.max()}]"
        )
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    return Dataset(images=images, labels=labels, classes=tuple(classes), name=name)


def _size_md5(f: FileSpec | None) -> tuple[int | None, str | None]:
    return (None, None) if f is None else (f.size, f.md5)


def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    dataset: str | DatasetSpec = "mnist",
    verify: bool = True,
    download: bool = False,
) -> Dataset:
    """MNIST (or, with ``dataset="fashion-mnist"``, Fashion-MNIST) as uint8 (N, 28, 28, 1) and int64 (N,).

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000).
        data_dir: the data directory (default ``$CNNKIT_DATA``, else ``~/.cache/cnnkit``); files are looked
            for in ``<data_dir>/<dataset>/`` and then ``<data_dir>/``.
        dataset: ``"mnist"`` or ``"fashion-mnist"`` (or any DatasetSpec with train/test images/labels roles).
        verify: check each file's size and md5 against the registry (cheap: the file is read once anyway).
        download: fetch missing files from the mirrors first.

    Raises:
        DatasetNotFoundError: a file is missing (and ``download`` is off).
        DatasetError: a file fails its checksum, is truncated, or is not IDX.

    Examples
    --------
    A self-contained stand-in for the test split: two tiny IDX files with MNIST's file names (``verify=False``:
    their checksums are not MNIST's).

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import load_mnist, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_idx(Path(d) / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    ...     _ = write_idx(Path(d) / "t10k-labels-idx1-ubyte.gz", np.array([7, 2], np.uint8))
    ...     ds = load_mnist("test", d, verify=False)
    >>> ds.name, ds.images.shape, ds.labels
    ('mnist/test', (2, 28, 28, 1), array([7, 2]))
    """
    spec = get_spec(dataset)
    split = _check_split(split)
    img_f, lab_f = spec.file(f"{split}-images"), spec.file(f"{split}-labels")
    img_p, lab_p = require_files(spec, (img_f, lab_f), data_dir, download)
    return load_idx_pair(
        img_p, lab_p, spec.classes or None, name=f"{spec.name}/{split}",
        images_file=img_f if verify else None, labels_file=lab_f if verify else None,
    )


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    download: bool = False,
) -> Dataset:
    """Fashion-MNIST: the same layout and options as :func:`load_mnist`, 10 clothing classes.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import load_fashion_mnist, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "fashion-mnist").mkdir()
    ...     _ = write_idx(Path(d) / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    ...     _ = write_idx(Path(d) / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", np.array([9, 0], np.uint8))
    ...     ds = load_fashion_mnist("test", d, verify=False)
    >>> [ds.classes[i] for i in ds.labels]
    ['Ankle boot', 'T-shirt/top']
    """
    return load_mnist(split, data_dir, dataset="fashion-mnist", verify=verify, download=download)
