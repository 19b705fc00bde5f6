"""Untrusted files and arguments: a one-line documented error, bounded time and memory, never a wrong result.

Model files edited by hand (architecture, dtype, extra members, a data path), run directories shared by two
processes, a failing disk, optimisers whose state overflows, absurd command-line arguments. The mutation
fuzzers are in tests/fuzz.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.errors import CheckpointError, ModelFileError
from cnnkit.models import create
from cnnkit.models.file import load_model, save_model
from cnnkit.serialize import load_arrays, save_arrays

TINY = "conv3x3x1x4,relu,pool2,fc3"
SHAPE = (8, 8, 1)


def _model_file(tmp_path: Path) -> Path:
    net = create(TINY, np.random.default_rng(0), input_shape=SHAPE)
    path = tmp_path / "model.npz"
    save_model(path, net, input_shape=SHAPE, classes=["a", "b", "c"], extra={"data": "mnist"}, spec=TINY)
    return path


def _edit(path: Path, out: Path, meta_edit: Any = None, arrays_edit: Any = None) -> Path:
    arrays, meta = load_arrays(path)
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    save_arrays(out, arrays, meta)
    return out


def _run(argv: list[Any], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_failure(code: int, err: str, *words: str, expected_code: int = 1) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err
    errors = [ln for ln in lines if ln.startswith("cnnkit")]  # a usage error adds argparse's usage block above it
    assert len(errors) == 1 and errors[0] == lines[-1] and len(lines[-1]) <= 1100, lines
    for w in words:
        assert w in lines[-1], (w, lines[-1])


# -- model files edited by hand -----------------------------------------------------------------------

def test_architecture_edit_is_refused_before_allocating(tmp_path: Path) -> None:
    """One field of the architecture made huge (conv to 50,000,000 channels): refused from the headers, fast,
    with almost no memory (the old loader built the 4.8 GB network first)."""
    path = _model_file(tmp_path)

    def widen(meta: dict) -> None:
        meta["architecture"]["children"][0][1]["config"]["out_channels"] = 50_000_000

    bad = _edit(path, tmp_path / "bad.npz", widen)
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(ModelFileError):
        load_model(bad)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 2 and peak < 32 << 20, (seconds, peak)


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(dtype="float16"), ["float16"]),
    (lambda m: m.update(dtype="object"), ["object"]),
    (lambda m: m.update(format="cnnkit-model-1", spec="relu," * 100_000), ["over the limit"]),
    (lambda m: m.update(format="cnnkit-model-1", spec="conv" + "9" * 30 + "x3x1x4"), ["10 or more digits"]),
    (lambda m: m.update(architecture={"class": "os.system", "config": {}}), ["unknown layer class"]),
    (lambda m: m.update(classes=[1, 2, 3]), ["classes"]),
    (lambda m: m.update(input_shape="28x28"), ["input_shape"]),
])
def test_metadata_edits_are_model_file_errors(tmp_path: Path, edit: Any, words: list[str]) -> None:
    bad = _edit(_model_file(tmp_path), tmp_path / "bad.npz", edit)
    with pytest.raises(ModelFileError) as info:
        load_model(bad)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 1000
    for w in words:
        assert w in msg


def test_extra_and_retyped_arrays_are_refused(tmp_path: Path) -> None:
    path = _model_file(tmp_path)
    extra = _edit(path, tmp_path / "extra.npz", arrays_edit=lambda a: a.update(junk=np.zeros(10)))
    with pytest.raises(ModelFileError, match="does not have"):
        load_model(extra)
    half = _edit(path, tmp_path / "half.npz", arrays_edit=lambda a: a.update({"param/0.weight": a["param/0.weight"].astype(np.float16)}))
    with pytest.raises(ModelFileError, match="float16"):
        load_model(half)


def test_weights_that_can_only_give_wrong_numbers_are_refused(tmp_path: Path) -> None:
    """A NaN or infinite weight, or a negative batch-norm running variance, is a ModelFileError at load time,
    not NaN scores later (found by the fuzzer: a running variance of -3 gave NaN predictions without a word)."""
    net = create("conv3x3x1x4,bn,relu,pool2,fc3", np.random.default_rng(0), input_shape=SHAPE)
    path = tmp_path / "bn.npz"
    save_model(path, net, input_shape=SHAPE, classes=["a", "b", "c"])
    arrays, _ = load_arrays(path)
    weight = next(k for k in arrays if k.startswith("param/") and k.endswith("weight"))
    var = next(k for k in arrays if k.endswith("running_var"))

    def poke(key: str, value: float) -> Any:
        def edit(a: dict) -> None:
            a[key] = a[key].copy()
            a[key].flat[0] = value
        return edit

    for key, value, words in ((weight, np.nan, "NaN"), (weight, np.inf, "infinite"), (var, -3.0, "negative")):
        bad = _edit(path, tmp_path / "bad.npz", arrays_edit=poke(key, value))
        with pytest.raises(ModelFileError, match=words):
            load_model(bad)


def test_a_files_data_entry_is_never_a_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A model file saying it was trained on /etc must not make `cnnkit eval` read /etc."""
    bad = _edit(_model_file(tmp_path), tmp_path / "m.npz", lambda m: m.update(data="/etc"))
    code, _, err = _run(["eval", bad, "--no-progress"], capsys)
    _one_line_failure(code, err, "not a registered dataset", "--data")


