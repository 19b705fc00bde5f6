"""CIFAR-10: its python-pickle batches (read by a restricted unpickler) and its binary batches.

Layouts, both with images stored as three 1024-byte planes (R, G, B) of a 32x32 image in row-major order:

* python (``cifar-10-batches-py/data_batch_1`` .. ``_5``, ``test_batch``): each file is a pickled dict
  ``{b"batch_label": bytes, b"labels": [int]*n, b"data": uint8 ndarray (n, 3072), b"filenames": [bytes]*n}``;
  ``batches.meta`` holds ``{b"label_names": [bytes]*10, ...}``.
* binary (``cifar-10-batches-bin/data_batch_1.bin`` .. ``_5.bin``, ``test_batch.bin``): n records of 3073
  bytes, 1 label byte then 3072 pixel bytes; ``batches.meta.txt`` lists the class names one per line.

The python batches are pickles, and unpickling a file from a stranger can run arbitrary code. So they are
never unpickled: :class:`RestrictedUnpickler` parses the opcode stream with :func:`pickletools.genops` (which
executes nothing) and builds the dicts, lists, strings, numbers and numpy arrays a batch holds itself;
anything else (``os.system``, any other global or call) raises :class:`UnsafePickleError`.

Every file is opened only if it is a regular file within :data:`cnnkit.limits.LIMITS` (a FIFO or
``/dev/zero`` is refused at once); an archive's members must be regular files or directories inside the
target directory, each and all together within ``LIMITS.file_bytes``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickletools
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from cnnkit.data.checksum import check_file, open_file
from cnnkit.data.dataset import SPLITS, Dataset
from cnnkit.data.download import require_files
from cnnkit.data.errors import DatasetError, UnsafePickleError
from cnnkit.data.mnist import MAX_CLASSES
from cnnkit.data.paths import locate_dir
from cnnkit.data.registry import CIFAR10, DatasetSpec, get_spec
from cnnkit.errors import quote
from cnnkit.limits import LIMITS
from cnnkit.limits import check_size as check_limit

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
# Reading pickles as data: nothing is ever executed


MAX_PICKLE_OPCODES = 1_000_000
"""Opcodes one python batch may hold (a CIFAR-10 batch has about 100,000): bounds the time spent and, as
every memo entry, stack item and container costs an opcode, the memo, the stack and the objects built."""

PICKLE_OPCODES_FREE = 20_000
PICKLE_BYTES_PER_OPCODE = 64
"""Beyond its first :data:`PICKLE_OPCODES_FREE` opcodes, a batch may hold one opcode per this many bytes (a CIFAR-10
batch holds one per ~500: its pixels are one opcode). The interpreter takes microseconds per opcode, so a small
file dense with opcodes would otherwise take far longer to refuse than a genuine 30 MB batch takes to read."""

MAX_PICKLE_DEPTH = 64
"""Nesting of MARKs and of containers in one batch (a CIFAR-10 batch nests 4 deep)."""

ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",  # how numpy 1.x (and the real files) name it
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",  # how numpy 2.x names it
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",  # protocol 5 (numpy 1.x name)
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",  # protocol 5 (numpy 2.x name)
    ("_codecs", "encode"): "encode",  # protocol 2 from Python 3 spells bytes as _codecs.encode(str, "latin1")
    ("__builtin__", "bytes"): "bytes",  # ... and b"" as bytes()
    ("builtins", "bytes"): "bytes",
}
"""Every global a CIFAR-10 batch may name, mapped to the role it plays in the reader. Nothing is imported
or called: the reader recognises the pattern each one is used in and builds the data itself."""

CODE_OPCODES = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID", "BINPERSID",
     "EXT1", "EXT2", "EXT4"}
)
"""Opcodes with which a pickle calls code; the reader accepts the first four only for numpy arrays and bytes."""

_NUMERIC_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
"""The dtype codes an array may have (the byte order comes from the pickled state)."""
_LATIN1 = ("latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1")


def _clip(text: str, limit: int = 200) -> str:
    """``text`` as it is when short and printable, else quoted and shortened by :func:`cnnkit.errors.quote`."""
    return text if len(text) <= limit and text.isprintable() else quote(text, limit)


class _Global:
    """A global named by the pickle and on the allow-list: a marker, never the object it names."""

    __slots__ = ("module", "name", "role")

    def __init__(self, module: str, name: str, role: str) -> None:
        self.module, self.name, self.role = module, name, role


class _Pending:
    """A numpy array or dtype made by REDUCE whose state BUILD has yet to set (``value`` None until then)."""

    __slots__ = ("dtype", "kind", "value")

    def __init__(self, kind: str, dtype: np.dtype | None = None) -> None:
        self.kind, self.dtype = kind, dtype
        self.value: np.ndarray | np.dtype | None = None


class RestrictedUnpickler:
    """Reads a CIFAR-10 python batch (a pickle) as data, without unpickling it: nothing in it is ever run.

    The opcode stream is parsed by :func:`pickletools.genops`, a parser that executes nothing, and the
    reader interprets only the opcodes that CIFAR-10 batches use (protocol 2 as Python 2 wrote the real
    files, and protocols 2 to 5 as Python 3 re-saves them): dicts, lists, tuples, strings, bytes, integers,
    booleans, None, the memo, and numpy arrays. An array is recognised by the pattern numpy pickles it with
    (``_reconstruct(ndarray, ...)`` then its state; or ``_frombuffer`` in protocol 5), and built from the raw
    bytes by the reader itself, with its shape checked against those bytes and only plain numeric dtypes
    (bool, integers, floats) allowed. Any other global (``os.system``), a REDUCE of anything else, INST,
    OBJ, NEWOBJ, persistent ids or extension codes raise :class:`UnsafePickleError`; any other opcode, a
    malformed or truncated stream, more than :data:`MAX_PICKLE_OPCODES` opcodes (or one per
    :data:`PICKLE_BYTES_PER_OPCODE` bytes beyond the first :data:`PICKLE_OPCODES_FREE`) or nesting deeper than
    :data:`MAX_PICKLE_DEPTH` raise DatasetError. Every length the stream declares is bounded by the bytes
    actually there. Python 2 strings (``str``) are returned as ``bytes``, as the CIFAR-10 files need.

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

    def __init__(self, file: io.BufferedIOBase | BinaryIO, source: str | os.PathLike = "<stream>") -> None:
        self.file = file
        self.source = str(source)

    def load(self) -> object:
        """The data the pickle holds (at most ``LIMITS.file_bytes`` of it are read)."""
        chunks, size = [], 0
        while size <= LIMITS.file_bytes:  # in chunks: read(n) of a file allocates n bytes before it reads any
            chunk = self.file.read(min(1 << 24, LIMITS.file_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        check_limit(size, LIMITS.file_bytes, f"{self.source}: the pickle", error=DatasetError)
        return _PickleReader(b"".join(chunks), self.source).run()


class _PickleReader:
    """The interpreter behind :class:`RestrictedUnpickler`: one instance reads one pickle."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id of a list, dict or tuple -> how deep it nests
        self.sealed: set[int] = set()  # ids of lists and dicts already inside another container: never changed again
        self.tainted: set[int] = set()  # ids of tuples holding a global: arguments of a REDUCE, never data
        self.keep: list[object] = []  # every container made, so that no id above is reused by another object

    # -- errors -------------------------------------------------------------------------------------
    def bad(self, why: str) -> DatasetError:
        return DatasetError(f"{self.source}: not a readable CIFAR-10 python batch: {why}")

    def refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"{self.source}: refusing to unpickle {what}: a CIFAR-10 batch holds only dicts, lists, strings, "
            f"numbers and numpy arrays; this file is not a genuine CIFAR-10 batch and may be malicious"
        )

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> object:
        f = io.BytesIO(self.data)
        ops = pickletools.genops(f)
        count = 0
        limit = min(MAX_PICKLE_OPCODES, PICKLE_OPCODES_FREE + len(self.data) // PICKLE_BYTES_PER_OPCODE)
        try:
            for opcode, arg, pos in ops:
                count += 1
                if count > limit:
                    raise self.bad(f"more than {limit:,} opcodes in {len(self.data):,} bytes (a CIFAR-10 batch has about "
                                   f"100,000 in 30 MB; at most {MAX_PICKLE_OPCODES:,}, and one per {PICKLE_BYTES_PER_OPCODE} "
                                   f"bytes beyond the first {PICKLE_OPCODES_FREE:,})")
                name = opcode.name
                if name == "STOP":
                    result = self.data_value(self.pop())
                    if f.tell() != len(self.data):
                        raise self.bad(f"{len(self.data) - f.tell()} bytes after the end of the pickle (byte {f.tell()})")
                    return result
                handler = getattr(self, f"op_{name.lower()}", None)
                if handler is None:
                    if name in CODE_OPCODES:
                        raise self.refuse(f"opcode {name} (byte {pos})")
                    raise self.bad(f"unsupported pickle opcode {name} at byte {pos}")
                handler(arg)
        except DatasetError:
            raise
        except (ValueError, EOFError, OverflowError) as e:  # what genops raises for a truncated or garbled stream
            raise self.bad(_clip(str(e))) from None
        except (TypeError, LookupError, AttributeError, MemoryError) as e:  # pragma: no cover - a value of a kind no check expected
            raise self.bad(f"{type(e).__name__}: {_clip(str(e))}") from None
        except RecursionError:  # pragma: no cover - nesting is bounded above
            raise self.bad("nested too deeply") from None
        raise self.bad("truncated: the pickle ends before its STOP opcode")  # pragma: no cover - genops raises first

    # -- the stack ----------------------------------------------------------------------------------
    def push(self, value: object) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise self.bad("stack underflow (an opcode takes more values than there are)")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise self.bad("stack underflow (an opcode takes more values than there are)")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise self.bad("an opcode needs a MARK that is not there")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def pop_n(self, n: int) -> list[Any]:
        if len(self.stack) < n:
            raise self.bad("stack underflow (an opcode takes more values than there are)")
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    # -- values -------------------------------------------------------------------------------------
    def new(self, container: list | dict) -> None:
        self.keep.append(container)
        self.depth[id(container)] = 1
        self.push(container)

    def value(self, x: Any) -> Any:
        """``x`` as it goes into a container or an argument list: a finished numpy array/dtype is itself."""
        if isinstance(x, _Pending):
            if x.value is None:
                raise self.bad(f"a numpy {x.kind} is used before its state is set")
            return x.value
        return x

    def data_value(self, x: Any) -> Any:
        """``x`` as it goes into a list or dict, or out of the reader: data, never a global."""
        x = self.value(x)
        if isinstance(x, _Global) or (isinstance(x, tuple) and id(x) in self.tainted):
            what = f"{x.module}.{x.name}" if isinstance(x, _Global) else "a tuple holding a global"
            raise self.refuse(f"{_clip(what, 120)} as data")
        return x

    def contain(self, parent: object, child: Any) -> None:
        """Record that ``child`` now lies inside ``parent``: it is sealed and deepens ``parent``."""
        if isinstance(child, (list, dict, tuple)):
            if child is parent:
                raise self.bad("a container that holds itself")
            self.sealed.add(id(child))
            d = self.depth.get(id(child), 1) + 1
            if d > MAX_PICKLE_DEPTH:
                raise self.bad(f"containers nested deeper than {MAX_PICKLE_DEPTH}")
            if d > self.depth[id(parent)]:
                self.depth[id(parent)] = d

    def make_tuple(self, items: list[Any]) -> tuple:
        values = [self.value(x) for x in items]
        t = tuple(values)
        self.keep.append(t)
        self.depth[id(t)] = 1
        for v in values:
            self.contain(t, v)
            if isinstance(v, _Global) or (isinstance(v, tuple) and id(v) in self.tainted):
                self.tainted.add(id(t))
        return t

    def target(self, kind: type) -> Any:
        obj = self.top()
        if type(obj) is not kind:
            raise self.bad(f"adds items to a {type(obj).__name__}, not a {kind.__name__}")
        if id(obj) in self.sealed:
            raise self.bad(f"changes a {kind.__name__} after it was put inside another container")
        return obj

    def append(self, lst: list, x: Any) -> None:
        x = self.data_value(x)
        self.contain(lst, x)
        lst.append(x)

    def setitem(self, d: dict, k: Any, v: Any) -> None:
        k, v = self.data_value(k), self.data_value(v)
        self.contain(d, k)
        self.contain(d, v)
        try:
            d[k] = v
        except TypeError:
            raise self.bad(f"a dict key of type {type(k).__name__}") from None

    # -- opcodes: structure ---------------------------------------------------------------------------
    def op_proto(self, arg: int) -> None:
        if not 0 <= arg <= 5:
            raise self.bad(f"unsupported pickle protocol {arg}")

    def op_frame(self, arg: int) -> None:
        pass  # framing only groups the opcodes that follow

    def op_mark(self, arg: None) -> None:
        if len(self.metastack) >= MAX_PICKLE_DEPTH:
            raise self.bad(f"MARKs nested deeper than {MAX_PICKLE_DEPTH}")
        self.metastack.append(self.stack)
        self.stack = []

    def op_empty_dict(self, arg: None) -> None:
        self.new({})

    def op_empty_list(self, arg: None) -> None:
        self.new([])

    def op_empty_tuple(self, arg: None) -> None:
        self.push(self.make_tuple([]))

    def op_tuple(self, arg: None) -> None:
        self.push(self.make_tuple(self.pop_mark()))

    def op_tuple1(self, arg: None) -> None:
        self.push(self.make_tuple(self.pop_n(1)))

    def op_tuple2(self, arg: None) -> None:
        self.push(self.make_tuple(self.pop_n(2)))

    def op_tuple3(self, arg: None) -> None:
        self.push(self.make_tuple(self.pop_n(3)))

    def op_append(self, arg: None) -> None:
        x = self.pop()
        self.append(self.target(list), x)

    def op_appends(self, arg: None) -> None:
        items = self.pop_mark()
        lst = self.target(list)
        for x in items:
            self.append(lst, x)

    def op_setitem(self, arg: None) -> None:
        v = self.pop()
        k = self.pop()
        self.setitem(self.target(dict), k, v)

    def op_setitems(self, arg: None) -> None:
        items = self.pop_mark()
        d = self.target(dict)
        if len(items) % 2:
            raise self.bad("SETITEMS with a key and no value")
        for i in range(0, len(items), 2):
            self.setitem(d, items[i], items[i + 1])

    # -- opcodes: the memo ----------------------------------------------------------------------------
    def op_binput(self, arg: int) -> None:
        self.memo[arg] = self.top()

    op_long_binput = op_binput

    def op_memoize(self, arg: None) -> None:
        self.memo[len(self.memo)] = self.top()

    def op_binget(self, arg: int) -> None:
        if arg not in self.memo:
            raise self.bad(f"memo entry {arg} used before it is set")
        x = self.memo[arg]
        self.push(x.value if isinstance(x, _Pending) and x.value is not None else x)

    op_long_binget = op_binget

    # -- opcodes: scalars ---------------------------------------------------------------------------
    def op_none(self, arg: None) -> None:
        self.push(None)

    def op_newtrue(self, arg: None) -> None:
        self.push(True)

    def op_newfalse(self, arg: None) -> None:
        self.push(False)

    def _push_arg(self, arg: object) -> None:
        self.push(arg)

    op_binint = op_binint1 = op_binint2 = op_long1 = op_binfloat = _push_arg
    op_binunicode = op_short_binunicode = op_binunicode8 = _push_arg
    op_binbytes = op_short_binbytes = op_binbytes8 = op_bytearray8 = _push_arg

    def op_binstring(self, arg: str) -> None:
        self.push(arg.encode("latin-1"))  # a Python 2 str: bytes (genops hands it over decoded as latin-1)

    op_short_binstring = op_binstring

    # -- opcodes: globals, and the calls allowed with them --------------------------------------------
    def find(self, module: object, name: object) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.refuse("a global whose name is not a string")
        role = ALLOWED_GLOBALS.get((module, name))
        if role is None:
            raise self.refuse(f"global {_clip(f'{module}.{name}', 120)}")
        return _Global(module, name, role)

    def op_global(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        self.push(self.find(module, name))

    def op_stack_global(self, arg: None) -> None:
        name = self.pop()
        module = self.pop()
        self.push(self.find(module, name))

    def op_reduce(self, arg: None) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(func, _Global):
            raise self.refuse(f"a call of {type(func).__name__} (REDUCE)")
        if not isinstance(args, tuple):
            raise self.bad(f"the arguments of {func.module}.{func.name} are not a tuple")
        self.push(getattr(self, f"call_{func.role}")(func, args))

    def call_encode(self, func: _Global, args: tuple) -> bytes:
        """``_codecs.encode(text, "latin1")``: how Python 3 pickles bytes at protocol 2."""
        enc = args[1] if len(args) == 2 else None
        if not (len(args) == 2 and isinstance(args[0], str) and isinstance(enc, str) and enc.lower() in _LATIN1):
            shown = ", ".join(type(a).__name__ if not isinstance(a, str) else quote(a, 40) for a in args)
            raise self.refuse(f"_codecs.encode({shown}): only latin-1 allowed")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise self.bad("_codecs.encode of text that is not latin-1") from None

    def call_bytes(self, func: _Global, args: tuple) -> bytes:
        """``bytes()``: how Python 3 pickles ``b""`` at protocol 2."""
        if args:
            raise self.refuse(f"{func.module}.bytes with {len(args)} argument(s): only bytes() allowed")
        return b""

    def call_ndarray(self, func: _Global, args: tuple) -> None:
        raise self.refuse("a call of numpy.ndarray (only numpy's _reconstruct may name it)")

    def call_dtype(self, func: _Global, args: tuple) -> _Pending:
        """``numpy.dtype(code, align, copy)``, ``code`` a plain numeric type; BUILD then sets the byte order."""
        code = args[0] if args else None
        if isinstance(code, bytes):
            code = code.decode("latin-1")
        if isinstance(code, str) and code[:1] in ("<", ">", "|", "="):
            code = code[1:]
        if not (isinstance(code, str) and code in _NUMERIC_DTYPES and len(args) == 3):
            raise self.bad(f"numpy dtype {quote(code, 40)}: only bool, integers and floats are accepted")
        return _Pending("dtype", np.dtype(code))

    def call_reconstruct(self, func: _Global, args: tuple) -> _Pending:
        """``numpy...._reconstruct(ndarray, (0,), b"b")``: an empty array whose state BUILD sets."""
        if not (len(args) == 3 and isinstance(args[0], _Global) and args[0].role == "ndarray"
                and isinstance(args[1], tuple) and args[2] in (b"b", "b")):
            raise self.refuse(f"{func.module}._reconstruct with arguments other than (numpy.ndarray, (0,), b'b')")
        return _Pending("array")

    def call_frombuffer(self, func: _Global, args: tuple) -> np.ndarray:
        """``numpy...._frombuffer(buffer, dtype, shape, order)``: how protocol 5 pickles an array."""
        if len(args) != 4 or not isinstance(args[0], (bytes, bytearray)) or args[3] not in ("C", "F"):
            raise self.bad(f"{func.module}._frombuffer with unexpected arguments")
        return self.array(args[2], args[1], args[3] == "F", args[0])

    def array(self, shape: object, dtype: object, fortran: object, raw: object) -> np.ndarray:
        """An array built from ``raw`` bytes, after checking its shape and dtype against them."""
        if not isinstance(dtype, np.dtype):
            raise self.bad(f"an array's dtype is a {type(dtype).__name__}")
        if not isinstance(raw, (bytes, bytearray)):
            raise self.bad(f"an array's data is a {type(raw).__name__}, not bytes (object arrays are refused)")
        if (not isinstance(shape, tuple) or len(shape) > 32
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise self.bad(f"an array's shape is {quote(shape, 80)}")
        nbytes = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
        if nbytes != len(raw):
            raise self.bad(f"an array of shape {quote(shape, 80)} and dtype {dtype} needs {nbytes:,} bytes, got {len(raw):,}")
        flat = np.frombuffer(raw, dtype=dtype)
        return flat.reshape(shape, order="F" if fortran else "C").copy()

    def op_build(self, arg: None) -> None:
        state = self.value(self.pop())
        obj = self.top()
        if not isinstance(obj, _Pending) or obj.value is not None:
            raise self.refuse(f"the state of a {type(obj).__name__} (BUILD)")
        if not isinstance(state, tuple):
            raise self.bad(f"the state of a numpy {obj.kind} is a {type(state).__name__}")
        if obj.kind == "dtype":
            obj.value = self.build_dtype(obj, state)
        else:
            if len(state) == 5 and state[0] == 1:
                state = state[1:]  # (version, shape, dtype, is_fortran, data)
            if len(state) != 4 or not isinstance(state[2], (bool, int)):
                raise self.bad(f"the state of a numpy array is a tuple of {len(state)} unexpected items")
            obj.value = self.array(state[0], state[1], state[2], state[3])
        self.stack[-1] = obj.value

    def build_dtype(self, obj: _Pending, state: tuple) -> np.dtype:
        """The dtype with the byte order of its pickled state, e.g. ``(3, "<", None, None, None, -1, -1, 0)``
        (version, byte order, sub-array, names, fields, item size, alignment, flags); plain numbers only."""
        order = state[1] if len(state) >= 2 else None
        if isinstance(order, bytes):
            order = order.decode("latin-1")
        # versions 1 and 2 (older numpy) have 7 items, 3 has 8, 4 adds the metadata
        if (len(state) not in (7, 8, 9) or state[0] not in (1, 2, 3, 4) or order not in ("<", ">", "|", "=")
                or any(x is not None for x in state[2:5]) or (len(state) == 9 and state[8] is not None)):
            raise self.bad("a numpy dtype with fields, a sub-array or metadata (only plain numbers are accepted)")
        dtype = obj.dtype if obj.dtype is not None else np.dtype(np.uint8)  # call_dtype always sets it
        if order not in "<>" or dtype.itemsize == 1:
            return dtype
        return dtype.newbyteorder("<" if order == "<" else ">")


def restricted_unpickle(data: bytes, source: str | os.PathLike = "<bytes>") -> object:
    """The data of the pickle ``data``, read by :class:`RestrictedUnpickler` (nothing in it is executed).

    Every failure is a DatasetError naming ``source`` (:class:`UnsafePickleError` for a pickle that asks for
    code to be run).

    Examples
    --------
    >>> import pickle
    >>> from cnnkit.data import restricted_unpickle
    >>> restricted_unpickle(pickle.dumps({b"labels": [3, 5]}, protocol=2))
    {b'labels': [3, 5]}
    >>> restricted_unpickle(b"garbage", "batch_1")
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetError: batch_1: not a readable CIFAR-10 python batch: ...
    """
    return RestrictedUnpickler(io.BytesIO(data), source).load()


def _key(d: object, key: str, source: str | os.PathLike) -> object:
    if not isinstance(d, dict):
        raise DatasetError(f"{source}: a CIFAR-10 batch is a dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(f"{source}: CIFAR-10 batch lacks the key {key!r}; it has {quote(sorted(quote(k, 60) for k in list(d)[:20]))}")


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
    if not isinstance(labels, (list, tuple, np.ndarray)) or (isinstance(labels, np.ndarray) and labels.dtype.kind not in "iub"):
        raise DatasetError(f"{source}: b'labels' must be a list of integers, got {type(labels).__name__}")
    if isinstance(labels, (list, tuple)):
        # one integer per image, checked before NumPy sees it: nested lists sharing each other (the memo makes
        # that cheap to write) would make np.asarray build an array of exponential size
        if len(labels) != pixels.shape[0]:
            raise DatasetError(f"{source}: {pixels.shape[0]} images but {len(labels)} labels")
        bad = next((x for x in labels if not isinstance(x, int)), None)
        if bad is not None:
            raise DatasetError(f"{source}: b'labels' must be a list of integers, got an item {quote(bad, 80)}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DatasetError(f"{source}: b'labels' must be a list of integers: {quote(str(e))}") from None
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
    """Read one python-format CIFAR-10 batch file (as data: nothing in it runs) -> images (n, 32, 32, 3), labels.

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


def _read(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of ``path``: a regular file of at most ``limit`` bytes (default ``LIMITS.file_bytes``)."""
    limit = LIMITS.file_bytes if limit is None else limit
    with open_file(path, limit) as f:
        size = os.fstat(f.fileno()).st_size  # within the limit (open_file checked it)
        data = f.read(size + 1)  # not read(limit + 1): that allocates the whole limit before reading a byte
    if len(data) != size:
        raise DatasetError(f"{path}: changed while being read ({size:,} bytes, then {len(data):,})")
    return data


def _decode_meta(data: bytes, source: str, fmt: str) -> tuple[str, ...]:
    try:
        if fmt == "binary":
            names: Any = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
        else:
            names = _key(restricted_unpickle(data, source), "label_names", source)
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
                raise DatasetError(f"{source}: b'label_names' must be a list of strings, got {quote(names, 80)}")
            names = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{source}: class names are not UTF-8 text: {e}") from None
    if len(names) > MAX_CLASSES:
        raise DatasetError(f"{source}: {len(names):,} class names, more than {MAX_CLASSES:,}")
    return tuple(names)


# ---------------------------------------------------------------------------------------------------------
# Archives


def _check_members(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, refusing links, devices, absolute paths and ``..`` (a path-traversal guard),
    and sizes over ``LIMITS.file_bytes`` (each and all together) or more than ``LIMITS.members`` members.

    Each header is checked before the next is read: reading the next one means decompressing the data of
    this one, so a member declaring a huge size is refused before any of it is decompressed."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (m := tf.next()) is not None:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
            raise DatasetError(f"{archive}: refusing unsafe archive member {quote(m.name, 120)}")
        total += m.size
        check_limit(total, LIMITS.file_bytes, f"{archive}: its members up to {quote(m.name, 120)}", error=DatasetError)
        members.append(m)
        if len(members) > LIMITS.members:
            raise DatasetError(f"{archive}: more than {LIMITS.members:,} members (CNNKIT_MAX_MEMBERS)")
    return members


TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
"""What reading a truncated or corrupt (compressed) tar archive raises."""


class _Tar:
    """A tar archive (plain or compressed) opened only if it is a regular file within ``LIMITS.file_bytes``."""

    def __init__(self, archive: Path) -> None:
        self.file: BinaryIO = open_file(archive)
        try:
            self.tf = tarfile.open(fileobj=self.file, mode="r:*")  # noqa: SIM115 - closed by close()
        except TAR_ERRORS as e:
            self.file.close()
            raise DatasetError(f"{archive}: not a readable tar archive: {quote(str(e))}") from None

    def close(self) -> None:
        try:
            self.tf.close()
        finally:
            self.file.close()

    def __enter__(self) -> _Tar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        with _Tar(archive) as tar:
            tf = tar.tf
            try:
                members = _check_members(tf, archive)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were checked above
                    tf.extractall(tmp, members=members)
            except DatasetError:
                raise
            except PermissionError:
                raise
            except TAR_ERRORS as e:
                raise DatasetError(f"{archive}: truncated or corrupt archive: {quote(str(e))}") from None
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
        self.tar = _Tar(archive)
        self.tf = self.tar.tf
        try:
            self.members = {m.name: m for m in _check_members(self.tf, archive) if m.isfile()}
        except DatasetError:
            self.tar.close()
            raise
        except TAR_ERRORS as e:
            self.tar.close()
            raise DatasetError(f"{archive}: truncated or corrupt archive: {quote(str(e))}") from None

    def read(self, name: str) -> tuple[bytes, str]:
        member = f"{self.dirname}/{name}"
        source = f"{self.archive}:{member}"
        if member not in self.members:
            raise DatasetError(f"{source}: not in the archive")
        info = self.members[member]
        try:
            f = self.tf.extractfile(info)
            if f is None:
                raise DatasetError(f"{source}: not a regular file")
            data = f.read(info.size)  # the size was checked against the limit with the header
        except DatasetError:
            raise
        except TAR_ERRORS as e:
            raise DatasetError(f"{source}: truncated or corrupt archive: {quote(str(e))}") from None
        if len(data) != info.size:
            raise DatasetError(f"{source}: truncated archive: {len(data)} of the member's {info.size} bytes")
        return data, source

    def has(self, name: str) -> bool:
        return f"{self.dirname}/{name}" in self.members

    def storage_order(self, names: list[str]) -> list[str]:
        """``names`` in the order their members lie in the archive: a compressed stream is read forwards
        once instead of being decompressed again from the start for every backwards seek."""
        return sorted(names, key=lambda n: self.members[f"{self.dirname}/{n}"].offset)

    def close(self) -> None:
        self.tar.close()


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

    Python-format batches are read with :class:`RestrictedUnpickler`, which reads a pickle as data and never
    runs anything in it; every file is opened only if it is a regular file within ``LIMITS.file_bytes``.

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
