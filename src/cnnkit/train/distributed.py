"""Synchronous data-parallel training: K processes (MPI ranks) train one model as one process would.

Start K copies of the same command under ``mpiexec`` (``mpiexec -n 4 cnnkit train ... --distributed``) or call
:func:`~cnnkit.train.fit.fit` with ``distributed=MPICommunicator()`` in each. Every process builds the same model
from the seed and visits the same shuffled order; then, for every mini-batch of the whole run (the *global*
batch of ``batch_size`` examples):

* **Batch split.** Process r of K takes the contiguous rows ``[m*r//K, m*(r+1)//K)`` of the global batch of m
  rows (:func:`shard_bounds`): sizes differ by one at most, the uneven last batch follows the same rule, and a
  process whose slice is empty (m < K) contributes nothing to that step.
* **One Allreduce per step.** The loss is the mean over the *global* batch, so its gradient is
  ``sum_r (m_r / m) * grad_r`` where ``grad_r`` is process r's mean-loss gradient over its m_r rows. Each
  process writes ``(m_r / m) * grad_r`` of every parameter into one contiguous buffer, followed by the batch-norm
  buffers (same weights), the integer counters' increments and its weighted loss; one in-place ``Allreduce``
  sums the buffer; every process copies the sums back and applies the same optimiser step to the same weights.
* **Batch normalisation.** Forward statistics are each process's own (its m_r rows), as PyTorch's
  ``DistributedDataParallel`` without ``SyncBatchNorm``: with K > 1 a BN network follows a slightly different
  path from one process's (statistics of m/K examples instead of m). The running statistics ride in the step's
  Allreduce: after every step they are the weighted mean of the processes' updates, so they are *identical on
  every process*; the running mean equals the one-process update exactly in exact arithmetic, the running
  variance misses the spread between the processes' means (a within-rank variance).
* **Dropout and augmentation.** Each process draws its random numbers through a generator that draws as for
  the whole global batch (same seed and stream as one process) and hands back the process's rows. The union of
  the processes' dropout masks and augmentations is therefore exactly the one-process draw; each process pays
  for drawing the whole batch's numbers (cheap next to the convolutions). This covers draws whose first
  dimension is the batch, which is what :class:`~cnnkit.nn.Dropout` and :mod:`cnnkit.data.augment` make.
* **Evaluation** is split the same way (contiguous shares of the set); loss * n, top-1/top-5 errors, counts and
  the confusion matrix are summed, so every process gets the figures of the whole set.
* **Files.** Only rank 0 touches the run directory: config, metrics, plots, checkpoints and the model, written
  atomically as in one process. On ``--resume`` rank 0 reads the checkpoint and sends its state to the others,
  so a checkpoint written by K processes resumes on any other number (one included) and one written by a
  single process resumes on K.
* **Agreement.** Before training the processes compare what they were given (configuration, model architecture
  and initial weights, data, optimiser); a difference stops all of them with one message naming it. After every
  epoch they compare a digest of weights, buffers and optimiser state; should an MPI sum ever differ in the last
  bit between ranks, rank 0's state is copied to all and a note is logged.
* **Faults.** An exception on one process prints one line (``cnnkit: rank 1 of 4: ...``) and calls ``Abort``,
  which ends every process (an MPI collective would otherwise wait forever). A process killed outright is
  noticed by ``mpiexec``, which ends the others. A process that stops answering (hung, stopped, its node gone)
  is caught by a watchdog: a collective call waiting longer than ``timeout`` seconds prints one line and aborts.

Without mpi4py nothing of this module needs MPI: :class:`SingleProcess` is a group of one, and
:func:`run_in_threads` runs K "processes" as threads of one Python process (tests, examples).

Examples
--------
Two processes (threads here; ranks of ``mpiexec`` in earnest) train a network together and end with the
weights one process reaches alone, to rounding:

>>> import numpy as np
>>> import cnnkit
>>> from cnnkit.nn import Linear
>>> from cnnkit.optim import SGD
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((90, 3)); y = (x.sum(axis=1) > 0).astype(int)
>>> def train(comm=None):
...     net = Linear(3, 2, rng=np.random.default_rng(1), dtype=np.float64)
...     cnnkit.fit(net, (x, y), epochs=2, batch_size=20, optimizer=SGD(net, lr=0.1, momentum=0.9), distributed=comm)
...     return net.params["weight"]
>>> alone = train()
>>> together = run_in_threads(2, train)
>>> bool(np.array_equal(together[0], together[1])), float(abs(together[0] - alone).max()) < 1e-14
(True, True)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.util
import math
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np

from cnnkit.errors import CnnkitError, MissingDependencyError
from cnnkit.train.loop import Callback, LoopState, TrainingDiverged

__all__ = [
    "Communicator",
    "DataParallel",
    "DistributedError",
    "MPICommunicator",
    "SingleProcess",
    "ThreadCommunicator",
    "add_distributed_flag",
    "as_parallel",
    "communicator_from_args",
    "main",
    "run_in_threads",
    "shard_bounds",
    "share_cores",
    "time_allreduce",
]

DEFAULT_TIMEOUT = 600.0
"""Seconds a process waits in a collective call before it declares the others dead (``--distributed-timeout``)."""


class DistributedError(CnnkitError, RuntimeError):
    """The processes of a distributed run cannot go on together (they were started differently, or one stopped).

    ``collective`` is True when every process raises it at the same point (so none is left waiting), False when
    only this one does.

    Examples
    --------
    >>> err = DistributedError("rank 1 was started with seed 1, rank 0 with seed 0", collective=True)
    >>> err.collective, isinstance(err, RuntimeError)
    (True, True)
    """

    def __init__(self, message: str, collective: bool = False) -> None:
        super().__init__(message)
        self.collective = collective

    def __reduce__(self) -> tuple[type, tuple[str, bool]]:
        return (type(self), (str(self), self.collective))


# -- communicators ---------------------------------------------------------------------------------------------


class Communicator:
    """The few collective operations data parallelism needs, over a group of ``size`` processes.

    Every process of the group must make the same calls in the same order. ``allreduce_sum`` sums a contiguous
    array over the processes in place (the result is the same on every process); ``allgather`` returns every
    process's object, by rank; ``bcast`` returns the root's object; ``abort`` ends every process of the group.

    Examples
    --------
    >>> import numpy as np
    >>> comm = SingleProcess()
    >>> buf = np.array([1.0, 2.0])
    >>> comm.allreduce_sum(buf); buf, comm.allgather("x"), comm.bcast({"a": 1})
    (array([1., 2.]), ['x'], {'a': 1})
    """

    rank: int = 0
    size: int = 1

    def allreduce_sum(self, buf: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def allgather(self, obj: Any) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def bcast(self, obj: Any, root: int = 0) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def abort(self, code: int = 1) -> NoReturn:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SingleProcess(Communicator):
    """A group of one: every collective returns its input (``DataParallel(SingleProcess())`` is one process).

    Examples
    --------
    >>> comm = SingleProcess()
    >>> comm.rank, comm.size, comm.bcast(3)
    (0, 1, 3)
    """

    def allreduce_sum(self, buf: np.ndarray) -> None:
        return None

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def abort(self, code: int = 1) -> NoReturn:
        raise SystemExit(code)


def _load_mpi() -> Any:
    """mpi4py's ``MPI`` module (initialises MPI); MissingDependencyError naming the ``mpi`` extra without it."""
    feature = "training on several processes (--distributed)"
    try:
        from mpi4py import MPI
    except ImportError:
        raise MissingDependencyError("mpi4py", "mpi", feature) from None
    except RuntimeError as exc:  # mpi4py is there but finds no MPI library
        raise DistributedError(f"{feature} needs an MPI library, and mpi4py found none ({exc}): pip install 'cnnkit[mpi]'") from None
    return MPI


