"""Pickle-free, atomic storage of arrays and metadata (models, checkpoints, preprocessing statistics).

A file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) read back with ``allow_pickle=False``, so
a file from a stranger can hold numbers and text but never code. Metadata (a JSON-serialisable dict)
rides along as UTF-8 bytes under the key ``__meta__``. Writes go to a temporary file in the target's
directory, are flushed to disk, then renamed over the target: a reader (or a run killed mid-write)
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import gc
import json
import math
import os
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnnkit.backend import Array, to_numpy, xp
from cnnkit.errors import quote
from cnnkit.limits import LIMITS, check_size
from cnnkit.protocols import Model

META_KEY = "__meta__"
PathLike = str | os.PathLike


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, fsync, rename).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.serialize import atomic_write_bytes
    >>> with tempfile.TemporaryDirectory() as d:
    ...     atomic_write_bytes(Path(d) / "sub" / "a.bin", b"new")  # creates sub/, then renames into place
    ...     print((Path(d) / "sub" / "a.bin").read_bytes(), sorted(p.name for p in (Path(d) / "sub").iterdir()))
    b'new' ['a.bin']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are mode 0600, which the rename would give the target; os.open
    # with 0o666 lets the umask decide, as for any new file
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:16]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(directory: PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_write_bytes` left in ``directory``.

    Only names of the form ``.<target>.<16 hex digits>.tmp`` are touched; returns what was removed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.serialize import remove_stale_temporaries
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in (".model.npz.0123456789abcdef.tmp", ".notes.tmp", "model.npz"):
    ...         _ = (Path(d) / name).write_bytes(b"")
    ...     print([p.name for p in remove_stale_temporaries(d)], sorted(p.name for p in Path(d).iterdir()))
    ['.model.npz.0123456789abcdef.tmp'] ['.notes.tmp', 'model.npz']
    """
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        stem = p.name[1:-4]  # "<target>.<hex>"
        target, _, tag = stem.rpartition(".")
        if target and len(tag) == 16 and all(c in "0123456789abcdef" for c in tag) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.serialize import atomic_write_text
    >>> with tempfile.TemporaryDirectory() as d:
    ...     atomic_write_text(Path(d) / "run.json", '{"epoch": 3}')
    ...     print((Path(d) / "run.json").read_text(encoding="utf-8"))
    {"epoch": 3}
    """

    atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: PathLike, arrays: dict[str, Array], meta: dict[str, Any] | None = None) -> None:
    """Save named arrays plus JSON metadata to an ``.npz`` file, atomically and without pickle.

    Examples
    --------
    Any array name works, and the metadata rides along as JSON:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.serialize import load_arrays, save_arrays
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_arrays(Path(d) / "s.npz", {"param/weight": np.eye(2), "file": np.zeros(1)}, {"epoch": 3})
    ...     arrays, meta = load_arrays(Path(d) / "s.npz")
    >>> sorted(arrays), meta, arrays["param/weight"]
    (['file', 'param/weight'], {'epoch': 3}, array([[1., 0.],
           [0., 1.]]))
    """
    import io

    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved for metadata")
    payload = {k: to_numpy(v) for k, v in arrays.items()}  # a GPU array is copied to the host here
    for k, v in payload.items():
        if v.dtype == object:
            raise ValueError(f"array {k!r} has dtype object, which cannot be stored without pickle")
    payload[META_KEY] = np.frombuffer(json.dumps(meta or {}, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    # the archive np.savez writes, built by hand so that any array name works (savez would take an array
    # named "allow_pickle" or "file" as its own argument)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in payload.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def open_regular(path: PathLike, error: type[Exception] = ValueError, limit: int | None = None) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file of at most ``limit`` bytes (default
    ``LIMITS.file_bytes``); ``error`` naming it otherwise (a FIFO, a device, a directory would block or
    never end). FileNotFoundError passes through.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     open_regular(d)
    Traceback (most recent call last):
    ...
    ValueError: ... is not a regular file
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{p}: cannot open it ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p} is not a regular file")
        limit = LIMITS.file_bytes + LIMITS.meta_bytes if limit is None else limit
        check_size(st.st_size, limit, f"{p}", error=error)  # type: ignore[arg-type]
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class ArrayHeader:
    """An array of an ``.npz`` archive as its ``.npy`` header declares it (nothing read yet).

    Examples
    --------
    >>> ArrayHeader("w", (2, 3), np.dtype(np.float32), False, 24).nbytes
    24
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    nbytes: int


