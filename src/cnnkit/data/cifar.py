"""CIFAR-10: its python-pickle batches (read by a restricted unpickler) and its binary batches.

Layouts, both with images stored as three 1024-byte planes (R, G, B) of a 32x32 image in row-major order:

* python (``cifar-10-batches-py/data_batch_1`` .. ``_5``, ``test_batch``): each file is a pickled dict
  ``{b"batch_label": bytes, b"labels": [int]*n, b"data": uint8 ndarray (n, 3072), b"filenames": [bytes]*n}``;
  ``batches.meta`` holds ``{b"label_names": [bytes]*10, ...}``.
* binary (``cifar-10-batches-bin/data_batch_1.bin`` .. ``_5.bin``, ``test_batch.bin``): n records of 3073
  bytes, 1 label byte then 3072 pixel bytes; ``batches.meta.txt`` lists the class names one per line.

The python batches are pickles, and unpickling a file from a stranger can run arbitrary code. So they are
never handed to the general unpickler: :class:`RestrictedUnpickler` resolves only the handful of numpy
globals an ndarray needs and refuses everything else with :class:`UnsafePickleError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cnnkit.data.checksum import check_file
from cnnkit.data.dataset import SPLITS, Dataset
from cnnkit.data.download import require_files
from cnnkit.data.errors import DatasetError, UnsafePickleError
from cnnkit.data.paths import locate_dir
from cnnkit.data.registry import CIFAR10, DatasetSpec, get_spec

FORMATS = ("python", "binary")
DIRNAMES = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
"""Top-level directory each archive unpacks to."""

IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3
RECORD_BYTES = 1 + PIXELS
"""One record of the binary format: a label byte and 3072 pixel bytes."""


def batch_names(split: str, fmt: str) -> tuple[str, ...]:
    """File names of the batches of ``split`` ("train": 5 batches, "test": 1) in format ``fmt``.

    Examples
    --------
    >>> from cnnkit.data.cifar import batch_names
    >>> batch_names("train", "python")
    ('data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5')
    >>> batch_names("test", "binary")
    ('test_batch.bin',)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return tuple(n + ".bin" for n in names) if fmt == "binary" else tuple(names)


def meta_name(fmt: str) -> str:
    """The file of class names that accompanies the batches in format ``fmt``.

    Examples
    --------
    >>> from cnnkit.data.cifar import meta_name
    >>> meta_name("python"), meta_name("binary")
    ('batches.meta', 'batches.meta.txt')
    """

    return "batches.meta.txt" if fmt == "binary" else "batches.meta"


# ---------------------------------------------------------------------------------------------------------
# Restricted unpickling


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles written by Python 3 use to rebuild ``bytes``.

    Only the latin-1 str -> bytes conversion is allowed, nothing else the real function can do.
    """
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only latin-1 allowed")
    return text.encode("latin-1")


def _numpy_reconstruct() -> Callable[..., object]:
    """numpy's ``_reconstruct`` (it builds an ndarray; numpy's stubs type its result as object)."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as _reconstruct_1x

        return _reconstruct_1x
    return _reconstruct


_RECONSTRUCT = _numpy_reconstruct()

ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # how numpy 1.x (and the real files) name it
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # how numpy 2.x names it
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
"""Every global a CIFAR-10 batch may name, mapped to the object handed back (nothing is imported by name)."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10 python batches that cannot be made to call arbitrary code.

    Pickles only reach code through the globals they name; ``find_class`` resolves exactly the entries of
    :data:`ALLOWED_GLOBALS` (numpy's ndarray rebuilders and a latin-1-only ``_codecs.encode``) and raises
    :class:`UnsafePickleError` for any other, e.g. ``os.system``. Strings pickled by Python 2 are returned as
    ``bytes`` (``encoding="bytes"``), as the CIFAR-10 files need.

    Examples
    --------
    >>> import io, os, pickle
    >>> import numpy as np
    >>> from cnnkit.data import RestrictedUnpickler
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({b"labels": np.arange(3)}, protocol=2))).load()
    {b'labels': array([0, 1, 2])}
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(os.system, protocol=2))).load()
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.UnsafePickleError: <stream>: refusing to unpickle global ...
    """

    def __init__(self, file: io.BufferedIOBase, source: str | os.PathLike = "<stream>") -> None:
        super().__init__(file, encoding="bytes")
        self.source = str(source)

    def find_class(self, module: str, name: str) -> object:
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global {module}.{name}: a CIFAR-10 batch needs only "
                f"{allowed}; this file is not a genuine CIFAR-10 batch and may be malicious"
            )
        return obj

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError(f"{self.source}: refusing persistent id {pid!r} in a CIFAR-10 batch")


