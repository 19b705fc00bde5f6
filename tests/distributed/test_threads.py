"""Data parallelism's rules, with K ranks as threads of this process (no MPI needed): the same answer as one
process, the batch split, dropout and augmentation draws, batch-norm statistics, faults, the run directory."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnkit
from cnnkit.data.augment import parse as parse_augment
from cnnkit.data.source import ArraySource
from cnnkit.errors import MissingDependencyError
from cnnkit.nn import Dropout, SoftmaxCrossEntropy
from cnnkit.optim import SGD, Adam
from cnnkit.train import Callback, TrainConfig, Trainer, TrainingDiverged, run_epochs
from cnnkit.train.distributed import (
    DataParallel,
    DistributedError,
    MPICommunicator,
    SingleProcess,
    add_distributed_flag,
    communicator_from_args,
    run_in_threads,
    shard_bounds,
)
from cnnkit.train.loop import evaluate
from tests.distributed import BN, DROPOUT, RTOL, SMOOTH, net, relative_gap, toy

TIMING = {"seconds", "images_per_s", "sync_seconds", "ranks"}


def _fit(comm: Any, spec: str = SMOOTH, dtype: type = np.float64, n: int = 120, batch_size: int = 32, epochs: int = 1,
         optimizer: type = SGD, **kwargs: Any) -> tuple[dict, list[dict]]:
    model = net(spec, dtype)
    opt = optimizer(model, lr=0.05, momentum=0.9) if optimizer is SGD else optimizer(model, lr=0.01)
    x, y = toy(n, dtype)
    history = cnnkit.fit(model, (x, y), epochs=epochs, batch_size=batch_size, optimizer=opt, seed=5, distributed=comm,
                         test_data=toy(50, dtype, seed=1), **kwargs)
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}, history.records


def _same_on_every_rank(outs: list) -> bool:
    return all(all(np.array_equal(outs[0][0][k], o[0][k]) for k in outs[0][0]) for o in outs[1:])


def test_one_rank_is_bit_identical_to_no_distribution() -> None:
    alone, rec_alone = _fit(None, DROPOUT, np.float32, epochs=2)
    one, rec_one = _fit(SingleProcess(), DROPOUT, np.float32, epochs=2)
    assert all(np.array_equal(alone[k], one[k]) for k in alone)
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in rec_one] == \
           [{k: v for k, v in r.items() if k not in TIMING} for r in rec_alone]
    assert rec_one[-1]["ranks"] == 1 and "ranks" not in rec_alone[-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_k_ranks_end_where_one_process_does(dtype: type, k: int) -> None:
    """A full epoch plus one: 120 examples in batches of 32 (the last one uneven: 24 rows over k ranks)."""
    ref, rec_ref = _fit(None, SMOOTH, dtype, epochs=2)
    outs = run_in_threads(k, lambda comm: _fit(comm, SMOOTH, dtype, epochs=2))
    assert _same_on_every_rank(outs)
    assert relative_gap(outs[0][0], ref) < RTOL[np.dtype(dtype)]
    for got, want in zip(outs[0][1], rec_ref):
        assert got["ranks"] == k and got["test_confusion"] == want["test_confusion"]
        assert abs(got["train_loss"] - want["train_loss"]) < 1e3 * RTOL[np.dtype(dtype)]
        assert abs(got["test_loss"] - want["test_loss"]) < 1e3 * RTOL[np.dtype(dtype)]


def test_adam_too() -> None:
    ref, _ = _fit(None, SMOOTH, optimizer=Adam)
    outs = run_in_threads(3, lambda comm: _fit(comm, SMOOTH, optimizer=Adam))
    assert _same_on_every_rank(outs) and relative_gap(outs[0][0], ref) < RTOL[np.dtype(np.float64)]


def test_batch_split_rule() -> None:
    for m in (1, 2, 5, 31, 100):
        for k in (1, 2, 3, 4, 7):
            parts = [shard_bounds(m, k, r) for r in range(k)]
            assert parts[0][0] == 0 and parts[-1][1] == m and all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1


def test_batches_smaller_than_the_number_of_ranks() -> None:
    """7 examples in batches of 3 over 4 ranks: every step leaves one rank (or more) without rows."""
    ref, _ = _fit(None, BN, n=7, batch_size=3)
    outs = run_in_threads(4, lambda comm: _fit(comm, BN, n=7, batch_size=3))
    assert _same_on_every_rank(outs)
    counters = [k for k in ref if k.endswith("num_batches_tracked")]
    assert counters and all(int(outs[0][0][k]) == int(ref[k]) == 3 for k in counters)
    ref, _ = _fit(None, DROPOUT, n=7, batch_size=3)
    outs = run_in_threads(4, lambda comm: _fit(comm, DROPOUT, n=7, batch_size=3))
    assert relative_gap(outs[0][0], ref) < RTOL[np.dtype(np.float64)]


def test_dropout_masks_of_the_ranks_make_the_one_process_mask() -> None:
    x = np.ones((10, 3, 3, 2))

    def masks(comm: Any) -> np.ndarray:
        layer = Dropout(0.5)
        layer.reseed([7, 1])
        par = DataParallel(comm)
        par.on_epoch_begin(type("S", (), {"model": layer})())  # wraps the layer's generator
        rows, _ = par.local_batch(layer, np.arange(10), None)
        return layer.forward(x[rows], train=True) != 0

    whole = masks(SingleProcess())
    for k in (2, 3, 4):
        assert np.array_equal(np.concatenate(run_in_threads(k, masks)), whole)
    ref, _ = _fit(None, DROPOUT, epochs=2)
    outs = run_in_threads(3, lambda comm: _fit(comm, DROPOUT, epochs=2))
    assert _same_on_every_rank(outs) and relative_gap(outs[0][0], ref) < RTOL[np.dtype(np.float64)]


def test_augmentation_of_the_ranks_makes_the_one_process_batch() -> None:
    images = np.random.default_rng(0).integers(0, 255, (11, 8, 8, 1), dtype=np.uint8)
    source = ArraySource(images, np.arange(11) % 10, augment=parse_augment("crop:2,flip"))

    def batch(comm: Any) -> np.ndarray:
        rows, rng = DataParallel(comm).local_batch(net(), np.arange(11)[::-1], np.random.default_rng([1, 2, 3]))
        return source.take(rows, rng)[0]

    whole = batch(SingleProcess())
    for k in (2, 3, 4):
        assert np.array_equal(np.concatenate(run_in_threads(k, batch)), whole)


def test_row_slicer_widens_only_batch_shaped_draws() -> None:
    par = DataParallel(SingleProcess())
    par._rows = (2, 5, 8)  # rows 2..4 of a global batch of 8
    from cnnkit.train.distributed import _RowSlicer

    def fresh() -> Any:
        return _RowSlicer(np.random.default_rng(0), lambda: par._rows)

    ref = np.random.default_rng(0)
    assert np.array_equal(fresh().random((3, 2), dtype=np.float32), ref.random((8, 2), dtype=np.float32)[2:5])
    assert np.array_equal(fresh().integers(0, 9, size=3), np.random.default_rng(0).integers(0, 9, size=8)[2:5])
    assert np.array_equal(fresh().normal(0, 1, 3), np.random.default_rng(0).normal(0, 1, 8)[2:5])
    assert np.array_equal(fresh().random(4), np.random.default_rng(0).random(4))  # not the local batch's size: as is
    assert np.array_equal(fresh().permutation(5), np.random.default_rng(0).permutation(5))


def test_batch_norm_running_statistics_are_the_same_on_every_rank() -> None:
    """Per-rank batch statistics (as PyTorch's DDP): close to one process's path but not equal; running statistics
    averaged in every step's sum, so bitwise equal on every rank."""
    ref, _ = _fit(None, BN, epochs=2)
    for k in (2, 3):
        outs = run_in_threads(k, lambda comm, k=k: _fit(comm, BN, epochs=2))
        assert _same_on_every_rank(outs)  # running_mean, running_var and num_batches_tracked included
        names = [n for n in ref if "running" in n or "num_batches" in n]
        assert len(names) == 3 and int(outs[0][0][names[-1]]) == int(ref[names[-1]]) == 8  # 2 epochs of 4 steps
        mean = next(n for n in names if n.endswith("running_mean"))
        assert 0 < float(np.max(np.abs(outs[0][0][mean] - ref[mean]))) < 0.1 * float(np.max(np.abs(ref[mean])))


def test_running_mean_is_the_global_batch_mean() -> None:
    """With two equal halves the weighted mean of the ranks' batch means is the whole batch's mean."""
    from cnnkit.nn import BatchNorm2d

    x = np.random.default_rng(0).standard_normal((8, 2, 2, 3))

    def step(comm: Any) -> np.ndarray:
        bn = BatchNorm2d(3, dtype=np.float64)
        par = DataParallel(comm)
        rows, _ = par.local_batch(bn, np.arange(8), None)
        bn.forward(x[rows], train=True)
        bn.backward(np.ones((len(rows), 2, 2, 3)))
        par.reduce_gradients(bn, 0.0)
        return bn.buffers["running_mean"].copy()

    bn = BatchNorm2d(3, dtype=np.float64)
    bn.forward(x, train=True)
    for got in run_in_threads(2, step):
        assert np.allclose(got, bn.buffers["running_mean"], rtol=1e-14, atol=1e-16)


def test_evaluation_is_split_and_summed() -> None:
    model = net()
    data = toy(53, seed=3)
    whole = evaluate(model, SoftmaxCrossEntropy(), data[0], data[1], batch_size=10)
    for got in run_in_threads(3, lambda comm: evaluate(net(), SoftmaxCrossEntropy(), data[0], data[1], 10, parallel=DataParallel(comm))):
        assert got["confusion"] == whole["confusion"] and got["top1_error"] == whole["top1_error"]
        assert abs(got["loss"] - whole["loss"]) < 1e-14


@pytest.mark.parametrize("what", ["seed", "data", "model", "batch_size"])
def test_ranks_started_differently_all_stop_with_one_message(what: str) -> None:
    def start(comm: Any) -> None:
        odd = comm.rank == 1
        model = net(seed=1 if odd and what == "seed" else 0) if what != "model" else net(SMOOTH if not odd else DROPOUT)
        x, y = toy(40, seed=9 if odd and what == "data" else 0)
        cnnkit.fit(model, (x, y), epochs=1, batch_size=16 if odd and what == "batch_size" else 8,
                   optimizer=SGD(model, lr=0.1), distributed=comm)

    errors = run_in_threads(2, start, return_exceptions=True)
    assert all(isinstance(e, DistributedError) and e.collective for e in errors)
    message = str(errors[0])
    assert str(errors[1]) == message and "\n" not in message and message.startswith("the 2 processes were not started alike")
    expected = {"seed": "model weights: rank 1 differs from rank 0", "data": "training_data examples: rank 1 differs",
                "model": "model architecture: rank 1 differs", "batch_size": "settings batch_size: rank 0 has 8, rank 1 has 16"}
    assert expected[what] in message, message


def test_an_error_on_one_rank_stops_the_others() -> None:
    class Fails(Callback):
        def __init__(self, rank: int) -> None:
            self.rank = rank

        def on_epoch_end(self, state: Any, record: dict) -> None:
            if self.rank == 1 and record["epoch"] == 2:
                raise OSError("No space left on device")

    def work(comm: Any) -> None:
        model = net()
        cnnkit.fit(model, toy(40), epochs=5, batch_size=8, optimizer=SGD(model, lr=0.1), distributed=comm, callbacks=[Fails(comm.rank)])

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        errors = run_in_threads(3, work, return_exceptions=True, timeout=30)
    assert err.getvalue() == "cnnkit: rank 1 of 3: OSError: No space left on device\n"
    assert all(isinstance(e, DistributedError) for e in errors)


def test_divergence_stops_every_rank_together() -> None:
    def work(comm: Any) -> None:
        model = net("conv3x3x1x4,avgpool2,relu,conv3x3x4x10", np.float32)
        with np.errstate(all="ignore"):
            cnnkit.fit(model, toy(40, np.float32), epochs=3, batch_size=8, optimizer=SGD(model, lr=1e36), distributed=comm)

    errors = run_in_threads(2, work, return_exceptions=True)
    assert all(isinstance(e, TrainingDiverged) for e in errors) and str(errors[0]) == str(errors[1])
    with pytest.raises(TrainingDiverged, match=str(errors[0])):  # where one process stops too
        work(None)


def test_ranks_that_drift_apart_are_set_back_to_rank_0() -> None:
    class Nudge(Callback):
        def __init__(self, rank: int) -> None:
            self.rank = rank

        def on_epoch_begin(self, state: Any) -> None:
            if self.rank == 1 and state.epoch == 0:
                w = state.model.params["0.weight"]
                w[...] = np.nextafter(w, np.inf)

    notes: list[str] = []

    def work(comm: Any) -> dict:
        model = net()
        par = DataParallel(comm, log=notes.append)
        cnnkit.fit(model, toy(40), epochs=2, batch_size=8, optimizer=SGD(model, lr=0.1), distributed=par, callbacks=[Nudge(comm.rank)])
        return {k: v.copy() for k, v in model.state_dict().items()}

    a, b = run_in_threads(2, work)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(notes) == 1 and "after epoch 1 the weights of rank(s) [1] differed from rank 0's" in notes[0]


def _trainer(comm: Any, out: Path, epochs: int, seed_model: int = 0) -> Trainer:
    cfg = TrainConfig(model=DROPOUT, epochs=epochs, batch_size=16, lr=0.05, dtype="float64", preprocess="none")
    lines: list[str] = []
    return Trainer(cfg, net(DROPOUT, seed=seed_model), SoftmaxCrossEntropy(), toy(96), toy(30, seed=1), out, progress=False,
                   log=lines.append, distributed=comm)


@pytest.fixture
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run directories without learning curves (matplotlib costs most of a second per epoch)."""
    monkeypatch.setattr("cnnkit.train.plots.learning_curves", lambda *args, **kwargs: False)


@pytest.mark.usefixtures("no_plots")
def test_rank_0_writes_the_run_directory_and_it_resumes_on_another_number_of_ranks(tmp_path: Path) -> None:
    ref = _trainer(None, tmp_path / "ref", epochs=3)
    ref.run()

    def two_epochs(comm: Any) -> None:
        _trainer(comm, tmp_path / "run", epochs=2).run()

    run_in_threads(2, two_epochs)
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix != ".png") == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    assert [r["ranks"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())] == [2, 2]

    def resume(comm: Any) -> dict:
        tr = _trainer(comm, tmp_path / "run", epochs=3, seed_model=0)
        tr.run(resume=True)
        return {k: v.copy() for k, v in tr.model.state_dict().items()}

    outs = run_in_threads(3, resume)  # a checkpoint of 2 ranks, continued by 3
    assert all(all(np.array_equal(outs[0][k], o[k]) for k in o) for o in outs)
    assert relative_gap(outs[0], ref.model.state_dict()) < RTOL[np.dtype(np.float64)]
    records = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["ranks"] for r in records] == [2, 2, 3]

    single = _trainer(None, tmp_path / "run", epochs=4)  # and by one process without MPI
    single.run(resume=True)
    ref4 = _trainer(None, tmp_path / "ref4", epochs=4)
    ref4.run()
    assert relative_gap(single.model.state_dict(), ref4.model.state_dict()) < RTOL[np.dtype(np.float64)]


@pytest.mark.usefixtures("no_plots")
def test_a_run_rank_0_cannot_start_stops_every_rank(tmp_path: Path) -> None:
    _trainer(None, tmp_path / "run", epochs=1).run()

    def again(comm: Any) -> None:
        _trainer(comm, tmp_path / "run", epochs=1).run()  # no --resume: the directory already holds a run

    errors = run_in_threads(2, again, return_exceptions=True)
    assert isinstance(errors[0], ValueError) and "already holds a run" in str(errors[0])
    assert isinstance(errors[1], DistributedError) and str(errors[1]).startswith("rank 0 could not start the run: ValueError:")


def test_run_epochs_takes_a_data_parallel_directly() -> None:
    def work(comm: Any) -> list:
        model = net()
        state = run_epochs(model, SoftmaxCrossEntropy(), SGD(model, lr=0.1), toy(30), epochs=2, batch_size=8, seed=0,
                           parallel=DataParallel(comm))
        return [r["train_loss"] for r in state.records]

    a, b = run_in_threads(2, work)
    assert a == b and len(a) == 2


def test_command_line_flags() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_distributed_flag(p)
    assert communicator_from_args(p.parse_args([])) is None
    assert p.parse_args(["--distributed"]).distributed_timeout == 600
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        p.parse_args(["--distributed-timeout", "-1"])


def test_without_mpi4py_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cnnkit\[mpi\]'"):
        MPICommunicator()


def test_data_parallel_needs_the_same_shapes_as_the_loop() -> None:
    """A network whose input does not fit fails on every rank the way it fails alone (no hang)."""
    def work(comm: Any) -> None:
        model = net()
        cnnkit.fit(model, (np.zeros((4, 5, 5, 1)), np.zeros(4, int)), epochs=1, optimizer=SGD(model, lr=0.1), distributed=comm)

    with contextlib.redirect_stderr(io.StringIO()) as err:
        errors = run_in_threads(2, work, return_exceptions=True, timeout=30)
    assert all(isinstance(e, Exception) for e in errors)
    assert "ShapeError" in err.getvalue() and 1 <= err.getvalue().count("\n") <= 2
