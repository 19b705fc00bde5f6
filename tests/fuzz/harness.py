"""Running one fuzz case: call a target, classify what came out, measure its time and memory against the valid file's.

An outcome is one of

* ``clean``: the target raised a documented error (:class:`cnnkit.errors.CnnkitError` or a subclass, or
  ``FileNotFoundError`` for a missing file) with a message of one line of at most :data:`MAX_MESSAGE` characters;
* ``correct``: the target returned, and the format's check of the value passed (a loaded model runs a forward
  pass on a zero batch of its input shape, a dataset has the shapes and dtypes it should, a command exited 0 ...);
* ``failure``: anything else: another exception type (a traceback for the user), a message of several lines or
  too long, a warning or output printed by a library call, a value that fails its check, or a case over its
  time or memory budget.

Time is wall time; memory is the peak of what :mod:`tracemalloc` traces during the call (Python objects and
every NumPy array), and, as a second measure, the growth of the process's peak resident set size (Linux:
``VmHWM``, reset before each case through ``/proc/self/clear_refs``), which also sees memory that C libraries
(Pillow, zlib) allocate outside tracemalloc. A case fails when

* time > max(:data:`TIME_FLOOR`, :data:`TIME_FACTOR` x the valid file's time (times the work a correct result
  did over the valid file's, e.g. layers built), the input's size at :data:`MIN_RATE`, a correct result's
  size at :data:`OUTPUT_RATE`), or
* traced memory > max(:data:`MEM_FLOOR`, :data:`MEM_FACTOR` x the valid file's, :data:`MEM_FACTOR` x the bytes
  of the correct result, :data:`MEM_FACTOR` x the most a valid file of the mutated file's size could decode to), or
* resident growth > the same with :data:`RSS_RESULT_FACTOR` x the bytes of a correct result (a decoder's own
  buffers: Pillow holds an image in its mode and in the converted mode before NumPy gets it).

"The most a valid file of this size could decode to" is the input's size times the format's largest
expansion (1 for formats stored raw, 1032 for deflate: zlib's maximum compression ratio), so a gzip or zip
member that legitimately decompresses to a lot is measured against what it holds, and a small file that
declares a lot is measured against what it could hold. The valid file's figures are measured once per seed,
under the same tracing, as the worst of a few runs.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
import signal
import sys
import threading
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnkit.errors import CnnkitError

CLEAN, CORRECT, FAILURE = "clean", "correct", "failure"

MAX_MESSAGE = 1000
"""Characters an error message may have (the readers quote at most ~200 characters of the input)."""
TIME_FLOOR = 2.0
TIME_FACTOR = 5.0
MIN_RATE = 1 << 20
"""Bytes of input per second any reader may take at least, under tracing (JSON metadata, a zip directory, a
pickle's opcodes all cost time in proportion to their size: a valid file of the same size would too)."""
OUTPUT_RATE = 16 << 20
"""Bytes of correct result per second a decoder may take at least (an image declaring 60 million pixels that
decodes is a valid file of that size, and takes the time such a file takes)."""
MEM_FLOOR = 64 << 20
MEM_FACTOR = 2.5
RSS_RESULT_FACTOR = 4.0
HANG_FLOOR = 30.0
"""Seconds after which a case is stopped (SIGALRM) and reported as a hang: max(this, 10 x its time budget)."""

DOCUMENTED: tuple[type[BaseException], ...] = (CnnkitError, FileNotFoundError)
"""The error types a reader may raise for a bad input."""


class CaseTimeout(BaseException):
    """Raised by the watchdog in a case that runs far past its time budget (a hang)."""


@dataclass
class Verdict:
    """What a format's check makes of a returned value: ``outcome`` (clean/correct/failure), why, result bytes."""

    outcome: str
    detail: str = ""
    result_bytes: int = 0
    work: int = 0


@dataclass
class Case:
    """One input prepared for its target (the files are written before ``run`` is called).

    ``run`` reads the input (the call measured); ``judge`` decides what a returned value means (it is not
    measured). ``input_bytes`` is the size of the mutated input, ``expansion`` the format's largest
    legitimate decoded/stored ratio. ``expected`` are the error types that count as clean.
    """

    seed: str
    mutation: str
    run: Callable[[], Any]
    judge: Callable[[Any], Verdict]
    input_bytes: int = 0
    expansion: float = 1.0
    expected: tuple[type[BaseException], ...] = DOCUMENTED
    cleanup: Callable[[], None] | None = None


@dataclass
class Measure:
    seconds: float = 0.0
    traced: int = 0
    rss: int = 0

    def worst(self, other: Measure) -> Measure:
        return Measure(max(self.seconds, other.seconds), max(self.traced, other.traced), max(self.rss, other.rss))


@dataclass
class Result:
    """One case's outcome and measurements."""

    format: str
    case: int
    seed: str
    mutation: str
    outcome: str
    detail: str
    seconds: float
    traced: int
    rss: int
    error_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- measuring -----------------------------------------------------------------------------------------

_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field_name: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            m = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def _reset_rss_peak() -> int | None:
    """Reset the peak resident set size to the current one (Linux); the current one in bytes, None if unsupported."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS") * 1024


def _rss_peak() -> int:
    return _status_kib("VmHWM") * 1024


@contextlib.contextmanager
def _watchdog(seconds: float):  # type: ignore[no-untyped-def]
    """Raise CaseTimeout in this (main) thread after ``seconds``; nothing where signals are unavailable."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"still running after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Call:
    """What one measured call gave: its value or exception, its measurements, and anything it emitted."""

    value: Any = None
    error: BaseException | None = None
    measure: Measure = field(default_factory=Measure)
    warnings: list[str] = field(default_factory=list)
    printed: str = ""


def measured_call(fn: Callable[[], Any], hang_after: float, trace: bool) -> Call:
    """Call ``fn`` with warnings and output captured: its wall time and resident growth untraced, or (``trace``)
    the peak of what tracemalloc traces (tracing slows allocation-heavy code several times: time is not taken then)."""
    gc.collect()
    out = Call()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    rss0 = None if trace else _reset_rss_peak()
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("always")
            try:
                with _watchdog(hang_after):
                    out.value = fn()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                out.error = exc
        seconds = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1] - before if trace else 0
        rss = max(0, _rss_peak() - rss0) if rss0 is not None else 0
    finally:
        if trace:
            tracemalloc.stop()
    out.measure = Measure(0.0 if trace else seconds, max(0, traced), rss)
    out.warnings = [f"{w.category.__name__}: {w.message} ({os.path.basename(w.filename)}:{w.lineno})" for w in caught]
    out.printed = buf.getvalue()
    return out


