"""The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT: element type, DD: number of dimensions), then DD
big-endian uint32 sizes, then the elements in row-major order, big-endian. MNIST images are
``idx3-ubyte`` (N, 28, 28) and labels ``idx1-ubyte`` (N,). Compression is recognised by the gzip magic
bytes ``1f 8b``, not by the file name, so a ``.gz`` name whose content was already decompressed (as some
browsers do) still reads.

A file is not trusted (:func:`read_idx`): only a regular file within ``LIMITS.file_bytes`` is opened (a FIFO
or ``/dev/zero`` is refused at once), the header is read first and the payload it declares is checked
against the limit (and a raw file's real size) before anything is allocated, and a gzip stream is
decompressed straight into an array of exactly the declared size and must end there: a gzip bomb behind a
plausible header fails after the declared bytes and one more.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from cnnkit.data.checksum import CHUNK, check_digest, check_size, open_file
from cnnkit.data.errors import DatasetError
from cnnkit.errors import quote
from cnnkit.limits import LIMITS
from cnnkit.limits import check_size as check_limit

GZIP_MAGIC = b"\x1f\x8b"

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type code -> element dtype as stored (big-endian)."""


class _Stream:
    """The content of an open file, decompressed when ``compressed``; every read failure (a gzip stream
    that ends early, a bad CRC, bad deflate data, an I/O error) becomes a DatasetError naming ``source``."""

    def __init__(self, f: BinaryIO, source: Path, compressed: bool) -> None:
        self.source, self.compressed = source, compressed
        self.raw = cast(io.BufferedIOBase, f)
        self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=f, mode="rb") if compressed else self.raw

    def readinto(self, view: memoryview) -> int:
        try:
            return self.stream.readinto(view)
        except EOFError as e:
            size = os.fstat(self.raw.fileno()).st_size
            raise DatasetError(f"{self.source}: truncated gzip file ({size} bytes): {e}") from None
        except (OSError, zlib.error) as e:
            what = "corrupt gzip data" if self.compressed else "cannot read it"
            raise DatasetError(f"{self.source}: {what}: {quote(str(e))}") from None

    def read_fully(self, out: memoryview) -> int:
        """Fill ``out`` in chunks of at most :data:`CHUNK` bytes; the number of bytes read (less than
        ``len(out)`` only at the end of the data)."""
        got = 0
        while got < len(out):
            n = self.readinto(out[got : got + CHUNK])
            if not n:
                break
            got += n
        return got

    def close(self) -> None:
        if self.compressed:
            self.stream.close()  # the GzipFile only: the file itself is the caller's


def _open_checked(path: Path, size: int | None, md5: str | None) -> tuple[BinaryIO, int, bool]:
    """``path`` opened (a regular file within ``LIMITS.file_bytes``), checked against ``size``/``md5`` as
    stored, positioned at its start; also its size and whether it is gzip-compressed."""
    f = open_file(path)  # a regular file of at most LIMITS.file_bytes, or a DatasetError now
    try:
        stored = os.fstat(f.fileno()).st_size
        check_size(path, stored, size)
        if md5 is not None:
            h = hashlib.md5()
            while chunk := f.read(CHUNK):
                h.update(chunk)
            check_digest(path, h.hexdigest(), md5)
            f.seek(0)
        compressed = f.read(2) == GZIP_MAGIC
        f.seek(0)
        return f, stored, compressed
    except BaseException:
        f.close()
        raise


def read_maybe_gzip(
    path: str | os.PathLike, size: int | None = None, md5: str | None = None, limit: int | None = None
) -> bytes:
    """The content of ``path``, decompressed when it starts with the gzip magic bytes.

    ``size`` and ``md5`` (when given) are checked on the bytes as stored, i.e. before decompression. A gzip
    stream that ends early, fails its CRC or is not valid deflate data raises DatasetError, and so does
    one that decompresses to more than ``limit`` bytes (default ``LIMITS.file_bytes``): decompression
    stops there, so a gzip bomb costs at most ``limit`` bytes. Only regular files are read.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import DatasetError, write_idx
    >>> from cnnkit.data.idx import read_maybe_gzip
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_idx(Path(d) / "labels.gz", np.array([7, 2, 1], np.uint8))
    ...     print(path.read_bytes()[:2].hex(), read_maybe_gzip(path).hex(" "))
    ...     try:
    ...         read_maybe_gzip(path, limit=8)
    ...     except DatasetError as e:
    ...         print(str(e).split(": ", 1)[1])
    1f8b 00 00 08 01 00 00 00 03 07 02 01
    decompresses to more than 8 bytes, the limit (CNNKIT_MAX_FILE_BYTES)
    """
    path = Path(path)
    limit = LIMITS.file_bytes if limit is None else limit
    f, stored, compressed = _open_checked(path, size, md5)
    with f:
        if not compressed:
            check_limit(stored, limit, f"{path}", error=DatasetError)
            data = f.read(stored + 1)
            if len(data) != stored:
                raise DatasetError(f"{path}: changed while being read ({stored} bytes, then {len(data)})")
            return data
        stream = _Stream(f, path, compressed=True)
        try:
            out = bytearray()
            buf = bytearray(CHUNK)
            while len(out) <= limit:
                n = stream.read_fully(memoryview(buf)[: min(CHUNK, limit + 1 - len(out))])
                if not n:
                    return bytes(out)
                out += buf[:n]
            raise DatasetError(f"{path}: decompresses to more than {limit:,} bytes, the limit (CNNKIT_MAX_FILE_BYTES)")
        finally:
            stream.close()


