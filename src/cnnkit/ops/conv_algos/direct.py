"""Direct convolution for depthwise layers (one input channel per group), compiled with numba.

im2row turns a depthwise convolution into C_in matrix products of width 1 (a batched ``matmul`` of tiny
matrices) after a kh*kw-fold copy; the direct sum y[., o] = sum over taps of x[., o // mult] w[tap, o]
reads x in place and is vectorised over the channels. Any stride, padding and dilation; channel
multiplier ``mult`` = C_out / C_in.

Direct kernels for 1- and 3-channel first layers were tried too and lost to im2row's matrix product on this
machine (docs/perf-notes.md); the compiled gather (``im2row-jit``) is the candidate there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cnnkit import jit
from cnnkit.backend import Array, xp
from cnnkit.ops.conv_algos.base import Algorithm, ConvGeometry
from cnnkit.ops.conv_algos.im2row import conv_kernels


class DirectDepthwise(Algorithm):
    """Direct depthwise convolution (groups = C_in, C_out = mult * C_in).

    Examples
    --------
    A depthwise convolution with channel multiplier 2; without numba ``algo="direct"`` runs the reference:

    >>> import numpy as np
    >>> from cnnkit import jit
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.direct import DirectDepthwise
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 7, 7, 3)), rng.standard_normal((3, 3, 1, 6))
    >>> DirectDepthwise().supports(geometry(x.shape, w.shape, 2, 1, groups=3, dtype="float64")) == jit.HAVE_NUMBA
    True
    >>> ref, _ = conv2d_forward(x, w, None, stride=2, padding=1, groups=3)
    >>> y, cache = conv2d_forward(x, w, None, stride=2, padding=1, groups=3, algo="direct")
    >>> y.shape, bool(np.allclose(y, ref))
    ((2, 4, 4, 6), True)
    """

    name: ClassVar[str] = "direct"
    summary: ClassVar[str] = "direct compiled loops for depthwise convolutions (groups = C_in)"

    def supports(self, g: ConvGeometry) -> bool:
        return jit.active() and g.depthwise and g.dtype in ("float32", "float64")

    @staticmethod
    def _args(g: ConvGeometry) -> tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]]:
        t, _, l, _ = g.win.pads
        return g.w_shape[3] // g.x_shape[3], g.win.stride, g.win.dilation, (t, l)

    def forward(self, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, chunk_bytes: int, ws: Any) -> Array:
        kernels = conv_kernels()
        assert kernels is not None
        kh, kw, _, k = weight.shape
        y = xp.empty(g.out_shape, dtype=x.dtype)
        b = bias.astype(x.dtype, copy=False) if bias is not None else xp.zeros(k, dtype=x.dtype)
        kernels.depthwise_forward(xp.ascontiguousarray(x), xp.ascontiguousarray(weight.reshape(kh, kw, k)), b, y, *self._args(g))
        return y

    def backward(self, x: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, chunk_bytes: int, ws: Any
                 ) -> tuple[Array | None, Array]:
        kernels = conv_kernels()
        assert kernels is not None
        kh, kw, _, k = weight.shape
        n = x.shape[0]
        x, dy = xp.ascontiguousarray(x), xp.ascontiguousarray(dy)
        per_image = xp.empty((n, kh, kw, k), dtype=x.dtype)  # one slice per image: images run in parallel
        kernels.depthwise_backward_weight(x, dy, per_image, *self._args(g))
        dw = per_image.sum(axis=0).reshape(weight.shape)
        if not need_dx:
            return None, dw
        dx = xp.zeros(x.shape, dtype=x.dtype)
        kernels.depthwise_backward_input(dy, xp.ascontiguousarray(weight.reshape(kh, kw, k)), dx, *self._args(g))
        return dx, dw
