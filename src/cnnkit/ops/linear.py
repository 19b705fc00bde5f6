"""Fully connected (linear) layer and its conversion to and from a convolution (seed 000 §15.5.8;
seed 002 "全连接层与卷积层互相转化").

Forward:  y = x W + b,  x (N, in_features), W (in_features, out_features), b (out_features,).
Backward: dx = dy W^T,  dW = x^T dy,  db = sum_n dy[n].

W is stored (in, out), the transpose of PyTorch's (out, in), so that the forward is ``x @ W`` and a
flattened NHWC input of size H*W*C matches a convolution kernel (H, W, C, out) by a plain reshape.

§15.5.8: an input of size H x W x D^l convolved (no padding) with D kernels of size H x W x D^l
(a 4th-order kernel tensor H x W x D^l x D) gives a 1 x 1 x D output in which every entry uses every
input entry: a fully connected layer. :func:`fc_to_conv` and :func:`conv_to_fc` convert exactly
between the two parametrisations; the converted kernel can then also slide over larger inputs
(seed 002's "FC to conv" trick: one pass gives the FC outputs at every window position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cnnkit.backend import Array, xp
from cnnkit.errors import ShapeError, StateError


@dataclass
class LinearCache:
    """What linear's backward needs (x is referenced, not copied).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.linear import linear_forward
    >>> x = np.ones((2, 3), np.float32)
    >>> y, cache = linear_forward(x, np.ones((3, 4), np.float32))
    >>> cache.x is x, cache.weight.shape, cache.has_bias
    (True, (3, 4), False)
    """

    x: Array  # (N, in_features), compute dtype
    weight: Array  # (in_features, out_features)
    has_bias: bool


def _check_linear_args(x: Array, weight: Array, bias: Array | None) -> None:
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be (in_features, out_features), got shape {tuple(weight.shape)}")
    fin, fout = weight.shape
    if x.ndim != 2:
        raise ShapeError(
            f"linear: expected a rank-2 input (N, in_features) = (N, {fin}), got shape {tuple(x.shape)}; "
            f"flatten (N, H, W, C) inputs first (Flatten layer)"
        )
    if x.shape[1] != fin:
        raise ShapeError(
            f"linear: input has {x.shape[1]} features (shape {tuple(x.shape)}) but the weight "
            f"{tuple(weight.shape)} expects in_features = {fin}"
        )
    if bias is not None and tuple(bias.shape) != (fout,):
        raise ShapeError(f"linear: bias must have shape ({fout},), got {tuple(bias.shape)}")


def linear_forward(x: Array, weight: Array, bias: Array | None = None) -> tuple[Array, LinearCache]:
    """y = x W + b. x: (N, in_features); weight: (in_features, out_features); bias: (out_features,) or None.

    Returns y (N, out_features) in the weight's dtype, and the cache for :func:`linear_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.linear import linear_forward
    >>> W = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # (in=2, out=3)
    >>> y, cache = linear_forward(np.array([[1.0, 2.0]]), W, np.array([0.0, 0.0, 10.0]))
    >>> y
    array([[ 1.,  2., 13.]])
    """
    _check_linear_args(x, weight, bias)
    x = x.astype(weight.dtype, copy=False)
    y = x @ weight  # (N, out)
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(
    dy: Array, cache: LinearCache, need_dx: bool = True
) -> tuple[Array | None, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)``: dx = dy W^T (N, in), dW = x^T dy (in, out), db = sum_n dy (out,).

    ``need_dx=False`` skips dx (returns None); dbias is None without a bias.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.linear import linear_backward, linear_forward
    >>> W = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    >>> y, cache = linear_forward(np.array([[1.0, 2.0]]), W, np.zeros(3))
    >>> dx, dweight, dbias = linear_backward(np.ones((1, 3)), cache)
    >>> dx, dbias
    (array([[2., 2.]]), array([1., 1., 1.]))
    >>> dweight
    array([[1., 1., 1.],
           [2., 2., 2.]])
    """
    if cache is None:
        raise StateError("linear backward called before forward")
    n, fout = cache.x.shape[0], cache.weight.shape[1]
    if tuple(dy.shape) != (n, fout):
        raise ShapeError(f"linear backward: dy has shape {tuple(dy.shape)}, expected {(n, fout)}")
    dy = dy.astype(cache.weight.dtype, copy=False)
    dw = cache.x.T @ dy  # (in, out)
    db = dy.sum(axis=0) if cache.has_bias else None
    dx = dy @ cache.weight.T if need_dx else None  # (N, in)
    return dx, dw, db


