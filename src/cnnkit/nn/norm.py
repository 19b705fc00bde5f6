"""Batch normalisation layers (thin classes over :mod:`cnnkit.ops.norm`), PyTorch's names and defaults.

Channels are last: BatchNorm2d takes (N, H, W, C), BatchNorm1d takes (N, C) or (N, L, C).
``params["weight"]`` is gamma (starts at 1), ``params["bias"]`` is beta (starts at 0); the running
statistics live in ``buffers["running_mean"]`` (starts at 0) and ``buffers["running_var"]`` (starts at 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cnnkit.backend import Array, default_float, xp
from cnnkit.errors import ShapeError
from cnnkit.nn.base import Layer, LayerInfo, elementwise_info
from cnnkit.nn.init import filled
from cnnkit.ops.norm import batch_norm_backward, batch_norm_forward


class _BatchNorm(Layer):
    """What BatchNorm1d and BatchNorm2d share: everything but the accepted input ranks.

    Training: batch mean and biased variance normalise; running statistics are updated as
    ``running = (1 - momentum)*running + momentum*batch`` with the unbiased batch variance (PyTorch), or
    with ``running_var_unbiased=False`` the biased one (ONNX's BatchNormalization in training mode)
    (``momentum=None``: cumulative average over the batches seen). Evaluation: running statistics
    (batch statistics when ``track_running_stats=False``). ``affine=False`` drops gamma and beta.
    The scale and shift are excluded from weight decay (``no_decay``).
    """

    no_decay = frozenset({"weight", "bias"})
    elementwise = True
    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        running_var_unbiased: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if int(num_features) < 1:
            raise ShapeError(f"{type(self).__name__}: num_features must be >= 1, got {num_features}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.track_running_stats = track_running_stats
        self.running_var_unbiased = bool(running_var_unbiased)
        self._batches = 0
        dt = dtype or default_float()
        if affine:
            self.params["weight"] = filled(self.num_features, 1.0, dt)
            self.params["bias"] = filled(self.num_features, 0.0, dt)
        if track_running_stats:
            self.buffers["running_mean"] = filled(self.num_features, 0.0, dt)
            self.buffers["running_var"] = filled(self.num_features, 1.0, dt)
            self.buffers["num_batches_tracked"] = xp.zeros((), dtype=xp.int64)
        self._init_grads()

    def _forward(self, x: Array, train: bool, keep: bool) -> tuple[Array, Any]:
        self._check(tuple(x.shape))
        momentum = self.momentum
        tracking = self.track_running_stats
        if train and tracking and momentum is None:  # cumulative moving average, as PyTorch with momentum=None
            momentum = 1.0 / (self.num_batches_tracked + 1)
        y, cache = batch_norm_forward(
            x,
            self.params.get("weight"),
            self.params.get("bias"),
            self.buffers.get("running_mean"),
            self.buffers.get("running_var"),
            train,
            0.0 if momentum is None else momentum,
            self.eps,
            self.running_var_unbiased,
        )
        if train and tracking:
            self.num_batches_tracked += 1
        return y, cache

    def _check(self, shape: tuple[int, ...]) -> None:
        if len(shape) not in self._ranks or shape[-1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}: expected an input {self._layout} with C = {self.num_features}, got shape {shape}")

    @property
    def num_batches_tracked(self) -> int:
        """Training batches seen (PyTorch's buffer of the same name; drives ``momentum=None``)."""
        return int(self.buffers["num_batches_tracked"]) if "num_batches_tracked" in self.buffers else self._batches

    @num_batches_tracked.setter
    def num_batches_tracked(self, value: int) -> None:
        if "num_batches_tracked" in self.buffers:
            self.buffers["num_batches_tracked"][...] = value
        else:
            self._batches = int(value)

    def describe(self, in_shape: Sequence[int]) -> LayerInfo:
        """Same shape out; 2 FLOPs per element (scale and shift after normalising)."""
        self._check((1, *(int(v) for v in in_shape)))
        return elementwise_info(self, in_shape, 2)

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": "weight" in self.params, "track_running_stats": self.track_running_stats,
                "running_var_unbiased": self.running_var_unbiased}

    def backward(self, dy: Array) -> Array:
        dx, dgamma, dbeta = batch_norm_backward(dy, self._saved())
        if dgamma is not None:
            self._set_grad("weight", dgamma)
        if dbeta is not None:
            self._set_grad("bias", dbeta)
        return dx

    def reset_running_stats(self) -> None:
        """Running mean back to 0, running variance to 1, batch count to 0."""
        if self.track_running_stats:
            self.buffers["running_mean"][...] = 0
            self.buffers["running_var"][...] = 1
        self.num_batches_tracked = 0

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={'weight' in self.params}, "
            f"track_running_stats={self.track_running_stats}"
            + ("" if self.running_var_unbiased else ", running_var_unbiased=False")
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of an (N, H, W, C) input per channel over N, H, W (Ioffe & Szegedy; exercise 15.3).

    y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel; see :class:`_BatchNorm` for training and
    evaluation statistics.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNorm2d(3)
    >>> x = np.random.default_rng(0).normal(5.0, 2.0, (4, 6, 6, 3)).astype(np.float32)
    >>> y = bn.forward(x, train=True)
    >>> bool(abs(y.mean()) < 1e-5), bool(abs(y.std() - 1) < 1e-3)
    (True, True)
    """

    _ranks = (4,)
    _layout = "(N, H, W, C)"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) features (or (N, L, C) sequences) per channel; as :class:`BatchNorm2d`.

    Examples
    --------
    >>> import numpy as np
    >>> BatchNorm1d(4).forward(np.ones((8, 4), np.float32), train=True).shape
    (8, 4)
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, L, C)"
