"""Optional compiled kernels (numba) for the loops NumPy cannot fuse, shared by :mod:`cnnkit.ops` and
:mod:`cnnkit.optim`: the row2im scatter-add (:mod:`.scatter`), max pooling with an optional fused ReLU
(:mod:`.pool`), ReLU and the bias-plus-ReLU epilogue (:mod:`.activation`) and the fused optimiser updates
(:mod:`.optim`).

Numba is an optional dependency (extra ``fast``); without it, or with ``CNNKIT_JIT=0`` in the environment,
``HAVE_NUMBA`` is False, every kernel name is None and every op uses its NumPy path (the tests check that
both paths give the same results). Callers ask :func:`usable` before calling a kernel.

Threads. Each kernel is compiled twice: serial, and parallel (``prange`` over images, rows or elements)
under its own name with the suffix ``_par``. :func:`launch` runs the parallel one when the work reaches the
kernel's measured threshold and :func:`threads` allows more than one thread, else the serial one. The
parallel kernels write disjoint parts of their outputs, so they give the serial kernels' bits exactly.
:func:`threads` follows the BLAS: as many threads as BLAS uses at the moment of the call (so
``threadpoolctl.threadpool_limits(1)`` or ``OPENBLAS_NUM_THREADS=1`` make the kernels serial too), capped by
numba's ``NUMBA_NUM_THREADS``; :func:`set_threads` overrides it. Numba's threads and OpenBLAS's never run at
the same time: a kernel runs between two matrix products, never beside one (measurements, and the
arrangements tried, in docs/perf-notes.md).

Kernels are compiled on first use and cached on disk. The cache goes where numba puts it
(``NUMBA_CACHE_DIR``, else ``__pycache__`` next to this package, else the user's cache directory); when none
of these is writable, ``NUMBA_CACHE_DIR`` is set to a private ``cnnkit-numba-<uid>`` directory under the
system's temporary directory, and when that fails too the kernels are compiled without an on-disk cache
(``CACHE`` is then False).
"""

from __future__ import annotations

import os
import tempfile
import types
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import numpy as np

from cnnkit import backend as _backend

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

__all__ = [
    "HAVE_NUMBA",
    "RELU_THRESHOLD",
    "active",
    "adam_",
    "bias_relu_",
    "launch",
    "maxpool_backward",
    "maxpool_backward_disjoint",
    "maxpool_forward",
    "relu_backward",
    "relu_forward",
    "row2im_add",
    "set_threads",
    "sgd_momentum_",
    "threads",
    "usable",
]


def usable(*arrays: object) -> bool:
    """True when the compiled kernels can take these arrays: numba present, the NumPy backend in use
    (:mod:`cnnkit.backend`; under any other every op takes its array-module path), NumPy arrays of
    float32/float64.

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
    if not HAVE_NUMBA or not _backend.IS_NUMPY:
        return False
    return all(isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) for a in arrays)


def active() -> bool:
    """Whether the compiled kernels are in play at all: numba present and the NumPy backend in use.

    Examples
    --------
    >>> from cnnkit import jit
    >>> jit.active() == jit.HAVE_NUMBA  # the NumPy backend
    True
    """
    return HAVE_NUMBA and _backend.IS_NUMPY


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


def _renamed(func: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of ``func`` whose (qual)name ends with ``suffix``: numba names its on-disk cache after the
    qualified name and does not key it by compile options, so the parallel copy needs a name of its own."""
    assert isinstance(func, types.FunctionType)
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix, func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + suffix
    copy.__module__, copy.__doc__ = func.__module__, func.__doc__
    return copy


def kernel(func: Callable[..., Any] | None = None, *, parallel: bool = False) -> Any:
    """Compile ``func`` with numba the way every cnnkit kernel is: without the GIL, cached when ``CACHE``, with
    NumPy's error model (a float division by zero gives inf or NaN as in NumPy instead of raising, and the
    check it saves lets LLVM vectorise loops that divide).

    Serial by default (``prange`` is then ``range``); ``parallel=True`` compiles a copy named
    ``<name>_par`` with numba's parallel loops. Use as ``@kernel`` or ``kernel(func, parallel=True)``.
    """
    if not HAVE_NUMBA:
        raise RuntimeError("cnnkit.jit.kernel: numba is not available (install the extra 'fast'; CNNKIT_JIT=0 disables it)")
    if func is None:
        return lambda f: kernel(f, parallel=parallel)
    if parallel:
        return njit(parallel=True, cache=CACHE, nogil=True, error_model="numpy")(_renamed(func, "_par"))
    return njit(parallel=False, cache=CACHE, nogil=True, error_model="numpy")(func)


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------
_threads_override: int | None = None
_blas_controllers: list[Any] | None = None  # threadpoolctl's BLAS controllers, found on first need