DEFLATE_RATIO = 1032
"""The most one byte of deflate data decompresses to (a zip member of n compressed bytes holds at most this times n)."""

#: kinds of dtype an archive may hold: booleans, integers, floats, complex numbers, fixed-width text (never objects or structures)
ALLOWED_KINDS = frozenset("biufcSU")


class NpzReader:
    """An ``.npz`` archive read without trusting it: the headers first, each array's data on request.

    Before anything large is allocated it checks that the file is a regular file within
    :data:`cnnkit.limits.LIMITS`, that every member is a ``.npy`` array of a plain numeric dtype whose header
    agrees with the member's size, and that the JSON metadata is small and shallow. :meth:`read` then reads
    exactly the declared bytes. Every problem raises ``error`` (a ValueError subclass) naming the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_arrays(Path(d) / "a.npz", {"w": np.ones((2, 3), np.float32)}, {"epoch": 1})
    ...     with NpzReader(Path(d) / "a.npz") as z:
    ...         print(z.meta, z.headers["w"].shape, z.headers["w"].dtype, z.read("w").sum())
    {'epoch': 1} (2, 3) float32 6.0
    """

    def __init__(self, path: PathLike, error: type[ValueError] = ValueError, what: str = "a cnnkit .npz file") -> None:
        self.path, self.error = Path(path), error
        self._file = open_regular(path, error)
        try:
            try:
                self._zip = zipfile.ZipFile(self._file)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise error(f"{self.path}: not {what} ({_short(exc)})") from None
            if len(infos) > LIMITS.members:
                raise error(f"{self.path}: {len(infos):,} members, over the limit of {LIMITS.members:,} (CNNKIT_MAX_MEMBERS)")
            size = os.fstat(self._file.fileno()).st_size
            for info in infos:  # sizes the directory declares against what the archive can hold, before trusting them
                held = info.compress_size
                if held > size or info.header_offset > size:
                    raise error(f"{self.path}: member {quote(info.filename, 80)} declares {held:,} bytes in an archive of {size:,}")
                if (info.compress_type == zipfile.ZIP_STORED and info.file_size != held) or (
                        info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_RATIO * held + 1024):
                    raise error(f"{self.path}: member {quote(info.filename, 80)} declares {info.file_size:,} bytes, "
                                f"which its {held:,} stored bytes cannot hold")
            declared = sum(i.file_size for i in infos)
            check_size(declared, LIMITS.file_bytes + LIMITS.meta_bytes, f"{self.path}: its members", error=error)
            self.headers: dict[str, ArrayHeader] = {}
            self._infos: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                self._add(info)
            self.meta = self._read_meta()
        except BaseException:
            self.close()
            raise

    def _fail(self, why: str) -> ValueError:
        return self.error(f"{self.path}: {why}")

    def _add(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        if not name.endswith(".npy") or info.is_dir():
            raise self._fail(f"unexpected member {quote(name, 80)} (a cnnkit archive holds .npy arrays only)")
        key = name[:-4]
        if key in self._infos:
            raise self._fail(f"member {quote(key, 80)} appears twice")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._fail(f"member {quote(key, 80)} uses an unsupported compression")
        try:
            with self._zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
                else:
                    raise ValueError(f"npy format version {version}")
                header_len = f.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, TypeError) as exc:
            raise self._fail(f"member {quote(key, 80)} is not a readable .npy array ({_short(exc)})") from None
        dtype = np.dtype(dtype)
        if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise self._fail(f"array {quote(key, 80)} has dtype {quote(str(dtype), 40)}; only numbers and fixed-width text are accepted")
        if any(not isinstance(d, int) or d < 0 for d in shape) or len(shape) > 32:
            raise self._fail(f"array {quote(key, 80)} declares an invalid shape {quote(shape, 80)}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - header_len:
            raise self._fail(f"array {quote(key, 80)} declares {shape} {dtype} ({nbytes:,} bytes) but holds "
                             f"{info.file_size - header_len:,} bytes")
        self._infos[key] = info
        self.headers[key] = ArrayHeader(key, tuple(shape), dtype, bool(fortran), nbytes)

    def read(self, key: str) -> np.ndarray:
        """The array ``key``: exactly its declared bytes (the member's checksum is verified)."""
        h = self.headers[key]
        out = np.empty(h.shape, dtype=h.dtype, order="F" if h.fortran_order else "C")
        try:
            with self._zip.open(self._infos[key]) as f:
                np.lib.format.read_magic(f)
                (np.lib.format.read_array_header_1_0 if f.tell() == 8 else np.lib.format.read_array_header_2_0)(
                    f, max_header_size=10000)
                flat = out.reshape(-1, order="A").view(np.uint8)  # the array's own memory, byte by byte
                got = 0
                while got < h.nbytes:
                    chunk = f.read(min(1 << 24, h.nbytes - got))
                    if not chunk:
                        break
                    flat[got : got + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                    got += len(chunk)
                if got != h.nbytes or f.read(1):
                    raise ValueError(f"holds {got:,} bytes, not the {h.nbytes:,} its header declares")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise self._fail(f"array {quote(key, 80)} cannot be read ({_short(exc)})") from None
        return out

    def _read_meta(self) -> dict[str, Any]:
        h = self.headers.pop(META_KEY, None)
        if h is None:
            return {}
        if h.dtype != np.uint8 or len(h.shape) != 1:
            raise self._fail("its metadata is not a byte string")
        check_size(h.nbytes, LIMITS.meta_bytes, f"{self.path}: its metadata", "meta_bytes", self.error)
        raw = self.read_meta_bytes(h)
        collecting = gc.isenabled()
        gc.disable()  # JSON makes no cycles; the collector would go over every list made so far, again and again
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self._fail(f"its metadata is not JSON ({_short(exc)})") from None
        finally:
            if collecting:
                gc.enable()
        if not isinstance(meta, dict):
            raise self._fail(f"its metadata must be an object, got {type(meta).__name__}")
        if json_depth(meta) > LIMITS.json_depth:
            raise self._fail(f"its metadata is nested deeper than {LIMITS.json_depth} levels (CNNKIT_MAX_JSON_DEPTH)")
        return meta

    def read_meta_bytes(self, h: ArrayHeader) -> bytes:
        self.headers[META_KEY] = h
        try:
            return self.read(META_KEY).tobytes()
        finally:
            del self.headers[META_KEY]

    def read_all(self) -> dict[str, np.ndarray]:
        return {k: self.read(k) for k in self.headers}

    def close(self) -> None:
        zf = getattr(self, "_zip", None)
        if zf is not None:
            zf.close()
        self._file.close()

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: any depth is safe to measure).

    Examples
    --------
    >>> json_depth({"a": [1, {"b": []}]}), json_depth(3)
    (4, 0)
    """
    depth = 0
    level = [value] if isinstance(value, (dict, list)) else []
    while level:  # one level at a time, no tuple per value: millions of values take a fraction of a second
        depth += 1
        level = [x for x in chain.from_iterable(v.values() if isinstance(v, dict) else v for v in level)
                 if isinstance(x, (dict, list))]
    return depth


def _short(exc: BaseException) -> str:
    """An exception's message on one line, at most ~200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_arrays(path: PathLike, error: type[ValueError] = ValueError) -> tuple[dict[str, Array], dict[str, Any]]:
    """Load what :func:`save_arrays` wrote, through :class:`NpzReader`; never unpickles. Raises ``error`` naming a bad file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.serialize import load_arrays
    >>> with tempfile.TemporaryDirectory() as d:
    ...     np.save(Path(d) / "bare.npy", np.zeros(3))
    ...     load_arrays(Path(d) / "bare.npy")
    Traceback (most recent call last):
    ...
    ValueError: .../bare.npy: not a cnnkit .npz file (File is not a zip file)
    """
    with NpzReader(path, error) as z:
        return z.read_all(), z.meta


def flatten_state(prefix: str, tree: Any, arrays: dict[str, Array]) -> Any:
    """Move every array of a nested dict/list into ``arrays`` under ``prefix/key/...``; return the rest.

    What is returned is JSON-able (arrays replaced by ``{"__array__": name}``), so a nested state such as
    an optimiser's can be stored as metadata plus named arrays. :func:`unflatten_state` inverts it.

    Examples
    --------
    >>> import numpy as np
    >>> arrays = {}
    >>> flatten_state("opt", {"lr": 0.1, "m": np.zeros(2)}, arrays), list(arrays)
    ({'lr': 0.1, 'm': {'__array__': 'opt/m'}}, ['opt/m'])
    """
    if isinstance(tree, dict):
        return {k: flatten_state(f"{prefix}/{k}", v, arrays) for k, v in tree.items()}
    if isinstance(tree, (np.ndarray, xp.ndarray)):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, (np.floating, np.integer)):
        return tree.item()
    if isinstance(tree, (list, tuple)):
        return [flatten_state(f"{prefix}/{i}", v, arrays) for i, v in enumerate(tree)]
    return tree


