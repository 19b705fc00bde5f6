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
    """Hex digest of the file at ``path``, read in 1 MiB chunks.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import file_digest
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "f.bin").write_bytes(b"abc")
    ...     print(file_digest(Path(d) / "f.bin"), file_digest(Path(d) / "f.bin", "sha256")[:16])
    900150983cd24fb0d6963f7d28e17f72 ba7816bf8f01cfea
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        _update_from(h, f)
    return h.hexdigest()


def _update_from(h: hashlib._Hash, f: BinaryIO) -> None:
    while chunk := f.read(CHUNK):
        h.update(chunk)


def check_size(path: str | os.PathLike, got: int, expected: int | None) -> None:
    """Raise DatasetError when ``got`` bytes differ from the ``expected`` count (None: no check).

    Examples
    --------
    >>> from cnnkit.data.checksum import check_size
    >>> check_size("f.bin", 12, 12)
    >>> check_size("f.bin", 10, 12)
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: f.bin: truncated: expected 12 bytes, got 10 bytes
    """
    if expected is not None and got != expected:
        what = "truncated" if got < expected else "too long"
        raise DatasetError(f"{path}: {what}: expected {expected} bytes, got {got} bytes")


def check_digest(path: str | os.PathLike, got: str, expected: str | None, algorithm: str = "md5") -> None:
    """Raise DatasetError when the ``got`` hex digest differs from ``expected`` (None: no check).

    Examples
    --------
    >>> from cnnkit.data.checksum import check_digest
    >>> check_digest("f.bin", "900150983CD24FB0D6963F7D28E17F72", "900150983cd24fb0d6963f7d28e17f72")  # case ignored
    >>> check_digest("f.bin", "0" * 32, "900150983cd24fb0d6963f7d28e17f72")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: f.bin: md5 mismatch: expected 900150983cd24fb0d6963f7d28e17f72, got 00000000000000000000000000000000
    """
    if expected is not None and got.lower() != expected.lower():
        raise DatasetError(f"{path}: {algorithm} mismatch: expected {expected.lower()}, got {got.lower()}")


def check_bytes(path: str | os.PathLike, data: bytes, size: int | None, md5: str | None) -> None:
    """Check bytes already read from ``path`` against a byte count and an md5 (either may be None).

    Examples
    --------
    >>> from cnnkit.data.checksum import check_bytes
    >>> check_bytes("f.bin", b"abc", 3, "900150983cd24fb0d6963f7d28e17f72")
    >>> check_bytes("f.bin", b"abd", 3, "900150983cd24fb0d6963f7d28e17f72")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: f.bin: md5 mismatch: expected 900150983cd24fb0d6963f7d28e17f72, got 4911e516e5aa21d327512e0c8b197616
    """
    check_size(path, len(data), size)
    if md5 is not None:
        check_digest(path, hashlib.md5(data).hexdigest(), md5)


def check_file(path: str | os.PathLike, size: int | None, md5: str | None) -> None:
    """Check the file at ``path``: its size first (cheap, from stat), then its md5 hashed in chunks.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import check_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "f.bin").write_bytes(b"abc")
    ...     check_file(Path(d) / "f.bin", 3, "900150983cd24fb0d6963f7d28e17f72")  # passes silently
    ...     check_file(Path(d) / "f.bin", 4, None)
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: .../f.bin: truncated: expected 4 bytes, got 3 bytes
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    check_size(path, path.stat().st_size, size)
    if md5 is not None:
        check_digest(path, file_digest(path, "md5"), md5)