def _check_magic(magic: bytes, source: str | os.PathLike) -> int:
    """The header length that the 4-byte ``magic`` announces (DatasetError when it is not IDX)."""
    n = len(magic)
    if n < 4:
        raise DatasetError(f"{source}: truncated: expected at least 4 bytes of IDX magic number, got {n} bytes")
    code, ndim = magic[2], magic[3]
    if magic[:2] != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{source}: bad magic number 0x{magic.hex()}: not an IDX file (expected 00 00 <type in "
            f"{', '.join(f'{c:02x}' for c in IDX_TYPES)}> <ndim >= 1>)"
        )
    return 4 + 4 * ndim


MAX_DIMS = 32
"""Dimensions an IDX array may have (NumPy's own limit is 64; MNIST's files have 1 or 3)."""

DEFLATE_RATIO = 1032
"""The most one byte of deflate data can decompress to: a gzip file of n bytes holds at most this many times n."""


def _declared(head: bytes, source: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, shape and payload bytes of a complete header, the payload checked against the limit."""
    dtype, dims = IDX_TYPES[head[2]], tuple(int(d) for d in np.frombuffer(head, dtype=">u4", offset=4))
    nbytes = math.prod(dims) * dtype.itemsize  # Python integers: 255 sizes of 2**32 - 1 do not wrap around
    check_limit(nbytes, LIMITS.file_bytes, f"{source}: the IDX header's shape {quote(dims, 120)} of {dtype.name}", error=DatasetError)
    if len(dims) > MAX_DIMS:
        raise DatasetError(f"{source}: the IDX header declares {len(dims)} dimensions; at most {MAX_DIMS} are accepted")
    if math.prod(d for d in dims if d) * dtype.itemsize >= 2**63:  # NumPy refuses such a shape even when a size is 0
        raise DatasetError(f"{source}: the IDX header's shape {quote(dims, 120)} is not one an array can have")
    return dtype, dims, nbytes


def _size_error(source: str | os.PathLike, dims: tuple[int, ...], dtype: np.dtype, header: int, got: int) -> DatasetError:
    expected = math.prod(dims) * dtype.itemsize
    what = "truncated" if got < expected else "trailing bytes"
    return DatasetError(
        f"{source}: {what}: header announces shape {quote(dims, 120)} of {dtype.name} ({expected} bytes after the "
        f"{header}-byte header, {header + expected} in all), got {got} bytes after the header ({header + got} in all)"
    )


def _native(flat: np.ndarray, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
    """The big-endian elements ``flat`` (a writable array of its own) in native byte order, in place."""
    if dtype.itemsize > 1 and not dtype.isnative:
        flat.byteswap(inplace=True)
        flat = flat.view(dtype.newbyteorder("S"))  # the swapped bytes read in the other order: native
    return flat.reshape(dims)


def decode_idx(data: bytes | bytearray | memoryview, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into a writable array in native byte order.

    ``source`` names the file in error messages. Raises DatasetError for a bad magic number, a header or
    payload shorter than announced (truncated), bytes left over after the announced payload, or a
    shape larger than ``LIMITS.file_bytes``.

    Examples
    --------
    The header 00 00 08 01 (uint8, 1 dimension), the size 3 (big-endian uint32), then the bytes:

    >>> from cnnkit.data.idx import decode_idx
    >>> decode_idx(bytes.fromhex("00000801 00000003 070201"))
    array([7, 2, 1], dtype=uint8)
    >>> decode_idx(bytes.fromhex("00000801 00000003 0702"), "labels.idx")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: labels.idx: truncated: header announces shape (3,) of uint8 ...
    """
    data = memoryview(data).cast("B")
    n = len(data)
    header = _check_magic(bytes(data[:4]), source)
    if n < header:
        raise DatasetError(
            f"{source}: truncated: the IDX header of {header // 4 - 1} dimensions needs {header} bytes, got {n} bytes"
        )
    dtype, dims, nbytes = _declared(bytes(data[:header]), source)
    if n - header != nbytes:
        raise _size_error(source, dims, dtype, header, n - header)
    flat = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=header).copy()
    return _native(flat, dtype, dims)


