"""Reusable scratch memory for the large temporaries of a layer (im2row's phi(x), dY F^T).

Reusing the memory avoids the page faults that a fresh 10-150 MB array costs on every step (docs/perf-notes.md).
A layer owns one :class:`Workspace` per use (training forward, evaluation forward, backward) and passes
it to the ops; the ops fall back to fresh arrays when given none.
"""

from __future__ import annotations

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
