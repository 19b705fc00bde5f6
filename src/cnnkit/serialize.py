"""Pickle-free, atomic storage of arrays and metadata (models, checkpoints, preprocessing statistics).

A file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) read back with ``allow_pickle=False``, so
a file from a stranger can hold numbers and text but never code. Metadata (a JSON-serialisable dict)
rides along as UTF-8 bytes under the key ``__meta__``. Writes go to a temporary file in the target's
directory, are flushed to disk, then renamed over the target: a reader (or a run killed mid-write)
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.backend import Array
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
    payload = {k: np.asarray(v) for k, v in arrays.items()}
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


def load_arrays(path: PathLike) -> tuple[dict[str, Array], dict[str, Any]]:
    """Load what :func:`save_arrays` wrote; never unpickles. Raises ValueError naming a bad file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.serialize import load_arrays
    >>> with tempfile.TemporaryDirectory() as d:
    ...     np.save(Path(d) / "evil.npy", np.array([object()]), allow_pickle=True)
    ...     load_arrays(Path(d) / "evil.npy")
    Traceback (most recent call last):
    ...
    ValueError: .../evil.npy: not a readable cnnkit .npz file (Object arrays cannot be loaded when allow_pickle=False)
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError for pickled content, OSError ...
        raise ValueError(f"{path}: not a readable cnnkit .npz file ({exc})") from exc
    raw = arrays.pop(META_KEY, None)
    meta = json.loads(raw.tobytes().decode("utf-8")) if raw is not None else {}
    return arrays, meta


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
    if isinstance(tree, np.ndarray):
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
        dst[...] = src