def set_threads(n: int | None) -> None:
    """Run the compiled kernels on ``n`` threads (capped by numba's ``NUMBA_NUM_THREADS``); None: follow BLAS.

    Examples
    --------
    >>> from cnnkit import jit
    >>> jit.set_threads(1)
    >>> jit.threads()
    1
    >>> jit.set_threads(None)  # back to the default: as many as BLAS uses
    """
    global _threads_override
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise ValueError(f"cnnkit.jit.set_threads: expected a positive integer or None, got {n!r}")
    _threads_override = None if n is None else int(n)


def _blas_threads() -> int | None:
    """The thread count NumPy's BLAS uses now (the largest over the BLAS libraries loaded); None when unknown."""
    global _blas_controllers
    if _blas_controllers is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - threadpoolctl missing or failing: numba's count alone decides
            _blas_controllers = []
    counts = []
    for c in _blas_controllers:
        try:
            counts.append(int(c.get_num_threads()))
        except Exception:  # pragma: no cover - a library that cannot say
            continue
    return max(counts) if counts else None


def threads() -> int:
    """How many threads a compiled kernel may use now: :func:`set_threads`'s value, else BLAS's current count,
    capped by numba's ``NUMBA_NUM_THREADS`` (1 without numba).

    Examples
    --------
    >>> from threadpoolctl import threadpool_limits
    >>> from cnnkit import jit
    >>> with threadpool_limits(1):
    ...     jit.threads()
    1
    """
    if not HAVE_NUMBA:
        return 1
    assert numba is not None
    cap = int(numba.config.NUMBA_NUM_THREADS)
    if _threads_override is not None:
        return max(1, min(cap, _threads_override))
    blas = _blas_threads()
    return cap if blas is None else max(1, min(cap, blas))


_pool_started = False


def _start_pool() -> None:
    """Start numba's thread pool with waiting threads that sleep instead of spinning.

    With the OpenMP layer (numba's default where libgomp exists), GNU OpenMP's threads spin for a while after
    each parallel loop; on a busy machine the scheduler then treats them as CPU hogs, and the next loop waits
    for a time slice (12 ms instead of 20 us, docs/perf-notes.md). ``OMP_WAIT_POLICY=PASSIVE`` is set for the
    moment libgomp reads it (its loading, when the pool starts) unless the user set it; the environment is
    restored afterwards, so libraries loading their own OpenMP later (PyTorch) are not affected.
    """
    global _pool_started
    if _pool_started:
        return
    _pool_started = True
    key = "OMP_WAIT_POLICY"
    unset = key not in os.environ
    if unset:
        os.environ[key] = "PASSIVE"
    try:
        from numba.np.ufunc import parallel as _parallel

        _parallel._launch_threads()
    except Exception:  # pragma: no cover - a numba without this helper: the first parallel loop starts the pool
        pass
    finally:
        if unset:
            del os.environ[key]


def launch(serial: Callable[..., Any], parallel: Callable[..., Any], work: int, threshold: int, *args: Any) -> Any:
    """``serial(*args)``, or ``parallel(*args)`` on :func:`threads` threads when ``work >= threshold`` and
    more than one thread is allowed. Both compute the same bits; the thresholds are measured per kernel.

    Examples
    --------
    Any two callables (the kernels' serial and parallel copies in cnnkit); below the threshold, or on one
    thread, the serial one runs:

    >>> from threadpoolctl import threadpool_limits
    >>> from cnnkit import jit
    >>> serial, parallel = (lambda a, b: ("serial", a + b)), (lambda a, b: ("parallel", a + b))
    >>> jit.launch(serial, parallel, 10, 1000, 2, 3)  # work 10 < threshold 1000
    ('serial', 5)
    >>> with threadpool_limits(1):  # one thread allowed: serial whatever the work
    ...     jit.launch(serial, parallel, 10**6, 1000, 2, 3)
    ('serial', 5)
    """
    if work < threshold:
        return serial(*args)
    n = threads()
    if n < 2:
        return serial(*args)
    assert numba is not None
    if not _pool_started:
        _start_pool()
    if n == numba.config.NUMBA_NUM_THREADS:
        return parallel(*args)
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return parallel(*args)
    finally:
        numba.set_num_threads(before)


# The kernels; their modules import HAVE_NUMBA and kernel from this (by then initialised) package.
from cnnkit.jit.activation import RELU_THRESHOLD, bias_relu_, relu_backward, relu_forward  # noqa: E402 - imports HAVE_NUMBA and kernel from above
from cnnkit.jit.optim import adam_, sgd_momentum_  # noqa: E402 - as above
from cnnkit.jit.pool import maxpool_backward, maxpool_backward_disjoint, maxpool_forward  # noqa: E402 - as above
from cnnkit.jit.scatter import row2im_add  # noqa: E402 - as above
