"""Reusable scratch memory for the large temporaries of a layer (im2row's phi(x), dY F^T).

Reusing the memory avoids the page faults that a fresh 10-150 MB array costs on every step (docs/perf-notes.md).
Two kinds. Memory that outlives a call (phi(x) kept for the backward pass) is a layer's own
:class:`Workspace`, passed to the op. Temporaries that die with the call (phi(x) of one chunk, dY F^T,
Winograd's transformed tiles) come from :func:`transient`, one workspace per thread shared by every layer,
so that the memory they take is the largest one layer needs, not the sum over layers (docs/perf-notes.md).
"""

from __future__ import annotations

import threading
from typing import Any

from cnnkit.backend import Array, xp


class Workspace:
    """Named scratch buffers that grow as needed and are handed out as views of the requested shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.workspace import Workspace
    >>> ws = Workspace()
    >>> a = ws.get("rows", (2, 3), np.float32)
    >>> b = ws.get("rows", (3, 2), np.float32)  # same name: the same memory, reshaped
    >>> bool(np.shares_memory(a, b)), ws.nbytes()
    (True, 24)
    """

    def __init__(self) -> None:
        self._bufs: dict[str, Array] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
        """An uninitialised C-contiguous array of ``shape``; the same memory as the last call with ``name``."""
        size = 1
        for s in shape:
            size *= int(s)
        buf = self._bufs.get(name)
        if buf is None or buf.size < size or buf.dtype != xp.dtype(dtype):
            buf = xp.empty(size, dtype=dtype)
            self._bufs[name] = buf
        return buf[:size].reshape(shape)

    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._bufs.values())

    def clear(self) -> None:
        self._bufs.clear()


def scratch(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """``ws.get(...)``, or a fresh array without a workspace.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.workspace import Workspace, scratch
    >>> scratch(None, "rows", (2, 2), np.float32).shape  # no workspace: a fresh array
    (2, 2)
    >>> ws = Workspace()
    >>> bool(np.shares_memory(scratch(ws, "rows", (4,), np.float32), ws.get("rows", (4,), np.float32)))
    True
    """
    return ws.get(name, shape, dtype) if ws is not None else xp.empty(shape, dtype=dtype)


_local = threading.local()


def transient() -> Workspace:
    """This thread's workspace for temporaries that do not outlive one op call (shared by all layers).

    Examples
    --------
    >>> from cnnkit.ops.workspace import transient
    >>> transient() is transient()
    True
    """
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = Workspace()
    return ws