def restricted_unpickle(data: bytes, source: str | os.PathLike = "<bytes>") -> object:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure becomes a DatasetError naming ``source``.

    Examples
    --------
    >>> import pickle
    >>> from cnnkit.data import restricted_unpickle
    >>> restricted_unpickle(pickle.dumps({b"labels": [3, 5]}, protocol=2))
    {b'labels': [3, 5]}
    >>> restricted_unpickle(b"garbage", "batch_1")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: batch_1: not a readable CIFAR-10 python batch: UnpicklingError: pickle data was truncated
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except DatasetError:
        raise
    except Exception as e:  # truncated or garbled pickles raise many types (EOFError, UnpicklingError, ...)
        raise DatasetError(f"{source}: not a readable CIFAR-10 python batch: {type(e).__name__}: {e}") from None


def _key(d: dict, key: str, source: str | os.PathLike) -> object:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(f"{source}: CIFAR-10 batch lacks the key {key!r}; it has {sorted(map(repr, d))}")


def _planes_to_nhwc(rows: np.ndarray) -> np.ndarray:
    """(n, 3072) rows of R, G, B planes -> contiguous uint8 (n, 32, 32, 3)."""
    n = rows.shape[0]
    return np.ascontiguousarray(rows.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))  # (n, C, H, W) -> (n, H, W, C)


