"""Shared fixtures: a BASE network trained briefly on real MNIST (once per session), MNIST test digits as files,
and a command-line runner built with argparse and :func:`cnnkit.inspect.cli.add_commands`."""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.data import real_data_dir

TRAIN_LIMIT = 1000
"""Training images of the session's BASE: 2 epochs of 20 batches of 50 give about 75% test accuracy in a few seconds."""


@dataclass
class Trained:
    run: Path  # the run directory (model.npz, metrics.jsonl, config.json, curves.png)
    data_dir: Path  # the real MNIST files
    test_images: np.ndarray  # uint8 (N, 28, 28, 1), the first test images
    test_labels: np.ndarray
    folder: Path  # an image folder test/<digit>/<i>.png of the first FOLDER_SIZE test digits
    digits: list[Path]  # PNG files of the first test digits, one each


FOLDER_SIZE = 60


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """BASE (exercise 15.6) trained on the first 1000 MNIST training images for 2 epochs (tested on 200)."""
    data_dir = real_data_dir()
    Image = pytest.importorskip("PIL.Image")

    from cnnkit.data import load_dataset
    from cnnkit.train import TrainConfig
    from cnnkit.train.run import train

    root = tmp_path_factory.mktemp("inspect")
    run = root / "run"
    train(TrainConfig(model="base", train_limit=TRAIN_LIMIT, test_limit=200, epochs=2, batch_size=50), run, data_dir=str(data_dir),
          progress=False, log=lambda line: None)
    test = load_dataset("mnist", "test", str(data_dir))
    folder = root / "digits"
    for i in range(FOLDER_SIZE):
        d = folder / "test" / str(int(test.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i, :, :, 0]).save(d / f"{i:04d}.png")
    digits = []
    for i in range(4):
        path = root / f"digit{i}-{int(test.labels[i])}.png"
        Image.fromarray(test.images[i, :, :, 0]).save(path)
        digits.append(path)
    return Trained(run, data_dir, test.images[:2000], test.labels[:2000], folder, digits)


@dataclass
class Result:
    code: int
    out: str
    seconds: float


def run_command(argv: Sequence[str]) -> Result:
    """Parse ``argv`` with a parser holding only the inspect commands and run the command in this process."""
    from cnnkit.inspect.cli import add_commands

    parser = argparse.ArgumentParser(prog="cnnkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands = add_commands(sub)
    args = parser.parse_args([str(a) for a in argv])
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = commands[args.command](args)
    return Result(code, out.getvalue(), time.perf_counter() - start)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, decoded with Pillow (which fails on a broken file)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        return im.size