def _in_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in in_shape)
    except (TypeError, ValueError):
        raise ShapeError(f"in_shape must be (H, W, C), got {in_shape!r}") from None
    if min(h, w, c) < 1:
        raise ShapeError(f"in_shape must be positive (H, W, C), got {in_shape!r}")
    return h, w, c


def fc_to_conv(
    weight: Array, bias: Array | None, in_shape: Sequence[int], layout: str = "NHWC"
) -> tuple[Array, Array | None]:
    """Turn a fully connected layer into the equivalent convolution kernel (seed 000 §15.5.8).

    weight: (H*W*C, out); in_shape: (H, W, C), the input the FC layer saw before flattening.
    Returns ``(conv_weight (H, W, C, out), bias copy or None)`` such that conv2d with that kernel
    (stride 1, no padding) on an (N, H, W, C) input gives (N, 1, 1, out) equal to the FC outputs.

    ``layout`` says how the FC input was flattened: "NHWC" (cnnkit's Flatten, index (h*W + w)*C + c:
    a plain reshape) or "NCHW" (PyTorch's flatten, index (c*H + h)*W + w, e.g. a torchvision
    classifier; transpose PyTorch's (out, in) weight to (in, out) first).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.conv import conv2d_forward
    >>> from cnnkit.ops.linear import fc_to_conv, linear_forward
    >>> rng = np.random.default_rng(0)
    >>> x, W, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((36, 5)), rng.standard_normal(5)
    >>> kernel, bias = fc_to_conv(W, b, (3, 3, 4))
    >>> y_conv, _ = conv2d_forward(x, kernel, bias)  # (2, 1, 1, 5)
    >>> bool(np.allclose(y_conv[:, 0, 0], linear_forward(x.reshape(2, -1), W, b)[0]))
    True
    """
    h, w, c = _in_shape(in_shape)
    if weight.ndim != 2 or weight.shape[0] != h * w * c:
        raise ShapeError(
            f"fc_to_conv: weight must be (H*W*C, out) = ({h * w * c}, out) for in_shape {(h, w, c)}, "
            f"got {tuple(weight.shape)}"
        )
    out = weight.shape[1]
    if bias is not None and tuple(bias.shape) != (out,):
        raise ShapeError(f"fc_to_conv: bias must have shape ({out},), got {tuple(bias.shape)}")
    mode = layout.upper()
    if mode == "NHWC":
        kernel = weight.reshape(h, w, c, out).copy()
    elif mode == "NCHW":
        kernel = xp.ascontiguousarray(weight.reshape(c, h, w, out).transpose(1, 2, 0, 3))  # (H, W, C, out)
    else:
        raise ValueError(f"fc_to_conv: layout must be 'NHWC' or 'NCHW', got {layout!r}")
    return kernel, (None if bias is None else bias.copy())


def conv_to_fc(weight: Array, bias: Array | None, layout: str = "NHWC") -> tuple[Array, Array | None]:
    """Inverse of :func:`fc_to_conv`: kernel (H, W, C, out) -> FC weight (H*W*C, out), bias copied.

    Exact for a convolution whose kernel covers its whole (unpadded) input, which then has a 1 x 1 output.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.linear import conv_to_fc, fc_to_conv
    >>> W = np.arange(24.0).reshape(12, 2)
    >>> kernel, _ = fc_to_conv(W, None, (2, 3, 2), layout="NCHW")
    >>> fc, bias = conv_to_fc(kernel, None, layout="NCHW")
    >>> kernel.shape, bool(np.array_equal(fc, W)), bias
    ((2, 3, 2, 2), True, None)
    """
    if weight.ndim != 4:
        raise ShapeError(f"conv_to_fc: weight must be a kernel (H, W, C, out), got shape {tuple(weight.shape)}")
    h, w, c, out = weight.shape
    if bias is not None and tuple(bias.shape) != (out,):
        raise ShapeError(f"conv_to_fc: bias must have shape ({out},), got {tuple(bias.shape)}")
    mode = layout.upper()
    if mode == "NHWC":
        fc = weight.reshape(h * w * c, out).copy()
    elif mode == "NCHW":
        fc = xp.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(c * h * w, out)  # rows (c, h, w)
    else:
        raise ValueError(f"conv_to_fc: layout must be 'NHWC' or 'NCHW', got {layout!r}")
    return fc, (None if bias is None else bias.copy())
