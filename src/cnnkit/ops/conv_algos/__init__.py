"""Convolution algorithms, and a planner that picks one per layer by timing them (:mod:`.planner`).

========== ==========================================================================================
name       algorithm (supports)
========== ==========================================================================================
im2row     the reference: phi(x) by NumPy's strided copy, one GEMM (eq. 15.25); everything
im2row-jit the same product, phi(x) by a compiled gather with padding on the fly; numba, not 1x1
direct     direct compiled loops; depthwise convolutions (one input channel per group), numba
winograd2  Winograd F(2x2, 3x3); 3x3 kernels at stride 1, dilation 1, one group
fft        the convolution theorem on the padded grid; kernels 5x5 and larger at stride 1, one group
winograd4  Winograd F(4x4, 3x3); as winograd2, fewer multiplications, about one digit less accurate
========== ==========================================================================================

The order is the planner's preference: a later algorithm must be clearly faster to be chosen
(:data:`planner.MARGIN`). ``CNNKIT_CONV_ALGO=<name>`` forces one (``im2row``: the reference everywhere).

Examples
--------
>>> import numpy as np
>>> from cnnkit.ops.conv import conv2d_forward
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 8, 8, 4)), rng.standard_normal((3, 3, 4, 5))
>>> ref, _ = conv2d_forward(x, w, None, padding=1)
>>> y, _ = conv2d_forward(x, w, None, padding=1, algo="winograd4")
>>> bool(np.allclose(y, ref))
True
>>> supported(geometry((2, 8, 8, 4), (3, 3, 4, 5), padding=1))[:1], "winograd4" in ALGORITHMS
(['im2row'], True)
"""

from __future__ import annotations

from typing import Any

from cnnkit.backend import xp
from cnnkit.ops.conv_algos.base import Algorithm, ConvGeometry
from cnnkit.ops.conv_algos.direct import DirectDepthwise
from cnnkit.ops.conv_algos.fft import FFTConv
from cnnkit.ops.conv_algos.im2row import Im2row, Im2rowJit
from cnnkit.ops.conv_algos.winograd import WinogradF2, WinogradF4
from cnnkit.ops.geometry import IntPair, Padding, window

__all__ = ["ALGORITHMS", "Algorithm", "ConvGeometry", "geometry", "get", "supported"]

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (Im2row(), Im2rowJit(), DirectDepthwise(), WinogradF2(), FFTConv(), WinogradF4())
}
"""Every algorithm by name, in the planner's order of preference (the reference first)."""


def get(name: str) -> Algorithm:
    """The algorithm called ``name``; ValueError for an unknown name.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import get
    >>> get("winograd2"), get("winograd2").summary
    (<conv algorithm winograd2>, 'Winograd F(2x2, 3x3): 3x3 stride 1, 2.25x fewer multiplications')
    >>> get("gemm")
    Traceback (most recent call last):
    ...
    ValueError: unknown convolution algorithm 'gemm'; expected one of im2row, im2row-jit, direct, winograd2, fft, winograd4
    """
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown convolution algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}") from None


def geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: IntPair = 1, padding: Padding = 0,
             dilation: IntPair = 1, groups: int = 1, dtype: Any = "float32") -> ConvGeometry:
    """The :class:`ConvGeometry` of a convolution given as conv2d's arguments (shapes only).

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry
    >>> g = geometry((2, 8, 8, 3), (3, 3, 3, 16), stride=2, padding=1)
    >>> g.out_shape, g.macs, g.dtype  # macs: 2*4*4 outputs x 3*3*3 taps x 16 channels
    ((2, 4, 4, 16), 13824, 'float32')
    >>> geometry((1, 8, 8, 4), (3, 3, 1, 4), groups=4, dtype="float64").depthwise
    True
    """
    n, h, w, c = (int(v) for v in x_shape)
    kh, kw, cg, k = (int(v) for v in w_shape)
    win = window((h, w), (kh, kw), stride, padding, dilation, what="conv2d")
    return ConvGeometry((n, h, w, c), (kh, kw, cg, k), win, int(groups), xp.dtype(dtype).name)


def supported(g: ConvGeometry) -> list[str]:
    """The names of the algorithms that compute ``g``, in order of preference.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry, supported
    >>> supported(geometry((1, 8, 8, 4), (1, 1, 4, 8)))  # 1x1: phi(x) is x itself, only the reference
    ['im2row']
    >>> names = supported(geometry((1, 8, 8, 4), (3, 3, 4, 8), padding=1))
    >>> names[0], names[-2:]  # the reference first, the least accurate last (im2row-jit between, with numba)
    ('im2row', ['winograd2', 'winograd4'])
    """
    return [name for name, a in ALGORITHMS.items() if a.supports(g)]
