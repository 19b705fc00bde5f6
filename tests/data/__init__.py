"""Tests of cnnkit.data; helpers shared by them."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest


def real_data_dir() -> Path:
    """The directory holding the real MNIST/Fashion-MNIST files: $CNNKIT_DATA, else <repo>/../shared/datasets.

    Skips the calling test when it holds no MNIST files.
    """
    env = os.environ.get("CNNKIT_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
    if not (root / "mnist" / "train-images-idx3-ubyte.gz").is_file() and not (
        root / "train-images-idx3-ubyte.gz"
    ).is_file():
        pytest.skip(f"real MNIST files not found under {root} (set CNNKIT_DATA)")
    return root


def call_within(seconds: float, fn: Callable[..., object], *args: object, fifo: Path | None = None) -> BaseException | None:
    """Run ``fn(*args)`` in a thread; the exception it raised (None if it returned). Fails the calling test
    when it has not finished within ``seconds`` (a read from a FIFO that blocks), after opening ``fifo`` for
    writing so that such a reader wakes up and the thread ends."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:  # unblock the reader: a writer that closes at once gives it EOF
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds} s (it blocks)")
    return outcome[0]