def decode_python_batch(data: bytes, source: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """The pickled bytes of one python-format batch -> uint8 images (n, 32, 32, 3) and int64 labels (n,).

    Examples
    --------
    The R, G, B planes of each row become one NHWC image: a red plane gives red pixels.

    >>> import pickle
    >>> import numpy as np
    >>> from cnnkit.data.cifar import decode_python_batch
    >>> rows = np.zeros((2, 3072), np.uint8)
    >>> rows[0, :1024] = 255  # image 0: the R plane full
    >>> images, labels = decode_python_batch(pickle.dumps({b"data": rows, b"labels": [3, 5]}, protocol=2))
    >>> images.shape, images[0, 0, 0], labels
    ((2, 32, 32, 3), array([255,   0,   0], dtype=uint8), array([3, 5]))
    """
    d = restricted_unpickle(data, source)
    if not isinstance(d, dict):
        raise DatasetError(f"{source}: a CIFAR-10 batch is a dict, got {type(d).__name__}")
    pixels = _key(d, "data", source)
    labels = _key(d, "labels", source)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != PIXELS:
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise DatasetError(f"{source}: b'data' must be a uint8 array of shape (n, {PIXELS}), got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{source}: b'labels' must be a list of integers: {e}") from None
    if labels.shape != (pixels.shape[0],):
        raise DatasetError(f"{source}: {pixels.shape[0]} images but labels of shape {labels.shape}")
    return _planes_to_nhwc(pixels), labels


def decode_binary_batch(data: bytes, source: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """The bytes of one binary-format batch (records of 1 label + 3072 pixel bytes) -> images, labels.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.cifar import decode_binary_batch
    >>> record = bytes([7]) + bytes(1024) + bytes([255] * 1024) + bytes(1024)  # label 7, a green image
    >>> images, labels = decode_binary_batch(record)
    >>> images.shape, images[0, 31, 31], labels
    ((1, 32, 32, 3), array([  0, 255,   0], dtype=uint8), array([7]))
    >>> decode_binary_batch(record[:-1], "test_batch.bin")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: test_batch.bin: truncated or corrupt: 3072 bytes is not a whole number of 3073-byte records ...
    """
    n, rest = divmod(len(data), RECORD_BYTES)
    if rest:
        raise DatasetError(
            f"{source}: truncated or corrupt: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte "
            f"records (expected {(n + 1) * RECORD_BYTES} bytes for {n + 1} record(s), or {n * RECORD_BYTES} for {n})"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD_BYTES)
    return _planes_to_nhwc(records[:, 1:]), records[:, 0].astype(np.int64)


def read_python_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one python-format CIFAR-10 batch file (restricted unpickling) -> images (n, 32, 32, 3), labels.

    Examples
    --------
    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.data import read_python_batch
    >>> batch = {b"batch_label": b"testing batch 1 of 1", b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    ...     images, labels = read_python_batch(Path(d) / "test_batch")
    >>> images.shape, labels
    ((4, 32, 32, 3), array([0, 1, 2, 3]))
    """
    return decode_python_batch(_read(path), path)


def read_binary_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary-format CIFAR-10 batch file -> uint8 images (n, 32, 32, 3), int64 labels (n,).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import read_binary_batch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "test_batch.bin").write_bytes((bytes([9]) + bytes(3072)) * 2)
    ...     images, labels = read_binary_batch(Path(d) / "test_batch.bin")
    >>> images.shape, images.dtype, labels
    ((2, 32, 32, 3), dtype('uint8'), array([9, 9]))
    """
    return decode_binary_batch(_read(path), path)


def _read(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None


def _decode_meta(data: bytes, source: str, fmt: str) -> tuple[str, ...]:
    if fmt == "binary":
        return tuple(line.strip() for line in data.decode("utf-8").splitlines() if line.strip())
    meta: Any = restricted_unpickle(data, source)  # unpickled content, not type-checked here
    names: Any = _key(meta, "label_names", source)
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


# ---------------------------------------------------------------------------------------------------------
# Archives


def _check_members(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, refusing links, devices, absolute paths and ``..`` (a path-traversal guard)."""
    members = tf.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
            raise DatasetError(f"{archive}: refusing unsafe archive member {m.name!r}")
    return members


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{archive}: not a readable tar archive: {e}") from None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> list[Path]:
    """Unpack ``archive`` (tar, tar.gz) into ``dest`` (default: its own directory) atomically.

    Everything is first unpacked into a temporary directory inside ``dest``; each top-level entry is then
    renamed into place, so a reader never sees a half-extracted directory. A top-level entry that already
    exists is kept as it is. Returns the top-level paths.

    Examples
    --------
    >>> import tarfile, tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import extract_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "cifar-10-batches-bin").mkdir()
    ...     _ = (Path(d) / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(bytes(3073))
    ...     with tarfile.open(Path(d) / "a.tar.gz", "w:gz") as tf:
    ...         tf.add(Path(d) / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    ...     tops = extract_archive(Path(d) / "a.tar.gz", Path(d) / "out")
    ...     print([p.name for p in tops], sorted(p.name for p in tops[0].iterdir()))
    ['cifar-10-batches-bin'] ['test_batch.bin']
    """
    archive = Path(archive)
    dest = archive.parent if dest is None else Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extract", dir=dest))
    try:
        with _open_tar(archive) as tf:
            try:
                members = _check_members(tf, archive)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were checked above
                    tf.extractall(tmp, members=members)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DatasetError(f"{archive}: truncated or corrupt archive: {e}") from None
        tops: list[Path] = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if not target.exists():
                try:
                    os.rename(entry, target)
                except OSError:
                    if not target.exists():  # lost a race to another extractor: theirs is as good
                        raise
            tops.append(target)
        return tops
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str) -> tuple[bytes, str]:
        path = self.root / name
        return _read(path), str(path)

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def storage_order(self, names: list[str]) -> list[str]:
        return names


class _TarSource:
    def __init__(self, archive: Path, dirname: str) -> None:
        self.archive, self.dirname = archive, dirname
        self.tf = _open_tar(archive)
        try:
            self.members = {m.name: m for m in _check_members(self.tf, archive) if m.isfile()}
        except (tarfile.TarError, EOFError, OSError) as e:
            self.tf.close()
            raise DatasetError(f"{archive}: truncated or corrupt archive: {e}") from None

    def read(self, name: str) -> tuple[bytes, str]:
        member = f"{self.dirname}/{name}"
        source = f"{self.archive}:{member}"
        if member not in self.members:
            raise DatasetError(f"{source}: not in the archive")
        try:
            f = self.tf.extractfile(self.members[member])
            if f is None:
                raise DatasetError(f"{source}: not a regular file")
            return f.read(), source
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{source}: truncated or corrupt archive: {e}") from None

    def has(self, name: str) -> bool:
        return f"{self.dirname}/{name}" in self.members

    def storage_order(self, names: list[str]) -> list[str]:
        """``names`` in the order their members lie in the archive: a compressed stream is read forwards
        once instead of being decompressed again from the start for every backwards seek."""
        return sorted(names, key=lambda n: self.members[f"{self.dirname}/{n}"].offset)

    def close(self) -> None:
        self.tf.close()


def _open_source(
    spec: DatasetSpec,
    fmt: str,
    dirname: str,
    data_dir: str | os.PathLike | None,
    verify: bool,
    download: bool,
    extract: bool,
) -> _DirSource | _TarSource:
    """Where the batches are read from: the extracted directory, else (after extracting) the archive."""
    directory = locate_dir(spec.name, dirname, data_dir)
    if directory is not None:
        return _DirSource(directory)
    archive_spec = spec.file(fmt)
    (archive,) = require_files(spec, [archive_spec], data_dir, download)
    if verify:
        check_file(archive, archive_spec.size, archive_spec.md5)
    if extract:
        with contextlib.suppress(PermissionError):  # a read-only location: read from the archive instead
            extract_archive(archive)
        if (archive.parent / dirname).is_dir():
            return _DirSource(archive.parent / dirname)
    return _TarSource(archive, dirname)


def load_cifar10(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    format: str = "python",
    verify: bool = True,
    download: bool = False,
    extract: bool = True,
) -> Dataset:
    """CIFAR-10 as uint8 images (N, 32, 32, 3) and int64 labels (N,): 50000 for "train", 10000 for "test".

    Looks in the data directory (``<data_dir>/cifar10/`` first, then ``<data_dir>/``) for the extracted
    directory (``cifar-10-batches-py`` or ``cifar-10-batches-bin``, by ``format``) and reads it. Without one,
    it takes the archive (``cifar-10-python.tar.gz`` / ``cifar-10-binary.tar.gz``; fetched when ``download``),
    checks its md5 when ``verify``, and either extracts it next to itself atomically (``extract=True``; when
    that directory is read-only it reads from the archive instead) or reads the batches straight from it.

    Python-format batches are read with :class:`RestrictedUnpickler`, never the general unpickler.

    Examples
    --------
    A stand-in for the extracted binary archive, a two-image ``test_batch.bin`` (without ``batches.meta.txt``
    the class names are the registry's):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import load_cifar10
    >>> with tempfile.TemporaryDirectory() as d:
    ...     batches = Path(d) / "cifar10" / "cifar-10-batches-bin"
    ...     batches.mkdir(parents=True)
    ...     _ = (batches / "test_batch.bin").write_bytes(bytes([3]) + bytes(3072) + bytes([8]) + bytes(3072))
    ...     ds = load_cifar10("test", d, format="binary")
    >>> ds.images.shape, [ds.classes[i] for i in ds.labels]
    ((2, 32, 32, 3), ['cat', 'ship'])
    """
    spec = get_spec(CIFAR10)
    names = batch_names(split, format)
    dirname = DIRNAMES[format]
    source = _open_source(spec, format, dirname, data_dir, verify, download, extract)
    try:
        missing = [n for n in names if not source.has(n)]
        if missing:
            where = source.root if isinstance(source, _DirSource) else f"{source.archive}:{dirname}"
            raise DatasetError(f"{where}: missing CIFAR-10 batches {', '.join(missing)}")
        meta = meta_name(format)
        wanted = list(names) + ([meta] if source.has(meta) else [])
        raw = {n: source.read(n) for n in source.storage_order(wanted)}  # name -> (bytes, source name)
    finally:
        if isinstance(source, _TarSource):
            source.close()
    decode = decode_binary_batch if format == "binary" else decode_python_batch
    parts = []
    for n in names:
        parts.append(decode(*raw.pop(n)))  # pop: drop each batch's raw bytes once decoded
    classes = (_decode_meta(*raw[meta], fmt=format) if meta in raw else ()) or spec.classes
    images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(
            f"CIFAR-10 {split} labels must lie in [0, {len(classes)}), got [{labels.min()}, {labels.max()}]"
        )
    return Dataset(images=images, labels=labels, classes=tuple(classes), name=f"{spec.name}/{split}")
