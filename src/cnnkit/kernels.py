"""Classic image kernels (Sobel, Prewitt, Laplacian, sharpen, box and Gaussian blur) and applying them.

Each kernel is a float64 (k, k) array written the way the texts write it, for cross-correlation (the
operation a convolution layer performs, eq. 15.16); :func:`apply` runs one over every channel of an
image, optionally adds a bias and keeps the positive part (ReLU), as §15.5.2 does with the Sobel kernel:
bias + ReLU keeps the edges of one polarity only (dark-to-bright, say) and drops the other.

Examples
--------
A vertical step edge: the horizontal-gradient Sobel kernel fires on it and is 0 on the flat parts; the
vertical one stays 0.

>>> import numpy as np
>>> image = np.zeros((5, 6)); image[:, 3:] = 1.0     # dark left, bright right
>>> apply(sobel("x"), image)[2]
array([0., 0., 4., 4., 0., 0.])
>>> float(abs(apply(sobel("y"), image)).max())
0.0
"""

from __future__ import annotations

import math

import numpy as np

from cnnkit.errors import ShapeError

__all__ = ["KERNELS", "apply", "box_blur", "gaussian_blur", "get", "laplacian", "prewitt", "sharpen", "sobel"]


def sobel(direction: str = "x") -> np.ndarray:
    """The 3 x 3 Sobel kernel: ``"x"`` responds to horizontal change (vertical edges), ``"y"`` to vertical change.

    Its weights sum to 0, so a flat region gives 0; [1, 2, 1] smooths along the edge.

    Examples
    --------
    >>> sobel("x")
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    """
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    if direction == "x":
        return gx
    if direction == "y":
        return gx.T.copy()
    raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")


def prewitt(direction: str = "x") -> np.ndarray:
    """The 3 x 3 Prewitt kernel (Sobel without the centre weighting).

    Examples
    --------
    >>> prewitt("y")
    array([[-1., -1., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  1.,  1.]])
    """
    px = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float64)
    if direction == "x":
        return px
    if direction == "y":
        return px.T.copy()
    raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")


def laplacian(diagonals: bool = False) -> np.ndarray:
    """The discrete Laplacian (4-neighbour, or 8-neighbour with ``diagonals``): 0 on flat and linear regions.

    Examples
    --------
    >>> laplacian()
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]])
    """
    if diagonals:
        k = np.ones((3, 3), dtype=np.float64)
        k[1, 1] = -8
        return k
    return np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def sharpen(amount: float = 1.0) -> np.ndarray:
    """Identity minus ``amount`` times the Laplacian: edges are boosted, a constant image is unchanged (sum 1).

    Examples
    --------
    >>> sharpen()
    array([[ 0., -1.,  0.],
           [-1.,  5., -1.],
           [ 0., -1.,  0.]])
    """
    k = -float(amount) * laplacian() + 0.0  # + 0.0: no negative zeros
    k[1, 1] += 1.0
    return k


def box_blur(size: int = 3) -> np.ndarray:
    """The ``size`` x ``size`` mean filter: every weight 1/size², summing to 1.

    Examples
    --------
    >>> float(box_blur(3).sum()), box_blur(2)[0, 0]
    (1.0, np.float64(0.25))
    """
    if int(size) < 1:
        raise ShapeError(f"a blur kernel needs size >= 1, got {size}")
    return np.full((int(size), int(size)), 1.0 / (int(size) ** 2))


def gaussian_blur(size: int = 5, sigma: float | None = None) -> np.ndarray:
    """A sampled Gaussian, normalised to sum 1; separable: the outer product of the 1-D kernel with itself.

    ``sigma`` defaults to size / 6 (the kernel then spans ±3 sigma).

    Examples
    --------
    >>> g = gaussian_blur(5, 1.0)
    >>> round(float(g.sum()), 12), bool(np.allclose(g, np.outer(g.sum(axis=1), g.sum(axis=0))))
    (1.0, True)
    """
    if int(size) < 1:
        raise ShapeError(f"a blur kernel needs size >= 1, got {size}")
    s = float(sigma) if sigma is not None else int(size) / 6.0
    if not s > 0 or not math.isfinite(s):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    r = np.arange(int(size), dtype=np.float64) - (int(size) - 1) / 2.0
    g1 = np.exp(-(r**2) / (2 * s * s))
    g1 /= g1.sum()
    return np.outer(g1, g1)


