"""What every convolution algorithm shares: the geometry it is asked about and the contract it keeps.

An algorithm computes exactly the layer's convolution (eq. 15.25's cross-correlation with stride, padding,
dilation and groups) by its own route. It says which geometries it handles (:meth:`Algorithm.supports`);
for those it gives the forward output and, from the input x and dY, the gradients dX (eq. 15.49's) and dW
(eq. 15.38's) of the same function. Every algorithm keeps only x for its backward pass (the im2row
reference may keep phi(x) instead; :mod:`cnnkit.ops.conv` decides). Work is done in chunks of images so
that temporaries stay under a byte budget, in a :class:`~cnnkit.ops.workspace.Workspace` when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cnnkit.backend import Array, xp
from cnnkit.ops.geometry import Window


@dataclass(frozen=True)
class ConvGeometry:
    """One convolution's shapes: input (N, H, W, C_in), weight (kh, kw, C_in/groups, C_out), window, groups, dtype.

    Examples
    --------
    >>> from cnnkit.ops.conv_algos import geometry
    >>> g = geometry((8, 32, 32, 64), (3, 3, 64, 64), padding=1)
    >>> g.out_shape, g.is_3x3_stride1, g.rows_bytes  # phi(x): 8*32*32 rows of 3*3*64 float32
    ((8, 32, 32, 64), True, 18874368)
    """

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    win: Window
    groups: int
    dtype: str

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.x_shape[0], self.win.out[0], self.win.out[1], self.w_shape[3])

    @property
    def itemsize(self) -> int:
        return int(xp.dtype(self.dtype).itemsize)

    @property
    def taps(self) -> int:
        return self.w_shape[0] * self.w_shape[1]

    @property
    def plain(self) -> bool:
        """Stride 1, dilation 1, one group: the shapes the transform algorithms (Winograd, FFT) take."""
        return self.win.stride == (1, 1) and self.win.dilation == (1, 1) and self.groups == 1

    @property
    def is_3x3_stride1(self) -> bool:
        return self.plain and self.w_shape[:2] == (3, 3)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (C_in/groups == 1) with several groups: a depthwise convolution."""
        return self.groups > 1 and self.w_shape[2] == 1

    @property
    def rows_bytes(self) -> int:
        """Bytes of phi(x) for the whole batch."""
        n, (ho, wo) = self.x_shape[0], self.win.out
        return n * ho * wo * self.taps * self.x_shape[3] * self.itemsize

    @property
    def x_bytes(self) -> int:
        n, h, w, c = self.x_shape
        return n * h * w * c * self.itemsize

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass (eq. 15.25's product)."""
        n, (ho, wo) = self.x_shape[0], self.win.out
        kh, kw, cg, c_out = self.w_shape
        return n * ho * wo * kh * kw * cg * c_out

    def with_batch(self, n: int) -> ConvGeometry:
        """The same convolution on ``n`` images."""
        return ConvGeometry((n, *self.x_shape[1:]), self.w_shape, self.win, self.groups, self.dtype)


class Algorithm:
    """A way to compute the convolution. Subclasses set ``name`` and implement the three methods.

    Examples
    --------
    Every algorithm that supports a geometry gives the reference's output and gradients:

    >>> import numpy as np
    >>> from cnnkit.ops.conv_algos import ALGORITHMS, geometry
    >>> g = geometry((2, 6, 6, 2), (3, 3, 2, 3), padding=1, dtype="float64")
    >>> rng = np.random.default_rng(0)
    >>> x, w, dy = rng.standard_normal(g.x_shape), rng.standard_normal(g.w_shape), rng.standard_normal(g.out_shape)
    >>> algs = [a for a in ALGORITHMS.values() if a.supports(g)]
    >>> ref = ALGORITHMS["im2row"]
    >>> y, (dx, dw) = ref.forward(x, w, None, g, 2**20, None), ref.backward(x, dy, w, g, True, 2**20, None)
    >>> y.shape, dx.shape, dw.shape
    ((2, 6, 6, 3), (2, 6, 6, 2), (3, 3, 2, 3))
    >>> all(np.allclose(a.forward(x, w, None, g, 2**20, None), y) for a in algs)
    True
    >>> all(np.allclose(a.backward(x, dy, w, g, True, 2**20, None)[1], dw) for a in algs)
    True
    """

    name: ClassVar[str] = ""
    #: one line for listings (``python scripts/bench_conv_algos.py``, docs)
    summary: ClassVar[str] = ""

    def supports(self, g: ConvGeometry) -> bool:  # pragma: no cover - abstract
        """Whether this algorithm computes this geometry (else the caller falls back to im2row)."""
        raise NotImplementedError

    def forward(self, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, chunk_bytes: int, ws: Any) -> Array:  # pragma: no cover
        """y (N, H_out, W_out, C_out) for x (N, H, W, C_in) and weight (kh, kw, C_in/groups, C_out), bias added."""
        raise NotImplementedError

    def backward(self, x: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, chunk_bytes: int, ws: Any
                 ) -> tuple[Array | None, Array]:  # pragma: no cover - abstract
        """(dX or None, dW) from the forward's input x and dY."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<conv algorithm {self.name}>"


def images_per_chunk(n: int, per_image_bytes: int, chunk_bytes: int) -> int:
    """How many images fit ``chunk_bytes`` of temporaries (at least one, at most ``n``).

    Examples
    --------
    >>> from cnnkit.ops.conv_algos.base import images_per_chunk
    >>> images_per_chunk(100, 3 * 2**20, 16 * 2**20), images_per_chunk(100, 64 * 2**20, 16 * 2**20)
    (5, 1)
    """
    return max(1, min(n, chunk_bytes // max(per_image_bytes, 1)))
