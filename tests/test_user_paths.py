"""Your own data and your own models through the command line: image folders, class matching, missing test
splits, missing Pillow, per-model defaults and the training flags (validation split, early stopping, keep-best,
resume, init-from).

Regression tests for the issue "Your own data and your own models", whose cases F7-F15 gave silently wrong
numbers on the old code: F13 (a folder without test/ was "tested" on its training images), F14 (a test/ folder
holding some of the classes had its labels numbered by position, not by name), F10 (a network with the wrong
number of outputs, or a model evaluated on another dataset's classes), F15 (no Pillow: a traceback instead of
one line naming the extra).

Every folder is synthetic (a few tiny PNGs written with Pillow); the few cases that need the real MNIST and
Fashion-MNIST files find them through ``$CNNKIT_DATA`` (tests.data.real_data_dir) and skip without them. The
learning-curve PNG a run directory draws after each epoch is replaced by a no-op (it costs ~0.5 s an epoch
and is not what is tested here).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import build_parser, main
from cnnkit.errors import MismatchError
from cnnkit.models.file import load_model
from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
from cnnkit.serialize import load_arrays
from cnnkit.train import TrainConfig
from tests.data import real_data_dir

TINY_NET = "conv3x3x1x8,relu,pool2,fc3"
"""12x12 grayscale -> 3 classes."""
TINY_FLAGS = ["--model", TINY_NET, "--preprocess", "scale", "--batch-size", "4", "--lr", "0.05", "--momentum", "0.5"]
MNIST_NET = "conv5x5x1x4,pool2,conv5x5x4x8,pool2,conv4x4x8x10"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _no_learning_curve_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cnnkit.train.plots.learning_curves", lambda *a, **k: False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(argv)``: run ``cnnkit argv`` in this process; argparse's SystemExit becomes the exit code."""

    def run(argv: Sequence[Any]) -> Result:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = 0 if exc.code is None else int(exc.code)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def assert_failure(r: Result, command: str, *fragments: str) -> str:
    """Exit 1, exactly one line on stderr (``cnnkit <command>: error: ...``), no traceback; returns the line."""
    assert r.code == 1, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith(f"cnnkit {command}: error: "), lines[0]
    assert "Traceback" not in r.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines() if s.strip()]


def write_pngs(folder: Path, images: Sequence[np.ndarray], mode: str = "L") -> list[Path]:
    """PNG files ``folder/000.png``, ... (skips the test without Pillow: the image cases need it to write them)."""
    image = pytest.importorskip("PIL.Image")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:03d}.png"
        image.fromarray(img, mode=mode).save(path)
        paths.append(path)
    return paths


def brightness_folder(root: Path, classes: dict[str, int], n: int, size: tuple[int, int] = (12, 12)) -> Path:
    """``root/<name>/*.png``: n constant 12x12 grayscale images per class, brightness 40 + 90 * k for class value k."""
    for name, k in classes.items():
        write_pngs(root / name, [np.full(size, 40 + 90 * k, np.uint8)] * n)
    return root


THREE = {"digit_1": 0, "digit_3": 1, "digit_7": 2}


# -- F13: a folder without test/ --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "train_only"])
def test_f13_folder_without_a_test_split_fails(layout: str, cli: Any, tmp_path: Path) -> None:
    """F13: `cnnkit train --data FOLDER` without a test/ sub-folder is refused (one line naming test/ and
    --val-split) instead of reporting the training images' error as a test error."""
    data = tmp_path / "data"
    brightness_folder(data if layout == "flat" else data / "train", THREE, 3)
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--no-progress", "--out", tmp_path / "run"])
    assert_failure(r, "train", "test/", "--val-split")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_f13_folder_without_a_test_split_trains_with_val_split(cli: Any, tmp_path: Path) -> None:
    """F13: with --val-split 0.2 the same folder trains; metrics.jsonl has val_* entries and no test_* ones."""
    data = brightness_folder(tmp_path / "data", THREE, 5)
    out = tmp_path / "run"
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "2", "--val-split", "0.2", "--no-progress", "--out", out])
    assert r.code == 0, r.err
    assert f"done: {out}" in r.out
    recs = records(out)
    assert [x["epoch"] for x in recs] == [1, 2]
    for x in recs:
        for key in ("val_loss", "val_top1_error", "val_accuracy", "val_confusion"):
            assert key in x, key
        assert not [k for k in x if k.startswith("test_")], x.keys()
        assert np.sum(x["val_confusion"]) == 3  # 20% of 15 images held out