KERNELS = {
    "sobel-x": lambda: sobel("x"),
    "sobel-y": lambda: sobel("y"),
    "prewitt-x": lambda: prewitt("x"),
    "prewitt-y": lambda: prewitt("y"),
    "laplacian": laplacian,
    "sharpen": sharpen,
    "box": box_blur,
    "gaussian": gaussian_blur,
}
"""Kernel names for the command line (``box`` and ``gaussian`` take ``box:5``, ``gaussian:7:1.5``)."""


def get(spec: str) -> np.ndarray:
    """A kernel by name, with ``:size[:sigma]`` for the blurs (``"gaussian:7:1.5"``, ``"box:5"``).

    Examples
    --------
    >>> get("box:2").shape, get("gaussian:7:1.5").shape, get("sobel-y")[0, 1]
    ((2, 2), (7, 7), np.float64(-2.0))
    """
    name, *args = spec.strip().lower().split(":")
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {spec!r}; expected one of {', '.join(KERNELS)} (box:SIZE, gaussian:SIZE[:SIGMA])")
    try:
        if name == "box" and args:
            return box_blur(int(args[0]))
        if name == "gaussian" and args:
            return gaussian_blur(int(args[0]), float(args[1]) if len(args) > 1 else None)
    except ValueError as exc:
        raise ValueError(f"kernel {spec!r}: {exc}") from None
    if args:
        raise ValueError(f"kernel {name!r} takes no size, got {spec!r}")
    return KERNELS[name]()


def apply(kernel: np.ndarray, image: np.ndarray, bias: float = 0.0, relu: bool = False, border: str = "replicate") -> np.ndarray:
    """Cross-correlate every channel of ``image`` ((H, W) or (H, W, C)) with ``kernel`` (k, k), keeping the size
    (the odd pixel of padding after, as Conv2d's ``padding="same"``), then add ``bias`` and, with ``relu``, keep
    max(0, .). ``border``: ``"replicate"`` repeats the edge pixels (no false edges at the border) or ``"zero"``
    pads with zeros, as a convolution layer does.

    The computation is cnnkit's convolution layer with a depthwise kernel: each channel filtered alone.

    Examples
    --------
    Bias + ReLU on the Sobel response keeps one polarity: a bright-to-dark edge disappears.

    >>> import numpy as np
    >>> edges = np.zeros((3, 8)); edges[:, 2:5] = 1.0       # a bright bar: a rising and a falling edge
    >>> apply(sobel("x"), edges)[1]
    array([ 0.,  4.,  4.,  0., -4., -4.,  0.,  0.])
    >>> apply(sobel("x"), edges, bias=-1.0, relu=True)[1]
    array([0., 3., 3., 0., 0., 0., 0., 0.])
    """
    from cnnkit.ops.conv import conv2d_forward

    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise ShapeError(f"a kernel is a 2-D array, got shape {k.shape}")
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ShapeError(f"an image is (H, W) or (H, W, C), got shape {np.asarray(image).shape}")
    if border not in ("replicate", "zero"):
        raise ValueError(f"border must be 'replicate' or 'zero', got {border!r}")
    c = img.shape[2]
    kh, kw = k.shape
    pads = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    padded = np.pad(img, (*pads, (0, 0)), mode="edge" if border == "replicate" else "constant")
    weight = np.repeat(k[:, :, None, None], c, axis=3)  # (k, k, 1, C): one kernel per channel, groups=C
    y, _ = conv2d_forward(padded[None], weight, None, groups=c)
    y = y[0] + bias
    if relu:
        y = np.maximum(y, 0.0)
    return y[:, :, 0] if squeeze else y
