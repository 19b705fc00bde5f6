"""Batch normalisation layers (thin classes over :mod:`cnnkit.ops.norm`), PyTorch's names and defaults.

Channels are last: BatchNorm2d takes (N, H, W, C), BatchNorm1d takes (N, C) or (N, L, C).
``params["weight"]`` is gamma (starts at 1), ``params["bias"]`` is beta (starts at 0); the running
statistics live in ``buffers["running_mean"]`` (starts at 0) and ``buffers["running_var"]`` (starts at 1).
"""

from __future__ import annotations

from typing import Any, Optional

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer
from cnnkit.ops.norm import batch_norm_backward, batch_norm_forward


def _bn_setup(layer: Layer, num_features: int, affine: bool, track_running_stats: bool, dtype: Any) -> None:
    if int(num_features) < 1:
        raise ShapeError(f"{type(layer).__name__}: num_features must be >= 1, got {num_features}")
    dt = dtype or default_float()
    if affine:
        layer.params["weight"] = xp.ones(num_features, dtype=dt)
        layer.params["bias"] = xp.zeros(num_features, dtype=dt)
    if track_running_stats:
        layer.buffers["running_mean"] = xp.zeros(num_features, dtype=dt)
        layer.buffers["running_var"] = xp.ones(num_features, dtype=dt)
    layer._init_grads()


def _bn_forward(layer: Any, x: Array, train: bool) -> Array:
    if x.ndim not in layer._ranks or x.shape[-1] != layer.num_features:
        raise ShapeError(
            f"{type(layer).__name__}: expected an input {layer._layout} with C = {layer.num_features}, "
            f"got shape {tuple(x.shape)}"
        )
    momentum = layer.momentum
    tracking = layer.track_running_stats
    if train and tracking and momentum is None:  # cumulative moving average, as PyTorch with momentum=None
        momentum = 1.0 / (layer.num_batches_tracked + 1)
    y, layer._cache = batch_norm_forward(
        x,
        layer.params.get("weight"),
        layer.params.get("bias"),
        layer.buffers.get("running_mean"),
        layer.buffers.get("running_var"),
        train,
        0.0 if momentum is None else momentum,
        layer.eps,
    )
    if train and tracking:
        layer.num_batches_tracked += 1
    return y


def _bn_backward(layer: Layer, dy: Array) -> Array:
    dx, dgamma, dbeta = batch_norm_backward(dy, layer._saved())
    if dgamma is not None:
        layer._set_grad("weight", dgamma)
    if dbeta is not None:
        layer._set_grad("bias", dbeta)
    return dx


def _bn_repr(layer: Any) -> str:
    return (
        f"{layer.num_features}, eps={layer.eps}, momentum={layer.momentum}, affine={'weight' in layer.params}, "
        f"track_running_stats={layer.track_running_stats}"
    )


class BatchNorm2d(Layer):
    """Batch normalisation of an (N, H, W, C) input per channel over N, H, W (Ioffe & Szegedy; seed 000 ex. 15.3).

    Training: batch mean and biased variance normalise; running statistics are updated as
    ``running = (1 - momentum)*running + momentum*batch`` with the unbiased batch variance
    (``momentum=None``: cumulative average over the batches seen). Evaluation: running statistics
    (batch statistics when ``track_running_stats=False``). ``affine=False`` drops gamma and beta.
    The scale and shift are excluded from weight decay (``no_decay``).
    """

    no_decay = frozenset({"weight", "bias"})
    _ranks = (4,)
    _layout = "(N, H, W, C)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = None,
    ) -> None:
        Layer.__init__(self)  # not super(): this __init__ is shared with BatchNorm1d
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.track_running_stats = track_running_stats
        self.num_batches_tracked = 0
        _bn_setup(self, self.num_features, affine, track_running_stats, dtype)

    def forward(self, x: Array, train: bool = False) -> Array:
        return _bn_forward(self, x, train)

    def backward(self, dy: Array) -> Array:
        return _bn_backward(self, dy)

    def reset_running_stats(self) -> None:
        """Running mean back to 0, running variance to 1, batch count to 0."""
        if self.track_running_stats:
            self.buffers["running_mean"][...] = 0
            self.buffers["running_var"][...] = 1
        self.num_batches_tracked = 0

    def extra_repr(self) -> str:
        return _bn_repr(self)


class BatchNorm1d(Layer):
    """Batch normalisation of (N, C) features (or (N, L, C) sequences) per channel; as :class:`BatchNorm2d`.

    Only the accepted ranks differ; the methods are BatchNorm2d's own functions (shared, not inherited).
    """

    no_decay = BatchNorm2d.no_decay
    _ranks = (2, 3)
    _layout = "(N, C) or (N, L, C)"

    __init__ = BatchNorm2d.__init__
    forward = BatchNorm2d.forward
    backward = BatchNorm2d.backward
    reset_running_stats = BatchNorm2d.reset_running_stats
    extra_repr = BatchNorm2d.extra_repr
