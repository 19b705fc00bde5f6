"""Compiled optimiser updates: SGD with momentum in one pass over the parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel

__all__ = ["sgd_momentum_"]

sgd_momentum_: Callable[..., Any] | None  # None without numba
if HAVE_NUMBA:

    @kernel
    def sgd_momentum_(
        p: np.ndarray, g: np.ndarray, buf: np.ndarray, lr: np.floating, mu: np.floating, wd: np.floating, decay: bool
    ) -> None:
        """One SGD step with momentum in a single pass over flat arrays (scalars of p's dtype):
        d = g + wd*p (when ``decay``); buf = mu*buf + d; p -= lr*buf. The operations and their rounding are
        those of the NumPy path in cnnkit.optim.sgd, element by element, so both give identical bits."""
        for k in range(p.shape[0]):
            d = g[k]
            if decay:
                d = p[k] * wd + g[k]
            b = buf[k] * mu + d
            buf[k] = b
            p[k] = p[k] - b * lr

else:  # pragma: no cover
    sgd_momentum_ = None
