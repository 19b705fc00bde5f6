"""``cnnkit experiment ex15.6`` end to end, shrunken (parts b, c, g, j; at most 1,000 training examples, one
epoch, 200 test images): the parallel local executor, resume after ``kill -9`` or Ctrl-C, and the Ray executor on a local
Ray instance started here. Needs the real MNIST files ($CNNKIT_DATA) and skips without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cnnkit.experiment.ex15_6 import TITLES, plan
from tests.data import real_data_dir

PARTS = ("b", "c", "g", "j")
EPOCHS, MAX_TRAIN, TEST_LIMIT = 1, 1000, 200
JOBS, TABLE = plan(PARTS, EPOCHS, MAX_TRAIN, TEST_LIMIT)  # 5 runs: base, bn, sk-0.2 on 500 and 1,000, sk-0.2-sigmoid
N = len(JOBS)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# what differs between two runs of the same job: timings and the process that ran it
VOLATILE_RESULT = {"wall_seconds", "train_seconds", "pid", "resumed_after_epoch"}
VOLATILE_META = {"wall time of this invocation", "sum of run wall times", "executor", "workers x threads"}

START = re.compile(r"^\[(\d+)/(\d+)\] start  (\S+)$", re.M)
DONE = re.compile(r"^\[(\d+)/(\d+)\] done   (\S+): test error (\d+\.\d\d)% in (\d+)s; elapsed (\d+)s, ETA (\d+)s$", re.M)


def cli(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnnkit.cli", "experiment", "ex15.6", "--parts", ",".join(PARTS),
            "--max-train", str(MAX_TRAIN), "--epochs", str(EPOCHS), "--test-limit", str(TEST_LIMIT),
            "--threads", "1", "--out", str(out), "--data-dir", str(data_dir), *extra]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout)


def comparable(payload: dict) -> dict:
    """results.json without timings, pids and the executor's description."""
    return {"meta": {k: v for k, v in payload["meta"].items() if k not in VOLATILE_META},
            "parts": payload["parts"],
            "results": {k: {f: v for f, v in r.items() if f not in VOLATILE_RESULT} for k, r in payload["results"].items()}}


