"""Parameter initialisers. Every one takes an explicit ``np.random.Generator`` (no global RNG)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnkit.backend import Array, default_float, xp


def as_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """Return ``rng``, or a fresh OS-seeded generator when None (like an unseeded framework)."""
    return rng if rng is not None else np.random.default_rng()


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: Any = None) -> Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv2d and Linear weights and biases."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return xp.asarray(rng.uniform(-bound, bound, size=shape), dtype=dtype or default_float())


def gaussian(shape: tuple[int, ...], std: float, rng: np.random.Generator, dtype: Any = None) -> Array:
    """std * N(0, 1), e.g. MatConvNet's 0.01 * randn."""
    return xp.asarray(std * rng.standard_normal(size=shape), dtype=dtype or default_float())


def he_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: Any = None) -> Array:
    """N(0, 2/fan_in) (He et al.), suited to ReLU networks."""
    return gaussian(shape, math.sqrt(2.0 / max(fan_in, 1)), rng, dtype)
