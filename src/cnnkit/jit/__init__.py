"""Optional compiled kernels (numba) for the loops NumPy cannot fuse, shared by :mod:`cnnkit.ops` and
:mod:`cnnkit.optim`: the row2im scatter-add (:mod:`.scatter`), max pooling (:mod:`.pool`) and the fused
SGD-with-momentum update (:mod:`.optim`).

Numba is an optional dependency (extra ``fast``); without it, or with ``CNNKIT_JIT=0`` in the environment,
``HAVE_NUMBA`` is False, every kernel name is None and every op uses its NumPy path (the tests check that
both paths give the same results). Callers ask :func:`usable` before calling a kernel.

Kernels are serial on purpose: numba's parallel loops competed with OpenBLAS's threads for the same cores
and were slower end to end (numbers in docs/perf-notes.md). They are compiled on first use and cached on
disk. The cache goes where numba puts it (``NUMBA_CACHE_DIR``, else ``__pycache__`` next to this package,
else the user's cache directory); when none of these is writable, ``NUMBA_CACHE_DIR`` is set to a private
``cnnkit-numba-<uid>`` directory under the system's temporary directory, and when that fails too the
kernels are compiled without an on-disk cache (``CACHE`` is then False).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import numpy as np

numba: ModuleType | None
try:  # pragma: no cover - depends on the environment
    if os.environ.get("CNNKIT_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        raise ImportError("disabled by CNNKIT_JIT")
    import numba
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "maxpool_backward", "maxpool_backward_disjoint", "maxpool_forward", "row2im_add", "sgd_momentum_", "usable"]


def usable(*arrays: object) -> bool:
    """True when the compiled kernels can take these arrays: numba present, NumPy arrays of float32/float64.

    Examples
    --------
    The same answer with or without numba for arrays the kernels never take:

    >>> import numpy as np
    >>> from cnnkit import jit
    >>> jit.usable(np.zeros(2, np.float32)) == jit.HAVE_NUMBA
    True
    >>> jit.usable(np.zeros(2, np.int64)), jit.usable([1.0, 2.0])
    (False, False)
    """
    if not HAVE_NUMBA:
        return False
    return all(isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) for a in arrays)


# ---------------------------------------------------------------------------------------------
# where numba's on-disk cache goes
# ---------------------------------------------------------------------------------------------
def _writable_dir(path: str) -> bool:
    """True when ``path`` is (or can be created as) a directory that accepts new files.

    The same test numba applies to a cache location (create it, then create a temporary file in it);
    ``os.access`` is not used because it answers True for root even where writes fail.
    """
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _choose_cache_dir(candidates: Iterable[str | None]) -> str | None:
    """The first candidate directory that is writable (created if missing); None when none is.

    Empty or None candidates are skipped.
    """
    for path in candidates:
        if path and _writable_dir(path):
            return path
    return None


def _private_tmp_dir() -> str | None:
    """``<tempdir>/cnnkit-numba-<uid>``, created 0o700; None when it cannot be made or belongs to someone else.

    The temporary directory is shared between users and numba unpickles what it finds in its cache, so on
    POSIX the directory must be owned by this user and closed to group and others.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        path = os.path.join(tempfile.gettempdir(), f"cnnkit-numba-{uid if uid is not None else 'user'}")
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return None
    if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
        return None
    return path


def _numba_default_cache_dirs() -> list[str | None]:
    """Where numba caches without help: ``NUMBA_CACHE_DIR``, this package's ``__pycache__``, the user cache dir."""
    try:
        from numba.misc.appdirs import AppDirs

        user_wide: str | None = AppDirs(appname="numba", appauthor=False).user_cache_dir
    except ImportError:  # pragma: no cover - numba moved its helper
        user_wide = None
    in_tree = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    return [os.environ.get("NUMBA_CACHE_DIR"), in_tree, user_wide]


def _setup_cache() -> bool:
    """Make numba's on-disk cache usable before any kernel is compiled; returns whether to cache at all."""
    if _choose_cache_dir(_numba_default_cache_dirs()) is not None:
        return True
    fallback = _private_tmp_dir()
    if fallback is None or not _writable_dir(fallback):
        return False
    os.environ["NUMBA_CACHE_DIR"] = fallback
    from numba.core import config

    config.reload_config()  # in case numba was imported (and read its environment) before this module
    return True


CACHE: bool = _setup_cache() if HAVE_NUMBA else False
"""Whether the kernels are compiled with numba's on-disk cache (``cache=True``)."""


def kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``func`` with numba the way every cnnkit kernel is: serial, without the GIL, cached when ``CACHE``."""
    if not HAVE_NUMBA:
        raise RuntimeError("cnnkit.jit.kernel: numba is not available (install the extra 'fast'; CNNKIT_JIT=0 disables it)")
    return njit(parallel=False, cache=CACHE, nogil=True)(func)


# The kernels; their modules import HAVE_NUMBA and kernel from this (by then initialised) package.
from cnnkit.jit.optim import sgd_momentum_  # noqa: E402 - imports HAVE_NUMBA and kernel from above
from cnnkit.jit.pool import maxpool_backward, maxpool_backward_disjoint, maxpool_forward  # noqa: E402 - as above
from cnnkit.jit.scatter import row2im_add  # noqa: E402 - as above
