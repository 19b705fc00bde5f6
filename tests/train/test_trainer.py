"""The trainer: bit-identical resume (also after ``kill -9``), divergence handling, the run directory's files.

In-process tests train tiny networks on small random arrays; the end-to-end ones use the real MNIST files
(``$CNNKIT_DATA``, else ``<repo>/../shared/datasets``) and skip without them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.models import create
from cnnkit.models.file import load_model, save_model
from cnnkit.nn import SoftmaxCrossEntropy
from cnnkit.serialize import load_arrays
from cnnkit.train import TrainConfig, Trainer, TrainingDiverged, evaluate
from cnnkit.train.metrics import topk_wrong
from tests.data import real_data_dir

TINY = "conv5x5x1x4,pool2,conv5x5x4x8,pool2,conv4x4x8x10"
BN_DROPOUT = "conv5x5x1x4nobias,bn,relu,pool2,conv5x5x4x8,pool2,conv4x4x8x10,dropout"
SHAPE = (28, 28, 1)
TIMING_KEYS = {"seconds", "images_per_s"}
RECORD_KEYS = {"epoch", "lr", "seconds", "images_per_s", "train_loss", "train_top1_error", "train_top5_error",
               "train_accuracy", "test_loss", "test_top1_error", "test_top5_error", "test_accuracy", "test_confusion"}


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Stands for an interruption (Ctrl-C, a crash) in the middle of a run."""


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """160 training and 40 test 'images' (float32, NHWC) whose label is the brightest of 10 horizontal bands."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    band = np.arange(28) * 10 // 28  # (28,): the band of each image row
    x += (band[None, :] == y[:, None])[:, :, None, None]  # (200, 28, 1, 1) mask broadcast over W and C
    return x[:160], y[:160], x[160:], y[160:]


def _trainer(
    out: Path,
    data: tuple,
    spec: str = TINY,
    log: Callable[[str], None] | None = None,
    with_test: bool = True,
    **overrides: Any,
) -> Trainer:
    settings = dict(model=spec, epochs=3, batch_size=32, lr=0.01, seed=1)
    settings.update(overrides)
    cfg = TrainConfig(**settings)
    model = create(spec, np.random.default_rng(cfg.seed), np.dtype(cfg.dtype), input_shape=SHAPE)
    x, y, xt, yt = data
    test = (xt, yt) if with_test else None
    return Trainer(cfg, model, SoftmaxCrossEntropy(), (x, y), test, out, progress=False, log=log or (lambda s: None))


def _assert_same_weights(a: Trainer, b: Trainer) -> None:
    assert a.model.params.keys() == b.model.params.keys()
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    for k in a.model.buffers:
        assert np.array_equal(a.model.buffers[k], b.model.buffers[k]), k
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["step"] == sb["step"]
    for name in sa["state"]:
        for key, v in sa["state"][name].items():
            assert np.array_equal(v, sb["state"][name][key]), (name, key)


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _no_temporary_files(out: Path) -> None:
    assert [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")] == []


# -- exact resume, in process ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [TINY, BN_DROPOUT], ids=["plain", "bn-dropout"])
@pytest.mark.parametrize("where", ["after-epoch-1", "mid-epoch-2", "after-last-epoch"])
def test_resume_is_bit_identical(tmp_path: Path, toy: tuple, spec: str, where: str) -> None:
    reference = _trainer(tmp_path / "ref", toy, spec)
    ref_record = reference.run()

    def stop_after(epoch: int) -> Callable[[str], None]:
        def log(line: str) -> None:
            if line.startswith(f"epoch {epoch:>3}"):
                raise _Stop  # after the epoch's checkpoint and metrics were written
        return log

    out = tmp_path / "run"
    if where == "after-epoch-1":
        first = _trainer(out, toy, spec, log=stop_after(1))
    elif where == "after-last-epoch":
        first = _trainer(out, toy, spec, log=stop_after(3))
    else:
        first = _trainer(out, toy, spec)
        real_step, calls = first.optimizer.step, [0]

        def step() -> None:  # 5 batches per epoch: the 8th step is the 3rd of epoch 2
            calls[0] += 1
            if calls[0] == 8:
                raise _Stop
            real_step()

        first.optimizer.step = step  # type: ignore[method-assign]  # a stand-in for the method
    with pytest.raises(_Stop):
        first.run()
    done = int(load_arrays(out / "checkpoint.npz")[1]["epoch"])
    assert done == {"after-epoch-1": 1, "mid-epoch-2": 1, "after-last-epoch": 3}[where]
    assert len(_metrics(out)) == done

    lines: list[str] = []
    resumed = _trainer(out, toy, spec, log=lines.append)  # a fresh process would build a fresh model
    record = resumed.run(resume=True)
    assert lines[0] == f"resuming {out} after epoch {done}"
    _assert_same_weights(reference, resumed)
    assert _without_timing(resumed.records) == _without_timing(reference.records)
    assert _without_timing(_metrics(out)) == _without_timing(_metrics(tmp_path / "ref"))
    assert [r["epoch"] for r in _metrics(out)] == [1, 2, 3]
    assert {k: v for k, v in record.items() if k not in TIMING_KEYS} == {
        k: v for k, v in ref_record.items() if k not in TIMING_KEYS
    }
    ck_ref, _ = load_arrays(tmp_path / "ref" / "checkpoint.npz")
    ck, _ = load_arrays(out / "checkpoint.npz")
    assert ck.keys() == ck_ref.keys()
    assert all(np.array_equal(ck[k], ck_ref[k]) for k in ck)
    _no_temporary_files(out)


def test_dropout_masks_depend_on_seed_and_epoch_only(tmp_path: Path, toy: tuple) -> None:
    """Two runs with the same seed agree; another seed gives other weights (randomness is really used)."""
    a = _trainer(tmp_path / "a", toy, BN_DROPOUT, epochs=1)
    b = _trainer(tmp_path / "b", toy, BN_DROPOUT, epochs=1)
    c = _trainer(tmp_path / "c", toy, BN_DROPOUT, epochs=1, seed=2)
    a.run(), b.run(), c.run()
    _assert_same_weights(a, b)
    assert not np.array_equal(a.model.params["6.weight"], c.model.params["6.weight"])


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path, toy: tuple) -> None:
    ref = _trainer(tmp_path / "ref", toy, epochs=1)
    ref.run()
    run = _trainer(tmp_path / "run", toy, epochs=1)
    run.run(resume=True)
    _assert_same_weights(ref, run)


def test_existing_run_without_resume_fails_clearly(tmp_path: Path, toy: tuple) -> None:
    out = tmp_path / "run"
    _trainer(out, toy, epochs=1).run()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint.npz\); pass --resume"):
        _trainer(out, toy, epochs=1).run()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_with_other_settings_names_the_differences(tmp_path: Path, toy: tuple) -> None:
    out = tmp_path / "run"
    _trainer(out, toy, epochs=1).run()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # everything but the number of epochs (more epochs extend a finished run) must match
    with pytest.raises(ValueError) as info:
        _trainer(out, toy, epochs=2, lr=0.02).run(resume=True)
    msg = str(info.value)
    assert "--resume" in msg and "other settings" in msg
    assert "'epochs'" not in msg and "'lr': (0.01, 0.02)" in msg
    assert "batch_size" not in msg and "seed" not in msg  # only the differences are named
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- divergence ---------------------------------------------------------------------------------------

def test_infinite_parameters_raise_training_diverged(tmp_path: Path, toy: tuple) -> None:
    out = tmp_path / "run"
    tr = _trainer(out, toy)
    tr.model.params["0.weight"][...] = np.inf
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as info:
        tr.run()
    msg = str(info.value)
    assert "epoch 1, batch 1" in msg and "no checkpoint was written" in msg and "smaller --lr" in msg
    assert "\n" not in msg
    assert not (out / "checkpoint.npz").exists() and not (out / "model.npz").exists()
    assert _metrics(out) == []
    _no_temporary_files(out)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path: Path, toy: tuple) -> None:
    out = tmp_path / "run"
    saved: dict[str, bytes] = {}

    def log(line: str) -> None:
        if line.startswith("epoch   1"):
            saved["ck"] = (out / "checkpoint.npz").read_bytes()

    tr = _trainer(out, toy, log=log, epochs=3, schedule="list:0.01,1e30,0.01")
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as info:
        tr.run()
    msg = str(info.value)
    assert "epoch 2" in msg and f"last good checkpoint ({out / 'checkpoint.npz'}, after epoch 1) is kept" in msg
    assert (out / "checkpoint.npz").read_bytes() == saved["ck"]
    arrays, meta = load_arrays(out / "checkpoint.npz")
    assert meta["epoch"] == 1
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert [r["epoch"] for r in _metrics(out)] == [1]
    assert not (out / "model.npz").exists()
    _no_temporary_files(out)


@pytest.mark.parametrize("with_test", [True, False], ids=["test-set", "no-test-set"])
def test_non_finite_weights_after_the_last_step_are_not_checkpointed(tmp_path: Path, toy: tuple, with_test: bool) -> None:
    """The loss of every batch was finite, but the epoch's last update produced NaN weights."""
    out = tmp_path / "run"
    tr = _trainer(out, toy, with_test=with_test, epochs=1, batch_size=160)  # one batch per epoch
    real_step = tr.optimizer.step

    def step() -> None:
        real_step()
        tr.model.params["2.weight"][0, 0, 0, 0] = np.nan

    tr.optimizer.step = step  # type: ignore[method-assign]  # a stand-in for the method
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="non-finite in epoch 1") as info:
        tr.run()
    assert "parameter 2.weight" in str(info.value)
    assert ("test loss" in str(info.value)) == with_test
    assert not (out / "checkpoint.npz").exists()


