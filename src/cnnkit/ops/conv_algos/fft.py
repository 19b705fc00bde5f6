"""Convolution by the FFT (the convolution theorem, lecture notes §1.2.4; :mod:`cnnkit.ops.fft` is the same
theorem as an op of its own, with true convolution and the full/same/circular modes).

On the padded input's grid (Hp x Wp) every product below is circular, and none of them wraps around for the
outputs that are kept (stride 1, no dilation):

* forward: y = the valid cross-correlation of x with w, F[y] = F[x] conj(F[w]) summed over C_in:
  at each frequency one product X (N, C_in) @ conj(W) (C_in, C_out);
* dX: the full convolution of dY with w, F[dX] = F[dY] F[w]: dY (N, C_out) @ W^T (C_out, C_in);
* dW: the cross-correlation of x with dY, F[dW] = sum over images of F[x] conj(F[dY]): X^T (C_in, N) @ conj(dY).

Cost O(N (C_in + C_out) HW log HW) for the transforms plus N C_in C_out H (W/2+1) complex multiply-adds,
independent of the kernel's size: the candidate for 5x5 and larger kernels on small maps.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cnnkit.backend import Array, xp
from cnnkit.ops.conv_algos.base import Algorithm, ConvGeometry, images_per_chunk
from cnnkit.ops.im2row import pad_nhwc


class FFTConv(Algorithm):
    """The convolution theorem on the padded input's grid; stride 1, dilation 1, one group, kernels of 5x5 and up.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_backward, conv2d_forward
    >>> from cnnkit.ops.conv_algos import geometry
    >>> from cnnkit.ops.conv_algos.fft import FFTConv
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 9, 9, 3)), rng.standard_normal((5, 5, 3, 4))
    >>> g = geometry(x.shape, w.shape, padding=2, dtype="float64")
    >>> FFTConv().supports(g), FFTConv().supports(geometry(x.shape, (3, 3, 3, 4)))  # 3x3: not worth it
    (True, False)
    >>> ref, cache = conv2d_forward(x, w, None, padding=2)
    >>> y = FFTConv().forward(x, w, None, g, 2**20, None)
    >>> y.shape, bool(np.allclose(y, ref))
    ((2, 9, 9, 4), True)
    >>> dy = rng.standard_normal(y.shape)
    >>> dx, dw = FFTConv().backward(x, dy, w, g, True, 2**20, None)
    >>> dx_ref, dw_ref, _ = conv2d_backward(dy, cache)
    >>> bool(np.allclose(dx, dx_ref)), bool(np.allclose(dw, dw_ref))
    (True, True)
    """

    name: ClassVar[str] = "fft"
    summary: ClassVar[str] = "FFT: products of spectra on the padded grid (kernels 5x5 and larger)"
    min_kernel: ClassVar[int] = 5

    def supports(self, g: ConvGeometry) -> bool:
        return g.plain and min(g.w_shape[:2]) >= self.min_kernel and g.dtype in ("float32", "float64")

    def _grid(self, g: ConvGeometry) -> tuple[int, int]:
        return g.win.padded_hw

    def per_image_bytes(self, g: ConvGeometry) -> int:
        hp, wp = self._grid(g)
        # complex spectra of x and y (and their transposed copies), plus the real output grid
        return (hp * (wp // 2 + 1) * (g.x_shape[3] + g.w_shape[3]) * 4 + hp * wp * g.w_shape[3]) * g.itemsize

    def _spectrum_w(self, weight: Array, grid: tuple[int, int]) -> Array:
        """F[w] on the grid: (Hp*Wf, C_in, C_out)."""
        hp, wp = grid
        fw = xp.fft.rfft2(weight, s=(hp, wp), axes=(0, 1))  # (Hp, Wf, C_in, C_out)
        return fw.reshape(-1, weight.shape[2], weight.shape[3])

    @staticmethod
    def _spectrum(a: Array, grid: tuple[int, int]) -> Array:
        """F[a] for an NHWC chunk zero-padded to the grid, frequencies first: (Hp*Wf, N, C)."""
        fa = xp.fft.rfft2(a, s=grid, axes=(1, 2))  # (N, Hp, Wf, C)
        n, c = fa.shape[0], fa.shape[3]
        return xp.ascontiguousarray(fa.transpose(1, 2, 0, 3)).reshape(-1, n, c)

    @staticmethod
    def _inverse(f: Array, n: int, grid: tuple[int, int], dtype: Any) -> Array:
        """The real NHWC array (N, Hp, Wp, C) of spectra (Hp*Wf, N, C)."""
        hp, wp = grid
        c = f.shape[2]
        spec = f.reshape(hp, wp // 2 + 1, n, c).transpose(2, 0, 1, 3)
        return xp.fft.irfft2(spec, s=grid, axes=(1, 2)).astype(dtype, copy=False)

    def forward(self, x: Array, weight: Array, bias: Array | None, g: ConvGeometry, chunk_bytes: int, ws: Any) -> Array:
        n = x.shape[0]
        (ho, wo), grid = g.win.out, self._grid(g)
        wconj = xp.conj(self._spectrum_w(weight, grid))
        y = xp.empty(g.out_shape, dtype=x.dtype)
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        for s in range(0, n, chunk):
            xc = pad_nhwc(x[s : s + chunk], g.win.pads)
            fy = xp.matmul(self._spectrum(xc, grid), wconj)  # (F, N, C_out)
            y[s : s + chunk] = self._inverse(fy, len(xc), grid, x.dtype)[:, :ho, :wo]
        if bias is not None:
            y += bias
        return y

    def backward(self, x: Array, dy: Array, weight: Array, g: ConvGeometry, need_dx: bool, chunk_bytes: int, ws: Any
                 ) -> tuple[Array | None, Array]:
        n, h, w, _ = x.shape
        kh, kw = weight.shape[:2]
        grid = self._grid(g)
        t, _, l, _ = g.win.pads
        fw = self._spectrum_w(weight, grid)
        fwt = xp.ascontiguousarray(fw.transpose(0, 2, 1))  # W^T per frequency: (F, C_out, C_in)
        fdw = None
        dx = xp.empty(x.shape, dtype=x.dtype) if need_dx else None
        chunk = images_per_chunk(n, self.per_image_bytes(g), chunk_bytes)
        for s in range(0, n, chunk):
            xc = pad_nhwc(x[s : s + chunk], g.win.pads)
            fx = self._spectrum(xc, grid)  # (F, N, C_in)
            fdy = self._spectrum(dy[s : s + chunk], grid)  # dY zero-padded to the grid: (F, N, C_out)
            part = xp.matmul(fx.transpose(0, 2, 1), xp.conj(fdy))  # (F, C_in, C_out)
            fdw = part if fdw is None else fdw + part
            if dx is not None:
                dxp = self._inverse(xp.matmul(fdy, fwt), len(xc), grid, x.dtype)  # (N, Hp, Wp, C_in)
                dx[s : s + chunk] = dxp[:, t : t + h, l : l + w]
        assert fdw is not None
        hp, wp = grid
        spec = fdw.reshape(hp, wp // 2 + 1, weight.shape[2], weight.shape[3])
        dw = xp.fft.irfft2(spec, s=grid, axes=(0, 1))[:kh, :kw].astype(x.dtype, copy=False)
        return dx, xp.ascontiguousarray(dw)
