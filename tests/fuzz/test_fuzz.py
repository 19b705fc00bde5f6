"""A few hundred seeded fuzz cases per test run, every format (``python -m tests.fuzz --cases N`` runs more).

Each case mutates a valid seed (model file, checkpoint or run directory, IDX, CIFAR-10 batch, image, network
string, or a command line over them) and must end in a clean documented error or a correct result, within its
time and memory budget (see :mod:`tests.fuzz.harness`). A failure names the format and the case; reproduce it
with ``python -m tests.fuzz --format FORMAT --seed 0 --case N``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.run import Fuzzer

CASES = {"model": 60, "checkpoint": 40, "idx": 60, "cifar": 60, "image": 60, "spec": 50, "cli": 12}
"""Cases per format in the default run (about 340 in all, well under a minute on two cores)."""


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    pytest.importorskip("PIL")
    f = Fuzzer(Path(tmp_path_factory.mktemp("fuzz")), repeats=1)
    yield f
    f.close()


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_fuzz(fuzzer: Fuzzer, fmt: str) -> None:
    report = fuzzer.run(fmt, range(CASES[fmt]), seed=0)
    assert report.tried == CASES[fmt]
    assert not report.failures, "\n".join(
        f"{fmt} case {f.case} ({f.seed}; {f.mutation[:100]}): {f.detail[:300]}\n"
        f"  reproduce: python -m tests.fuzz --format {fmt} --seed 0 --case {f.case}" for f in report.failures)
    assert report.clean + report.correct == report.tried
