"""The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT: element type, DD: number of dimensions), then DD
big-endian uint32 sizes, then the elements in row-major order, big-endian. MNIST images are
``idx3-ubyte`` (N, 28, 28) and labels ``idx1-ubyte`` (N,). Compression is recognised by the gzip magic
bytes ``1f 8b``, not by the file name, so a ``.gz`` name whose content was already decompressed (as some
browsers do) still reads.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from cnnkit.data.checksum import check_bytes
from cnnkit.data.errors import DatasetError

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


def read_maybe_gzip(path: str | os.PathLike, size: int | None = None, md5: str | None = None) -> bytes:
    """The content of ``path``, decompressed when it starts with the gzip magic bytes.

    ``size`` and ``md5`` (when given) are checked on the bytes as stored, i.e. before decompression. A gzip
    stream that ends early, fails its CRC or is not valid deflate data raises DatasetError.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import write_idx
    >>> from cnnkit.data.idx import read_maybe_gzip
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_idx(Path(d) / "labels.gz", np.array([7, 2, 1], np.uint8))
    ...     print(path.read_bytes()[:2].hex(), read_maybe_gzip(path).hex(" "))
    1f8b 00 00 08 01 00 00 00 03 07 02 01
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    check_bytes(path, raw, size, md5)
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise DatasetError(f"{path}: truncated gzip file ({len(raw)} bytes): {e}") from None
    except (OSError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt gzip data: {e}") from None


def decode_idx(data: bytes | bytearray | memoryview, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into a writable array in native byte order.

    ``source`` names the file in error messages. Raises DatasetError for a bad magic number, a header or
    payload shorter than announced (truncated), or bytes left over after the announced payload.

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
    n = len(data)
    if n < 4:
        raise DatasetError(f"{source}: truncated: expected at least 4 bytes of IDX magic number, got {n} bytes")
    magic = bytes(data[:4])
    code, ndim = magic[2], magic[3]
    if magic[:2] != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{source}: bad magic number 0x{magic.hex()}: not an IDX file (expected 00 00 <type in "
            f"{', '.join(f'{c:02x}' for c in IDX_TYPES)}> <ndim >= 1>)"
        )
    header = 4 + 4 * ndim
    if n < header:
        raise DatasetError(
            f"{source}: truncated: the IDX header of {ndim} dimensions needs {header} bytes, got {n} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    got = n - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise DatasetError(
            f"{source}: {what}: header announces shape {dims} of {dtype.name} ({expected} bytes after the "
            f"{header}-byte header, {header + expected} in all), got {got} bytes after the header ({n} in all)"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | os.PathLike, size: int | None = None, md5: str | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip, told apart by the magic bytes) into a native-order array.

    When ``size``/``md5`` are given, the file as stored is checked against them first (DatasetError on a
    mismatch, naming expected and got).

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
    return decode_idx(read_maybe_gzip(path, size, md5), path)


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
