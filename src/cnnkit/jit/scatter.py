"""Compiled scatter-add of row2im (eq. 15.49): the adjoint of im2row, one pass over the rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnkit.jit import HAVE_NUMBA, kernel

__all__ = ["row2im_add"]

row2im_add: Callable[..., Any] | None  # None without numba
if HAVE_NUMBA:

    @kernel
    def row2im_add(cols: np.ndarray, out: np.ndarray, sh: int, sw: int, dh: int, dw: int) -> None:
        """out[n, ho*sh + i*dh, wo*sw + j*dw, c] += cols[n, ho, wo, i, j, c] (out: padded, pre-zeroed)."""
        n, ho, wo, kh, kw, c = cols.shape
        for b in range(n):
            for oh in range(ho):
                for ow in range(wo):
                    for i in range(kh):
                        h = oh * sh + i * dh
                        for j in range(kw):
                            w = ow * sw + j * dw
                            for k in range(c):
                                out[b, h, w, k] += cols[b, oh, ow, i, j, k]

else:  # pragma: no cover
    row2im_add = None
