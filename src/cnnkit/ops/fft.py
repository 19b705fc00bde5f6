"""True convolution and the convolution theorem: direct and FFT forms, beside the cross-correlation layers use.

The lecture notes (§1.2.3-1.2.4) define convolution with the kernel flipped,

    (x * w)[i, j] = sum_{a, b} x[i - a, j - b] w[a, b],

and prove the convolution theorem F[x * w] = F[x] F[w] (circular convolution of periodic signals; with
enough zero padding, ordinary convolution). Layers compute the cross-correlation of eq. 15.16 instead,
sum_{a, b} x[i + a, j + b] w[a, b] (what every framework calls convolution); the two differ by flipping
the kernel. Both functions here take :func:`cnnkit.ops.conv.conv2d_forward`'s layouts: x (N, H, W, C_in),
weight (kh, kw, C_in, C_out), output (N, H', W', C_out), summing over the input channels.

``mode`` says which outputs are kept (as in SciPy's ``convolve2d``):

* ``"full"``: every position where kernel and image overlap, H' = H + kh - 1;
* ``"same"``: H' = H, centred on the full result (the extra element of an even kernel goes first);
* ``"valid"``: the kernel wholly inside the image, H' = H - kh + 1 (what a layer without padding gives);
* ``"circular"``: the image is periodic (wraps around), H' = H: exactly the product of the DFTs.

Examples
--------
The book's 3 x 4 image and 2 x 2 kernel of eq. 15.19: cross-correlation is what the layer gives; true
convolution flips the kernel; the FFT computes either.

>>> import numpy as np
>>> x = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], np.float64).reshape(1, 3, 4, 1)
>>> w = np.array([[1, 1], [1, 1]], np.float64).reshape(2, 2, 1, 1)
>>> conv2d_fft(x, w, "valid")[0, :, :, 0].round(6)
array([[12., 16., 11.],
       [24., 28., 17.]])
>>> k = np.array([[1, 0], [0, 2]], np.float64).reshape(2, 2, 1, 1)
>>> float(correlate2d(x, k, "valid")[0, 0, 0, 0]), float(convolve2d(x, k, "valid")[0, 0, 0, 0])  # 1*1 + 2*5 vs 2*1 + 1*5
(11.0, 7.0)
"""

from __future__ import annotations

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError
from cnnkit.ops.geometry import check_rank

MODES = ("full", "same", "valid", "circular")