def test_topk_wrong() -> None:
    scores = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [np.nan, 0.1, 0.2], [0.3, 0.3, 0.3]])
    labels = np.array([1, 2, 0, 0, 2])
    # row 0 right; row 1: label ranks 2nd; row 2: tie for 2nd counts in the label's favour; row 3: NaN is
    # wrong whatever the rank; row 4: a three-way tie counts as right
    assert topk_wrong(scores, labels, 1) == 3
    assert topk_wrong(scores, labels, 2) == 1
    assert topk_wrong(scores, labels, 5) == 1
    assert topk_wrong(scores.reshape(5, 1, 1, 3), labels, 1) == 3
    assert topk_wrong(np.full((2, 4), np.nan), np.array([0, 1]), 4) == 2


# -- the run directory ----------------------------------------------------------------------------------

def test_run_directory_files(tmp_path: Path, toy: tuple) -> None:
    out = tmp_path / "run"
    classes = [str(i) for i in range(10)]
    lines: list[str] = []
    tr = _trainer(out, toy, BN_DROPOUT, log=lines.append, epochs=2, schedule="list:0.02,0.005")
    record = tr.run()
    save_model(out / "model.npz", tr.model, input_shape=SHAPE, classes=classes, spec=BN_DROPOUT)
    records = _metrics(out)
    assert len(records) == 2 and records == [json.loads(json.dumps(r)) for r in tr.records]
    for i, r in enumerate(records):
        assert set(r) == RECORD_KEYS
        assert r["epoch"] == i + 1
        assert r["lr"] == [0.02, 0.005][i]
        assert r["seconds"] > 0 and r["images_per_s"] > 0
        for split in ("train", "test"):
            assert math.isfinite(r[f"{split}_loss"]) and r[f"{split}_loss"] > 0
            assert 0 <= r[f"{split}_top5_error"] <= r[f"{split}_top1_error"] <= 1
    assert record == tr.records[-1]
    assert json.loads((out / "config.json").read_text()) == tr.config.to_dict()
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == tr.config
    assert [ln.split()[:2] for ln in lines] == [["epoch", "1"], ["epoch", "2"]]
    assert "test loss" in lines[0]
    pytest.importorskip("matplotlib")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # model.npz predicts exactly what the trained model predicts
    loaded = load_model(out / "model.npz").network
    x_test = toy[2]
    assert np.array_equal(loaded.forward(x_test, train=False), tr.model.forward(x_test, train=False))
    again = evaluate(loaded, SoftmaxCrossEntropy(), x_test, toy[3], tr.config.eval_batch_size)
    assert again == {k: records[-1][f"test_{k}"] for k in ("loss", "top1_error", "top5_error", "accuracy", "confusion")}
    _no_temporary_files(out)


