"""Compiled optimiser updates in one pass over the parameters: SGD with momentum, and Adam.

Each performs the NumPy path's operations, element by element, in the same order and the same dtype (the
scalars are passed in the parameter's dtype), so both paths give identical bits; the parallel variants split
the elements and change nothing in the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel, launch

__all__ = ["OPTIM_THRESHOLD", "adam_", "sgd_momentum_"]

OPTIM_THRESHOLD = 1 << 16
"""Parameter elements from which an update runs on more than one thread (docs/perf-notes.md)."""


def _sgd_momentum(
    p: np.ndarray, g: np.ndarray, buf: np.ndarray, lr: np.floating, mu: np.floating, wd: np.floating, decay: bool
) -> None:
    """One SGD step with momentum over flat arrays (scalars of p's dtype):
    d = g + wd*p (when ``decay``); buf = mu*buf + d; p -= lr*buf."""
    for k in prange(p.shape[0]):
        d = g[k]
        if decay:
            d = p[k] * wd + g[k]
        b = buf[k] * mu + d
        buf[k] = b
        p[k] = p[k] - b * lr


def _adam(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: np.ndarray, wd: np.floating, w: np.floating,
    beta2: np.floating, c2: np.floating, step: np.floating, bc2: np.floating, eps: np.floating, decay: bool,
    small: bool, amsgrad: bool,
) -> None:
    """One Adam step over flat arrays, the operations of cnnkit.optim.Adam's NumPy path in its order:
    d = p*wd + g (when ``decay``); m = m + (d - m)*w when ``small`` (w = 1 - beta1), else m = d - (d - m)*w
    (w = beta1); v = v*beta2 + (d*c2)*d (c2 = 1 - beta2); with ``amsgrad`` vmax = maximum(vmax, v) is used
    for v; p -= (m*step) / (sqrt(v)/bc2 + eps)."""
    for k in prange(p.shape[0]):
        d = g[k]
        if decay:
            d = p[k] * wd + g[k]
        mk = m[k]
        t = d - mk
        mk = mk + t * w if small else d - t * w
        m[k] = mk
        vk = v[k] * beta2 + (d * c2) * d
        v[k] = vk
        if amsgrad:
            a = vmax[k]
            r = a if a > vk else vk
            if a != a:
                r = a
            vmax[k] = r
            vk = r
        p[k] = p[k] - (mk * step) / (np.sqrt(vk) / bc2 + eps)


sgd_momentum_: Callable[..., Any] | None  # None without numba
adam_: Callable[..., Any] | None
if HAVE_NUMBA:
    from numba import prange

    _SGD = (kernel(_sgd_momentum), kernel(_sgd_momentum, parallel=True))

    def sgd_momentum_(
        p: np.ndarray, g: np.ndarray, buf: np.ndarray, lr: np.floating, mu: np.floating, wd: np.floating, decay: bool
    ) -> None:
        """One SGD step with momentum in a single pass over flat arrays (scalars of p's dtype):
        d = g + wd*p (when ``decay``); buf = mu*buf + d; p -= lr*buf. The operations and their rounding are
        those of the NumPy path in cnnkit.optim.sgd, element by element, so both give identical bits."""
        launch(*_SGD, p.shape[0], OPTIM_THRESHOLD, p, g, buf, lr, mu, wd, decay)

    _ADAM = (kernel(_adam), kernel(_adam, parallel=True))

    def adam_(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: np.ndarray, *scalars: Any) -> None:
        """One Adam step over flat arrays in a single pass (see ``_adam`` for the scalars, in p's dtype)."""
        launch(*_ADAM, p.shape[0], OPTIM_THRESHOLD, p, g, m, v, vmax, *scalars)

else:  # pragma: no cover
    sgd_momentum_ = adam_ = None
