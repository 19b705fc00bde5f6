"""The benchmark: its statistics (rounds, medians, spreads, flags), rows, tables and targets, the runner's
rounds with stand-in children, the child protocol on a tiny workload, and the onnxruntime engine.

The whole ``cnnkit bench`` command on tiny work runs in tests/test_cli.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.bench import Row, flag, format_scaling_table, format_table, plot_scaling, summarize
from cnnkit.bench import memory as bench_memory
from cnnkit.bench import runner as bench_runner
from cnnkit.bench.engines import ENGINES, have_onnxruntime
from cnnkit.bench.ex156 import HOW, ex156_row
from cnnkit.bench.jobs import Job, run_in_child
from cnnkit.bench.options import BenchOptions
from cnnkit.bench.report import COLUMNS, format_targets
from cnnkit.bench.stats import from_medians, spread
from cnnkit.bench.workloads import EX156_ROW, MEMORY_ROW, NETWORKS, TARGETS, Network

CURVES = {
    "batch": [{"x": 1, "batch": 1, "cnnkit": 100.0, "torch": 200.0}, {"x": 4, "batch": 4, "cnnkit": 400.0, "torch": 300.0}],
    "multiplier": [{"x": 0.2, "batch": 100, "cnnkit": 5.0}],
    "image_size": [{"x": 32, "batch": 64, "cnnkit": 150.0, "torch": 300.0}],
}

TINY = Network("tiny inference, batch 2", "conv3x3x1x4,relu,pool2,fc10", (8, 8, 1), 2, False)
TINY_TRAIN = Network("tiny training, batch 2", "conv3x3x1x4,relu,pool2,fc10", (8, 8, 1), 2, True)


# -- tables and rows ------------------------------------------------------------------------------------

def test_scaling_table_has_a_row_per_point_and_ratios() -> None:
    lines = format_scaling_table(CURVES).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2].endswith("| 100 | 200 | 0.50x |") and lines[3].endswith("| 400 | 300 | 1.33x |")
    assert lines[4].endswith("| 5.00 | - | - |")  # no PyTorch column: no ratio


def test_table_ratio_uses_the_faster_torch_layout() -> None:
    row = Row("BASE training step", "img/s", 5000.0, 4000.0, 6250.0)
    assert row.ratio == pytest.approx(0.8)
    assert "0.80x" in format_table([row])


def test_scaling_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "scaling.png"
    assert plot_scaling(CURVES, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_ratio_compares_with_the_leaner_torch_layout() -> None:
    row = Row("peak RSS", "MiB", 7800.0, 2400.0, 2350.0)
    assert row.torch_best == 2350.0 and row.ratio == pytest.approx(7800 / 2350)


def test_inference_ratio_is_against_the_best_of_torch_and_onnxruntime() -> None:
    row = Row("BASE inference, batch 100", "img/s", 30000.0, 10000.0, 20000.0, ort=25000.0)
    assert row.best_peer == 25000.0 and row.ratio == pytest.approx(1.2)
    assert row.ratio_to("torch") == pytest.approx(1.5) and row.ratio_to("ort") == pytest.approx(1.2)


def test_latency_ratio_reads_times_as_fast() -> None:
    row = Row("BASE inference latency, batch 1", "ms", 0.2, 0.5, 0.4, ort=0.3)
    assert row.best_peer == 0.3  # the fastest peer has the lowest latency
    assert row.ratio == pytest.approx(1.5) and row.ratio_to("torch") == pytest.approx(2.0)


def test_missing_peers_give_no_ratio() -> None:
    row = Row("cnnkit only", "img/s", 100.0)
    assert row.ratio is None and row.ratio_to("ort") is None
    assert format_table([row]).splitlines()[-1].split()[-2:] == ["-", "-"]  # ratio and spread


# -- rounds, medians, spreads, flags --------------------------------------------------------------------

def test_median_over_rounds_of_each_rounds_median() -> None:
    s = summarize([[1.0, 9.0, 2.0], [3.0, 3.0, 3.0, 100.0], [2.5]])
    assert s.round_medians == [2.0, 3.0, 2.5]
    assert s.median == 2.5
    assert s.spread == pytest.approx((3.0 - 2.0) / 2.5)


def test_spread_needs_two_rounds_and_empty_rounds_are_skipped() -> None:
    assert spread([1.0]) is None and spread([]) is None
    s = summarize([[], [2.0, 2.0]])
    assert s.round_medians == [2.0] and s.spread is None and s.flag == ""
    with pytest.raises(ValueError, match="no round"):
        summarize([[], []])
    assert from_medians([1.0, 1.05, 0.97]).flag == ""


@pytest.mark.parametrize("value, expected", [(None, ""), (float("nan"), ""), (0.0, ""), (0.1, ""), (0.1001, "~"),
                                             (0.25, "~"), (0.2501, "!"), (6.0, "!")])
def test_flag_thresholds(value: float | None, expected: str) -> None:
    assert flag(value) == expected


def test_a_row_is_flagged_by_its_noisiest_column() -> None:
    row = Row("BASE training, batch 100", "img/s", 5000.0, 4000.0, 6000.0, spreads={"cnnkit": 0.02, "torch_nchw": 0.3,
                                                                                      "torch_cl": None})
    assert row.spread == 0.3 and row.flag == "!"
    assert format_table([row]).splitlines()[-1].endswith("30.0% !")
    quiet = Row("x", "img/s", 1.0, 1.0, spreads={"cnnkit": 0.12, "torch_nchw": 0.01})
    assert quiet.flag == "~"
    assert Row("x", "img/s", 1.0, failed=1).flag == "?"  # a round failed: fewer rounds than asked for
    target = TARGETS[0]
    flagged = Row(target.row, "img/s", 2000.0, 1000.0, spreads={"cnnkit": 0.5})
    assert "2.00x met !" in format_targets({2: [flagged]})  # a verdict carries its row's flag


def test_rounds_rotate_the_engines() -> None:
    fields = [[c.field for c in bench_runner.rotated(COLUMNS, r)] for r in range(4)]
    assert fields[0] == ["cnnkit", "torch_nchw", "torch_cl", "ort"]
    assert fields[1] == ["torch_nchw", "torch_cl", "ort", "cnnkit"]
    assert {f[0] for f in fields} == {c.field for c in COLUMNS}  # each engine goes first once in four rounds


def test_onnxruntime_has_no_column_in_training_rows() -> None:
    train, infer = bench_runner.Item(TINY_TRAIN), bench_runner.Item(TINY)
    assert [c.field for c in bench_runner.columns_for(train, COLUMNS)] == ["cnnkit", "torch_nchw", "torch_cl"]
    assert [c.field for c in bench_runner.columns_for(infer, COLUMNS)] == ["cnnkit", "torch_nchw", "torch_cl", "ort"]
    with pytest.raises(ValueError, match="inference only"):
        ENGINES["ort"].step(TINY_TRAIN, "nchw")


# -- the runner, with stand-in children -------------------------------------------------------------------

class FakeChildren:
    """Stands in for run_in_child: records the jobs, answers each with made-up per-call times."""

    def __init__(self, seconds: dict[str, list[float]], conv_seconds: float = 1e-3) -> None:
        self.seconds = seconds  # per engine/layout key: the median per round, in order
        self.conv_seconds = conv_seconds
        self.jobs: list[Job] = []
        self.calls: dict[str, int] = {}

    def __call__(self, job: Job, timeout: float | None = None) -> dict[str, Any]:
        self.jobs.append(job)
        key = f"{job.engine}/{job.layout}"
        if job.measure == "sgemm":
            return {"gflops": 100.0, "times": [0.1], "median": 0.1}
        if job.measure == "peak_memory":
            return {"peak_mib": {"cnnkit/nhwc": 300.0, "torch/nchw": 200.0, "torch/channels_last": 250.0}.get(key, 1.0)}
        if job.measure == "conv":
            f = self.conv_seconds
            fb = None if job.engine == "ort" else {"times": [3 * f] * 3, "median": 3 * f}
            return {"forward": {"times": [f] * 3, "median": f}, "forward_backward": fb}
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        t = self.seconds[key][n % len(self.seconds[key])]
        return {"times": [t, t, 5 * t], "median": t}


def test_rounds_interleave_engines_and_give_median_and_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChildren({"cnnkit/nhwc": [0.010, 0.011, 0.009], "torch/nchw": [0.020, 0.020, 0.020],
                         "torch/channels_last": [0.015, 0.030, 0.016], "ort/nchw": [0.0125]})
    monkeypatch.setattr(bench_runner, "run_in_child", fake)
    logs: list[str] = []
    todo = [bench_runner.Item(TINY)]
    rows, dropped, failed = bench_runner.timed_rows(2, 3, 0.0, COLUMNS, todo, logs.append)
    assert not dropped and not failed
    order = [(j.engine, j.layout) for j in fake.jobs]
    assert order[:4] == [("cnnkit", "nhwc"), ("torch", "nchw"), ("torch", "channels_last"), ("ort", "nchw")]
    assert order[4:8] == [("torch", "nchw"), ("torch", "channels_last"), ("ort", "nchw"), ("cnnkit", "nhwc")]
    assert all(j.threads == 2 and j.measure == "time" and j.options == {"min_time": 0.0} for j in fake.jobs)
    (row,) = rows
    assert row.unit == "img/s" and row.threads == 2
    assert row.cnnkit == pytest.approx(2 / 0.010) and row.torch_cl == pytest.approx(2 / 0.016)
    assert row.ort == pytest.approx(2 / 0.0125)
    assert row.spreads["cnnkit"] == pytest.approx(0.002 / 0.010)
    assert row.spreads["torch_cl"] == pytest.approx(0.015 / 0.016) and row.flag == "!"
    assert row.ratio == pytest.approx(0.0125 / 0.010)  # against ORT, the fastest peer
    assert len(row.raw["cnnkit"]) == 3 and row.rounds["cnnkit"] == pytest.approx([200.0, 2 / 0.011, 2 / 0.009])
    assert len(logs) == 3 and "round 3/3" in logs[-1]


def test_layer_rows_take_at_least_0_2_s_and_short_calls_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChildren({}, conv_seconds=1e-3)
    monkeypatch.setattr(bench_runner, "run_in_child", fake)
    layer = bench_runner.items(layers=True)[len(NETWORKS)]  # BASE's first convolution
    rows, dropped, _ = bench_runner.timed_rows(1, 1, 0.0, COLUMNS, [layer], lambda s: None)
    assert all(j.measure == "conv" and j.options["min_time"] == 0.2 and j.options["layer"] == 0 for j in fake.jobs)
    fwd, bwd = rows
    assert fwd.name.endswith("forward") and bwd.name.endswith("backward (no dX)")
    assert fwd.cnnkit == pytest.approx(layer.conv.flops / 1e-3 / 1e9)
    assert bwd.cnnkit == pytest.approx(layer.conv.flops / 2e-3 / 1e9) and bwd.ort is None
    fake.conv_seconds = 20e-6
    rows, dropped, _ = bench_runner.timed_rows(1, 1, 0.0, COLUMNS, [layer], lambda s: None)
    assert rows == [] and len(dropped) == 2 and "too short to time" in dropped[0]


def test_run_writes_json_markdown_and_targets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeChildren({"cnnkit/nhwc": [0.010], "torch/nchw": [0.020], "torch/channels_last": [0.016], "ort/nchw": [0.012]})
    monkeypatch.setattr(bench_runner, "run_in_child", fake)
    monkeypatch.setattr(bench_memory, "run_in_child", fake)
    monkeypatch.setattr(bench_runner, "selected_engines", lambda options: list(ENGINES.values()))
    logs: list[str] = []
    opts = BenchOptions(threads=(1, 2), rounds=2, min_time=0.0, json=str(tmp_path / "b.json"),
                        markdown=str(tmp_path / "b.md"))
    results = bench_runner.run(opts, logs.append)
    assert [r["threads"] for r in results["runs"]] == [1, 2]
    names = [r["name"] for r in results["runs"][0]["rows"]]
    assert names == [n.name for n in NETWORKS] + [MEMORY_ROW]
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["info"]["options"]["rounds"] == 2 and saved["info"]["cores"] >= 1
    assert "numpy" in saved["info"]["versions"] and saved["runs"][0]["sgemm_gflops"] == 100.0
    first = saved["runs"][0]["rows"][0]
    assert first["onnxruntime"] is None and len(first["raw_seconds"]["cnnkit"]) == 2  # training: no ORT; every round's times
    memory = saved["runs"][0]["rows"][-1]
    assert memory["unit"] == "MiB" and memory["ratio"] == pytest.approx(300 / 200)
    met = {(t["target"], t["threads"]): t["met"] for t in saved["targets"]}
    assert met[(TARGETS[0].describe(), 1)] is True  # 0.016 s (torch CL) / 0.010 s = 1.6x >= 1.5x
    assert met[(TARGETS[-1].describe(), 2)] is None  # ex15.6: not measured without --ex156
    md = (tmp_path / "b.md").read_text()
    assert "#### 1 thread" in md and "#### 2 threads" in md
    assert "| workload | unit | cnnkit | torch | torch CL | ORT | ratio | spread |" in md
    assert HOW in md and "Targets" in md
    text = "\n".join(logs)
    assert "== 2 threads ==" in text and "cnnkit bench took" in text


# -- targets and exercise 15.6 ------------------------------------------------------------------------------

def test_targets_are_judged_on_each_thread_counts_ratios() -> None:
    rows = [Row(NETWORKS[0].name, "img/s", 1600.0, 1000.0, 800.0), Row(MEMORY_ROW, "MiB", 1300.0, 1000.0, 1100.0)]
    ex = Row(EX156_ROW, "min", 14.0)
    text = format_targets({1: rows}, [ex])
    assert f"{TARGETS[0].describe()}" in text and "1.60x met" in text
    assert "1.30x MISSED" in text and "14.0 min met" in text and "not measured" in text


def test_ex156_row_reads_a_finished_experiment(tmp_path: Path) -> None:
    row, record = ex156_row(None)
    assert math.isnan(row.cnnkit) and row.note == HOW and not record["measured"]
    meta = {"parts": "b,c", "runs": 2, "workers x threads": "2 x 1", "wall time of this invocation": "810 s",
            "sum of run wall times": "1500 s"}
    (tmp_path / "results.json").write_text(json.dumps({"meta": meta, "results": {}}))
    row, record = ex156_row(tmp_path)
    assert row.cnnkit == pytest.approx(13.5) and record["seconds"] == 810
    assert "parts b,c only" in row.note  # not the whole exercise
    row, record = ex156_row(tmp_path / "missing")
    assert math.isnan(row.cnnkit) and "no results.json" in row.note


# -- memory ---------------------------------------------------------------------------------------------------

def test_peak_memory_reads_vm_hwm() -> None:
    assert bench_memory._vm_hwm_kib("VmPeak:\t 2048 kB\nVmHWM:\t 1024 kB\n") == 1024.0
    assert bench_memory._vm_hwm_kib("Name: x\n") is None
    assert bench_memory.peak_rss_mib() > 1


# -- the child protocol, for real on a tiny workload ------------------------------------------------------------

def test_job_round_trips_and_old_jobs_still_parse() -> None:
    job = Job("time", "cnnkit", "nhwc", 2, TINY, {"min_time": 0.5})
    assert Job.from_json(job.to_json()) == job
    sgemm = Job("sgemm", "cnnkit", "nhwc", 1, None)
    assert Job.from_json(sgemm.to_json()) == sgemm
    old = json.dumps({"measure": "peak_memory", "engine": "torch", "layout": "nchw", "threads": 1, "workload": TINY.to_json()})
    assert Job.from_json(old).options == {}
    with pytest.raises(ValueError, match="exactly"):
        Job.from_json(json.dumps({"measure": "time"}))
    with pytest.raises(ValueError, match="layout"):
        Job.from_json(Job("time", "ort", "channels_last", 1, TINY).to_json())


def test_child_times_a_tiny_workload() -> None:
    res = run_in_child(Job("time", "cnnkit", "nhwc", 1, TINY, {"min_time": 0, "min_repeats": 4}), timeout=120)
    assert res["engine"] == "cnnkit" and res["threads"] == 1
    assert len(res["times"]) == 4 and all(t > 0 for t in res["times"])
    assert res["median"] == pytest.approx(float(np.median(res["times"])), rel=1e-6)



@pytest.mark.parametrize("options, fragment", [({"min_time": -1}, "option min_time"), ({"warmup": 1.5}, "option warmup"),
                                               ({"min_time": float("inf")}, "option min_time")])
def test_child_rejects_bad_options_before_loading_anything(options: dict, fragment: str, capsys: pytest.CaptureFixture) -> None:
    from cnnkit.bench import child

    assert child.main([Job("time", "cnnkit", "nhwc", 1, TINY, options).to_json()]) == 2
    assert fragment in capsys.readouterr().err
    assert child.main(["{}", "{}"]) == 2 and child.main(["not json"]) == 2


@pytest.mark.skipif(not have_onnxruntime(), reason="onnxruntime or onnx not installed")
def test_onnxruntime_engine_runs_cnnkits_network_and_weights() -> None:
    from cnnkit.bench.engines import ort_session
    from cnnkit.models import BuildOptions, build

    rng = np.random.default_rng(0)
    net = build(TINY.spec, TINY.input_shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((TINY.batch, *TINY.input_shape), dtype=np.float32)
    sess = ort_session(net, TINY.input_shape, threads=1)
    assert sess.get_session_options().intra_op_num_threads == 1 and sess.get_session_options().inter_op_num_threads == 1
    (y,) = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    np.testing.assert_allclose(y.reshape(TINY.batch, -1), net.forward(x, train=False).reshape(TINY.batch, -1), atol=1e-5)
    from cnnkit.bench.child import measure_time

    res = measure_time(ENGINES["ort"], Job("time", "ort", "nchw", 1, TINY, {"min_time": 0}))  # the child's measure, in process
    assert len(res["times"]) == 3 and res["median"] > 0
