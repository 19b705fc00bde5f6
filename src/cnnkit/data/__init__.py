"""Datasets: MNIST, Fashion-MNIST, CIFAR-10 and image folders; checksums, downloads, preprocessing, batches.

Every loader returns a :class:`Dataset` of uint8 images (N, H, W, C), int64 labels (N,) and class names;
:class:`Preprocessor` turns images into float inputs with statistics fitted on the training set, and
:func:`iterate_minibatches` yields shuffled index batches.

The data directory is the ``data_dir`` argument, else ``$CNNKIT_DATA``, else ``~/.cache/cnnkit``; a file is
looked for as ``<data_dir>/<dataset>/<file>`` and then ``<data_dir>/<file>``.

Loading is host-side I/O, so this package builds NumPy arrays only (:meth:`Preprocessor.transform`
included); the training loop hands each mini-batch to the compute backend (:func:`cnnkit.backend.to_device`).
"""

from __future__ import annotations

from typing import Any

from cnnkit.data.batches import iterate_minibatches, num_batches
from cnnkit.data.checksum import check_file, file_digest
from cnnkit.data.cifar import (
    RestrictedUnpickler,
    extract_archive,
    load_cifar10,
    read_binary_batch,
    read_python_batch,
    restricted_unpickle,
)
from cnnkit.data.dataset import Dataset
from cnnkit.data.download import download, fetch_file
from cnnkit.data.errors import DatasetError, DatasetNotFoundError, UnsafePickleError
from cnnkit.data.folder import load_image_folder
from cnnkit.data.idx import read_idx, write_idx
from cnnkit.data.mnist import load_fashion_mnist, load_idx_pair, load_mnist
from cnnkit.data.paths import ENV_VAR, default_data_dir, resolve_data_dir
from cnnkit.data.preprocess import MODES as PREPROCESS_MODES
from cnnkit.data.preprocess import Preprocessor
from cnnkit.data.registry import DATASETS, DatasetSpec, FileSpec, FileStatus, get_spec, list_datasets, verify
from cnnkit.data.subset import example_range, first_n, parse_subset


def load_dataset(name: str, split: str = "train", data_dir: str | None = None, **kwargs: Any) -> Dataset:
    """Load a registered dataset by name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.

    ``kwargs`` go to the loader (``verify``, ``download``; for CIFAR-10 also ``format``, ``extract``).

    Examples
    --------
    A self-contained stand-in for MNIST's test split: two tiny IDX files under ``<data_dir>/mnist/``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import load_dataset, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "mnist").mkdir()
    ...     _ = write_idx(Path(d) / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    ...     _ = write_idx(Path(d) / "mnist" / "t10k-labels-idx1-ubyte.gz", np.array([7, 2, 1], np.uint8))
    ...     ds = load_dataset("mnist", "test", data_dir=d, verify=False)
    >>> ds.name, ds.images.shape, ds.labels
    ('mnist/test', (3, 28, 28, 1), array([7, 2, 1]))
    """
    spec = get_spec(name)
    if spec.name == "cifar10":
        return load_cifar10(split, data_dir, **kwargs)
    return load_mnist(split, data_dir, dataset=spec, **kwargs)


__all__ = [
    "DATASETS",
    "ENV_VAR",
    "PREPROCESS_MODES",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FileSpec",
    "FileStatus",
    "Preprocessor",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "check_file",
    "default_data_dir",
    "download",
    "example_range",
    "extract_archive",
    "fetch_file",
    "file_digest",
    "first_n",
    "get_spec",
    "iterate_minibatches",
    "list_datasets",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx_pair",
    "load_image_folder",
    "load_mnist",
    "num_batches",
    "parse_subset",
    "read_binary_batch",
    "read_idx",
    "read_python_batch",
    "resolve_data_dir",
    "restricted_unpickle",
    "verify",
    "write_idx",
]
