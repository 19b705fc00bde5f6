"""ONNX's own operator tests through cnnkit's importer: every case of every operator it imports.

The onnx wheel ships its backend tests: the node-test generators in ``onnx/backend/test/case/node/`` and
stored cases in ``onnx/backend/test/data/`` (``<kind>/<case>/model.onnx`` with
``test_data_set_*/input_*.pb`` and ``output_*.pb``). This module gathers

* the node tests: the stored ``data/node`` cases when the wheel has them, otherwise (recent wheels ship
  the generators but not ``data/node``) the cases the generators build (``collect_testcases``: the same
  models and data the stored cases are written from, expanded-function variants included);
* the stored ``data/pytorch-converted`` and ``data/pytorch-operator`` cases when present;

keeps a case when the operator it tests is one the importer reads, or when every operator in its graph is
(decided per case), and runs it through :func:`cnnkit.onnx.load`.

How a case is run: cnnkit networks take one input and keep their weights as parameters, so the graph's
first input is the network's input and every further input (a Conv's W and B, a Gemm's B and C, ...) is
baked into the model as an initializer holding that data set's value. The network is run on the input
transposed NCHW -> NHWC and a 4-D output is transposed back. cnnkit computes in float32: float64 inputs are
given as float32 and the values compared (not the dtype); cases on float16/bfloat16 data are not applicable.

Tolerance: the ONNX backend runner's, ``np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-7)``
(the TestCase's own rtol/atol, 1e-3 and 1e-7 for every node case, and a stored case's ``data.json`` may
set others), after an exact shape check.

Outcomes: **passed**; **n/a** when the case needs what cnnkit does not do, with the reason: an operator the
importer does not read in its graph, half-precision data, or the importer's own :class:`~cnnkit.errors.OnnxError`
(or :class:`~cnnkit.errors.ModelFileError` about an element type) naming the unsupported feature;
**failed** for anything else: wrong numbers or shape, or any other exception.

``python -m tests.onnx.node_conformance`` prints the per-operator Markdown table.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RTOL = 1e-3
ATOL = 1e-7
STORED_KINDS = ("pytorch-converted", "pytorch-operator")
GLUE = frozenset({"Constant", "Identity", "Cast", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice",
                  "ConstantOfShape", "Reshape", "Transpose", "Flatten"})
"""Operators that only move or describe data: a stored multi-node case is filed under its other operators."""

PASSED, FAILED, NA = "passed", "failed", "n/a"


@dataclass
class Case:
    """One model and its data sets: ``inputs``/``outputs`` per data set (NumPy arrays, ONNX layout)."""

    name: str
    kind: str
    operator: str
    model: Any
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]]
    rtol: float = RTOL
    atol: float = ATOL


@dataclass
class Outcome:
    name: str
    kind: str
    operator: str
    status: str
    reason: str = ""


@dataclass
class Row:
    passed: int = 0
    failed: int = 0
    na: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _onnx() -> Any:
    import onnx

    return onnx


# -- what the importer reads -------------------------------------------------------------------------------
@functools.cache
def supported_ops() -> frozenset[str]:
    """The ONNX operators cnnkit's importer has a reader for (its ``op_<name>`` methods)."""
    onnx = _onnx()
    from cnnkit.onnx.importer import _Reader

    methods = {m[3:] for m in dir(_Reader) if m.startswith("op_")}
    names = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    return frozenset(n for n in names if n.lower() in methods)


def graph_ops(model: Any) -> list[str]:
    """The operators of the model's graph in order of first use (other domains as ``domain.Op``)."""
    seen: dict[str, None] = {}
    for node in model.graph.node:
        seen[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] = None
    return list(seen)


# -- gathering the cases -------------------------------------------------------------------------------------
def data_dir() -> Path:
    return Path(_onnx().__file__).parent / "backend" / "test" / "data"


def _array(t: Any) -> Any:
    """A TensorProto as a NumPy array; anything else (arrays, and a sequence's list or an optional's None) as it is."""
    onnx = _onnx()
    if isinstance(t, onnx.TensorProto):
        return np.asarray(onnx.numpy_helper.to_array(t))
    return np.asarray(t) if isinstance(t, np.generic) else t