class MPICommunicator(Communicator):
    """The processes ``mpiexec`` started (``MPI.COMM_WORLD``, or ``comm``), through mpi4py.

    ``timeout``: seconds one collective call may wait for the others before this process prints one line and
    aborts the whole job (a rank that hangs, was stopped or lost its node; None or 0: wait forever). A watchdog
    thread checks it; the calls themselves are mpi4py's blocking ones.

    Examples
    --------
    Under ``mpiexec -n 2 python script.py`` (needs ``pip install 'cnnkit[mpi]'``):

    >>> comm = MPICommunicator(timeout=60)  # doctest: +SKIP
    >>> comm.rank, comm.size  # doctest: +SKIP
    (0, 2)
    >>> buf = np.ones(3); comm.allreduce_sum(buf); buf  # doctest: +SKIP
    array([2., 2., 2.])
    """

    def __init__(self, comm: Any = None, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self._mpi = _load_mpi()
        self._comm = comm if comm is not None else self._mpi.COMM_WORLD
        self.rank, self.size = int(self._comm.Get_rank()), int(self._comm.Get_size())
        #: how many of the processes run on this machine (MPI's shared-memory split)
        self.local_size = 1
        if self.size > 1:
            node = self._comm.Split_type(self._mpi.COMM_TYPE_SHARED)
            self.local_size = int(node.Get_size())
            node.Free()
        self.timeout = float(timeout) if timeout else None
        self._busy: tuple[float, str] | None = None
        if self.timeout is not None and self.size > 1:
            threading.Thread(target=self._watch, name="cnnkit-mpi-watchdog", daemon=True).start()

    def _watch(self) -> None:
        timeout = self.timeout or math.inf
        while True:
            time.sleep(min(1.0, timeout / 10))
            busy = self._busy
            if busy is not None and time.monotonic() - busy[0] > timeout:
                print(f"cnnkit: rank {self.rank} of {self.size}: no answer from the other processes for {timeout:g} s in {busy[1]} "
                      f"(a process died, hangs or cannot be reached); stopping every process", file=sys.stderr, flush=True)
                self.abort(1)

    @contextlib.contextmanager
    def _waiting(self, what: str) -> Iterator[None]:
        self._busy = (time.monotonic(), what)
        try:
            yield
        finally:
            self._busy = None

    def allreduce_sum(self, buf: np.ndarray) -> None:
        with self._waiting("a sum over the processes (Allreduce)"):
            self._comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)

    def allgather(self, obj: Any) -> list[Any]:
        with self._waiting("an exchange between the processes (allgather)"):
            return list(self._comm.allgather(obj))

    def bcast(self, obj: Any, root: int = 0) -> Any:
        with self._waiting(f"a broadcast from rank {root}"):
            return self._comm.bcast(obj, root=root)

    def abort(self, code: int = 1) -> NoReturn:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        self._comm.Abort(code)
        raise SystemExit(code)  # pragma: no cover - Abort does not return