def check_report(out: Path, stdout: str, todo: set[str], executor: str) -> dict:
    """The report, results.json, plots and progress lines of a finished experiment; returns results.json."""
    payload = json.loads((out / "results.json").read_text())
    results = payload["results"]
    assert set(results) == set(JOBS)
    assert payload["meta"]["runs"] == N and payload["meta"]["executor"] == executor
    assert payload["parts"] == {p: [{"label": e.label, "job": e.job, "x": e.x} for e in es] for p, es in TABLE.items()}
    for key, r in results.items():
        assert r["key"] == key and r["config"] == JOBS[key].config.to_dict()
        assert r["epochs"] == EPOCHS and len(r["test_error_per_epoch"]) == EPOCHS
        assert 0 <= r["test_error"] <= 1 and 0 <= r["train_error"] <= 1 and r["wall_seconds"] > 0
        assert r["test_error"] * TEST_LIMIT == pytest.approx(round(r["test_error"] * TEST_LIMIT))  # k of 200 wrong
        assert r["threads"] == 1
        assert (out / "runs" / key / "result.json").is_file() and (out / "runs" / key / "model.npz").is_file()

    # one table per part: test error, training error, epochs, wall time, in the plan's order
    text = (out / "report.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    for part, entries in TABLE.items():
        [section] = [s for s in sections if s.startswith(TITLES[part] + "\n")]
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        assert rows[:2] == ["| configuration | test error | training error | epochs | wall time |", "| --- | --- | --- | --- | --- |"]
        assert len(rows) == 2 + len(entries)
        for e, row in zip(entries, rows[2:]):
            r = results[e.job]
            assert row == (f"| {e.label} | {100 * r['test_error']:.2f}% | {100 * r['train_error']:.2f}% | {EPOCHS} | "
                           f"{r['wall_seconds']:.0f} s{_resumed(r)} |")
    assert sum(s.startswith(tuple(TITLES.values())) for s in sections) == len(TABLE)

    # the plots of these parts: learning curves (b, c) and error against training-set size (g)
    pytest.importorskip("matplotlib")
    for name in ("test_error_curves.png", "error_vs_train_size.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert f"![{name}]({name})" in text
        try:
            from PIL import Image
        except ImportError:
            continue
        with Image.open(out / name) as im:
            im.verify()
    assert not (out / "error_vs_multiplier.png").exists()  # (f) was not run

    # progress: one line per run started and finished, with its test error, the overall count and an ETA
    starts, dones = START.findall(stdout), DONE.findall(stdout)
    assert sorted(k for *_, k in starts) == sorted(todo)
    assert sorted(d[2] for d in dones) == sorted(todo)
    assert [int(d[0]) for d in dones] == list(range(1, len(todo) + 1))
    assert all(int(d[1]) == len(todo) for d in starts + dones)
    for _done, _total, key, err, *_ in dones:
        assert err == f"{100 * results[key]['test_error']:.2f}"
    assert dones[-1][-1] == "0"  # nothing left
    assert f"report: {out / 'report.md'}" in stdout
    return payload


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted experiment with two local worker processes: its directory, output and results.json."""
    data_dir = real_data_dir()
    out = tmp_path_factory.mktemp("ex15.6") / "ref"
    proc = run_cli(cli(out, data_dir, "--workers", "2"))
    return {"out": out, "proc": proc, "data_dir": data_dir}


def test_parallel_local_executor(reference: dict) -> None:
    proc, out = reference["proc"], reference["out"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"exercise 15.6 parts b,c,g,j: {N} runs, 0 already finished, {N} to do "
                                  f"(local executor, 2 worker(s) x 1 thread(s))\n")
    payload = check_report(out, proc.stdout, set(JOBS), "local")
    assert payload["meta"]["workers x threads"] == "2 x 1"
    assert 1 <= len({r["pid"] for r in payload["results"].values()} - {os.getpid()}) <= 2  # worker processes

    # a rerun finds every run finished and only rewrites the report
    mtimes = {k: (out / "runs" / k / "result.json").stat().st_mtime_ns for k in JOBS}
    again = run_cli(cli(out, reference["data_dir"], "--workers", "2"))
    assert again.returncode == 0, again.stderr
    assert f"{N} runs, {N} already finished, 0 to do" in again.stdout
    assert not START.search(again.stdout) and not DONE.search(again.stdout)
    assert {k: (out / "runs" / k / "result.json").stat().st_mtime_ns for k in JOBS} == mtimes
    assert comparable(json.loads((out / "results.json").read_text())) == comparable(payload)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # an unreaped zombie has exited


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _resumed(r: dict) -> str:
    """A run interrupted after a checkpoint and finished by the rerun says so in its wall-time cell."""
    return f" (resumed after epoch {r['resumed_after_epoch']})" if r.get("resumed_after_epoch") else ""


def _finished(out: Path) -> dict[str, tuple[int, bytes]]:
    """The runs recorded finished (runs/<key>/result.json, written atomically): mtime and content."""
    found = {}
    for path in (out / "runs").glob("*/result.json"):
        with contextlib.suppress(OSError):
            found[path.parent.name] = (path.stat().st_mtime_ns, path.read_bytes())
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes through /proc")
@pytest.mark.parametrize("how", ["kill-9", "ctrl-c"])
def test_resume_after_interrupt(reference: dict, tmp_path: Path, how: str) -> None:
    """Interrupt the experiment once some runs are finished: ``kill -9`` of the experiment process alone, or
    Ctrl-C (SIGINT to its whole process group). Its workers end too; the rerun skips the finished runs, leaves
    their records untouched and reports the uninterrupted run's numbers."""
    out, data_dir = tmp_path / "exp", reference["data_dir"]
    with open(tmp_path / "killed.log", "wb") as log:
        # SIG_DFL for SIGINT in the child: a test run started in the background (`cmd &` without job control)
        # inherits SIGINT ignored, and then no Python process below it would ever see the Ctrl-C
        victim = subprocess.Popen(cli(out, data_dir, "--workers", "2"), env=env(), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 240
        workers: list[int] = []
        while not _finished(out):
            workers = _children(victim.pid) or workers
            if victim.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no run finished before the experiment ended (rc {victim.returncode}): "
                            f"{(tmp_path / 'killed.log').read_text()}")
            time.sleep(0.01)
        workers = _children(victim.pid) or workers
        if how == "kill-9":
            os.kill(victim.pid, signal.SIGKILL)
            assert victim.wait(30) == -signal.SIGKILL
        else:
            os.killpg(victim.pid, signal.SIGINT)
            assert victim.wait(60) == 130
            killed_log = (tmp_path / "killed.log").read_text()
            assert killed_log.endswith("cnnkit: interrupted\n") and "Traceback" not in killed_log, killed_log
        # the worker processes (and multiprocessing's resource tracker) exit too: no orphan keeps training
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers and not [p for p in workers if _alive(p)], "worker processes outlived the interrupted experiment"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(victim.pid, signal.SIGKILL)  # whatever is left of the process group this test started
    before = _finished(out)
    assert 1 <= len(before) < N, f"{len(before)} of {N} runs were finished when interrupted"
    assert not (out / "report.md").exists()

    resumed = run_cli(cli(out, data_dir, "--workers", "2"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{N} runs, {len(before)} already finished, {N - len(before)} to do" in resumed.stdout
    payload = check_report(out, resumed.stdout, set(JOBS) - set(before), "local")
    after = _finished(out)
    assert {k: after[k] for k in before} == before  # the finished runs were not run again
    ref = json.loads((reference["out"] / "results.json").read_text())
    assert comparable(payload) == comparable(ref)


def test_serial_in_process_run_restores_blas_threads(reference: dict, tmp_path: Path) -> None:
    """workers=1 trains in this process, pinning BLAS to --threads for the run only; same numbers as the pool."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from cnnkit.experiment import run_ex15_6

    before = {m["filepath"]: m["num_threads"] for m in threadpoolctl.threadpool_info()}
    lines: list[str] = []
    run_ex15_6(tmp_path, ("b",), str(reference["data_dir"]), workers=1, threads=1, epochs=EPOCHS, max_train=MAX_TRAIN,
               test_limit=TEST_LIMIT, log=lines.append)
    after = {m["filepath"]: m["num_threads"] for m in threadpoolctl.threadpool_info()}
    assert {k: after.get(k) for k in before} == before  # libraries the run loads (numba's OpenMP) may join
    assert lines[0].endswith("(local executor, 1 worker(s) x 1 thread(s))")
    key = TABLE["b"][0].job
    got = json.loads((tmp_path / "results.json").read_text())["results"][key]
    ref = json.loads((reference["out"] / "results.json").read_text())["results"][key]
    assert got["pid"] == os.getpid()
    assert {k: v for k, v in got.items() if k not in VOLATILE_RESULT} == {k: v for k, v in ref.items() if k not in VOLATILE_RESULT}


# -- Ray ----------------------------------------------------------------------------------------------------

@pytest.fixture
def ray_address(monkeypatch: pytest.MonkeyPatch):
    """A local Ray instance with two CPUs, started (and shut down) here; yields its GCS address."""
    ray = pytest.importorskip("ray")
    for k, v in env().items():
        if k.startswith("RAY_"):
            monkeypatch.setenv(k, v)
    temp = tempfile.mkdtemp(prefix="cnnkit-ray-")  # short: Ray's socket paths live under it
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_executor(reference: dict, ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    proc = run_cli(cli(out, reference["data_dir"], "--executor", "ray", "--address", ray_address))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{N} runs, 0 already finished, {N} to do (ray executor, cluster worker(s) x 1 thread(s))" in proc.stdout
    payload = check_report(out, proc.stdout, set(JOBS), "ray")
    assert os.getpid() not in {r["pid"] for r in payload["results"].values()}
    ref = json.loads((reference["out"] / "results.json").read_text())
    assert comparable(payload) == comparable(ref)  # the same numbers as the local executor's