def unflatten_state(tree: Any, arrays: dict[str, Array]) -> Any:
    """Inverse of :func:`flatten_state` (arrays are copied out of ``arrays``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.serialize import flatten_state, unflatten_state
    >>> arrays = {}
    >>> tree = flatten_state("opt", {"lr": 0.1, "state": [{"m": np.ones(2)}]}, arrays)
    >>> tree, unflatten_state(tree, arrays)
    ({'lr': 0.1, 'state': [{'m': {'__array__': 'opt/state/0/m'}}]}, {'lr': 0.1, 'state': [{'m': array([1., 1.])}]})
    """
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]].copy()
        return {k: unflatten_state(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, arrays) for v in tree]
    return tree


def state_arrays(model: Model) -> dict[str, Array]:
    """A model's parameters and buffers as ``{"param/<name>": ..., "buffer/<name>": ...}``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import build
    >>> from cnnkit.serialize import state_arrays
    >>> sorted(state_arrays(build("conv3x3x1x2,bn", (4, 4, 1), np.random.default_rng(0))))
    ['buffer/1.num_batches_tracked', 'buffer/1.running_mean', 'buffer/1.running_var',
     'param/0.bias', 'param/0.weight', 'param/1.bias', 'param/1.weight']
    """
    out = {f"param/{k}": v for k, v in model.params.items()}
    out.update({f"buffer/{k}": v for k, v in model.buffers.items()})
    return out


