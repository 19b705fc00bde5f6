"""The exception the dataset loaders raise for a bad file on disk."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file is missing, corrupt, truncated, or fails its checksum.

    The message always names the file (or URL) and says what was expected and what was found, e.g.
    ``.../train-images-idx3-ubyte.gz: md5 mismatch: expected f68b..., got 0c1d...``.
    """


class UnsafePickleError(DatasetError):
    """A CIFAR-10 python batch asked the unpickler for a global that is not on the allow-list."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file is not in the data directory (catchable as DatasetError or FileNotFoundError)."""
