"""Checksums of dataset files: md5 (the published digests) and sha256, hashed in chunks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from cnnkit.data.errors import DatasetError

CHUNK = 1 << 20
"""Bytes hashed per read (1 MiB), so a 170 MB archive never sits in memory whole."""


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        _update_from(h, f)
    return h.hexdigest()


def _update_from(h: hashlib._Hash, f: BinaryIO) -> None:
    while chunk := f.read(CHUNK):
        h.update(chunk)


def check_size(path: str | os.PathLike, got: int, expected: int | None) -> None:
    """Raise DatasetError when ``got`` bytes differ from the ``expected`` count (None: no check)."""
    if expected is not None and got != expected:
        what = "truncated" if got < expected else "too long"
        raise DatasetError(f"{path}: {what}: expected {expected} bytes, got {got} bytes")


def check_digest(path: str | os.PathLike, got: str, expected: str | None, algorithm: str = "md5") -> None:
    """Raise DatasetError when the ``got`` hex digest differs from ``expected`` (None: no check)."""
    if expected is not None and got.lower() != expected.lower():
        raise DatasetError(f"{path}: {algorithm} mismatch: expected {expected.lower()}, got {got.lower()}")


def check_bytes(path: str | os.PathLike, data: bytes, size: int | None, md5: str | None) -> None:
    """Check bytes already read from ``path`` against a byte count and an md5 (either may be None)."""
    check_size(path, len(data), size)
    if md5 is not None:
        check_digest(path, hashlib.md5(data).hexdigest(), md5)


def check_file(path: str | os.PathLike, size: int | None, md5: str | None) -> None:
    """Check the file at ``path``: its size first (cheap, from stat), then its md5 hashed in chunks."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    check_size(path, path.stat().st_size, size)
    if md5 is not None:
        check_digest(path, file_digest(path, "md5"), md5)
