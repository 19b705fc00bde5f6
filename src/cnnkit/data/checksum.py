"""Checksums of dataset files: md5 (the published digests) and sha256, hashed in chunks; opening them safely.

Every dataset reader opens its files through :func:`open_file`: only a regular file within a size limit is
opened (a FIFO, a device such as ``/dev/zero`` or a directory would block or never end), and a missing file
raises :class:`~cnnkit.data.errors.DatasetNotFoundError`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import BinaryIO

from cnnkit.data.errors import DatasetError, DatasetNotFoundError
from cnnkit.limits import LIMITS
from cnnkit.serialize import open_regular

CHUNK = 1 << 20
"""Bytes hashed per read (1 MiB), so a 170 MB archive never sits in memory whole."""


def open_file(path: str | os.PathLike, limit: int | None = None) -> BinaryIO:
    """``path`` opened for reading in binary mode, if it is a regular file of at most ``limit`` bytes
    (default ``LIMITS.file_bytes``).

    A FIFO, a device (``/dev/zero``), a directory or a larger file raises DatasetError naming it, at once
    (nothing is read); a missing file raises :class:`~cnnkit.data.errors.DatasetNotFoundError` (also a
    FileNotFoundError).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data.checksum import open_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "f.bin").write_bytes(b"abc")
    ...     with open_file(Path(d) / "f.bin") as f:
    ...         print(f.read())
    b'abc'
    >>> open_file("/dev/zero")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: /dev/zero is not a regular file
    """
    try:
        return open_regular(path, DatasetError, LIMITS.file_bytes if limit is None else limit)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: file not found ({exc.strerror or exc})") from None


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of the (regular) file at ``path``, read in 1 MiB chunks.

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
    with open_file(path, sys.maxsize) as f:  # hashing holds one chunk at a time: any size will do
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
    with open_file(path, sys.maxsize) as f:  # one open file: the size and the digest are the same file's
        check_size(path, os.fstat(f.fileno()).st_size, size)
        if md5 is not None:
            h = hashlib.md5()
            _update_from(h, f)
            check_digest(path, h.hexdigest(), md5)