# -- F14: a test/ folder with some of the classes ----------------------------------------------------


def _subset_folder(root: Path) -> Path:
    brightness_folder(root / "train", THREE, 8)
    brightness_folder(root / "test", {"digit_1": 0, "digit_7": 2}, 3)
    return root


def test_f14_test_labels_are_mapped_by_class_name(tmp_path: Path) -> None:
    """F14: test/{digit_1, digit_7} against train/{digit_1, digit_3, digit_7}: digit_7 test images get label 2
    (its index among the training classes), never 1 (its index in test/)."""
    from cnnkit.train.run import load_data

    data = _subset_folder(tmp_path / "data")
    d = load_data(TrainConfig(model=TINY_NET, data=str(data), preprocess="scale"), None)
    assert d.classes == ("digit_1", "digit_3", "digit_7")
    assert d.test is not None and d.test.classes == d.classes
    x, y = d.test.take(np.arange(len(d.test)))
    assert sorted(set(y.tolist())) == [0, 2]
    bright = np.asarray(x).reshape(len(y), -1).mean(axis=1)
    assert np.all(y[bright > 0.5] == 2) and np.all(y[bright < 0.5] == 0)  # 220/255 is digit_7, 40/255 digit_1


def test_f14_training_with_a_subset_test_folder_measures_the_right_error(cli: Any, tmp_path: Path) -> None:
    """F14: a small network trained on the trivially separable folder reaches zero test error (with labels by
    position, the digit_7 test images would count as digit_3 and the error would stay at 50%)."""
    data = _subset_folder(tmp_path / "data")
    out = tmp_path / "run"
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "8", "--no-progress", "--out", out])
    assert r.code == 0, r.err
    last = records(out)[-1]
    assert last["test_top1_error"] == 0.0, last
    conf = np.asarray(last["test_confusion"])
    assert conf.shape == (3, 3)
    assert conf[0, 0] == 3 and conf[2, 2] == 3 and conf[1].sum() == 0
    assert "test error 0.00%" in r.out


