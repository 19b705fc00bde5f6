"""Running many cases per format and reporting them (used by ``python -m tests.fuzz`` and by test_fuzz.py).

Case ``i`` of format ``f`` under master seed ``S`` draws everything from ``random.Random(f"{f}:{S}:{i}")``: which
seed file it mutates, how, and any option of the call. ``python -m tests.fuzz --format f --seed S --case i``
runs that case alone and shows its traceback.
"""

from __future__ import annotations

import gc
import random
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.corpus import Corpus, build_corpus
from tests.fuzz.harness import CLEAN, CORRECT, FAILURE, Baseline, Result, measure_baseline, run_case
from tests.fuzz.targets import FORMATS, Format


def case_rng(fmt: str, seed: int, index: int) -> random.Random:
    return random.Random(f"{fmt}:{seed}:{index}")


@dataclass
class FormatReport:
    """What the cases of one format gave."""

    format: str
    tried: int = 0
    clean: int = 0
    correct: int = 0
    failures: list[Result] = field(default_factory=list)
    worst_seconds: float = 0.0
    worst_seconds_case: int = -1
    worst_traced: int = 0
    worst_traced_case: int = -1
    worst_rss: int = 0
    worst_rss_case: int = -1
    valid_seconds: float = 0.0
    valid_traced: int = 0
    valid_rss: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, r: Result) -> None:
        self.tried += 1
        if r.outcome == CLEAN:
            self.clean += 1
            self.errors[r.error_type] += 1
        elif r.outcome == CORRECT:
            self.correct += 1
        else:
            self.failures.append(r)
        if r.seconds > self.worst_seconds:
            self.worst_seconds, self.worst_seconds_case = r.seconds, r.case
        if r.traced > self.worst_traced:
            self.worst_traced, self.worst_traced_case = r.traced, r.case
        if r.rss > self.worst_rss:
            self.worst_rss, self.worst_rss_case = r.rss, r.case

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "errors")}
        d["failures"] = [f.to_dict() for f in self.failures]
        d["errors"] = dict(self.errors)
        return d


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


HEADER = (f"{'format':<11}{'tried':>7}{'clean':>7}{'correct':>8}{'fail':>6}  {'worst s':>8} {'(valid)':>8}  "
          f"{'traced MiB':>10} {'(valid)':>8}  {'RSS MiB':>8} {'(valid)':>8}  {'total s':>7}")


def table_row(r: FormatReport) -> str:
    return (f"{r.format:<11}{r.tried:>7}{r.clean:>7}{r.correct:>8}{len(r.failures):>6}  {r.worst_seconds:>8.3f} "
            f"{r.valid_seconds:>8.3f}  {mib(r.worst_traced):>10} {mib(r.valid_traced):>8}  {mib(r.worst_rss):>8} "
            f"{mib(r.valid_rss):>8}  {r.seconds:>7.0f}")


class Fuzzer:
    """The corpus, the formats and their baselines, built once under ``root`` (a temporary directory by default)."""

    def __init__(self, root: Path | None = None, repeats: int = 3) -> None:
        """``repeats``: runs of each valid seed (each way, after a warm-up) whose worst figures are its baseline."""
        self.repeats = repeats
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="cnnkit-fuzz-")
        self.root = root if root is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.corpus: Corpus = build_corpus(self.root / "corpus")
        self.formats: dict[str, Format] = {}
        self.baselines: dict[str, dict[str, Baseline]] = {}

    def format(self, name: str) -> Format:
        if name not in self.formats:
            self.formats[name] = FORMATS[name](self.corpus, self.root / "work")
        return self.formats[name]

    def baseline(self, name: str, seed: str) -> Baseline:
        """Seed ``seed`` of format ``name`` measured unmutated (once; it must load correctly)."""
        bases = self.baselines.setdefault(name, {})
        if seed not in bases:
            fmt = self.format(name)
            base, result = measure_baseline(lambda: fmt.case(None, seed), self.repeats)
            if result.outcome != CORRECT:
                raise AssertionError(f"{name} seed {seed} is not a correct input: {result.outcome}: {result.detail}")
            bases[seed] = base
        return bases[seed]

    def run(self, name: str, cases: Iterable[int], seed: int = 0, on_result: Callable[[Result], None] | None = None) -> FormatReport:
        fmt = self.format(name)
        report = FormatReport(name)
        gc.freeze()  # what exists now (modules, corpus) is never garbage: each case's collection skips it
        start = time.perf_counter()
        try:
            for i in cases:
                base = self.baseline(name, fmt.seed_of(case_rng(name, seed, i)))
                make = lambda i=i: fmt.case(case_rng(name, seed, i))  # noqa: E731
                result = run_case(make, base, name, i)
                report.add(result)
                if on_result is not None:
                    on_result(result)
        finally:
            report.seconds = time.perf_counter() - start
            bases = self.baselines.get(name, {}).values()
            report.valid_seconds = max((b.measure.seconds for b in bases), default=0.0)
            report.valid_traced = max((b.measure.traced for b in bases), default=0)
            report.valid_rss = max((b.measure.rss for b in bases), default=0)
            if tracemalloc.is_tracing():
                tracemalloc.stop()
        return report

    def replay(self, name: str, seed: int, index: int) -> tuple[Result, str]:
        """Case ``index`` again: its result, and the traceback of what it raised (if anything)."""
        fmt = self.format(name)
        base = self.baseline(name, fmt.seed_of(case_rng(name, seed, index)))
        result = run_case(lambda: fmt.case(case_rng(name, seed, index)), base, name, index)
        case = fmt.case(case_rng(name, seed, index))
        text = ""
        try:
            case.run()
        except BaseException as exc:
            text = "".join(traceback.format_exception(exc))
        finally:
            if case.cleanup is not None:
                case.cleanup()
        return result, text

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


_ = FAILURE
