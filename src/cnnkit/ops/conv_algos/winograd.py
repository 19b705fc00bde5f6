"""Winograd's minimal filtering F(m x m, 3 x 3) for 3x3 convolutions at stride 1 (Lavin and Gray, 2016).

Each m x m block of outputs comes from an a x a tile of input (a = m + 2, tiles overlapping by 2):

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (one channel pair; (.) is the element-wise product)

summed over the input channels. With the tile transforms V = B^T d B (input) and U = G g G^T (weights),
the sum over channels at each of the a*a tile positions is one matrix product, V (P, C_in) @ U (C_in, C_out)
for the P tiles: a*a batched GEMMs doing (m+2)^2/(9 m^2) of im2row's multiplications (F(2,3): 16/36,
F(4,3): 36/144), and no 9-fold phi(x).

Backward: the forward is a composition of linear maps, so its adjoints give exact gradients of the same
function. With dM = A dY A^T per tile (the output transform's transpose):
dU = V^T dM at each tile position (batched), dW = G^T dU G; dV = dM U^T, and dX is B dV B^T added back
into the overlapping tiles (the input transform's transpose).

Accuracy in float32: F(2,3)'s transforms have entries 0, +-1/2, +-1 and lose almost nothing; F(4,3)'s (up to
8 in A, 5 in B, 1/24 in G) lose about a decimal digit (measured errors in docs/perf-notes.md and
tests/ops/test_conv_algos.py).

The tile transforms are compiled kernels (:func:`cnnkit.jit.conv.wino_gather`, ``wino_scatter``); without
numba they run as NumPy tensor contractions over a strided view of the tiles (correct, slower).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cnnkit import jit
from cnnkit.backend import Array, as_strided, xp
from cnnkit.ops.conv_algos.base import Algorithm, ConvGeometry, images_per_chunk
from cnnkit.ops.conv_algos.im2row import conv_kernels
from cnnkit.ops.workspace import scratch

# gather_numpy and scatter_numpy are the tile transforms' NumPy fallbacks (tested against the kernels), not an API.
__all__ = ["F2_AT", "F2_BT", "F2_G", "F4_AT", "F4_BT", "F4_G", "Winograd", "WinogradF2", "WinogradF4"]

# Lavin and Gray's matrices: B^T (a x a), G (a x 3), A^T (m x a)
F2_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
F2_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
F2_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

F4_BT = np.array(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    np.float64,
)
F4_G = np.array(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    np.float64,
)
F4_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)


def gather_numpy(x: Array, bm: Array, m: int, pad_tl: tuple[int, int], tiles: tuple[int, int], out: Array) -> None:
    """NumPy version of :func:`cnnkit.jit.conv.wino_gather`: out[xi*a+nu, p] = (bm tile_p bm^T)[xi, nu]."""
    n, h, w, c = x.shape
    a, t = bm.shape
    (pt, pl), (th, tw) = pad_tl, tiles
    hp, wp = th * m + t - m, tw * m + t - m
    padded = xp.zeros((n, hp, wp, c), dtype=x.dtype)
    hh, ww = min(h, hp - pt), min(w, wp - pl)
    padded[:, pt : pt + hh, pl : pl + ww] = x[:, :hh, :ww]
    s = padded.strides
    view = as_strided(padded, (n, th, tw, t, t, c), (s[0], m * s[1], m * s[2], s[1], s[2], s[3]), writeable=False)
    out.reshape(a, a, n, th, tw, c)[...] = xp.einsum("xi,nyzijc,uj->xunyzc", bm, view, bm, optimize=True)


def scatter_numpy(mt: Array, am: Array, m: int, pad_tl: tuple[int, int], tiles: tuple[int, int], out: Array,
                  bias: Array, add: bool) -> None:
    """NumPy version of :func:`cnnkit.jit.conv.wino_scatter`."""
    n, h, w, k = out.shape
    t, a = am.shape
    (pt, pl), (th, tw) = pad_tl, tiles
    y = xp.einsum("rx,xunyzk,su->nyzrsk", am, mt.reshape(a, a, n, th, tw, k), am, optimize=True)  # (n, th, tw, t, t, K)
    full = xp.zeros((n, th * m + t - m, tw * m + t - m, k), dtype=out.dtype)
    for r in range(t):
        for sc in range(t):
            full[:, r : r + th * m : m, sc : sc + tw * m : m] += y[:, :, :, r, sc]
    hh, ww = min(h, full.shape[1] - pt), min(w, full.shape[2] - pl)
    if add:
        out[:, :hh, :ww] += full[:, pt : pt + hh, pl : pl + ww]
    else:
        out[...] = 0
        out[:, :hh, :ww] = full[:, pt : pt + hh, pl : pl + ww]
        out += bias


class Winograd(Algorithm):
    """F(m x m, 3 x 3) for 3x3 kernels at stride 1 and dilation 1, one group, any padding.

    Subclasses set ``m`` and the matrices ``BT`` (B^T), ``G`` and ``AT`` (A^T).

    Examples
    --------
    Both sizes against the reference, forward and backward, on a map that is no multiple of the tile (7 x 7):

    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_backward, conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.winograd import WinogradF2, WinogradF4
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 7, 7, 3)), rng.standard_normal((3, 3, 3, 4))
    >>> g = geometry(x.shape, w.shape, padding=1, dtype="float64")
    >>> ref, cache = conv2d_forward(x, w, None, padding=1)
    >>> dy = rng.standard_normal(ref.shape)
    >>> dx_ref, dw_ref, _ = conv2d_backward(dy, cache)
    >>> for alg in (WinogradF2(), WinogradF4()):
    ...     dx, dw = alg.backward(x, dy, w, g, True, 2**20, None)
    ...     print(alg.name, np.allclose(alg.forward(x, w, None, g, 2**20, None), ref),
    ...           np.allclose(dx, dx_ref), np.allclose(dw, dw_ref))
    winograd2 True True True
    winograd4 True True True
    """

    name: ClassVar[str] = ""
    m: ClassVar[int] = 0
    BT: ClassVar[np.ndarray]
    G: ClassVar[np.ndarray]
    AT: ClassVar[np.ndarray]

    def supports(self, g: ConvGeometry) -> bool:
        return g.is_3x3_stride1

    # -- pieces ------------------------------------------------------------------------------------
    def _tiles(self, g: ConvGeometry) -> tuple[int, int]:
        ho, wo = g.win.out
        return -(-ho // self.m), -(-wo // self.m)

    def _mats(self, dtype: Any) -> tuple[Array, Array, Array, Array]:
        """B^T (a x a), A^T (m x a), A (a x m) and B (a x a) in the compute dtype."""
        bt, at = self.BT.astype(dtype), self.AT.astype(dtype)
        return bt, at, xp.ascontiguousarray(at.T), xp.ascontiguousarray(bt.T)

    def weight_transform(self, weight: Array) -> Array:
        """U = G g G^T at every tile position: (a*a, C_in, C_out), computed in float64."""
        a = self.m + 2
        c, k = weight.shape[2], weight.shape[3]
        u = xp.einsum("xi,ijck,yj->xyck", self.G, weight.astype(np.float64), self.G, optimize=True)
        return xp.ascontiguousarray(u.reshape(a * a, c, k).astype(weight.dtype))

    def weight_transform_adjoint(self, du: Array, dtype: Any) -> Array:
        """dW = G^T dU G: (kh, kw, C_in, C_out) from dU (a*a, C_in, C_out), computed in float64."""
        a = self.m + 2
        c, k = du.shape[1], du.shape[2]
        d = du.reshape(a, a, c, k).astype(np.float64)
        return xp.ascontiguousarray(xp.einsum("xi,xyck,yj->ijck", self.G, d, self.G, optimize=True).astype(dtype))

    def _gather(self, x: Array, bm: Array, pad_tl: tuple[int, int], tiles: tuple[int, int], out: Array) -> None:
        kernels = conv_kernels()
        if kernels is not None and jit.usable(x, out):
            kernels.wino_gather(xp.ascontiguousarray(x), bm, self.m, pad_tl, tiles, out)
        else:
            gather_numpy(x, bm, self.m, pad_tl, tiles, out)

    def _scatter(self, mt: Array, am: Array, pad_tl: tuple[int, int], tiles: tuple[int, int], out: Array, bias: Array,
                 add: bool) -> None:
        kernels = conv_kernels()
        if kernels is not None and jit.usable(mt, out):
            kernels.wino_scatter(mt, am, self.m, pad_tl, tiles, out, bias, add)
        else:
            scatter_numpy(mt, am, self.m, pad_tl, tiles, out, bias, add)

    def per_image_bytes(self, g: ConvGeometry) -> int:
        """Temporaries per image: V (a*a tiles x C_in) and M (a*a tiles x C_out)."""
        th, tw = self._tiles(g)
        a = self.m + 2
        return a * a * th * tw * (g.x_shape[3] + g.w_shape[3]) * g.itemsize

    # -- the algorithm ------------------------------------------------------------------------------
    def forward(self, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, chunk_bytes: int, ws: Any) -> Array:
        n, _, _, c = x.shape
        k = weight.shape[3]
        a, (th, tw) = self.m + 2, self._tiles(g)
        t, _, l, _ = g.win.pads
        bt, at, _, _ = self._mats(x.dtype)
        u = self.weight_transform(weight)
        b = bias.astype(x.dtype, copy=False) if bias is not None else xp.zeros(k, dtype=x.dtype)
        y = xp.empty(g.out_shape, dtype=x.dtype)
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        for s in range(0, n, chunk):
            nc = min(chunk, n - s)
            p = nc * th * tw
            v = scratch(ws, "wino_v", (a * a, p, c), x.dtype)
            mt = scratch(ws, "wino_m", (a * a, p, k), x.dtype)
            self._gather(x[s : s + nc], bt, (t, l), (th, tw), v)
            xp.matmul(v, u, out=mt)  # a*a products (P, C_in) @ (C_in, C_out)
            self._scatter(mt, at, (0, 0), (th, tw), y[s : s + nc], b, add=False)
        return y

    def backward(self, x: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, chunk_bytes: int, ws: Any
                 ) -> tuple[Array | None, Array]:
        n, _, _, c = x.shape
        k = weight.shape[3]
        a, (th, tw) = self.m + 2, self._tiles(g)
        t, _, l, _ = g.win.pads
        bt, _, a_mat, b_mat = self._mats(x.dtype)
        u = self.weight_transform(weight) if need_dx else None
        ut = u.transpose(0, 2, 1) if u is not None else None  # U^T per position: (a*a, C_out, C_in)
        du = xp.zeros((a * a, c, k), dtype=x.dtype)
        dx = xp.zeros(x.shape, dtype=x.dtype) if need_dx else None
        zero_bias = xp.zeros(c, dtype=x.dtype)
        dy = xp.ascontiguousarray(dy)
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        for s in range(0, n, chunk):
            nc = min(chunk, n - s)
            p = nc * th * tw
            v = scratch(ws, "wino_v", (a * a, p, c), x.dtype)
            dm = scratch(ws, "wino_m", (a * a, p, k), x.dtype)
            self._gather(x[s : s + nc], bt, (t, l), (th, tw), v)  # V, as in the forward
            self._gather(dy[s : s + nc], a_mat, (0, 0), (th, tw), dm)  # dM = A dY A^T: the output transform's adjoint
            du += xp.matmul(v.transpose(0, 2, 1), dm)  # dU = V^T dM at each position
            if dx is not None:
                assert ut is not None
                xp.matmul(dm, ut, out=v)  # dV = dM U^T, into V's memory
                self._scatter(v, b_mat, (t, l), (th, tw), dx[s : s + nc], zero_bias, add=True)  # B dV B^T, overlapping
        return dx, self.weight_transform_adjoint(du, x.dtype)


class WinogradF2(Winograd):
    """F(2x2, 3x3): 4x4 input tiles, 16 multiplications per 2x2 outputs instead of 36.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.winograd import WinogradF2
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((1, 6, 6, 2)).astype(np.float32), rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    >>> g = geometry(x.shape, w.shape)
    >>> alg = WinogradF2()
    >>> alg.supports(g), alg.supports(geometry(x.shape, w.shape, stride=2)), alg.weight_transform(w).shape
    (True, False, (16, 2, 4))
    >>> ref, _ = conv2d_forward(x, w)
    >>> float(np.abs(alg.forward(x, w, None, g, 2**20, None) - ref).max()) < 1e-5  # float32: as exact as im2row
    True
    """

    name: ClassVar[str] = "winograd2"
    summary: ClassVar[str] = "Winograd F(2x2, 3x3): 3x3 stride 1, 2.25x fewer multiplications"
    m: ClassVar[int] = 2
    BT = F2_BT
    G = F2_G
    AT = F2_AT


class WinogradF4(Winograd):
    """F(4x4, 3x3): 6x6 input tiles, 36 multiplications per 4x4 outputs instead of 144; about one digit less accurate.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.winograd import WinogradF4
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((1, 8, 8, 4)), rng.standard_normal((3, 3, 4, 2))
    >>> alg = WinogradF4()
    >>> alg.weight_transform(w).shape  # U = G w G^T at the 6*6 tile positions
    (36, 4, 2)
    >>> ref, _ = conv2d_forward(x, w, padding=1)
    >>> y = alg.forward(x, w, None, geometry(x.shape, w.shape, padding=1, dtype="float64"), 2**20, None)
    >>> y.shape, bool(np.allclose(y, ref))
    ((1, 8, 8, 2), True)
    """

    name: ClassVar[str] = "winograd4"
    summary: ClassVar[str] = "Winograd F(4x4, 3x3): 3x3 stride 1, 4x fewer multiplications, about 1 digit less accurate"
    m: ClassVar[int] = 4
    BT = F4_BT
    G = F4_G
    AT = F4_AT
