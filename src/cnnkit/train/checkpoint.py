"""Training checkpoints: the state after a finished epoch, so that a run resumes exactly.

A checkpoint is a :mod:`cnnkit.serialize` archive holding the model's parameters and buffers, the
optimiser's state (momentum buffers, moments, step counts), the number of finished epochs and whatever
the caller adds to the metadata (the run's configuration and metric records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError, quote
from cnnkit.protocols import Model
from cnnkit.serialize import NpzReader, PathLike, flatten_state, load_state_arrays, save_arrays, state_arrays, unflatten_state

FORMAT = "cnnkit-checkpoint-1"


def save_checkpoint(path: PathLike, model: Model, optimizer: Any, epoch: int, extra: dict | None = None) -> None:
    """Write the state after ``epoch`` finished epochs: model, buffers and optimiser state (atomically).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.serialize import load_arrays
    >>> from cnnkit.train.checkpoint import save_checkpoint
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_checkpoint(Path(d) / "checkpoint.npz", net, SGD(net, lr=0.1, momentum=0.9), epoch=3, extra={"note": "demo"})
    ...     arrays, meta = load_arrays(Path(d) / "checkpoint.npz")
    >>> sorted(arrays), meta["format"], meta["epoch"], meta["optimizer"]["optimizer"], meta["note"]
    (['param/bias', 'param/weight'], 'cnnkit-checkpoint-1', 3, 'SGD', 'demo')
    """
    arrays = state_arrays(model)
    meta = {
        "format": FORMAT,
        "epoch": int(epoch),
        "optimizer": flatten_state("optimizer", optimizer.state_dict(), arrays),
        **(extra or {}),
    }
    save_arrays(path, arrays, meta)


def load_checkpoint(path: PathLike, model: Model, optimizer: Any) -> dict:
    """Restore model and optimiser from a checkpoint in place; returns its metadata (``epoch`` ...).

    Examples
    --------
    A fresh model and optimiser take over the saved state (weights, momentum buffers) in place:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train.checkpoint import load_checkpoint, save_checkpoint
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> fresh = Linear(2, 2, rng=np.random.default_rng(1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_checkpoint(Path(d) / "checkpoint.npz", net, SGD(net, lr=0.1, momentum=0.9), epoch=3)
    ...     meta = load_checkpoint(Path(d) / "checkpoint.npz", fresh, SGD(fresh, lr=0.1, momentum=0.9))
    >>> meta["epoch"], bool((fresh.params["weight"] == net.params["weight"]).all())
    (3, True)
    """
    path = Path(path)
    with NpzReader(path, CheckpointError, "a cnnkit checkpoint") as z:
        meta = z.meta
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a cnnkit checkpoint (format {quote(meta.get('format'), 60)})")
        epoch = meta.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise CheckpointError(f"{path}: 'epoch' must be a non-negative integer, got {quote(epoch, 40)}")
        records = meta.get("records", [])
        if not (isinstance(records, list) and all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records)):
            raise CheckpointError(f"{path}: 'records' must be a list of per-epoch objects")
        # the model's own arrays fix what the file must hold: compare headers before reading anything
        params = {f"param/{k}": v for k, v in model.params.items()}
        params.update({f"buffer/{k}": v for k, v in model.buffers.items()})
        for key, want in params.items():
            h = z.headers.get(key)
            if h is None:
                if key.endswith("num_batches_tracked"):
                    continue
                raise CheckpointError(f"{path}: holds no {quote(key, 100)}: it belongs to another network")
            if h.shape != tuple(want.shape):
                raise CheckpointError(f"{path}: {quote(key, 100)} has shape {h.shape}; the network needs {tuple(want.shape)}")
        optimizer_tree = meta.get("optimizer")
        found = _array_refs(optimizer_tree)
        refs = set(found or [])
        stray = sorted(refs - set(z.headers)) if found is not None else ["(malformed)"]
        if not isinstance(optimizer_tree, dict) or stray:
            raise CheckpointError(f"{path}: its optimiser state is malformed or refers to missing arrays {quote(stray[:3], 100)}")
        unknown = sorted(k for k in z.headers if k not in params and k not in refs)
        if unknown:
            raise CheckpointError(f"{path}: holds arrays the network and optimiser do not have: {quote(unknown[:5], 200)}")
        _check_state_shapes(path, optimizer_tree.get("state"), model.params, z)
        arrays = z.read_all()
    try:
        load_state_arrays(model, arrays)
        optimizer.load_state_dict(unflatten_state(optimizer_tree, arrays))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: cannot restore its state: {_one_line(exc)}") from None
    return meta


def _check_state_shapes(path: Path, state: Any, params: dict[str, Any], z: NpzReader) -> None:
    """Every array of the optimiser's per-parameter state has its parameter's shape (momentum, moments): checked
    on the headers, before anything is read (a state array of another size would be read, then converted)."""
    if not isinstance(state, dict):
        return  # load_state_dict says what is wrong with it
    for name, entries in state.items():
        if not isinstance(entries, dict):
            continue
        for key, value in entries.items():
            if not (isinstance(value, dict) and set(value) == {"__array__"}):
                continue
            h = z.headers[value["__array__"]]
            want = params.get(name)
            if want is None or h.shape != tuple(want.shape):
                needs = f"the parameter's {tuple(want.shape)}" if want is not None else "a parameter of the network, which it is not"
                raise CheckpointError(f"{path}: optimiser state {quote(key, 40)} of {quote(name, 100)} has shape {h.shape}; "
                                      f"it needs {needs}")


def _array_refs(tree: Any) -> list[str] | None:
    """The array names a flattened state refers to; None when a reference is not a name."""
    out: list[str] = []
    stack = [tree]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                if not isinstance(v["__array__"], str):
                    return None
                out.append(v["__array__"])
            else:
                stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
