"""ONNX's own operator tests (the onnx wheel's backend node tests and stored PyTorch cases) through cnnkit's importer.

One test per case of every operator cnnkit imports (see tests/onnx/node_conformance.py for how a case is chosen, run
and classified): it passes when cnnkit's output matches ONNX's expected one (rtol=1e-3, atol=1e-7, the ONNX runner's),
is skipped with the reason when the case needs what cnnkit does not do, and fails otherwise.
``python -m tests.onnx.node_conformance`` prints the per-operator table.
"""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")

from tests.onnx.node_conformance import FAILED, NA, Case, Outcome, cases, results

CASES = cases()


def _outcomes() -> dict[tuple[str, str], Outcome]:
    return {(o.kind, o.name): o for o in results()}


def _id(case: Case) -> str:
    return case.name if case.kind == "node" else f"{case.kind}/{case.name}"


def test_cases_found() -> None:
    assert len(CASES) > 100, "the onnx wheel's backend test cases were not found"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_node_case(case: Case) -> None:
    outcome = _outcomes()[case.kind, case.name]
    if outcome.status == NA:
        pytest.skip(f"n/a: {outcome.reason}")
    assert outcome.status != FAILED, f"{case.operator}: {outcome.reason}"