def test_a_test_folder_with_few_classes_logs_its_epochs(cli: Any, tmp_path: Path) -> None:
    """A run with a test set of 5 classes or fewer (no top-5 error in its records) prints its epoch lines and
    finishes (the epoch log must not expect test_top5_error)."""
    data = _subset_folder(tmp_path / "data")
    out = tmp_path / "run"
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--no-progress", "--out", out])
    assert r.code == 0, r.err
    assert "test_top5_error" not in records(out)[0]
    epoch_lines = [line for line in r.out.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 1 and "test loss" in epoch_lines[0], r.out


def test_f14_test_folder_with_an_unknown_class_fails(cli: Any, tmp_path: Path) -> None:
    """F14: a test/ class the training data lacks is an error naming it (not a silently shifted label)."""
    from cnnkit.train.run import load_data

    data = tmp_path / "data"
    brightness_folder(data / "train", {"digit_1": 0, "digit_3": 1, "digit_7": 2}, 2)
    brightness_folder(data / "test", {"digit_1": 0, "digit_9": 2}, 2)
    with pytest.raises(MismatchError, match="digit_9"):
        load_data(TrainConfig(model=TINY_NET, data=str(data), preprocess="scale"), None)
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--no-progress", "--out", tmp_path / "run"])
    assert_failure(r, "train", "digit_9")


# -- F10: outputs and classes -----------------------------------------------------------------------


def test_f10_ten_outputs_on_a_three_class_folder_fail_before_training(cli: Any, tmp_path: Path) -> None:
    """F10: a network with 10 outputs trained on 3 classes is refused before any training."""
    data = brightness_folder(tmp_path / "data", THREE, 3)
    out = tmp_path / "run"
    r = cli(["train", "--data", data, "--model", "conv3x3x1x4,relu,pool2,fc10", "--preprocess", "scale", "--epochs", "1",
             "--val-split", "0.2", "--no-progress", "--out", out])
    assert_failure(r, "train", "10 outputs", "3 classes")
    assert not (out / "checkpoint.npz").exists() and not (out / "model.npz").exists()


def test_f10_eval_of_a_digit_model_on_fashion_mnist_fails(cli: Any, tmp_path: Path) -> None:
    """F10: `cnnkit eval` of an MNIST-digit model with --data fashion-mnist fails on the class names instead of
    scoring clothes against digit labels."""
    data_dir = real_data_dir()
    if not (data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST test files not found under {data_dir}")
    out = tmp_path / "digits"
    r = cli(["train", "--model", MNIST_NET, "--train-limit", "200", "--test-limit", "200", "--epochs", "1",
             "--no-progress", "--data-dir", data_dir, "--out", out])
    assert r.code == 0, r.err
    r = cli(["eval", out, "--data", "fashion-mnist", "--data-dir", data_dir, "--no-progress"])
    line = assert_failure(r, "eval", "classes")
    assert "Trouser" in line or "T-shirt" in line, line
    r = cli(["eval", out, "--data-dir", data_dir, "--no-progress", "--json"])  # its own dataset still evaluates
    assert r.code == 0, r.err


# -- F15: no Pillow -----------------------------------------------------------------------------------


def _without_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` / `from PIL import Image` now raise ImportError
    monkeypatch.delitem(sys.modules, "PIL.Image", raising=False)


def test_f15_predict_without_pillow(cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """F15: `cnnkit predict model.npz x.png` without Pillow: exit 1, one line naming the extra, no traceback."""
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(1, 2, 3, rng=rng), ReLU(), Flatten(), Linear(2 * 10 * 10, 3, rng=rng))
    model = tmp_path / "model.npz"
    cnnkit.save(net, str(model), input_shape=(12, 12, 1), classes=["a", "b", "c"])
    (png,) = write_pngs(tmp_path / "img", [np.full((12, 12), 9, np.uint8)])
    assert cli(["predict", model, png]).code == 0  # with Pillow it works
    _without_pillow(monkeypatch)
    assert_failure(cli(["predict", model, png]), "predict", "pip install 'cnnkit[images]'")


def test_f15_train_on_a_folder_without_pillow(cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """F15: `cnnkit train --data FOLDER` without Pillow: exit 1, one line naming the extra, no traceback."""
    data = tmp_path / "data"
    brightness_folder(data / "train", THREE, 2)
    brightness_folder(data / "test", THREE, 1)
    _without_pillow(monkeypatch)
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--no-progress", "--out", tmp_path / "run"])
    assert_failure(r, "train", "pip install 'cnnkit[images]'")


# -- image folders --------------------------------------------------------------------------------------


def _rgb_digit(k: int, shift: int) -> np.ndarray:
    img = np.zeros((28, 28, 3), np.uint8)
    img[4:24, 2 + 2 * k + shift : 5 + 2 * k + shift] = (255, 180, 90)  # a coloured bar whose column is the class
    return img


def rgb_digit_folder(root: Path) -> Path:
    for k in range(10):
        write_pngs(root / "train" / str(k), [_rgb_digit(k, s) for s in (0, 1)], mode="RGB")
        write_pngs(root / "test" / str(k), [_rgb_digit(k, 0)], mode="RGB")
    return root


def test_rgb_png_folder_trains_the_base_model_without_flags(cli: Any, tmp_path: Path) -> None:
    """A folder of 28x28 RGB PNG digits trains the default `base` model with no colour or size flags: the images
    are read as grayscale because the model takes one channel."""
    data = rgb_digit_folder(tmp_path / "data")
    out = tmp_path / "run"
    r = cli(["train", "--data", data, "--epochs", "1", "--no-progress", "--out", out])
    assert r.code == 0, r.err
    m = load_model(out / "model.npz")
    assert m.input_shape == (28, 28, 1)
    assert m.classes == [str(k) for k in range(10)]
    assert json.loads((out / "config.json").read_text())["model"] == "base"
    assert np.isfinite(records(out)[-1]["test_loss"])


def _mixed_size_folder(root: Path) -> Path:
    for name, k in THREE.items():
        for i, size in enumerate([(12, 12), (16, 14), (10, 20)]):
            write_pngs(root / name / f"s{i}", [np.full(size, 40 + 90 * k, np.uint8)])
    return root


def test_mixed_size_images_fail_naming_size(cli: Any, tmp_path: Path) -> None:
    """Images of several sizes with a network string (no input size of its own) fail with one line naming --size
    (the command-line flag, not the Python argument)."""
    data = _mixed_size_folder(tmp_path / "data")
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--val-split", "0.2", "--no-progress", "--out", tmp_path / "a"])
    assert_failure(r, "train", "--size")


def test_mixed_size_images_train_with_size(cli: Any, tmp_path: Path) -> None:
    """The same folder trains with --size 12x12 (every image resized to 12x12)."""
    data = _mixed_size_folder(tmp_path / "data")
    out = tmp_path / "b"
    r = cli(["train", "--data", data, *TINY_FLAGS, "--epochs", "1", "--val-split", "0.2", "--size", "12x12", "--no-progress",
             "--out", out])
    assert r.code == 0, r.err
    assert load_model(out / "model.npz").input_shape == (12, 12, 1)


def test_color_rgb_with_the_one_channel_base_model_fails_clearly(cli: Any, tmp_path: Path) -> None:
    """--color rgb with `base` (one input channel): refused before training, naming 1 channel against 3."""
    data = rgb_digit_folder(tmp_path / "data")
    out = tmp_path / "run"
    r = cli(["train", "--data", data, "--color", "rgb", "--epochs", "1", "--no-progress", "--out", out])
    assert r.code in (1, 2), (r.code, r.err)
    assert "Traceback" not in r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("cnnkit train: error: "), last
    assert "1 input channels" in last and "3 arrive" in last, last
    assert not (out / "model.npz").exists()


def test_training_and_predict_resample_identically(tmp_path: Path) -> None:
    """An image of another size is turned into the same numbers by the folder reader (training) and by
    decode_image (predict): same colour conversion, same bilinear resize."""
    from cnnkit.data import load_image_folder
    from cnnkit.data.images import decode_image

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    write_pngs(data / "a", [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), rng.integers(0, 256, (40, 33, 3), dtype=np.uint8)],
               mode="RGB")
    write_pngs(data / "b", [rng.integers(0, 256, (17, 50, 3), dtype=np.uint8)], mode="RGB")
    write_pngs(data / "c", [rng.integers(0, 256, (35, 35), dtype=np.uint8)])
    ds = load_image_folder(data, color="grayscale", size=(28, 28))
    files = sorted(data.rglob("*.png"))
    assert ds.images.shape == (len(files), 28, 28, 1)
    for i, f in enumerate(files):
        assert np.array_equal(decode_image(f, "grayscale", (28, 28)), ds.images[i]), f
    ds_rgb = load_image_folder(data, color="rgb", size=(28, 28))
    for i, f in enumerate(files):
        assert np.array_equal(decode_image(f, "rgb", (28, 28)), ds_rgb.images[i]), f


def test_predict_says_when_an_image_was_resized(cli: Any, tmp_path: Path) -> None:
    """predict resizes an image of another size to the model's input, as training did, and says so: the JSON
    names the source size, the text line too, and a changed aspect ratio points at --score-map."""
    from cnnkit.models import create
    from cnnkit.models.file import save_model

    net = create("conv3x3x1x4,relu,pool2,fc3", np.random.default_rng(0), input_shape=(8, 8, 1))
    save_model(tmp_path / "m.npz", net, input_shape=(8, 8, 1), classes=["a", "b", "c"])
    rng = np.random.default_rng(1)
    write_pngs(tmp_path / "imgs", [rng.integers(0, 256, (8, 8), dtype=np.uint8), rng.integers(0, 256, (8, 24), dtype=np.uint8)])
    same, wide = sorted((tmp_path / "imgs").glob("*.png"))
    r = cli(["predict", str(tmp_path / "m.npz"), str(same), str(wide), "--json"])
    assert r.code == 0, r.err
    results = json.loads(r.out)
    assert "resized_from" not in results[0]
    assert results[1]["resized_from"] == [8, 24] and results[1]["resized_to"] == [8, 8]
    r = cli(["predict", str(tmp_path / "m.npz"), str(wide)])
    assert "resized from 8x24 to 8x8" in r.out and "--score-map" in r.out


# -- per-model defaults ----------------------------------------------------------------------------------


def test_cifar_model_trains_with_its_own_defaults(cli: Any, tmp_path: Path) -> None:
    """`--model cifar` with default settings on a 32x32 RGB folder (10 classes) trains 2 epochs with finite losses,
    and config.json records the model's own defaults: lr 0.01 and per-channel standardisation."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for k in range(10):
        def noise(k: int = k) -> np.ndarray:
            return np.clip(rng.normal(20 + 22 * k, 30, (32, 32, 3)), 0, 255).astype(np.uint8)

        write_pngs(data / "train" / f"class{k}", [noise() for _ in range(4)], mode="RGB")
        write_pngs(data / "test" / f"class{k}", [noise()], mode="RGB")
    out = tmp_path / "run"
    r = cli(["train", "--model", "cifar", "--data", data, "--epochs", "2", "--no-progress", "--out", out])
    assert r.code == 0, r.err
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == pytest.approx(0.01)
    assert config["preprocess"] == "per_channel"
    recs = records(out)
    assert [x["epoch"] for x in recs] == [1, 2]
    for x in recs:
        assert np.isfinite(x["train_loss"]) and np.isfinite(x["test_loss"]), x
    assert load_model(out / "model.npz").input_shape == (32, 32, 3)


# -- training flags --------------------------------------------------------------------------------------


def test_early_stopping_and_keep_best_on_mnist(cli: Any, tmp_path: Path) -> None:
    """--val-split 0.2 --early-stopping 2 --keep-best: training stops two epochs after the best validation loss
    (or at --epochs), best.npz holds the best epoch's model and the done: line names it."""
    data_dir = real_data_dir()
    out = tmp_path / "run"
    r = cli(["train", "--model", MNIST_NET, "--train-limit", "300", "--test-limit", "300", "--epochs", "6", "--lr", "0.002",
             "--batch-size", "20", "--val-split", "0.2", "--early-stopping", "2", "--keep-best", "--no-progress",
             "--data-dir", data_dir, "--out", out])
    assert r.code == 0, r.err
    recs = records(out)
    val = [x["val_loss"] for x in recs]
    best = int(np.argmin(val)) + 1
    assert len(recs) == 6 or len(recs) == best + 2, val
    assert len(recs) - best <= 2, val
    assert (out / "best.npz").is_file() and (out / "model.npz").is_file()
    done = [line for line in r.out.splitlines() if line.startswith("done:")]
    assert len(done) == 1, r.out
    assert f"best model (epoch {best}" in done[0] and "best.npz" in done[0], done[0]
    assert np.sum(recs[0]["val_confusion"]) == 60


@pytest.mark.parametrize("flag", [["--early-stopping", "2"], ["--keep-best"]])
def test_early_stopping_and_keep_best_need_val_split(flag: list[str], cli: Any, tmp_path: Path) -> None:
    """--early-stopping / --keep-best without --val-split are usage errors (exit 2)."""
    r = cli(["train", *flag, "--epochs", "1", "--no-progress", "--out", tmp_path / "run"])
    assert r.code == 2, (r.code, r.err)
    assert "--val-split" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "run").exists()


def _weights(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = load_arrays(path)
    return arrays


def test_resume_with_more_epochs_extends_a_finished_run(cli: Any, tmp_path: Path) -> None:
    """--resume --epochs 3 on a finished 2-epoch run gives the same model, bit for bit, as 3 epochs in one go."""
    data = brightness_folder(tmp_path / "data", THREE, 5)
    common = ["train", "--data", data, *TINY_FLAGS, "--val-split", "0.2", "--no-progress"]
    short, full = tmp_path / "short", tmp_path / "full"
    assert cli([*common, "--epochs", "2", "--out", short]).code == 0
    assert [x["epoch"] for x in records(short)] == [1, 2]
    r = cli([*common, "--epochs", "3", "--out", short, "--resume"])
    assert r.code == 0, r.err
    assert cli([*common, "--epochs", "3", "--out", full]).code == 0
    a, b = _weights(short / "model.npz"), _weights(full / "model.npz")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    ra, rb = records(short), records(full)
    assert [x["epoch"] for x in ra] == [1, 2, 3]
    assert [x["train_loss"] for x in ra] == [x["train_loss"] for x in rb]
    assert [x["val_loss"] for x in ra] == [x["val_loss"] for x in rb]


def test_init_from_starts_from_the_model_files_weights(cli: Any, tmp_path: Path) -> None:
    """--init-from MODEL starts from that model's weights: with a negligible learning rate the result is the file's
    weights, and one epoch from a trained model has a lower training loss than one epoch from scratch."""
    data = brightness_folder(tmp_path / "data", THREE, 6)
    common = ["train", "--data", data, *TINY_FLAGS, "--val-split", "0.2", "--no-progress"]
    first = tmp_path / "first"
    assert cli([*common, "--epochs", "6", "--out", first]).code == 0
    trained = load_model(first / "model.npz").network.params

    frozen = tmp_path / "frozen"
    flags = [f for f in common if f not in ("--lr", "0.05")]
    r = cli([*flags, "--lr", "1e-30", "--epochs", "1", "--init-from", first / "model.npz", "--out", frozen])
    assert r.code == 0, r.err
    kept = load_model(frozen / "model.npz").network.params
    assert kept.keys() == trained.keys()
    for k in trained:
        assert np.allclose(kept[k], trained[k], rtol=0, atol=1e-6), k

    warm, cold = tmp_path / "warm", tmp_path / "cold"
    assert cli([*common, "--epochs", "1", "--init-from", first, "--out", warm]).code == 0  # a run directory works too
    assert cli([*common, "--epochs", "1", "--out", cold]).code == 0
    assert records(warm)[0]["train_loss"] < records(cold)[0]["train_loss"]
    assert json.loads((warm / "config.json").read_text())["init_from"] == str(first / "model.npz")


def _option_entries(help_text: str) -> list[str]:
    """The help text's option entries (an option line and its continuation lines), whitespace collapsed."""
    entries: list[str] = []
    for line in help_text.splitlines():
        if re.match(r"^ {2}-", line):
            entries.append(line)
        elif entries and line.startswith("    ") and line.strip():
            entries[-1] += " " + line
        elif not line.strip() or not line.startswith(" "):
            entries.append("")  # a blank line or a section title ends the entry
    return [" ".join(e.split()) for e in entries if e]


def test_every_command_help_shows_its_defaults(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `cnnkit <command> --help` shows "(default: ...)" for each option that has a default."""
    monkeypatch.setenv("COLUMNS", "200")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"train", "eval", "predict", "summary", "data"} <= set(subparsers.choices)
    missing = []
    for command, sub in subparsers.choices.items():
        r = cli([command, "--help"])
        assert r.code == 0, (command, r.err)
        entries = _option_entries(r.out)
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if action.default in (None, False, argparse.SUPPRESS):
                continue
            entry = next((e for e in entries if re.match(rf"{re.escape(action.option_strings[0])}\b", e)), None)
            assert entry is not None, (command, action.option_strings, r.out)
            if "(default:" not in entry:
                missing.append(f"{command} {action.option_strings[0]}: {entry}")
    assert not missing, "\n".join(missing)
