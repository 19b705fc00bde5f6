"""Choosing a convolution algorithm per layer by measuring (cuDNN's benchmark mode, FFTW's planner).

For each convolution (of at least ``PLAN_MIN_MACS`` multiply-adds; smaller ones run the reference),
identified by its shapes, dtype, use (``train``: forward and backward with dX,
``train-nodx``: without dX, ``eval``: forward only) and the number of BLAS threads, :func:`choose` times
every algorithm that supports it once, on random data of the real shapes (the batch is cut down for very
large layers, ``TRIAL_MACS``), and remembers the fastest for the rest of the process. Timing: one untimed
run per candidate (compilation, first-touch page faults), then rounds that run every candidate in turn, up
to ``ROUNDS`` rounds or ``BUDGET_S`` seconds; each candidate's time is its minimum. A candidate must beat the
ones before it in :data:`~cnnkit.ops.conv_algos.ALGORITHMS` (the reference first, the least accurate last)
by ``MARGIN`` to be chosen, so that timing noise does not trade accuracy for nothing.

Choices can also live in a JSON file, keyed by the machine (CPU model, core count, NumPy, its BLAS and
numba versions): set ``CNNKIT_CONV_PLAN`` to a path, or to ``user`` for ``<user cache dir>/cnnkit/
conv-plans.json``, or call :func:`set_plan_file`. A choice found there is used without timing, so a given
file gives the same choices every time; new choices are added to it. Unset, ``off`` or ``0``: memory only.

``CNNKIT_CONV_ALGO`` overrides the planner: ``im2row`` forces the reference everywhere, any other
algorithm's name forces it wherever it applies (im2row elsewhere); ``auto`` (or unset) measures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.ops.conv_algos.base import ConvGeometry

ENV_ALGO = "CNNKIT_CONV_ALGO"
ENV_PLAN = "CNNKIT_CONV_PLAN"
MODES = ("train", "train-nodx", "eval")

TRIAL_MACS = 4 * 10**9
"""Multiply-adds of the forward pass above which the trial batch is cut down (never below one image)."""
ROUNDS = 5
"""At most this many timed rounds per choice."""
BUDGET_S = 1.0
"""Stop adding rounds (after the second) once the timed rounds of one choice have taken this long."""
MARGIN = 0.05
"""A later candidate must be this much faster (a fraction) than the best earlier one to be chosen."""
PLAN_MIN_MACS = 10**6
"""Convolutions with fewer forward multiply-adds than this run the reference without timing (at that size
the algorithms differ by their Python overheads, which the reference has least of)."""


@dataclass
class Plan:
    """One choice: the algorithm, the minimum time of each candidate (ms) and the trial batch.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos.planner import Plan
    >>> Plan("winograd4", {"im2row": 3.2, "winograd4": 1.1}, trial_batch=32)
    Plan(algo='winograd4', times_ms={'im2row': 3.2, 'winograd4': 1.1}, trial_batch=32, source='measured')
    >>> Plan("im2row", source="small").times_ms  # not timed
    {}
    """

    algo: str
    times_ms: dict[str, float] = field(default_factory=dict)
    trial_batch: int = 0
    source: str = "measured"  # "measured", "file", "forced", "only" (one candidate) or "small" (PLAN_MIN_MACS)


_lock = threading.RLock()
_memory: dict[str, Plan] = {}
_plan_file: str | None = None
_plan_file_set = False  # set_plan_file() was called: it overrides the environment
_blas: list[Any] | None = None


# ---------------------------------------------------------------------------------------------
# the environment
# ---------------------------------------------------------------------------------------------
def forced() -> str | None:
    """The algorithm ``CNNKIT_CONV_ALGO`` forces, or None (unset, empty or ``auto``).

    Examples
    --------
    >>> import os
    >>> from cnnkit.ops.conv_algos import planner
    >>> old = os.environ.pop("CNNKIT_CONV_ALGO", None)
    >>> planner.forced() is None
    True
    >>> os.environ["CNNKIT_CONV_ALGO"] = "im2row"
    >>> planner.forced()
    'im2row'
    >>> _ = os.environ.pop("CNNKIT_CONV_ALGO") if old is None else os.environ.update(CNNKIT_CONV_ALGO=old)
    """
    from cnnkit.ops.conv_algos import ALGORITHMS

    value = os.environ.get(ENV_ALGO, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in ALGORITHMS:
        raise ValueError(f"{ENV_ALGO}={value!r}: expected 'auto' or one of {', '.join(ALGORITHMS)}")
    return value


def blas_threads() -> int:
    """The number of threads NumPy's BLAS uses now (1 when it cannot be told).

    Examples
    --------
    >>> from threadpoolctl import threadpool_limits
    >>> from cnnkit.ops.conv_algos import planner
    >>> planner.blas_threads() >= 1
    True
    >>> with threadpool_limits(1):
    ...     planner.blas_threads()
    1
    """
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - threadpoolctl failing: assume one thread
            _blas = []
    counts = []
    for c in _blas:
        with contextlib.suppress(Exception):
            counts.append(int(c.get_num_threads()))
    return max(counts) if counts else 1


def key(g: ConvGeometry, mode: str, threads: int | None = None) -> str:
    """The plan key of a convolution: use, shapes, window, groups, dtype and BLAS threads.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> planner.key(geometry((100, 12, 12, 20), (5, 5, 20, 50)), "train", threads=2)
    'train|x100x12x12x20|w5x5x20x50|s1x1|d1x1|p0,0,0,0|g1|float32|t2'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    w = g.win
    t = blas_threads() if threads is None else threads
    return (
        f"{mode}|x{'x'.join(map(str, g.x_shape))}|w{'x'.join(map(str, g.w_shape))}|s{w.stride[0]}x{w.stride[1]}"
        f"|d{w.dilation[0]}x{w.dilation[1]}|p{','.join(map(str, w.pads))}|g{g.groups}|{g.dtype}|t{t}"
    )