class _ThreadGroup:
    """What the threads of :func:`run_in_threads` share: a barrier, one slot per rank and the first failure."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots: list[Any] = [None] * size


class ThreadCommunicator(Communicator):
    """Rank ``rank`` of a group of threads in one process (made by :func:`run_in_threads`): MPI's semantics
    (objects are deep-copied between ranks, sums are taken in rank order, so they are the same on every rank), no MPI.

    ``abort`` breaks the group's barrier: every other rank's next (or current) collective raises
    :class:`DistributedError`, as ``mpiexec`` ends every process when one aborts.

    Examples
    --------
    >>> import numpy as np
    >>> def work(comm):
    ...     buf = np.full(2, comm.rank + 1.0)
    ...     comm.allreduce_sum(buf)
    ...     return buf.tolist(), comm.allgather(comm.rank), comm.bcast("from 0" if comm.rank == 0 else None)
    >>> run_in_threads(3, work)[2]
    ([6.0, 6.0], [0, 1, 2], 'from 0')
    """

    def __init__(self, group: _ThreadGroup, rank: int) -> None:
        self._group, self.rank, self.size = group, rank, group.size

    def _sync(self) -> None:
        try:
            self._group.barrier.wait()
        except threading.BrokenBarrierError:
            raise DistributedError(f"rank {self.rank} of {self.size}: another process stopped; stopping too", collective=True) from None

    def allreduce_sum(self, buf: np.ndarray) -> None:
        g = self._group
        g.slots[self.rank] = np.array(buf, copy=True)
        self._sync()
        total = np.array(g.slots[0], copy=True)
        for part in g.slots[1:]:
            total += part
        self._sync()
        buf[...] = total

    def allgather(self, obj: Any) -> list[Any]:
        g = self._group
        g.slots[self.rank] = copy.deepcopy(obj)
        self._sync()
        out = [copy.deepcopy(s) for s in g.slots]
        self._sync()
        return out

    def bcast(self, obj: Any, root: int = 0) -> Any:
        g = self._group
        if self.rank == root:
            g.slots[root] = copy.deepcopy(obj)
        self._sync()
        out = copy.deepcopy(g.slots[root])
        self._sync()
        return out

    def abort(self, code: int = 1) -> NoReturn:
        self._group.barrier.abort()
        raise DistributedError(f"rank {self.rank} of {self.size} aborted the group", collective=True)


def run_in_threads(size: int, fn: Callable[[Any], Any], timeout: float = 120.0, return_exceptions: bool = False) -> list[Any]:
    """Run ``fn(comm)`` as ``size`` ranks in threads of this process; returns the ranks' results, by rank.

    A rank whose ``fn`` raises breaks the group (the others' collectives raise :class:`DistributedError`); then the
    first exception that is not such a consequence is raised, or, with ``return_exceptions``, every rank's
    exception takes its place in the list. ``timeout``: seconds a collective waits before the group is broken.
    NumPy and BLAS release the GIL, so the threads do run side by side; the point is the semantics, not speed.

    Examples
    --------
    >>> run_in_threads(2, lambda comm: comm.allgather(comm.rank * 10))
    [[0, 10], [0, 10]]
    >>> def fail_on_1(comm):
    ...     if comm.rank == 1:
    ...         raise ValueError("rank 1 cannot read its data")
    ...     return comm.allgather(None)
    >>> run_in_threads(2, fail_on_1)
    Traceback (most recent call last):
        ...
    ValueError: rank 1 cannot read its data
    """
    if int(size) < 1:
        raise ValueError(f"a group needs at least one rank, got {size}")
    group = _ThreadGroup(int(size), timeout)
    results: list[Any] = [None] * size
    errors: list[BaseException | None] = [None] * size

    def target(rank: int) -> None:
        try:
            results[rank] = fn(ThreadCommunicator(group, rank))
        except BaseException as exc:  # handed to the caller
            errors[rank] = exc
            if not _collective(exc):  # the others would wait for this rank for ever (mpiexec would end them)
                group.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,), name=f"cnnkit-rank-{r}") for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if return_exceptions:
        return [e if e is not None else r for r, e in zip(results, errors)]
    first = next((e for e in errors if e is not None and not _consequence(e)), None) or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def _collective(exc: BaseException) -> bool:
    """Whether every process raises ``exc`` at the same point (so none is left waiting for this one)."""
    return bool(getattr(exc, "collective", False) or getattr(exc, "cnnkit_collective", False) or isinstance(exc, TrainingDiverged))


def _consequence(exc: BaseException) -> bool:
    """Whether ``exc`` only says that another rank stopped first."""
    return isinstance(exc, DistributedError) and ("another process stopped" in str(exc) or "aborted the group" in str(exc))


# -- how the work is split -------------------------------------------------------------------------------------


def shard_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that process ``rank`` of ``size`` takes: contiguous, in rank order, sizes
    differing by one at most (``lo = n*rank//size``); empty when n < size for some ranks.

    Examples
    --------
    A global batch of 10 over 4 processes, and an uneven last batch of 3:

    >>> [shard_bounds(10, 4, r) for r in range(4)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    >>> [shard_bounds(3, 4, r) for r in range(4)]
    [(0, 0), (0, 1), (1, 2), (2, 3)]
    """
    return n * rank // size, n * (rank + 1) // size


_SIZE_AT = {"random": 0, "standard_normal": 0, "standard_exponential": 0, "integers": 2, "uniform": 2, "normal": 2,
            "binomial": 2, "exponential": 1, "poisson": 1}
"""Generator methods whose draws the row slicer widens, and the position of their ``size`` argument."""


def _widened(size: Any, local: int, whole: int) -> Any:
    """``size`` with its first dimension ``local`` made ``whole``; None when it is not a batch-sized draw."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return whole if int(size) == local else None
    if isinstance(size, tuple) and size and isinstance(size[0], (int, np.integer)) and int(size[0]) == local:
        return (whole, *size[1:])
    return None


class _RowSlicer:
    """A generator that draws as for the whole global batch and returns this process's rows of each draw.

    ``rows()`` gives (lo, hi, m) of the current batch, or None (no slicing). Draws whose first dimension is not
    the local batch size pass through unchanged.
    """

    def __init__(self, rng: np.random.Generator, rows: Callable[[], tuple[int, int, int] | None]) -> None:
        self._rng, self._rows = rng, rows

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_rng", "_rows"):
            raise AttributeError(name)
        attr = getattr(self._rng, name)
        at = _SIZE_AT.get(name)
        if at is None:
            return attr

        def draw(*args: Any, **kwargs: Any) -> Any:
            rows = self._rows()
            if rows is None:
                return attr(*args, **kwargs)
            lo, hi, m = rows
            if "size" in kwargs:
                wide = _widened(kwargs["size"], hi - lo, m)
                if wide is None or hi - lo == m:
                    return attr(*args, **kwargs)
                return attr(*args, **{**kwargs, "size": wide})[lo:hi]
            if len(args) > at:
                wide = _widened(args[at], hi - lo, m)
                if wide is None or hi - lo == m:
                    return attr(*args, **kwargs)
                return attr(*args[:at], wide, *args[at + 1 :], **kwargs)[lo:hi]
            return attr(*args, **kwargs)

        return draw


# -- the training side -----------------------------------------------------------------------------------------


def _digest_arrays(h: Any, arrays: Sequence[tuple[str, Any]]) -> None:
    for name, a in arrays:
        arr = np.ascontiguousarray(a)
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.reshape(-1).view(np.uint8))


def _state_digest(model: Any, optimizer: Any) -> str:
    """A digest of the weights, buffers and optimiser state (what must be the same on every process)."""
    h = hashlib.blake2b(digest_size=16)
    _digest_arrays(h, list(model.state_dict().items()))
    if optimizer is not None:
        st = optimizer.state_dict()
        h.update(f"{st.get('lr')}:{st.get('step')};".encode())
        for name in sorted(st.get("state", {})):
            for key, v in sorted(st["state"][name].items()):
                if isinstance(v, np.ndarray):
                    _digest_arrays(h, [(f"{name}/{key}", v)])
                else:
                    h.update(f"{name}/{key}={v};".encode())
    return h.hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
"""The memory address in a default ``repr``, which differs between processes."""


def _describe(name: str, value: Any) -> dict[str, tuple[str, str]]:
    """What a process compares with the others: entry -> (kind, text); kind "value" is shown in a message,
    kind "digest" only said to differ."""
    out: dict[str, tuple[str, str]] = {}
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            out[f"{name} {k}" if name else str(k)] = ("value", _ADDRESS.sub("", repr(value[k]))[:120])
        return out
    if hasattr(value, "params") and hasattr(value, "buffers") and hasattr(value, "forward"):  # a model
        state = list(value.state_dict().items())
        arch = "|".join(f"{k}:{np.asarray(v).dtype.str}:{np.shape(v)}" for k, v in state)
        out[f"{name} architecture"] = ("digest", f"{type(value).__name__}|{arch}")
        h = hashlib.blake2b(digest_size=16)
        _digest_arrays(h, state)
        out[f"{name} weights"] = ("digest", h.hexdigest())
        return out
    if hasattr(value, "take") and hasattr(value, "__len__"):  # a data source
        from cnnkit.data.source import labels_of

        n = len(value)
        out[f"{name} size"] = ("value", str(n))
        h = hashlib.blake2b(digest_size=16)
        labels = labels_of(value)
        if labels is not None:
            _digest_arrays(h, [("labels", labels)])
        if n:
            x, y = value.take(np.arange(min(n, 16)))
            _digest_arrays(h, [("x", np.asarray(x)), ("y", np.asarray(y))])
        out[f"{name} examples"] = ("digest", h.hexdigest())
        return out
    if hasattr(value, "state_dict") and hasattr(value, "lr"):  # an optimiser
        out[name] = ("value", repr(value))
        h = hashlib.blake2b(digest_size=16)
        st = value.state_dict()
        for pname in sorted(st.get("state", {})):
            for key, v in sorted(st["state"][pname].items()):
                _digest_arrays(h, [(f"{pname}/{key}", np.asarray(v))])
        out[f"{name} state"] = ("digest", f"{st.get('step')}:{h.hexdigest()}")
        return out
    out[name] = ("value", _ADDRESS.sub("", repr(value))[:120])
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 1000 else text[:997] + "..."


def _mark_collective(exc: BaseException) -> BaseException:
    """Note on ``exc`` that every process raises an error at this point (no process is left waiting)."""
    with contextlib.suppress(AttributeError):  # an exception type with __slots__ stays unmarked
        exc.cnnkit_collective = True  # type: ignore[attr-defined]
    return exc


class DataParallel(Callback):
    """Synchronous data parallelism over the processes of ``comm`` (see the module docstring for the rules).

    Pass one to :func:`~cnnkit.train.fit.fit` (``distributed=``) or :func:`~cnnkit.train.run_epochs`
    (``parallel=``), which makes it the loop's first callback; the loop asks it for each process's slice of a
    mini-batch (:meth:`local_batch`), to sum the gradients (:meth:`reduce_gradients`) and the tallies
    (:meth:`reduce_tally`), and for each process's share of an evaluation set (:meth:`share`). Records gain
    ``ranks`` (K) and ``sync_seconds`` (the slowest process's time inside the per-step sums, waiting included);
    ``seconds`` is the slowest process's. ``log`` receives rank 0's notes (default: standard error).

    Examples
    --------
    One process, or several: the same records (here 2 threads standing for 2 ranks):

    >>> import numpy as np
    >>> from cnnkit.nn import Linear, SoftmaxCrossEntropy
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.train import run_epochs
    >>> x = np.random.default_rng(0).standard_normal((50, 4)); y = (x[:, 0] > 0).astype(int)
    >>> def train(comm):
    ...     net = Linear(4, 2, rng=np.random.default_rng(0), dtype=np.float64)
    ...     state = run_epochs(net, SoftmaxCrossEntropy(), SGD(net, lr=0.5), (x, y), epochs=2, batch_size=16, seed=0,
    ...                        evaluate_on={"test": (x, y)}, parallel=DataParallel(comm))
    ...     return state.records[-1]
    >>> one, (a, b) = train(SingleProcess()), run_in_threads(2, train)
    >>> a["ranks"], a["test_confusion"] == b["test_confusion"] == one["test_confusion"], abs(a["test_loss"] - one["test_loss"]) < 1e-12
    (2, True, True)
    """

    def __init__(self, comm: Communicator | None = None, log: Callable[[str], None] | None = None) -> None:
        self.comm: Communicator = comm if comm is not None else SingleProcess()
        self.rank, self.size = self.comm.rank, self.comm.size
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr, flush=True))
        self._rows: tuple[int, int, int] | None = None  # (lo, hi, m) of the current global batch
        self._counters: dict[str, np.ndarray] = {}  # integer buffers before the current step
        self._buf: np.ndarray | None = None
        self._slicers: list[tuple[Any, _RowSlicer, np.random.Generator]] = []
        self.examples = 0  # global examples trained on in the current epoch
        self.sync_seconds = 0.0

    @property
    def root(self) -> bool:
        """Whether this is rank 0, the process that writes files and logs."""
        return self.rank == 0

    # -- before training ---------------------------------------------------------------------------------
    def check_same(self, **parts: Any) -> None:
        """Raise :class:`DistributedError` on every process unless all were given the same ``parts``.

        Dicts are compared entry by entry (a configuration), models by architecture and weights, data sources
        by size, labels and a few examples, optimisers by settings and state; anything else by ``repr``.

        Examples
        --------
        >>> def start(comm):
        ...     DataParallel(comm).check_same(config={"seed": comm.rank, "epochs": 3})
        >>> run_in_threads(2, start)
        Traceback (most recent call last):
            ...
        cnnkit.train.distributed.DistributedError: the 2 processes were not started alike ...: config seed: rank 0 has 0, rank 1 has 1
        """
        mine: dict[str, tuple[str, str]] = {}
        for name, value in parts.items():
            mine.update(_describe(name, value))
        everyone = self.comm.allgather(mine)
        problems: list[str] = []
        for key in sorted({k for d in everyone for k in d}):
            texts = [d.get(key) for d in everyone]
            if all(t == texts[0] for t in texts):
                continue
            odd = [r for r, t in enumerate(texts) if t != texts[0]]
            kind = next(t[0] for t in texts if t is not None)
            if kind == "value":
                shown = ", ".join(f"rank {r} has {texts[r][1] if texts[r] else '(nothing)'}" for r in [0, *odd[:3]])
                problems.append(f"{key}: {shown}")
            else:
                ranks = ", ".join(map(str, odd[:5])) + (" ..." if len(odd) > 5 else "")
                problems.append(f"{key}: rank{'s' if len(odd) > 1 else ''} {ranks} differ{'' if len(odd) > 1 else 's'} from rank 0")
        if problems:
            more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
            raise DistributedError(f"the {self.size} processes were not started alike (each must run the same command on the "
                                   f"same data): {'; '.join(problems[:4])}{more}", collective=True)

    def start_run(self, run_dir: Any, model: Any, optimizer: Any, resume: bool) -> tuple[int, list[dict[str, Any]]]:
        """Rank 0 prepares the run directory (:meth:`RunDirectory.start <cnnkit.train.rundir.RunDirectory.start>`)
        and sends the resumed state (weights, buffers, optimiser, callbacks' states) to the others; returns
        (finished epochs, their records) on every process. The other ranks never touch the directory.

        Examples
        --------
        Rank 0 resumes from a checkpoint; rank 1, which has none, receives the state:

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from cnnkit.nn import Linear
        >>> from cnnkit.optim import SGD
        >>> from cnnkit.train import RunDirectory, TrainConfig
        >>> from cnnkit.train.checkpoint import save_checkpoint
        >>> with tempfile.TemporaryDirectory() as d:
        ...     trained = Linear(2, 2, rng=np.random.default_rng(7))
        ...     run = RunDirectory(Path(d) / "run", TrainConfig(model="fc2", epochs=2))
        ...     _ = run.start(trained, SGD(trained, lr=0.1), resume=False); run.unlock()
        ...     save_checkpoint(run.checkpoint_path, trained, SGD(trained, lr=0.1), 1, {"records": [{"epoch": 1}]})
        ...     def resume(comm):
        ...         net = Linear(2, 2, rng=np.random.default_rng(0))
        ...         here = RunDirectory(Path(d) / "run", TrainConfig(model="fc2", epochs=2))
        ...         try:
        ...             done = DataParallel(comm).start_run(here, net, SGD(net, lr=0.1), resume=True)
        ...         finally:
        ...             here.unlock()
        ...         return done, bool(np.array_equal(net.params["weight"], trained.params["weight"]))
        ...     print(run_in_threads(2, resume))
        [((1, [{'epoch': 1}]), True), ((1, [{'epoch': 1}]), True)]
        """
        if self.root:
            try:
                start, records = run_dir.start(model, optimizer, resume)
            except BaseException as exc:
                self.comm.bcast(("error", _one_line(exc)))
                raise _mark_collective(exc) from None
            state = None
            if start:
                state = (model.state_dict(), optimizer.state_dict(), [cb.state_dict() for cb in run_dir.stateful])
            self.comm.bcast(("ok", start, records, state))
            return start, records
        got = self.comm.bcast(None)
        if got[0] == "error":
            raise DistributedError(f"rank 0 could not start the run: {got[1]}", collective=True)
        _, start, records, state = got
        if state is not None:
            weights, opt_state, cb_states = state
            model.load_state_dict(weights)
            optimizer.load_state_dict(opt_state)
            for cb, st in zip(run_dir.stateful, cb_states):
                cb.load_state_dict(st)
        return start, records

    @contextlib.contextmanager
    def guard(self, quiet_followers: bool = False) -> Iterator[None]:
        """Turn an error that only this process meets into one line on standard error and an abort of every
        process (the others would wait for it forever). Errors every process raises together (a
        :class:`DistributedError` marked collective, a divergence) pass through; ``quiet_followers`` makes the
        ranks other than 0 exit with status 1 instead (rank 0 reports them).

        Examples
        --------
        >>> def work(comm):
        ...     with DataParallel(comm).guard():
        ...         if comm.rank == 1:
        ...             raise OSError("disk full")
        ...         comm.allgather(None)  # rank 0 would wait here for ever
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     outcome = run_in_threads(2, work, return_exceptions=True)
        >>> err.getvalue().strip()
        'cnnkit: rank 1 of 2: OSError: disk full'
        >>> [type(e).__name__ for e in outcome]
        ['DistributedError', 'DistributedError']
        """
        try:
            yield
        except BaseException as exc:
            if self.size == 1:
                raise
            if _collective(exc):
                if quiet_followers and not self.root:
                    raise SystemExit(1) from None
                raise
            print(f"cnnkit: rank {self.rank} of {self.size}: {_one_line(exc)}", file=sys.stderr, flush=True)
            self.comm.abort(1)

    # -- callbacks --------------------------------------------------------------------------------------------
    def on_train_begin(self, state: LoopState) -> None:
        self._counters = {}

    def on_epoch_begin(self, state: LoopState) -> None:
        """Make every layer that draws random numbers (dropout) draw as for the whole batch (after the loop's reseed)."""
        self.examples, self.sync_seconds = 0, 0.0
        self._slicers = [s for s in self._slicers if s[0].rng is s[1]]  # the layers the loop's reseed left alone
        if self.size == 1:
            return
        self.comm.allgather(None)  # start the epoch's clock together (rank 0 may still have been writing files)
        for layer in state.model.modules():
            rng = getattr(layer, "rng", None)
            if getattr(layer, "draws_random", False) and isinstance(rng, np.random.Generator):
                slicer = _RowSlicer(rng, lambda: self._rows)
                layer.rng = slicer
                self._slicers.append((layer, slicer, rng))

    def on_epoch_end(self, state: LoopState, record: dict[str, Any]) -> None:
        """Check that every process holds the same state; the slowest process's time goes into the record."""
        mine = (_state_digest(state.model, state.optimizer), float(record.get("seconds", 0.0)), self.sync_seconds)
        everyone = self.comm.allgather(mine)
        if any(d[0] != everyone[0][0] for d in everyone):
            weights, opt_state = self.comm.bcast((state.model.state_dict(), state.optimizer.state_dict()) if self.root else None)
            if not self.root:
                state.model.load_state_dict(weights)
                state.optimizer.load_state_dict(opt_state)
            if self.root:
                odd = [r for r, d in enumerate(everyone) if d[0] != everyone[0][0]]
                self.log(f"cnnkit: after epoch {state.epoch + 1} the weights of rank(s) {odd} differed from rank 0's "
                         f"(an MPI sum that is not bitwise the same on every rank); rank 0's state was copied to every process")
        seconds = max(d[1] for d in everyone)
        record["seconds"] = round(seconds, 3)
        if self.examples:
            record["images_per_s"] = round(self.examples / max(seconds, 1e-9), 1)
        record["ranks"] = self.size
        record["sync_seconds"] = round(max(d[2] for d in everyone), 3)

    def on_train_end(self, state: LoopState) -> None:
        self._unwrap()
        self._rows = None

    def _unwrap(self) -> None:
        for layer, slicer, rng in self._slicers:
            if layer.rng is slicer:
                layer.rng = rng
        self._slicers = []

    # -- what the loop asks for --------------------------------------------------------------------------------
    def share(self, n: int) -> tuple[int, int]:
        """This process's rows ``[lo, hi)`` of a set of ``n`` examples (evaluation).

        Examples
        --------
        >>> DataParallel().share(10)
        (0, 10)
        """
        return shard_bounds(n, self.size, self.rank)

    def local_batch(self, model: Any, rows: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, Any]:
        """This process's slice of the global batch ``rows``, and ``rng`` (augmentation) made to draw as for the
        whole batch and hand back this slice. Call :meth:`reduce_gradients` after the backward pass.

        Examples
        --------
        Rank 1 of 2 takes rows 3..5 of a batch of 5; its augmentation numbers are rows 3..5 of the whole batch's:

        >>> import numpy as np
        >>> from cnnkit.nn import Linear
        >>> par = DataParallel(ThreadCommunicator(_ThreadGroup(2, 1.0), 1))
        >>> rows, rng = par.local_batch(Linear(1, 1), np.array([9, 8, 7, 6, 5]), np.random.default_rng(0))
        >>> rows, bool(np.array_equal(rng.random(3), np.random.default_rng(0).random(5)[2:]))
        (array([7, 6, 5]), True)
        """
        m = len(rows)
        lo, hi = shard_bounds(m, self.size, self.rank)
        self._rows = (lo, hi, m)
        self.examples += m
        self._counters = {k: np.array(b, copy=True) for k, b in model.buffers.items()
                          if not np.issubdtype(np.asarray(b).dtype, np.floating)}
        draws: Any = rng
        if rng is not None and self.size > 1:
            draws = _RowSlicer(rng, lambda: self._rows)
        return rows[lo:hi], draws

    def reduce_gradients(self, model: Any, loss: float) -> float:
        """Sum ``(m_r/m) * gradient`` over the processes into every gradient, in one Allreduce, with the
        batch-norm buffers (weighted means), integer counters (weighted mean increments) and the loss; returns the
        global batch's mean loss. ``loss`` is this process's mean loss over its rows (ignored for an empty slice).

        Examples
        --------
        A rank holding 1 of a batch's 4 rows contributes a quarter of its gradient (one process here):

        >>> import numpy as np
        >>> from cnnkit.nn import Linear
        >>> net = Linear(1, 1)
        >>> par = DataParallel()
        >>> _ = par.local_batch(net, np.arange(4), None)
        >>> net.grads["weight"][...] = 2.0
        >>> par.reduce_gradients(net, 0.5), net.grads["weight"]
        (0.5, array([[2.]], dtype=float32))
        """
        if self._rows is None:
            raise RuntimeError("DataParallel.reduce_gradients: call local_batch first")
        lo, hi, m = self._rows
        w = (hi - lo) / m if m else 0.0
        grads = [(k, g) for k, g in model.grads.items() if g is not None]
        buffers = list(model.buffers.items())
        dtype = np.result_type(*(g.dtype for _, g in grads)) if grads else np.dtype(np.float64)
        total = sum(g.size for _, g in grads) + sum(np.size(b) for _, b in buffers) + 1
        if self._buf is None or self._buf.size != total or self._buf.dtype != dtype:
            self._buf = np.empty(total, dtype=dtype)
        buf = self._buf
        t0 = time.perf_counter()
        if w == 0.0:
            buf[...] = 0
        else:
            off = 0
            for _, g in grads:
                np.multiply(g, w, out=buf[off : off + g.size].reshape(g.shape), casting="unsafe")
                off += g.size
            for k, b in buffers:
                b = np.asarray(b)
                part = buf[off : off + b.size].reshape(b.shape)
                if np.issubdtype(b.dtype, np.floating):
                    np.multiply(b, w, out=part, casting="unsafe")
                else:  # a counter: the weighted mean of the increments (every process that ran a step adds 1)
                    before = self._counters.get(k, b)
                    part[...] = (b - before) * w
                off += b.size
            buf[-1] = loss * w
        self.comm.allreduce_sum(buf)
        off = 0
        for _, g in grads:
            g[...] = buf[off : off + g.size].reshape(g.shape)
            off += g.size
        for k, b in buffers:
            part = buf[off : off + np.size(b)].reshape(np.shape(b))
            if np.issubdtype(np.asarray(b).dtype, np.floating):
                b[...] = part
            else:
                b[...] = self._counters.get(k, b) + np.rint(part).astype(np.asarray(b).dtype)
            off += np.size(b)
        self.sync_seconds += time.perf_counter() - t0
        return float(buf[-1])

    def reduce_tally(self, tally: Any, confusion: bool) -> Any:
        """The tally (loss * n, errors, counts, confusion matrix) of the whole pass, the same on every process.

        Examples
        --------
        >>> from cnnkit.train.loop import _Tally
        >>> t = _Tally(); t.total, t.top1, t.seen, t.k = 1.5, 1.0, 3, 2
        >>> merged = DataParallel().reduce_tally(t, confusion=False)
        >>> merged.total, merged.seen, merged.k
        (1.5, 3, 2)
        """
        everyone = self.comm.allgather((tally.total, tally.top1, tally.top5, tally.seen, tally.k))
        tally.total = math.fsum(e[0] for e in everyone)
        tally.top1 = math.fsum(e[1] for e in everyone)
        tally.top5 = math.fsum(e[2] for e in everyone)
        tally.seen = sum(e[3] for e in everyone)
        tally.k = max(e[4] for e in everyone)
        if confusion and tally.k:
            mat = tally.confusion if tally.confusion is not None else np.zeros((tally.k, tally.k), dtype=np.int64)
            self.comm.allreduce_sum(mat)
            tally.confusion = mat
        return tally


def as_parallel(distributed: Any) -> DataParallel | None:
    """A :class:`DataParallel` from what ``fit(distributed=...)`` accepts: None, a DataParallel, a
    :class:`Communicator`, or an mpi4py communicator.

    Examples
    --------
    >>> as_parallel(None) is None, as_parallel(SingleProcess()).size
    (True, 1)
    """
    if distributed is None or isinstance(distributed, DataParallel):
        return distributed
    if isinstance(distributed, Communicator):
        return DataParallel(distributed)
    if hasattr(distributed, "Get_rank") and hasattr(distributed, "Allreduce"):
        return DataParallel(MPICommunicator(distributed))
    raise TypeError(f"distributed must be a Communicator (e.g. MPICommunicator()) or a DataParallel, got {type(distributed).__name__}")


def time_allreduce(comm: Communicator, what: Any, repeats: int = 20, dtype: Any = np.float32) -> float:
    """Median seconds of one step's Allreduce (the slowest process's): of ``what``'s gradients and buffers when it
    is a model, of ``what`` values of ``dtype`` when it is a number.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> time_allreduce(SingleProcess(), Linear(100, 10, rng=np.random.default_rng(0)), repeats=3) < 0.01
    True
    >>> run_in_threads(2, lambda comm: time_allreduce(comm, 1000, repeats=3) < 1.0)
    [True, True]
    """
    if isinstance(what, (int, np.integer)):
        n = int(what)
    else:
        n = sum(np.size(g) for g in what.grads.values() if g is not None) + sum(np.size(b) for b in what.buffers.values()) + 1
        dtype = what.dtype or dtype
    buf = np.zeros(n, dtype=dtype)
    comm.allreduce_sum(buf)  # warm-up (connections, shared memory, pages)
    times = []
    for _ in range(max(1, repeats)):
        comm.allgather(None)  # start together
        t = time.perf_counter()
        comm.allreduce_sum(buf)
        times.append(time.perf_counter() - t)
    return float(max(comm.allgather(statistics.median(times))))


def main(argv: Sequence[str] | None = None) -> int:
    """``mpiexec -n K python -m cnnkit.train.distributed [MODEL ...]``: time one training step's Allreduce of each
    model's gradients (float32) on these K processes; rank 0 prints parameters, bytes, milliseconds and the bus
    bandwidth ``2(K-1)/K * bytes / time`` (a ring allreduce's traffic per process).

    Examples
    --------
    >>> main(["base", "--repeats", "2"])  # doctest: +SKIP
    model                      parameters        MB     ms/allreduce   bus GB/s  (2 processes)
    base                          431,080       1.7            0.312       5.53
    """
    from cnnkit.models import create, resolve
    from cnnkit.nn.init import shapes_only

    parser = argparse.ArgumentParser(prog="python -m cnnkit.train.distributed", description=main.__doc__)
    parser.add_argument("models", nargs="*", default=["base", "resnet20", "vgg16"], help="model names or network strings")
    parser.add_argument("--repeats", type=int, default=20, help="Allreduces timed per model (the median is shown)")
    args = parser.parse_args(argv)
    comm: Communicator = MPICommunicator() if importlib.util.find_spec("mpi4py") is not None else SingleProcess()
    if comm.rank == 0:
        print(f"{'model':<24} {'parameters':>12} {'MB':>9} {'ms/allreduce':>16} {'bus GB/s':>10}  ({comm.size} processes)")
    for name in args.models:
        with shapes_only():  # the parameter count without the parameters' memory
            template = create(name, np.random.default_rng(0), np.float32, input_shape=resolve(name).input_shape)
        n = int(template.num_params()) + sum(int(np.size(b)) for b in template.buffers.values()) + 1
        seconds = time_allreduce(comm, n, args.repeats)
        if comm.rank == 0:
            traffic = 2 * (comm.size - 1) / comm.size * 4 * n
            print(f"{name:<24} {template.num_params():>12,} {4 * n / 1e6:>9.1f} {1e3 * seconds:>16.3f} {traffic / seconds / 1e9:>10.2f}",
                  flush=True)
    return 0


# -- the command line ------------------------------------------------------------------------------------------


def _timeout_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0), got {text!r}") from None
    if not v >= 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0), got {text!r}")
    return v


def add_distributed_flag(train_subparser: argparse.ArgumentParser) -> None:
    """Add ``--distributed`` and ``--distributed-timeout`` to the ``cnnkit train`` parser.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_distributed_flag(p)
    >>> args = p.parse_args(["--distributed", "--distributed-timeout", "120"])
    >>> args.distributed, args.distributed_timeout, p.parse_args([]).distributed
    (True, 120.0, False)
    """
    train_subparser.add_argument(
        "--distributed", action="store_true",
        help="train with every process mpiexec started (mpiexec -n K cnnkit train ... --distributed): each takes a slice of "
             "every mini-batch, gradients are summed over them, rank 0 writes the run directory (needs pip install 'cnnkit[mpi]')")
    train_subparser.add_argument(
        "--distributed-timeout", type=_timeout_arg, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"with --distributed: stop every process when one has waited this long for the others (a process died, "
             f"hangs or cannot be reached); 0 waits for ever (default: {DEFAULT_TIMEOUT:g})")


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_limits: list[Any] = []  # the BLAS thread limit set by share_cores, kept alive


def share_cores(comm: Communicator, log: Callable[[str], None] | None = None) -> int | None:
    """Give each of the processes that share this machine an equal share of its cores as BLAS threads (an
    oversubscribed BLAS is many times slower; docs/distributed.md), unless the environment already sets
    ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS``; returns the threads set (None: unchanged).

    Examples
    --------
    >>> share_cores(SingleProcess()) is None  # one process: nothing to share
    True
    """
    local = int(getattr(comm, "local_size", 1))
    if local <= 1 or any(os.environ.get(v) for v in _THREAD_VARIABLES):
        return None
    from threadpoolctl import threadpool_limits

    threads = max(1, (os.cpu_count() or 1) // local)
    _limits.append(threadpool_limits(limits=threads))
    if log is not None and comm.rank == 0:
        log(f"cnnkit: {local} processes share this machine's {os.cpu_count()} cores: {threads} BLAS thread(s) each "
            f"(set OMP_NUM_THREADS to choose)")
    return threads


def communicator_from_args(args: argparse.Namespace) -> MPICommunicator | None:
    """The communicator ``cnnkit train --distributed`` trains with (None without the flag); the processes on one
    machine share its cores (:func:`share_cores`).

    Examples
    --------
    >>> import argparse
    >>> communicator_from_args(argparse.Namespace(distributed=False)) is None
    True
    >>> communicator_from_args(argparse.Namespace(distributed=True, distributed_timeout=60)).size  # doctest: +SKIP
    2
    """
    if not getattr(args, "distributed", False):
        return None
    comm = MPICommunicator(timeout=getattr(args, "distributed_timeout", DEFAULT_TIMEOUT))
    share_cores(comm, log=lambda line: print(line, file=sys.stderr, flush=True))
    return comm


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