def test_progress_bar(tmp_path: Path, toy: tuple, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars for the training and the evaluation pass on a terminal; none when stderr is not a terminal."""
    pytest.importorskip("tqdm")
    tr = _trainer(tmp_path / "quiet", toy, epochs=1)
    tr.progress = True
    tr.run()
    assert "epoch 1/1" not in capsys.readouterr().err  # captured stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    tr = _trainer(tmp_path / "run", toy, epochs=1)
    tr.progress = True
    tr.run()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "evaluating" in err


def test_without_test_set(tmp_path: Path, toy: tuple) -> None:
    tr = _trainer(tmp_path / "run", toy, with_test=False, epochs=1)
    record = tr.run()
    assert "test_loss" not in record and "train_loss" in record


def test_learning_actually_happens(tmp_path: Path, toy: tuple) -> None:
    tr = _trainer(tmp_path / "run", toy, epochs=3, lr=0.05, batch_size=16)
    tr.run()
    first, last = tr.records[0], tr.records[-1]
    assert last["train_loss"] < first["train_loss"]


# -- end to end on real MNIST ---------------------------------------------------------------------------

def test_train_pipeline_on_mnist(tmp_path: Path) -> None:
    from cnnkit.data import load_mnist
    from cnnkit.train.run import train

    data_dir = real_data_dir()
    cfg = TrainConfig(model=TINY, train_limit=200, test_limit=300, epochs=1, lr=0.01)
    lines: list[str] = []
    record = train(cfg, tmp_path / "run", data_dir=str(data_dir), progress=False, log=lines.append)
    assert 0 <= record["test_top1_error"] <= 1 and set(record) == RECORD_KEYS
    model_arrays, meta = load_arrays(tmp_path / "run" / "model.npz")
    ck, _ = load_arrays(tmp_path / "run" / "checkpoint.npz")
    for k, v in ck.items():
        if k.startswith(("param/", "buffer/")):
            assert np.array_equal(model_arrays[k], v), k
    assert meta["data"] == "mnist" and meta["classes"] == [str(i) for i in range(10)]
    assert tuple(meta["input_shape"]) == SHAPE and meta["spec"] == TINY
    # mean-image preprocessing fitted on all 60,000 training images, as MatConvNet does
    train_images = load_mnist("train", data_dir).images
    expected = train_images.mean(axis=0, dtype=np.float64)
    assert np.allclose(model_arrays["preprocess/mean"], expected, atol=1e-4)
    # model.npz gives the test error the run reported on its 300 test images
    from cnnkit.data import Preprocessor

    m = load_model(tmp_path / "run" / "model.npz")
    model, pre_d = m.network, m.preprocess
    test = load_mnist("test", data_dir).subset(slice(0, 300))
    x = Preprocessor.from_dict(pre_d).transform(test.images, dtype=np.float32)
    again = evaluate(model, SoftmaxCrossEntropy(), x, test.labels)
    assert again["top1_error"] == record["test_top1_error"] and again["loss"] == record["test_loss"]


def _cli(out: Path, spec: str, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnnkit.cli", "train", "--model", spec, "--data-dir", str(data_dir),
            "--train-limit", "400", "--batch-size", "50", "--test-limit", "300", "--epochs", "3",
            "--no-progress", "--out", str(out), *extra]


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(load_arrays(checkpoint)[1]["epoch"])
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("spec", [TINY, BN_DROPOUT], ids=["plain", "bn-dropout"])
def test_resume_after_kill_9_is_bit_identical(tmp_path: Path, spec: str) -> None:
    data_dir = real_data_dir()
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("ref", "run", "resume")}  # noqa: SIM115 - closed in the finally below
    try:
        # the uninterrupted run and the victim run side by side
        ref = subprocess.Popen(_cli(ref_dir, spec, data_dir), cwd=tmp_path, env=env, stdout=logs["ref"], stderr=subprocess.STDOUT)
        victim = subprocess.Popen(_cli(run_dir, spec, data_dir), cwd=tmp_path, env=env, stdout=logs["run"], stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while _epoch_of(run_dir / "checkpoint.npz") < 1:
            if victim.poll() is not None or time.monotonic() > deadline:
                victim.kill()
                ref.kill()
                pytest.fail(f"the run ended (rc {victim.returncode}) before epoch 1 was checkpointed: "
                            f"{(tmp_path / 'run.log').read_text()}")
            time.sleep(0.005)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        killed_at = _epoch_of(run_dir / "checkpoint.npz")
        assert 1 <= killed_at < 3 and not (run_dir / "model.npz").exists()

        resumed = subprocess.run(_cli(run_dir, spec, data_dir, "--resume"), cwd=tmp_path, env=env,
                                 stdout=logs["resume"], stderr=subprocess.STDOUT, timeout=120)
        assert ref.wait(120) == 0, (tmp_path / "ref.log").read_text()
    finally:
        for f in logs.values():
            f.close()
        for p in ("ref", "victim"):
            proc = locals().get(p)
            if proc is not None and proc.poll() is None:
                proc.kill()
    resume_log = (tmp_path / "resume.log").read_text()
    assert resumed.returncode == 0, resume_log
    assert f"resuming {run_dir} after epoch {killed_at}" in resume_log
    a, meta_a = load_arrays(ref_dir / "model.npz")
    b, meta_b = load_arrays(run_dir / "model.npz")
    assert a.keys() == b.keys() and meta_a == meta_b
    assert any(k.startswith("buffer/") for k in a) == (spec == BN_DROPOUT)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert _without_timing(_metrics(run_dir)) == _without_timing(_metrics(ref_dir))
    assert [r["epoch"] for r in _metrics(run_dir)] == [1, 2, 3]
    ck_a, _ = load_arrays(ref_dir / "checkpoint.npz")
    ck_b, _ = load_arrays(run_dir / "checkpoint.npz")
    assert all(np.array_equal(ck_a[k], ck_b[k]) for k in ck_a)  # optimiser state too
    _no_temporary_files(run_dir)
    shutil.rmtree(ref_dir)