# ---------------------------------------------------------------------------------------------
# the plan file
# ---------------------------------------------------------------------------------------------
def user_plan_path() -> str:
    """``$XDG_CACHE_HOME/cnnkit/conv-plans.json`` (``~/.cache`` without XDG_CACHE_HOME).

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> from cnnkit.ops.conv_algos import planner
    >>> with mock.patch.dict(os.environ, XDG_CACHE_HOME="/tmp/cache"):
    ...     planner.user_plan_path() == os.path.join("/tmp/cache", "cnnkit", "conv-plans.json")
    True
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cnnkit", "conv-plans.json")


def plan_file() -> str | None:
    """The JSON file plans are read from and written to, or None (memory only).

    Examples
    --------
    From ``CNNKIT_CONV_PLAN`` when :func:`set_plan_file` was not called (``mock`` puts both back afterwards):

    >>> import os
    >>> from unittest import mock
    >>> from cnnkit.ops.conv_algos import planner
    >>> with mock.patch.multiple(planner, _plan_file=None, _plan_file_set=False):
    ...     for value in ("off", "/tmp/plans.json", "user"):
    ...         with mock.patch.dict(os.environ, CNNKIT_CONV_PLAN=value):
    ...             print(value, planner.plan_file() == (planner.user_plan_path() if value == "user" else
    ...                                                  None if value == "off" else value))
    off True
    /tmp/plans.json True
    user True
    """
    if _plan_file_set:
        return _plan_file
    value = os.environ.get(ENV_PLAN, "").strip()
    if value.lower() in ("", "0", "off", "no", "false", "none"):
        return None
    if value.lower() in ("1", "on", "user", "yes", "true"):
        return user_plan_path()
    return value


def set_plan_file(path: str | None) -> None:
    """Use ``path`` as the plan file from now on (None: memory only), whatever ``CNNKIT_CONV_PLAN`` says.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> from cnnkit.ops.conv_algos import planner
    >>> with mock.patch.multiple(planner, _plan_file=None, _plan_file_set=False):  # restored afterwards
    ...     with mock.patch.dict(os.environ, CNNKIT_CONV_PLAN="/tmp/from-env.json"):
    ...         planner.set_plan_file("/tmp/plans.json")
    ...         print(planner.plan_file())
    ...         planner.set_plan_file(None)
    ...         print(planner.plan_file())
    /tmp/plans.json
    None
    """
    global _plan_file, _plan_file_set
    with _lock:
        _plan_file, _plan_file_set = (None if path is None else os.fspath(path)), True


def machine() -> dict[str, Any]:
    """What a plan depends on besides the shapes: CPU model, cores, NumPy and its BLAS, numba.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv_algos import planner
    >>> m = planner.machine()
    >>> sorted(m), m["numpy"] == np.__version__
    (['blas', 'cores', 'cpu', 'numba', 'numpy'], True)
    """
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    blas = "unknown"
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            i = infos[0]
            blas = f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
    try:
        import numba

        numba_version = str(numba.__version__)
    except ImportError:  # pragma: no cover
        numba_version = "none"
    from cnnkit import jit

    return {"cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__, "blas": blas,
            "numba": numba_version if jit.HAVE_NUMBA else "off"}


_machine_id: str | None = None


def machine_id() -> str:
    """A short hash of :func:`machine` (the top-level key of the plan file).

    Examples
    --------
    >>> import hashlib, json
    >>> from cnnkit.ops.conv_algos import planner
    >>> mid = planner.machine_id()
    >>> len(mid), mid == hashlib.sha256(json.dumps(planner.machine(), sort_keys=True).encode()).hexdigest()[:16]
    (16, True)
    """
    global _machine_id
    if _machine_id is None:
        text = json.dumps(machine(), sort_keys=True)
        _machine_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _machine_id


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _file_plan(path: str, k: str) -> Plan | None:
    from cnnkit.ops.conv_algos import ALGORITHMS

    entry = _read(path).get("machines", {}).get(machine_id(), {}).get("plans", {}).get(k)
    if not isinstance(entry, dict) or entry.get("algo") not in ALGORITHMS:
        return None
    times = entry.get("times_ms", {})
    return Plan(entry["algo"], dict(times) if isinstance(times, dict) else {}, int(entry.get("trial_batch", 0)), "file")


def _write(path: str, k: str, plan: Plan) -> None:
    """Add one plan to the file (read, update, write to a temporary file, rename); errors are ignored."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = _read(path)
        data.setdefault("version", 1)
        m = data.setdefault("machines", {}).setdefault(machine_id(), {})
        m["machine"] = machine()
        m.setdefault("plans", {})[k] = {"algo": plan.algo, "times_ms": plan.times_ms, "trial_batch": plan.trial_batch}
        fd, tmp = tempfile.mkstemp(prefix=".conv-plans-", dir=os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# choosing
# ---------------------------------------------------------------------------------------------
def candidates(g: ConvGeometry) -> list[str]:
    """The algorithms that support ``g``, in preference order (the reference first).

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> planner.candidates(geometry((8, 12, 12, 16), (5, 5, 16, 16)))[-1]  # a 5x5 kernel: the FFT is the last
    'fft'
    >>> planner.candidates(geometry((8, 12, 12, 16), (1, 1, 16, 16)))  # 1x1: nothing to choose
    ['im2row']
    """
    from cnnkit.ops.conv_algos import ALGORITHMS

    return [name for name, alg in ALGORITHMS.items() if alg.supports(g)]


def pick(times_ms: dict[str, float], order: list[str], margin: float = MARGIN) -> str:
    """The fastest of ``times_ms``, except that a later name in ``order`` must win by ``margin``.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos.planner import pick
    >>> pick({"im2row": 10.0, "winograd4": 9.8}, ["im2row", "winograd4"])  # 2% is noise: keep the reference
    'im2row'
    >>> pick({"im2row": 10.0, "winograd4": 6.0}, ["im2row", "winograd4"])
    'winograd4'
    """
    best = None
    for name in order:
        if name not in times_ms:
            continue
        if best is None or times_ms[name] < times_ms[best] * (1.0 - margin):
            best = name
    assert best is not None, "no candidate was timed"
    return best


def trial_batch(g: ConvGeometry) -> int:
    """The batch the candidates are timed on: the real one, cut down so that the forward stays under TRIAL_MACS.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> planner.trial_batch(geometry((8, 32, 32, 16), (3, 3, 16, 16), padding=1))  # small: the whole batch
    8
    >>> g = geometry((256, 56, 56, 64), (3, 3, 64, 64), padding=1)  # 116e6 multiply-adds per image
    >>> planner.trial_batch(g), planner.trial_batch(g) * g.macs // 256 <= planner.TRIAL_MACS
    (34, True)
    """
    n = g.x_shape[0]
    per_image = max(1, g.macs // n)
    return max(1, min(n, TRIAL_MACS // per_image))


Runner = Callable[[str, ConvGeometry, str], Callable[[], Any]]


def measure(g: ConvGeometry, mode: str, names: list[str], runner: Runner,
            rounds: int = ROUNDS, budget_s: float = BUDGET_S) -> dict[str, float]:
    """Minimum time (ms) of each of ``names``; ``runner(name, g, mode)`` returns the call to time.

    Examples
    --------
    A runner that does not run convolutions (each candidate: a sleep of its own length):

    >>> import time
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> naps = {"im2row": 0.004, "winograd2": 0.001}
    >>> runner = lambda name, g, mode: (lambda: time.sleep(naps[name]))
    >>> times = planner.measure(geometry((1, 8, 8, 4), (3, 3, 4, 4)), "eval", list(naps), runner, rounds=2)
    >>> sorted(times), times["winograd2"] >= 1.0, times["im2row"] > times["winograd2"]
    (['im2row', 'winograd2'], True, True)
    """
    calls = {name: runner(name, g, mode) for name in names}
    for call in calls.values():
        call()  # untimed: compilation, page faults
    best = dict.fromkeys(names, float("inf"))
    spent = 0.0
    for r in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            dt = time.perf_counter() - t0
            spent += dt
            best[name] = min(best[name], dt)
        if r >= 1 and spent > budget_s:
            break
    return {name: round(t * 1e3, 4) for name, t in best.items()}


def default_runner(limit: int | None = None, eval_chunk: int | None = None) -> Runner:
    """Time :func:`cnnkit.ops.conv.conv2d_forward` (and its backward in training) on random data of ``g``'s shapes.

    Examples
    --------
    The calls it makes to be timed: a forward (``eval``), or a forward and a backward (``train``):

    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> g = geometry((2, 6, 6, 3), (3, 3, 3, 4), padding=1)
    >>> y, cache = planner.default_runner()("winograd2", g, "eval")()
    >>> y.shape, cache.algo
    ((2, 6, 6, 4), 'winograd2')
    >>> dx, dw, db = planner.default_runner()("winograd2", g, "train")()
    >>> dx.shape, dw.shape, db.shape
    ((2, 6, 6, 3), (3, 3, 3, 4), (4,))
    >>> planner.default_runner()("winograd2", g, "train-nodx")()[0] is None
    True
    """

    def runner(name: str, g: ConvGeometry, mode: str) -> Callable[[], Any]:
        from cnnkit.ops.conv import DEFAULT_WORKSPACE_LIMIT, EVAL_CHUNK_BYTES, conv2d_backward, conv2d_forward
        from cnnkit.ops.workspace import Workspace

        rng = np.random.default_rng(0)
        dtype = np.dtype(g.dtype)
        x = rng.standard_normal(g.x_shape).astype(dtype)
        w = (rng.standard_normal(g.w_shape) * 0.1).astype(dtype)
        b = np.zeros(g.w_shape[3], dtype)
        lim = DEFAULT_WORKSPACE_LIMIT if limit is None else limit
        if mode == "eval":
            lim = min(lim, EVAL_CHUNK_BYTES if eval_chunk is None else eval_chunk)
        ws_f, ws_b = Workspace(), Workspace()
        pads = ((g.win.pads[0], g.win.pads[1]), (g.win.pads[2], g.win.pads[3]))
        args = (x, w, b, g.win.stride, pads, g.win.dilation, g.groups, lim)
        if mode == "eval":
            return lambda: conv2d_forward(*args, workspace=ws_f, algo=name)
        dy = rng.standard_normal(g.out_shape).astype(dtype)
        need_dx = mode == "train"

        def step() -> Any:
            _, cache = conv2d_forward(*args, workspace=ws_f, algo=name)
            return conv2d_backward(dy, cache, need_dx=need_dx, workspace=ws_b)

        return step

    return runner


def choose(g: ConvGeometry, mode: str = "train", runner: Runner | None = None) -> str:
    """The algorithm for convolution ``g`` used as ``mode`` (see the module docstring); measured once per key.

    Examples
    --------
    ``forcing(None)`` measures whatever ``CNNKIT_CONV_ALGO`` says (the test suite sets it to ``im2row``):

    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> with planner.forcing(None):
    ...     planner.choose(geometry((2, 6, 6, 1), (1, 1, 1, 2)), "eval")  # a 1x1 kernel: im2row is the only candidate
    ...     planner.plan(geometry((2, 6, 6, 4), (3, 3, 4, 4)), "eval").source  # too small to be worth timing
    'im2row'
    'small'
    >>> with planner.forcing("winograd4"):  # forced: no planning at all
    ...     planner.choose(geometry((2, 6, 6, 4), (3, 3, 4, 4)), "eval"), planner.choose(geometry((2, 6, 6, 4), (5, 5, 4, 4)))
    ('winograd4', 'im2row')
    """
    return plan(g, mode, runner).algo


def plan(g: ConvGeometry, mode: str = "train", runner: Runner | None = None) -> Plan:
    """:func:`choose` with the times behind the choice.

    Examples
    --------
    A layer large enough to be timed, with a runner whose candidates sleep instead of convolving (winograd2
    the fastest); the second call finds the choice in memory:

    >>> import time
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> runner = lambda name, g, mode: (lambda: None) if name == "winograd2" else (lambda: time.sleep(0.002))
    >>> g = geometry((8, 16, 16, 16), (3, 3, 16, 16), padding=1)
    >>> with planner.forcing(None):
    ...     planner.clear()
    ...     p = planner.plan(g, "train", runner)
    ...     p.algo, p.source, p.trial_batch, "im2row" in p.times_ms, planner.plan(g, "train") is p
    ('winograd2', 'measured', 8, True, True)
    >>> planner.clear()  # forget the made-up times
    """
    from cnnkit.ops.conv_algos import ALGORITHMS

    force = forced()
    if force is not None:
        return Plan(force if ALGORITHMS[force].supports(g) else "im2row", source="forced")
    k = key(g, mode)
    with _lock:
        hit = _memory.get(k)
        if hit is not None:
            return hit
        names = candidates(g)
        if len(names) == 1 or g.macs < PLAN_MIN_MACS:
            result = Plan("im2row", source="only" if len(names) == 1 else "small")
            _memory[k] = result
            return result
        path = plan_file()
        if path is not None:
            found = _file_plan(path, k)
            if found is not None and found.algo in names:
                _memory[k] = found
                return found
        n = trial_batch(g)
        times = measure(g.with_batch(n), mode, names, runner or default_runner())
        result = Plan(pick(times, names), times, n)
        _memory[k] = result
        if path is not None:
            _write(path, k, result)
        return result


def plans() -> dict[str, Plan]:
    """Every choice made in this process so far, by key.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry, planner
    >>> g = geometry((2, 6, 6, 4), (3, 3, 4, 4))
    >>> with planner.forcing(None):
    ...     planner.clear()
    ...     _ = planner.plan(g, "eval")
    >>> [(k == planner.key(g, "eval"), p.source) for k, p in planner.plans().items()]
    [(True, 'small')]
    """
    with _lock:
        return dict(_memory)


def clear() -> None:
    """Forget the choices made in this process (the plan file is left alone).

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import planner
    >>> planner.clear()
    >>> planner.plans()
    {}
    """
    with _lock:
        _memory.clear()


@contextlib.contextmanager
def forcing(name: str | None) -> Iterator[None]:
    """Within the block, ``CNNKIT_CONV_ALGO`` is ``name`` (None: unset); for tests and measurements.

    Examples
    --------
    >>> import os
    >>> from cnnkit.ops.conv_algos import planner
    >>> before = os.environ.get("CNNKIT_CONV_ALGO")
    >>> with planner.forcing("fft"):
    ...     planner.forced()
    'fft'
    >>> with planner.forcing(None):
    ...     planner.forced() is None
    True
    >>> os.environ.get("CNNKIT_CONV_ALGO") == before  # put back on leaving
    True
    """
    old = os.environ.get(ENV_ALGO)
    try:
        if name is None:
            os.environ.pop(ENV_ALGO, None)
        else:
            os.environ[ENV_ALGO] = name
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_ALGO, None)
        else:
            os.environ[ENV_ALGO] = old