# -- classifying ---------------------------------------------------------------------------------------

def where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback inside cnnkit (else the innermost one): ``file:line in func``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}cnnkit{os.sep}" in f.filename] or frames
    if not ours:
        return "?"
    f = ours[-1]
    path = f.filename.split(f"{os.sep}src{os.sep}")[-1]
    return f"{path}:{f.lineno} in {f.name}"


def check_message(exc: BaseException) -> str:
    """Why ``exc``'s message is not a clean one ('' when it is: one line, not empty, at most MAX_MESSAGE characters)."""
    msg = str(exc)
    if not msg.strip():
        return "empty message"
    if "\n" in msg or "\r" in msg:
        return f"message of {msg.count(chr(10)) + 1} lines"
    if len(msg) > MAX_MESSAGE:
        return f"message of {len(msg):,} characters"
    return ""


def classify_error(exc: BaseException, expected: tuple[type[BaseException], ...]) -> Verdict:
    short = " ".join(str(exc).split())[:300]
    if isinstance(exc, CaseTimeout):
        return Verdict(FAILURE, f"hang: {exc} ({where(exc)})")
    if not isinstance(exc, expected):
        return Verdict(FAILURE, f"{type(exc).__module__}.{type(exc).__name__} at {where(exc)}: {short}")
    bad = check_message(exc)
    if bad:
        return Verdict(FAILURE, f"{type(exc).__name__} with a {bad} at {where(exc)}: {short}")
    return Verdict(CLEAN, f"{type(exc).__name__}: {short}")


@dataclass
class Baseline:
    """The valid file's worst time and memory over a few runs (the reference for every mutation of it), the
    bytes of its result and the work its check counted (e.g. layers built)."""

    measure: Measure
    result_bytes: int = 0
    work: int = 0


