"""The exception the dataset loaders raise for a bad file on disk."""

from __future__ import annotations

from cnnkit.errors import CnnkitError


class DatasetError(CnnkitError, ValueError):
    """A dataset file is missing, corrupt, truncated, or fails its checksum.

    The message always names the file (or URL) and says what was expected and what was found, e.g.
    ``.../train-images-idx3-ubyte.gz: md5 mismatch: expected f68b..., got 0c1d...``.

    Examples
    --------
    >>> from cnnkit.data.idx import decode_idx
    >>> decode_idx(b"PK", "train-images-idx3-ubyte")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: train-images-idx3-ubyte: truncated: expected at least 4 bytes of IDX magic number, got 2 bytes
    """


class UnsafePickleError(DatasetError):
    """A CIFAR-10 python batch tried to call code (a global, REDUCE, an object constructor); nothing is run.

    Examples
    --------
    >>> import os, pickle
    >>> from cnnkit.data import DatasetError, UnsafePickleError, restricted_unpickle
    >>> try:
    ...     restricted_unpickle(pickle.dumps(os.system, protocol=2), "data_batch_1")
    ... except UnsafePickleError as e:
    ...     print(isinstance(e, DatasetError), "refusing to unpickle" in str(e))
    True True
    """


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file is not in the data directory (catchable as DatasetError or FileNotFoundError).

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.data import load_mnist
    >>> with tempfile.TemporaryDirectory() as d:
    ...     try:
    ...         load_mnist("test", d)
    ...     except FileNotFoundError as e:
    ...         print(type(e).__name__)
    DatasetNotFoundError
    """