def test_model_path_that_is_a_fifo_fails_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(out=_run(["eval", fifo], capsys)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "eval of a FIFO hung"
    code, _, err = result["out"]
    _one_line_failure(code, err, "not a regular file")


# -- run directories ------------------------------------------------------------------------------------

def _train_args(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["train", "--model", "conv5x5x1x4,pool2,conv5x5x4x8,pool2,conv4x4x8x10", "--data-dir", str(data_dir),
            "--train-limit", "200", "--test-limit", "100", "--batch-size", "50", "--no-progress", "--out", str(out), *extra]


def test_second_process_into_the_same_run_directory_is_refused(tmp_path: Path) -> None:
    from tests.data import real_data_dir

    data_dir = real_data_dir()
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnkit.cli", *_train_args(out, data_dir, "--epochs", "40")]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".lock").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.01)
        second = subprocess.run([*cmd, "--seed", "1"], capture_output=True, text=True, timeout=60)
        second_resume = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=60)
    finally:
        first.kill()
        first.wait(30)
    for r in (second, second_resume):
        assert r.returncode == 1, r.stderr
        assert "another cnnkit process" in r.stderr and "Traceback" not in r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0  # the first run's settings, untouched by the second


def test_config_json_of_another_shape_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.data import real_data_dir

    data_dir = real_data_dir()
    out = tmp_path / "run"
    assert _run(_train_args(out, data_dir, "--epochs", "1"), capsys)[0] == 0
    (out / "config.json").write_text("[]")
    code, _, err = _run([*_train_args(out, data_dir, "--epochs", "2"), "--resume"], capsys)
    _one_line_failure(code, err, "config.json", "JSON object")


def test_failing_disk_keeps_the_previous_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (ENOSPC) while writing epoch 2's checkpoint: one-line error, epoch 1's checkpoint intact,
    no temporary file left behind."""
    import cnnkit.serialize as serialize
    from tests.data import real_data_dir

    data_dir = real_data_dir()
    out = tmp_path / "run"
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src: str, dst: str) -> None:
        if str(dst).endswith("checkpoint.npz"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(serialize.os, "replace", replace)
    code, _, err = _run(_train_args(out, data_dir, "--epochs", "3"), capsys)
    _one_line_failure(code, err, "No space left on device")
    assert load_arrays(out / "checkpoint.npz")[1]["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adagrad"])
def test_every_optimizer_stops_on_non_finite_state(tmp_path: Path, optimizer: str) -> None:
    """An optimiser state that overflowed (here: planted) stops training with TrainingDiverged, no checkpoint."""
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.train import TrainConfig, Trainer, TrainingDiverged

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    cfg = TrainConfig(model=TINY, epochs=2, batch_size=20, lr=0.01, optimizer=optimizer)
    model = create(TINY, np.random.default_rng(0), input_shape=SHAPE)
    tr = Trainer(cfg, model, SoftmaxCrossEntropy(), (x, y), None, tmp_path / "run", progress=False, log=lambda s: None)
    real_step = tr.optimizer.step

    def step() -> None:
        real_step()
        for st in tr.optimizer.state.values():
            for v in st.values():
                if isinstance(v, np.ndarray):
                    v[...] = np.inf
                    return

    tr.optimizer.step = step  # type: ignore[method-assign]
    if optimizer == "sgd":
        tr.optimizer.momentum = 0.9  # SGD keeps state only with momentum
    with pytest.raises(TrainingDiverged, match="optimizer state"):
        tr.run()
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_checkpoint_of_another_network_is_a_checkpoint_error(tmp_path: Path) -> None:
    from cnnkit.train import TrainConfig
    from cnnkit.train.checkpoint import load_checkpoint, save_checkpoint

    net = create(TINY, np.random.default_rng(0), input_shape=SHAPE)
    save_checkpoint(tmp_path / "ck.npz", net, TrainConfig(lr=0.1).make_optimizer(net), epoch=1)
    other = create("conv3x3x1x5,relu,pool2,fc3", np.random.default_rng(0), input_shape=SHAPE)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "ck.npz", other, TrainConfig(lr=0.1).make_optimizer(other))


# -- arguments ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words, code", [
    (["train", "--epochs", "99999999999999999999"], ["--epochs", "at most"], 2),
    (["train", "--out", ""], ["--out"], 2),
    (["bench", "--min-time", "-1"], ["--min-time"], 2),
    (["bench", "--min-time", "nan"], ["--min-time"], 2),
    (["bench", "--json", "/nonexistent/dir/x.json", "--no-torch"], ["--json", "does not exist"], 2),
    (["train", "--model", "conv1x1x1x50000000,relu", "--train-limit", "10"], ["needs at least", "GiB"], 1),
    (["train", "--model", "conv3x3x1x8p99999999,relu", "--train-limit", "10"], ["needs at least"], 1),
    (["summary", "conv" + "9" * 12 + "x3x1x8"], ["10 or more digits"], 2),
])
def test_absurd_arguments_fail_at_once(argv: list[str], words: list[str], code: int, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    from tests.data import real_data_dir

    if argv[0] == "train" and code == 1:
        argv = [*argv, "--data-dir", str(real_data_dir()), "--out", str(tmp_path / "run"), "--no-progress"]
    t = time.perf_counter()
    try:
        rc, _, err = _run(argv, capsys)
    except SystemExit as exc:  # argparse's own usage errors
        rc, err = int(exc.code or 0), capsys.readouterr().err
    assert time.perf_counter() - t < 20
    _one_line_failure(rc, err, *words, expected_code=code)


def test_ray_address_nobody_answers_fails_fast() -> None:
    from cnnkit.experiment.runner import check_reachable

    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="no Ray cluster answers"):
        check_reachable("127.0.0.1:1", timeout=2)
    assert time.perf_counter() - t < 5
