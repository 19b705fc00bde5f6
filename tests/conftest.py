"""Shared test helpers: seeded generators and the optional PyTorch oracle."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Convolution layers run the reference (im2row) in the tests unless the environment names another algorithm:
# the planner's timed choice would make results depend on the machine's load. The algorithms and the planner
# have their own tests (tests/ops/test_conv_algos.py); `CNNKIT_CONV_ALGO=winograd4 pytest tests/ops` runs the
# convolution tests (float64 gradient checks included) through another algorithm.
os.environ.setdefault("CNNKIT_CONV_ALGO", "im2row")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