def _read_pb(path: Path) -> Any:
    onnx = _onnx()
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return onnx.numpy_helper.to_array(t)


def _stored(kind: str) -> Iterator[tuple[str, Any, list[tuple[list[np.ndarray], list[np.ndarray]]], float, float]]:
    """(name, model, data sets, rtol, atol) of the stored cases of ``data/<kind>``."""
    import json

    onnx = _onnx()
    root = data_dir() / kind
    if not root.is_dir():
        return
    for case in sorted(root.iterdir()):
        if not (case / "model.onnx").is_file():
            continue
        rtol, atol = RTOL, ATOL
        if (case / "data.json").is_file():
            meta = json.loads((case / "data.json").read_text())
            rtol, atol = float(meta.get("rtol", rtol)), float(meta.get("atol", atol))
        sets = []
        for d in sorted(case.glob("test_data_set_*")):
            def numbered(prefix: str, d: Path = d) -> list[np.ndarray]:
                files = sorted(d.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
                return [_read_pb(p) for p in files]

            sets.append((numbered("input"), numbered("output")))
        yield case.name, onnx.load(str(case / "model.onnx")), sets, rtol, atol


def _generated() -> list[Any]:
    """The generators' node cases (``onnx.backend.test.case.node.collect_testcases``), built once per process."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow and divide-by-zero warnings
        return list(collect_testcases(None))


_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def _operator(name: str, model: Any, single: dict[str, str]) -> str:
    """The operator a case tests: a one-node graph's; an expanded function's original; else the graph's non-glue ones."""
    ops = graph_ops(model)
    base = _EXPANDED.sub("", name)
    if base != name and base in single:
        return single[base]
    if len(ops) == 1:
        return ops[0]
    core = [o for o in ops if o not in GLUE] or ops
    return "+".join(core)


@functools.cache
def all_cases() -> tuple[Case, ...]:
    """Every node and stored PyTorch case, before filtering."""
    raw: list[tuple[str, str, Any, list[tuple[list[np.ndarray], list[np.ndarray]]], float, float]] = []
    if (data_dir() / "node").is_dir():
        raw += [(n, "node", m, s, r, a) for n, m, s, r, a in _stored("node")]
    else:
        for tc in _generated():
            sets = [([_array(x) for x in ins], [_array(y) for y in outs]) for ins, outs in (tc.data_sets or [])]
            raw.append((tc.name, "node", tc.model, sets, float(tc.rtol), float(tc.atol)))
    for kind in STORED_KINDS:
        raw += [(n, kind, m, s, r, a) for n, m, s, r, a in _stored(kind)]
    single = {n: m.graph.node[0].op_type for n, _, m, _, _, _ in raw if len(m.graph.node) == 1}
    return tuple(Case(n, k, _operator(n, m, single), m, s, r, a) for n, k, m, s, r, a in raw)


def cases() -> list[Case]:
    """The cases in scope: the operator tested is one the importer reads, or every operator in the graph is."""
    ops = supported_ops()
    return [c for c in all_cases() if c.operator in ops or set(graph_ops(c.model)) <= ops]


# -- running one case ----------------------------------------------------------------------------------------
_HALF = ("float16", "bfloat16")
SPATIAL = frozenset({"Conv", "ConvTranspose", "AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "MaxUnpool",
                     "BatchNormalization", "LRN", "CausalConvWithState"})
"""Operators on (N, C, spatial...) tensors: another input rank is a 1-D or 3-D case of them."""


def _baked(case: Case, inputs: Sequence[np.ndarray]) -> tuple[Any, np.ndarray | None, str]:
    """(model with every input but the first as an initializer, the first input's value, n/a reason or "")."""
    onnx = _onnx()
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    g = model.graph
    inits = {i.name for i in g.initializer}
    feeds = [i for i in g.input if i.name not in inits]
    if len(feeds) != len(inputs):
        return model, None, f"{len(feeds)} graph inputs but {len(inputs)} values"
    if not feeds:
        return model, None, "no graph input"
    for vi, value in zip(feeds, inputs):
        if not vi.type.HasField("tensor_type") or not isinstance(value, np.ndarray):
            return model, None, "a non-tensor input (sequence or optional)"
    x = inputs[0]
    if x.dtype.name in _HALF:
        return model, None, f"dtype {x.dtype.name} (cnnkit computes in float32)"
    for vi, value in zip(feeds[1:], inputs[1:]):  # listed as graph inputs still, as IR < 4 requires of initializers
        g.initializer.append(onnx.numpy_helper.from_array(value, vi.name))
    if np.issubdtype(x.dtype, np.floating) and x.dtype != np.float32:
        with np.errstate(over="ignore"):  # Cast's cases hold float64 values beyond float32 on purpose
            x = x.astype(np.float32)
    return model, x, ""


_RANK = re.compile(r"the input '[^']*' has rank (\d+);")
_PREFIX = re.compile(r"^.*?: cannot import it \(\d+ problem\(s\)\): ")
_NODE = re.compile(r"node '[^']*' \(([A-Za-z]+)\): ")


def short_reason(message: str) -> str:
    """An importer error as a short reason: the file and node names left out, each problem once."""
    text = _PREFIX.sub("", message)
    text = re.sub(r"^[^:]*\.onnx: ", "", text)
    parts = []
    for p in text.split("; "):
        p = _NODE.sub(r"\1: ", p)
        if p not in parts:
            parts.append(p)
    return "; ".join(parts)


def run_case(case: Case, workdir: str | os.PathLike[str] | None = None) -> Outcome:
    """Run one case through the importer and classify it."""
    onnx = _onnx()
    from cnnkit.errors import ModelFileError, OnnxError
    from cnnkit.onnx import load

    def out(status: str, reason: str = "") -> Outcome:
        return Outcome(case.name, case.kind, case.operator, status, reason)

    missing = [o for o in graph_ops(case.model) if o not in supported_ops()]
    if missing:
        return out(NA, f"uses {', '.join(missing)} (not imported)")
    if not case.data_sets:
        return out(NA, "no data sets")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for k, (inputs, expected) in enumerate(case.data_sets):
            model, x, why = _baked(case, inputs)
            if why:
                return out(NA, why)
            assert x is not None
            path = os.path.join(tmp, f"{k}.onnx")
            onnx.save(model, path)
            try:
                net = load(path)
            except OnnxError as exc:
                rank = _RANK.search(str(exc))
                if rank:
                    r = int(rank.group(1))
                    spatial = f"{r - 2}-D spatial, " if case.operator in SPATIAL and r >= 3 else ""
                    return out(NA, f"{spatial}rank-{r} input (cnnkit imports (N, C, H, W) or (N, features) inputs)")
                return out(NA, short_reason(str(exc)))
            except ModelFileError as exc:
                message = str(exc)
                if "element type" in message:
                    return out(NA, short_reason(message))
                return out(FAILED, f"ModelFileError: {short_reason(message)}")
            except Exception as exc:  # a crash in the importer is a failure
                return out(FAILED, f"import raised {type(exc).__name__}: {exc}")
            half = [np.asarray(e).dtype.name for e in expected if np.asarray(e).dtype.name in _HALF]
            if half:
                return out(NA, f"output dtype {half[0]} (cnnkit computes in float32)")
            if len(expected) != 1:
                return out(FAILED, f"imported although the case has {len(expected)} outputs")
            try:
                y = np.asarray(net.eval()(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x))
            except Exception as exc:
                return out(FAILED, f"forward raised {type(exc).__name__}: {exc}")
            ref = np.asarray(expected[0])
            if ref.ndim == 4 and y.ndim == 4:
                y = y.transpose(0, 3, 1, 2)
            if y.shape != ref.shape:
                return out(FAILED, f"output shape {y.shape}, expected {ref.shape}")
            try:
                np.testing.assert_allclose(y.astype(np.float64), ref.astype(np.float64), rtol=case.rtol, atol=case.atol)
            except AssertionError:
                err = np.abs(y.astype(np.float64) - ref.astype(np.float64))
                return out(FAILED, f"data set {k}: largest |error| {float(np.nanmax(err)):.3g} (outputs up to "
                                   f"{float(np.nanmax(np.abs(ref))):.3g})")
    return out(PASSED)


@functools.cache
def results() -> tuple[Outcome, ...]:
    """Every case in scope, run (once per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        return tuple(run_case(c, tmp) for c in cases())


_TEMPLATES = [
    (re.compile(r"the input '[^']*' has element type (\w+); cnnkit imports float inputs \(or uint8 images\)"),
     "input of element type {} (cnnkit imports float inputs, or uint8 images)"),
    (re.compile(r"Cast: a cast of a computed tensor to (\w+) \(cnnkit computes in floating point\)"),
     "Cast: a cast of a computed tensor to {} (cnnkit computes in floating point)"),
    (re.compile(r"tensor '[^']*' has element type (\w+), which cnnkit does not read"), "a constant of element type {} (not read)"),
    (re.compile(r"^dtype (\w+) \(cnnkit computes in float32\)$"), "input dtype {} (cnnkit computes in float32)"),
    (re.compile(r"^Flatten: axis=(-?\d+) \(cnnkit flattens whole examples, axis=1\)$"),
     "Flatten: axis={} (cnnkit flattens whole examples, axis=1)"),
    (re.compile(r"^rank-(\d+) input \(cnnkit imports \(N, C, H, W\) or \(N, features\) inputs\)$"),
     "rank-{} input (cnnkit imports (N, C, H, W) or (N, features) inputs)"),
]


def _grouped(reasons: Sequence[str]) -> Counter[str]:
    """The n/a reasons counted, those differing only in a dtype, axis or rank written once (the values listed)."""
    values: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for reason in reasons:
        for pattern, template in _TEMPLATES:
            m = pattern.search(reason)
            if m and m.group(0) == reason:
                values.setdefault(template, [])
                if m.group(1) not in values[template]:
                    values[template].append(m.group(1))
                counts[template] += 1
                break
        else:
            counts[reason] += 1
    return Counter({(t.format(", ".join(sorted(values[t]))) if t in values else t): n for t, n in counts.items()})


def table(outcomes: Sequence[Outcome] | None = None) -> dict[str, Row]:
    """Per operator (sorted): passed, failed, n/a counts, the n/a reasons (with counts) and the failed cases."""
    rows: dict[str, Row] = {}
    na: dict[str, list[str]] = {}
    for o in results() if outcomes is None else outcomes:
        row = rows.setdefault(o.operator, Row())
        if o.status == PASSED:
            row.passed += 1
        elif o.status == FAILED:
            row.failed += 1
            row.failures.append(f"{o.name}: {o.reason}")
        else:
            row.na += 1
            na.setdefault(o.operator, []).append(o.reason)
    for op, reasons in na.items():
        rows[op].reasons = _grouped(reasons)
    return dict(sorted(rows.items(), key=lambda kv: kv[0].lower()))


def markdown(rows: dict[str, Row], width: int = 160) -> str:
    def cell(s: str) -> str:
        s = s.replace("|", "\\|").replace("\n", " ")
        return s if len(s) <= width else s[: width - 1] + "…"

    lines = ["| operator | passed | failed | n/a | n/a reasons |", "|---|---:|---:|---:|---|"]
    for op, r in rows.items():
        reasons = "<br>".join(cell(f"{n}× {why}" if n > 1 else why) for why, n in r.reasons.most_common())
        lines.append(f"| {op} | {r.passed} | {r.failed} | {r.na} | {reasons} |")
    p, f, n = (sum(getattr(r, a) for r in rows.values()) for a in ("passed", "failed", "na"))
    lines.append(f"| **total** ({p + f + n} cases, {len(rows)} operators) | **{p}** | **{f}** | **{n}** | |")
    failures = [x for r in rows.values() for x in r.failures]
    if failures:
        lines += ["", "Failures:", *(f"* {cell(x)}" for x in failures)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("onnx is not installed: pip install onnx", file=sys.stderr)
        return 2
    rows = table()
    print(f"ONNX {_onnx().__version__} backend node tests (+ {', '.join(STORED_KINDS)}) through cnnkit.onnx.load; "
          f"rtol={RTOL:g}, atol={ATOL:g}\n")
    print(markdown(rows))
    return 1 if any(r.failed for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