def load_state_arrays(model: Model, arrays: dict[str, Array], strict: bool = True) -> None:
    """Copy ``param/``/``buffer/`` arrays into a model in place; shapes must match.

    ``strict``: every parameter and buffer of the model must be given (a batch-norm ``num_batches_tracked``
    counter, which files of the first format lack, may be missing and stays as it is).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.models import build
    >>> from cnnkit.serialize import load_state_arrays, state_arrays
    >>> a, b = (build("fc2", (1, 1, 3), np.random.default_rng(seed)) for seed in (0, 1))
    >>> load_state_arrays(b, state_arrays(a))  # copied in place
    >>> bool(np.array_equal(a.params["1.weight"], b.params["1.weight"]))
    True
    >>> load_state_arrays(b, {"param/1.weight": np.zeros((2, 2))}, strict=False)
    Traceback (most recent call last):
    ...
    ValueError: state entry 'param/1.weight' has shape (2, 2); the model expects (3, 2)
    """
    targets = {f"param/{k}": v for k, v in model.params.items()}
    targets.update({f"buffer/{k}": v for k, v in model.buffers.items()})
    given = {k for k in arrays if k.startswith(("param/", "buffer/"))}
    missing = sorted(k for k in set(targets) - given if not k.endswith("num_batches_tracked"))
    if strict and missing:
        raise ValueError(f"state is missing {len(missing)} entries the model has, e.g. {missing[:3]}")
    unexpected = sorted(given - set(targets))
    if strict and unexpected:
        raise ValueError(f"state has {len(unexpected)} entries the model does not, e.g. {unexpected[:3]}")
    for key, dst in targets.items():
        if key not in arrays:
            continue
        src = arrays[key]
        if src.shape != dst.shape:
            raise ValueError(f"state entry {key!r} has shape {src.shape}; the model expects {dst.shape}")
        dst[...] = xp.asarray(src)  # the same array under NumPy; host to device under CuPy
