"""Local response normalisation across channels (AlexNet §3.3, GoogLeNet's stem), PyTorch's definition.

Channels are the last axis (NHWC, or (N, C) features). With n = ``size``, every channel c is divided by
a power of the mean square of the n channels around it::

    s_c = (1/n) * sum_{j = c - n//2}^{c + (n-1)//2} x_j^2      (channels outside 0..C-1 count as 0)
    D_c = k + alpha * s_c,   y_c = x_c * D_c^(-beta)

as ``torch.nn.LocalResponseNorm(size, alpha, beta, k)`` (defaults alpha = 1e-4, beta = 0.75, k = 1).
Krizhevsky et al. write alpha without the 1/n (their k = 2, n = 5, alpha = 1e-4, beta = 0.75): their
alpha is this alpha / n, so the paper's layer is ``size=5, alpha=5e-4, beta=0.75, k=2`` here.

Backward (the window of c holds j exactly when c lies in j's transposed window [j - (n-1)//2, j + n//2])::

    dx_j = dy_j * D_j^(-beta) - (2 alpha beta / n) * x_j * sum_{c: j in window(c)} dy_c * y_c / D_c

Both directions sum over the window with n shifted slices (no padding copies), in the input's
floating dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError, StateError


@dataclass
class LRNCache:
    """What the backward of local response normalisation needs (x is referenced, not copied).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.lrn import local_response_norm_forward
    >>> _, cache = local_response_norm_forward(np.ones((1, 3)), size=3)
    >>> cache.size, cache.denominator.shape
    (3, (1, 3))
    """

    x: Array
    denominator: Array  # D = k + alpha * s, the input's shape
    y: Array
    size: int
    alpha: float
    beta: float


def check_lrn_arguments(size: int, alpha: float, beta: float, k: float) -> tuple[int, float, float, float]:
    """Validate LRN's hyper-parameters: size a positive integer, alpha and beta >= 0, k > 0 (finite).

    Examples
    --------
    >>> check_lrn_arguments(5, 1e-4, 0.75, 2)
    (5, 0.0001, 0.75, 2.0)
    >>> check_lrn_arguments(0, 1e-4, 0.75, 1)
    Traceback (most recent call last):
    ...
    ValueError: local response normalisation: size must be a positive integer, got 0
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"local response normalisation: size must be a positive integer, got {size!r}")
    alpha, beta, k = float(alpha), float(beta), float(k)
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"local response normalisation: {name} must be finite and >= 0, got {v}")
    if not (k > 0 and k < float("inf")):
        raise ValueError(f"local response normalisation: k must be finite and > 0 (the denominator's floor), got {k}")
    return size, alpha, beta, k


def _window_sum(v: Array, before: int, after: int) -> Array:
    """out[..., c] = sum of v[..., j] for j in [c - before, c + after] within 0..C-1 (the last axis)."""
    c = v.shape[-1]
    out = v.copy()
    for o in range(1, min(before, c - 1) + 1):  # j = c - o
        out[..., o:] += v[..., : c - o]
    for o in range(1, min(after, c - 1) + 1):  # j = c + o
        out[..., : c - o] += v[..., o:]
    return out


def local_response_norm_forward(
    x: Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> tuple[Array, LRNCache]:
    """y = x / (k + alpha * mean of x^2 over ``size`` neighbouring channels)^beta; channels last.

    Examples
    --------
    One pixel with channels (1, 2, 3) and a window of 3: the middle channel sees (1 + 4 + 9) / 3.

    >>> import numpy as np
    >>> x = np.array([[[[1.0, 2.0, 3.0]]]])
    >>> y, _ = local_response_norm_forward(x, size=3, alpha=1.0, beta=1.0, k=1.0)
    >>> np.round(y[0, 0, 0], 4)  # 1/(1+5/3), 2/(1+14/3), 3/(1+13/3)
    array([0.375 , 0.3529, 0.5625])
    """
    size, alpha, beta, k = check_lrn_arguments(size, alpha, beta, k)
    if x.ndim < 2:
        raise ShapeError(f"local response normalisation needs (N, ..., C) inputs with channels last, got shape {tuple(x.shape)}")
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(default_float())
    s = _window_sum(x * x, size // 2, (size - 1) // 2)
    denominator = s
    denominator *= alpha / size
    denominator += k
    y = x * denominator ** (-beta)
    return y, LRNCache(x, denominator, y, size, alpha, beta)


def local_response_norm_backward(dy: Array, cache: LRNCache | None) -> Array:
    """dL/dx of :func:`local_response_norm_forward` (see the module docstring for the formula).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.gradcheck import numerical_grad
    >>> rng = np.random.default_rng(0)
    >>> x, dy = rng.standard_normal((2, 3, 3, 6)), rng.standard_normal((2, 3, 3, 6))
    >>> y, cache = local_response_norm_forward(x, size=5, alpha=0.5, beta=0.75, k=2.0)
    >>> dx = local_response_norm_backward(dy, cache)
    >>> num = numerical_grad(lambda: float(np.sum(dy * local_response_norm_forward(x, 5, 0.5, 0.75, 2.0)[0])), x)
    >>> bool(np.allclose(dx, num, atol=1e-8))
    True
    """
    if cache is None:
        raise StateError("local response normalisation backward called before forward")
    if tuple(dy.shape) != tuple(cache.x.shape):
        raise ShapeError(f"local response normalisation backward: dy has shape {tuple(dy.shape)}, the input had {tuple(cache.x.shape)}")
    n = cache.size
    t = dy * cache.y
    t /= cache.denominator
    back = _window_sum(t, (n - 1) // 2, n // 2)  # the transposed window
    back *= cache.x
    back *= 2.0 * cache.alpha * cache.beta / n
    dx = dy * cache.denominator ** (-cache.beta)
    dx -= back
    return dx