def _check(x: Array, weight: Array, mode: str) -> tuple[int, int, int, int, int, int]:
    check_rank(x.shape, 4, "convolution")
    if weight.ndim != 4:
        raise ShapeError(f"weight must be (kh, kw, C_in, C_out), got shape {tuple(weight.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _, h, w, c = x.shape
    kh, kw, cin, cout = weight.shape
    if cin != c:
        raise ShapeError(f"the kernel expects {cin} input channels but the input {tuple(x.shape)} has {c}")
    if mode == "valid" and (kh > h or kw > w):
        raise ShapeError(f"a {kh}x{kw} kernel does not fit a {h}x{w} image in 'valid' mode")
    if mode == "circular" and (kh > h or kw > w):
        raise ShapeError(f"circular convolution needs a kernel no larger than the image ({kh}x{kw} > {h}x{w})")
    return h, w, kh, kw, cin, cout


def _crop(full: Array, h: int, w: int, kh: int, kw: int, mode: str) -> Array:
    """The ``mode`` part of a full (N, H + kh - 1, W + kw - 1, C) result."""
    if mode == "full":
        return full
    if mode == "valid":
        return full[:, kh - 1 : h, kw - 1 : w]
    top, left = (kh - 1) // 2, (kw - 1) // 2  # "same": centred, like SciPy
    return full[:, top : top + h, left : left + w]


def convolve2d(x: Array, weight: Array, mode: str = "full") -> Array:
    """True 2-D convolution (the kernel flipped), computed directly: y = sum_c x[..., c] * w[..., c, o].

    x: (N, H, W, C_in), weight: (kh, kw, C_in, C_out) -> (N, H', W', C_out) with H' set by ``mode``
    (module docstring). The direct sum, one shifted product per kernel tap; :func:`conv2d_fft` gives the same.

    Examples
    --------
    A true convolution of a delta image reproduces the kernel (the identity the convolution theorem starts from).

    >>> import numpy as np
    >>> delta = np.zeros((1, 3, 3, 1)); delta[0, 1, 1, 0] = 1
    >>> kernel = np.arange(1.0, 10.0).reshape(3, 3, 1, 1)
    >>> convolve2d(delta, kernel, "same")[0, :, :, 0]
    array([[1., 2., 3.],
           [4., 5., 6.],
           [7., 8., 9.]])
    """
    return _direct(x, weight[::-1, ::-1], mode, flipped=True)


def correlate2d(x: Array, weight: Array, mode: str = "valid") -> Array:
    """Cross-correlation (eq. 15.16, what :class:`~cnnkit.nn.Conv2d` computes), directly, with the same modes.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> correlate2d(x, np.ones((2, 2, 1, 1)), "valid")[0, :, :, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    return _direct(x, weight, mode, flipped=False)


def _direct(x: Array, weight: Array, mode: str, flipped: bool) -> Array:
    """sum over taps (a, b) of x shifted by (a, b) times weight[a, b] (already flipped for a convolution)."""
    h, w, kh, kw, _, cout = _check(x, weight, mode)
    n = x.shape[0]
    dtype = xp.result_type(x.dtype, weight.dtype, xp.float32)
    if mode == "circular":
        # y[i] = sum_a x[(i - a) mod H] w[a] for a convolution (w given flipped here, so index kh-1-a)
        out = xp.zeros((n, h, w, cout), dtype=dtype)
        for a in range(kh):
            for b in range(kw):
                sa, sb = (kh - 1 - a, kw - 1 - b) if flipped else (-a, -b)
                shifted = xp.roll(x, (sa, sb), axis=(1, 2))
                out += shifted @ weight[a, b]
        return out
    xpad = xp.zeros((n, h + 2 * (kh - 1), w + 2 * (kw - 1), x.shape[3]), dtype=dtype)
    xpad[:, kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w] = x
    fh, fw = h + kh - 1, w + kw - 1
    full = xp.zeros((n, fh, fw, cout), dtype=dtype)
    for a in range(kh):
        for b in range(kw):
            full += xpad[:, a : a + fh, b : b + fw] @ weight[a, b]
    if flipped:
        return _crop(full, h, w, kh, kw, mode)
    # cross-correlation: the full result runs the other way round; "same" keeps the layer's convention
    # (the odd element of padding after, as padding="same" in Conv2d)
    if mode == "valid":
        return full[:, kh - 1 : h, kw - 1 : w]
    if mode == "same":
        top, left = kh // 2, kw // 2
        return full[:, top : top + h, left : left + w]
    return full


def conv2d_fft(x: Array, weight: Array, mode: str = "valid", convolve: bool = False) -> Array:
    """Cross-correlation (default, what layers compute) or true convolution (``convolve=True``) by the FFT.

    The convolution theorem: pad image and kernel to a common size, multiply their 2-D DFTs channel by
    channel, sum over the input channels and transform back; a correlation is the convolution with the
    flipped kernel. x: (N, H, W, C_in), weight: (kh, kw, C_in, C_out) -> (N, H', W', C_out) (module
    docstring for ``mode``). Cost O(N C_in C_out HW log HW), independent of the kernel size: it pays for
    large kernels on small maps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((5, 5, 3, 4))
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> y, _ = conv2d_forward(x, w, None)
    >>> bool(np.allclose(conv2d_fft(x, w, "valid"), y)), bool(np.allclose(conv2d_fft(x, w, "full", convolve=True), convolve2d(x, w)))
    (True, True)
    """
    h, w, kh, kw, _, _ = _check(x, weight, mode)
    k = weight if convolve else weight[::-1, ::-1]
    real = xp.result_type(x.dtype, weight.dtype, xp.float32)
    if mode == "circular":
        fh, fw = h, w
    else:
        fh, fw = h + kh - 1, w + kw - 1
    fx = xp.fft.rfft2(x.astype(real, copy=False), s=(fh, fw), axes=(1, 2))  # (N, fh, fw//2+1, C_in)
    fk = xp.fft.rfft2(k.astype(real, copy=False), s=(fh, fw), axes=(0, 1))  # (fh, fw//2+1, C_in, C_out)
    fy = xp.einsum("nhwc,hwco->nhwo", fx, fk)
    full = xp.fft.irfft2(fy, s=(fh, fw), axes=(1, 2)).astype(real, copy=False)
    if mode == "circular":
        if convolve:
            return full
        # a circular correlation is the circular convolution with the flipped kernel, shifted back by k-1
        return xp.roll(full, (-(kh - 1), -(kw - 1)), axis=(1, 2))
    if convolve:
        return _crop(full, h, w, kh, kw, mode)
    if mode == "valid":
        return full[:, kh - 1 : h, kw - 1 : w]
    if mode == "same":
        top, left = kh // 2, kw // 2
        return full[:, top : top + h, left : left + w]
    return full