def read_idx(path: str | os.PathLike, size: int | None = None, md5: str | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip, told apart by the magic bytes) into a native-order array.

    When ``size``/``md5`` are given, the file as stored is checked against them first (DatasetError on a
    mismatch, naming expected and got).

    Nothing is trusted: only a regular file of at most ``LIMITS.file_bytes`` is opened; the header is read
    and checked first, and the payload size it declares is checked against ``LIMITS.file_bytes`` (and, for
    a raw file, against the file's real size) before anything is allocated. A gzip stream is decompressed
    a chunk at a time straight into an array of exactly the declared size, then must end there: a stream
    with more data (a gzip bomb behind a plausible header) or less (truncated) is a DatasetError, after
    decompressing at most one byte more than the header declared.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import read_idx, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_idx(Path(d) / "images-idx3-ubyte.gz", np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    ...     x = read_idx(Path(d) / "images-idx3-ubyte.gz")
    >>> x.shape, x.dtype, x[1]
    ((2, 2, 2), dtype('uint8'), array([[4, 5],
           [6, 7]], dtype=uint8))
    """
    path = Path(path)
    f, stored, compressed = _open_checked(path, size, md5)
    with f:
        reader = _Stream(f, path, compressed)
        try:
            magic = bytearray(4)
            got = reader.read_fully(memoryview(magic))
            header = _check_magic(bytes(magic[:got]), path)
            head = magic + bytearray(header - 4)
            got = 4 + reader.read_fully(memoryview(head)[4:])
            if got < header:
                raise DatasetError(
                    f"{path}: truncated: the IDX header of {header // 4 - 1} dimensions needs {header} bytes, got {got} bytes"
                )
            dtype, dims, nbytes = _declared(bytes(head), path)
            if not compressed and stored - header != nbytes:  # the file's real size, before allocating
                raise _size_error(path, dims, dtype, header, stored - header)
            if compressed and header + nbytes > DEFLATE_RATIO * stored:  # what the gzip file could hold, before allocating
                raise DatasetError(
                    f"{path}: truncated: the IDX header declares shape {quote(dims, 120)} of {dtype.name} ({nbytes:,} bytes), "
                    f"more than a {stored:,}-byte gzip file can hold (deflate expands at most {DEFLATE_RATIO}:1)"
                )
            flat = np.empty(nbytes // dtype.itemsize, dtype=dtype)
            got = reader.read_fully(flat.view(np.uint8).data)
            if got < nbytes:
                raise _size_error(path, dims, dtype, header, got)
            if reader.read_fully(memoryview(bytearray(1))):  # one byte more must be the end of the data
                more = "a raw file grew while being read" if not compressed else "the gzip stream goes on"
                raise DatasetError(
                    f"{path}: more data than the header declares: shape {quote(dims, 120)} of {dtype.name} is "
                    f"{nbytes} bytes after the {header}-byte header, but {more}"
                )
        finally:
            reader.close()
    return _native(flat, dtype, dims)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of ``array``; its dtype must be one IDX can hold.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.idx import encode_idx
    >>> encode_idx(np.array([7, 2, 1], np.uint8)).hex(" ")  # magic, size 3, data
    '00 00 08 01 00 00 00 03 07 02 01'
    >>> encode_idx(np.array([1.0], np.float32)).hex(" ")  # type 0x0d: big-endian float32
    '00 00 0d 01 00 00 00 01 3f 80 00 00'
    """
    array = np.asarray(array)
    by_kind = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in by_kind or array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"cannot write dtype {array.dtype} with shape {array.shape} as IDX: need 1-255 dimensions and one of "
            f"uint8, int8, int16, int32, float32, float64"
        )
    code = by_kind[key]
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return head + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: when the name ends in .gz).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import read_idx, write_idx
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_idx(Path(d) / "labels-idx1-ubyte.gz", np.array([7, 2, 1], np.uint8))  # gzip: the name ends in .gz
    ...     print(path.read_bytes()[:2].hex(), read_idx(path))
    1f8b [7 2 1]
    """
    path = Path(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path
