"""``mpiexec -n 2`` and ``-n 4`` (oversubscribing this machine) running ``cnnkit train --distributed`` on real MNIST:
the same model as one process, files from rank 0 only, exact resume after ``kill -9`` of a rank (on the same and on
another number of ranks), and faults that stop every rank with one line instead of a hang.

Skipped without mpi4py and mpiexec (``pip install 'cnnkit[mpi]'``) or without the MNIST files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnkit.serialize import load_arrays
from cnnkit.train import TrainConfig
from tests.data import real_data_dir
from tests.distributed import SHIM, descendants, need_mpi, rank_env, rank_pids, relative_gap
from tests.distributed.cnnkit_mpi import has_flag

#: MNIST 28x28 -> 24 -> 12 -> 8 -> 4 -> 1x1x10; average pooling, so that no argmax decides between near-equal values
NET = "conv5x5x1x4,avgpool2,tanh,conv5x5x4x8,avgpool2,tanh,conv4x4x8x10"
SETTINGS = {"train_limit": 300, "batch_size": 50, "test_limit": 200, "epochs": 3}
TIMING = {"seconds", "images_per_s", "sync_seconds", "ranks"}
F32 = 2e-5  # relative to the largest weight; measured ~1e-7 (docs/distributed.md)


def _argv(out: Path, *extra: str, **settings: object) -> list[str]:
    s = {**SETTINGS, **settings}
    argv = [sys.executable, str(SHIM), "train", "--model", NET, "--data-dir", str(real_data_dir()), "--no-progress", "--out", str(out)]
    for key, value in s.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return [*argv, "--distributed", *extra]


def _mpiexec(n: int, out: Path, *extra: str, **settings: object) -> list[str]:
    return [*need_mpi(), "-n", str(n), *_argv(out, *extra, **settings)]


def _run(cmd: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=rank_env(**env), capture_output=True, text=True, timeout=timeout)


def _weights(run_dir: Path) -> dict:
    arrays, _ = load_arrays(run_dir / "model.npz")
    return {k: v for k, v in arrays.items() if k.startswith(("param/", "buffer/"))}


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(s).items() if k not in TIMING} for s in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(load_arrays(checkpoint)[1]["epoch"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def _end(proc: subprocess.Popen, pids: list[int]) -> None:
    """Kill what this test started and is still running (the launcher and its ranks, by pid; a pid is checked to still
    be one of ours, a rank of the shim or MPICH's proxy, before it is killed)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(SHIM).encode() in cmdline or b"hydra_pmi_proxy" in cmdline:
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(one process's run, 2 ranks' run) of the same configuration; the 2-rank run keeps its learning curves."""
    from cnnkit.train.run import train

    need_mpi()
    root = tmp_path_factory.mktemp("mpi")
    one = root / "one"
    with pytest.MonkeyPatch.context() as mp:  # no learning curves here (seconds of matplotlib); the 2-rank run draws them
        mp.setattr("cnnkit.train.plots.learning_curves", lambda *args, **kwargs: False)
        train(TrainConfig(model=NET, **SETTINGS), one, data_dir=str(real_data_dir()), progress=False,  # type: ignore[arg-type]
              log=lambda line: None)
    two = root / "two"
    done = _run(_mpiexec(2, two), root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done: ") == 1 and done.stdout.count("epoch   3") == 1, done.stdout  # rank 0 logs, alone
    return one, two


def test_two_ranks_train_the_model_one_process_trains(reference: tuple[Path, Path]) -> None:
    one, two = reference
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and relative_gap(b, a) < F32
    ra, rb = _records(one), _records(two)
    assert [r["test_confusion"] for r in ra] == [r["test_confusion"] for r in rb]
    assert all(abs(x["train_loss"] - y["train_loss"]) < 1e-4 for x, y in zip(ra, rb))
    # rank 0 alone wrote the directory: the files of a one-process run, no temporaries, no lock left
    from cnnkit.train.plots import have_matplotlib

    assert sorted(p.name for p in two.iterdir()) == sorted([p.name for p in one.iterdir()] + (["curves.png"] if have_matplotlib() else []))
    assert [json.loads(s)["ranks"] for s in (two / "metrics.jsonl").read_text().splitlines()] == [2, 2, 2]


def test_kill_9_of_a_rank_then_resume_on_2_and_on_4_ranks(reference: tuple[Path, Path], tmp_path: Path) -> None:
    """Rank 1 is killed after the first checkpoint: mpiexec ends every rank (no hang). ``--resume`` on 2 ranks gives the
    uninterrupted 2-rank run bit for bit; the same checkpoint resumed on 4 ranks gives it to rounding."""
    _, two = reference
    run = tmp_path / "run"
    proc = subprocess.Popen(_mpiexec(2, run), cwd=tmp_path, env=rank_env(CNNKIT_TEST_NO_PLOTS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        ranks: dict[int, int] = {}
        while _epoch_of(run / "checkpoint.npz") < 1:
            if len(ranks) < 2:
                ranks = rank_pids(proc.pid)
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run ended (rc {proc.returncode}) before epoch 1 was checkpointed")
            time.sleep(0.005)
        ranks = ranks if len(ranks) == 2 else rank_pids(proc.pid)
        pids = [*descendants(proc.pid)]
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.monotonic()
        rc = proc.wait(30)
        stopped_after = time.monotonic() - t0
        output = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        _end(proc, pids)
    assert rc != 0 and stopped_after < 20, output
    assert not [p for p in pids if Path(f"/proc/{p}").exists() and "python" in Path(f"/proc/{p}/cmdline").read_text()]
    killed_at = _epoch_of(run / "checkpoint.npz")
    assert 1 <= killed_at < 3 and not (run / "model.npz").exists(), output
    other = tmp_path / "other"
    shutil.copytree(run, other)

    resumed = _run(_mpiexec(2, run, "--resume"), tmp_path, CNNKIT_TEST_NO_PLOTS="1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming {run} after epoch {killed_at}" in resumed.stdout
    a, b = _weights(two), _weights(run)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert _records(run) == _records(two)

    on_four = _run(_mpiexec(4, other, "--resume"), tmp_path, CNNKIT_TEST_NO_PLOTS="1")
    assert on_four.returncode == 0, on_four.stdout + on_four.stderr
    assert relative_gap(_weights(other), a) < F32
    assert [json.loads(s)["ranks"] for s in (other / "metrics.jsonl").read_text().splitlines()] == [2] * killed_at + [4] * (3 - killed_at)


def test_ranks_started_with_other_settings_stop_with_one_line(tmp_path: Path) -> None:
    mpiexec = need_mpi()
    cmd = [*mpiexec, "-n", "1", *_argv(tmp_path / "run", "--seed", "0"), ":", "-n", "1", *_argv(tmp_path / "run", "--seed", "1")]
    done = _run(cmd, tmp_path, timeout=60, CNNKIT_TEST_NO_PLOTS="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "cnnkit train: error: the 2 processes were not started alike (each must run the same command on the same data): "
        "config seed: rank 0 has 0, rank 1 has 1"]
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_an_error_on_one_rank_alone_aborts_every_rank(tmp_path: Path) -> None:
    mpiexec = need_mpi()
    empty = tmp_path / "empty"
    empty.mkdir()
    good = _argv(tmp_path / "run")
    bad = [*good[: good.index("--data-dir") + 1], str(empty), *good[good.index("--data-dir") + 2 :]]
    t0 = time.monotonic()
    done = _run([*mpiexec, "-n", "1", *good, ":", "-n", "1", *bad], tmp_path, timeout=60, CNNKIT_TEST_NO_PLOTS="1")
    assert done.returncode != 0 and time.monotonic() - t0 < 50
    lines = [s for s in done.stderr.splitlines() if s.startswith("cnnkit: rank 1 of 2: ")]
    assert len(lines) == 1 and "DatasetNotFoundError: mnist: missing" in lines[0] and str(empty) in lines[0], done.stderr


def test_a_rank_that_stops_answering_is_caught_by_the_timeout(tmp_path: Path) -> None:
    """SIGSTOP freezes rank 1 (a hung process, a lost node): rank 0 gives up after --distributed-timeout and aborts."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_mpiexec(2, run, "--distributed-timeout", "2"), cwd=tmp_path, env=rank_env(CNNKIT_TEST_NO_PLOTS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while _epoch_of(run / "checkpoint.npz") < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run ended (rc {proc.returncode}) before epoch 1 was checkpointed")
            time.sleep(0.005)
        ranks = rank_pids(proc.pid)
        pids = descendants(proc.pid)
        os.kill(ranks[1], signal.SIGSTOP)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - t0
    finally:
        _end(proc, pids)
    assert proc.returncode != 0 and 2 <= stopped_after < 20, err
    lines = [s for s in err.splitlines() if s.startswith("cnnkit: rank 0 of 2: no answer from the other processes for 2 s in ")]
    assert len(lines) == 1 and lines[0].endswith("(a process died, hangs or cannot be reached); stopping every process"), err


def test_the_command_line_offers_the_flag() -> None:
    """``cnnkit train --distributed`` itself (until cli.py adds the flag the tests run it through tests/distributed/cnnkit_mpi.py)."""
    if not has_flag():
        pytest.skip("cnnkit.cli does not offer --distributed yet: add_distributed_flag(train parser) and train(..., distributed=...)")
    assert has_flag()