def budgets(base: Baseline, verdict: Verdict, case: Case) -> tuple[float, float, float]:
    """(seconds, traced bytes, resident bytes) allowed for a case that gave ``verdict``."""
    plausible = case.input_bytes * case.expansion
    result = verdict.result_bytes if verdict.outcome == CORRECT else 0
    scale = max(1.0, verdict.work / base.work) if verdict.outcome == CORRECT and base.work else 1.0
    seconds = max(TIME_FLOOR, TIME_FACTOR * base.measure.seconds * scale, case.input_bytes / MIN_RATE, result / OUTPUT_RATE)
    traced = max(MEM_FLOOR, MEM_FACTOR * base.measure.traced * scale, MEM_FACTOR * result, MEM_FACTOR * plausible)
    rss = max(MEM_FLOOR, MEM_FACTOR * base.measure.rss * scale, RSS_RESULT_FACTOR * result, MEM_FACTOR * plausible)
    return seconds, traced, rss


def _verdict(case: Case, call: Call) -> Verdict:
    if call.error is not None:
        verdict = classify_error(call.error, case.expected)
    else:
        try:
            verdict = case.judge(call.value)
        except Exception as exc:
            verdict = Verdict(FAILURE, f"returned a value its check rejects: {type(exc).__name__} at {where(exc)}: "
                                       f"{' '.join(str(exc).split())[:300]}")
    call.value = None  # free it before the next case
    if verdict.outcome != FAILURE and call.warnings:
        verdict = Verdict(FAILURE, f"warning: {call.warnings[0]}", verdict.result_bytes)
    if verdict.outcome != FAILURE and call.printed.strip():
        verdict = Verdict(FAILURE, f"printed: {call.printed.strip()[:200]!r}", verdict.result_bytes)
    return verdict


def _call(case: Case, hang_after: float, trace: bool) -> Call:
    try:
        return measured_call(case.run, hang_after, trace)
    finally:
        if case.cleanup is not None:
            case.cleanup()


def run_case(make: Callable[[], Case], base: Baseline | None, fmt: str = "", index: int = 0) -> Result:
    """Make and run one case twice, untraced (outcome, time, resident memory) then, made again, traced
    (tracemalloc's peak), and classify it; ``base`` None: a valid seed being measured, no budget applied."""
    case = make()
    hang_after = HANG_FLOOR if base is None else max(HANG_FLOOR, 10 * budgets(base, Verdict(CLEAN), case)[0])
    call = _call(case, hang_after, trace=False)
    verdict = _verdict(case, call)
    m = call.measure
    error_type = type(call.error).__name__ if call.error is not None else ""
    if verdict.outcome != FAILURE:
        traced = _call(make(), 10 * hang_after, trace=True)
        m = Measure(m.seconds, traced.measure.traced, m.rss)
        if traced.error is not None and isinstance(traced.error, CaseTimeout):
            verdict = Verdict(FAILURE, f"hang under tracing: {traced.error}")
    if base is not None and verdict.outcome != FAILURE:
        t, mem, rss = budgets(base, verdict, case)
        if m.seconds > t:
            verdict = Verdict(FAILURE, f"took {m.seconds:.2f} s, over its budget of {t:.2f} s ({verdict.outcome}: {verdict.detail})")
        elif m.traced > mem:
            verdict = Verdict(FAILURE, f"traced {m.traced / 2**20:.1f} MiB, over its budget of {mem / 2**20:.1f} MiB "
                                       f"({verdict.outcome}: {verdict.detail})")
        elif m.rss > rss:
            verdict = Verdict(FAILURE, f"resident memory grew {m.rss / 2**20:.1f} MiB, over its budget of {rss / 2**20:.1f} MiB "
                                       f"({verdict.outcome}: {verdict.detail})")
    return Result(fmt, index, case.seed, case.mutation, verdict.outcome, verdict.detail, m.seconds, m.traced, m.rss, error_type)


def measure_baseline(make: Callable[[], Case], repeats: int = 3) -> tuple[Baseline, Result]:
    """Run the valid seed ``repeats`` times each way (after one warm-up); its worst figures, and a result (which
    must be correct)."""
    result = run_case(make, None)
    worst = Measure()
    result_bytes = work = 0
    for _ in range(repeats):
        for trace in (False, True):
            case = make()
            call = _call(case, HANG_FLOOR, trace)
            worst = worst.worst(call.measure)
            if call.error is None:
                v = case.judge(call.value)
                result_bytes, work = max(result_bytes, v.result_bytes), max(work, v.work)
            call.value = None
    return Baseline(worst, result_bytes, work), result


def print_flush(*args: object) -> None:
    print(*args, file=sys.stdout, flush=True)
