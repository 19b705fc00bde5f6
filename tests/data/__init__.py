"""Tests of cnnkit.data; helpers shared by them."""

from __future__ import annotations

import os
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
