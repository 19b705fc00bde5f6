"""Stochastic gradient descent with momentum, weight decay and Nesterov momentum."""

from __future__ import annotations

from typing import Any

from cnnkit import jit
from cnnkit.backend import Array, xp
from cnnkit.optim.base import Optimizer, _check_real


class SGD(Optimizer):
    """Mini-batch SGD, seed eq. 15.9 (w <- w - eta * dz/dw), with torch.optim.SGD's extensions.

    Per parameter w with gradient g, at step t (all elementwise, shapes of w):

    * weight decay (L2 added to the gradient): d = g + weight_decay * w   (skipped for ``no_decay`` names)
    * momentum: b_1 = d on the first step, then b_t = momentum * b_{t-1} + (1 - dampening) * d
    * direction: d + momentum * b_t with ``nesterov``, else b_t (d itself when momentum is 0)
    * update: w <- w - lr * direction

    State: ``momentum_buffer`` (b, created on the first step, only when momentum != 0).

    Relation to MatConvNet's ``cnn_train``, which keeps a velocity v = momentum * v - lr * (g + wd * w)
    and steps w <- w + v: with a constant lr the two are the same iteration (v_t = -lr * b_t by
    induction, v starting at 0 and b at d). They differ once lr changes: here the whole accumulated
    buffer is multiplied by the *new* lr at once, so a 10x lr drop makes the very next step ~10x smaller;
    MatConvNet's velocity still carries the old lr and the new rate takes over gradually, over roughly
    1 / (1 - momentum) steps.

    Examples
    --------
    Eq. 15.9, w <- w - eta * dz/dw; with momentum 0.9 the second step is 1.9 times as long.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import SGD
    >>> model = SimpleNamespace(params={"w": np.array([1.0, 2.0])}, grads={"w": np.array([0.5, -1.0])})
    >>> opt = SGD(model, lr=0.1, momentum=0.9)
    >>> opt.step()
    >>> np.round(model.params["w"], 4)
    array([0.95, 2.1 ])
    >>> opt.step()
    >>> np.round(model.params["w"], 4)
    array([0.855, 2.29 ])
    """

    _array_keys = frozenset({"momentum_buffer"})

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        super().__init__(model, lr)
        self.momentum = _check_real(momentum, "momentum")
        self.weight_decay = _check_real(weight_decay, "weight_decay")
        self.dampening = _check_real(dampening, "dampening")
        self.nesterov = bool(nesterov)
        self.use_jit = True  # the compiled single-pass update when numba is there (identical results)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"SGD: nesterov momentum requires momentum > 0 and dampening = 0, "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )

    def _update(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> None:
        if self.use_jit and self._fused(p, g, st, decay):
            return
        d = self._decayed(p, g, self.weight_decay if decay else 0.0, self._scratch(p, 0))
        direction_is_scratch = d is not g
        mu = self.momentum
        if mu != 0.0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = xp.array(d, dtype=p.dtype)  # b_1 = d (a copy)
            else:
                buf = self._buffer(st, "momentum_buffer", p)
                buf *= mu
                if self.dampening == 0.0:
                    buf += d
                else:
                    tmp = self._scratch(p, 1)
                    xp.multiply(d, 1.0 - self.dampening, out=tmp)
                    buf += tmp
            if self.nesterov:
                tmp = self._scratch(p, 1)
                xp.multiply(buf, mu, out=tmp)
                tmp += d  # d + momentum * b
                d, direction_is_scratch = tmp, True
            else:
                d, direction_is_scratch = buf, False
        if direction_is_scratch:
            d *= self.lr
            p -= d
        else:
            tmp = self._scratch(p, 1)
            xp.multiply(d, self.lr, out=tmp)
            p -= tmp

    def _fused(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> bool:
        """The common case (momentum, no dampening, no Nesterov, buffer already there) in one compiled pass.

        One pass over the arrays instead of the NumPy path's five (timings in docs/perf-notes.md).
        Returns False when it does not apply.
        """
        buf = st.get("momentum_buffer")
        if (self.momentum == 0.0 or self.nesterov or self.dampening != 0.0 or buf is None
                or buf.shape != p.shape or buf.dtype != p.dtype or not jit.usable(p, g, buf)
                or g.dtype != p.dtype or not (p.flags.c_contiguous and g.flags.c_contiguous and buf.flags.c_contiguous)):
            return False
        t = p.dtype.type
        assert jit.sgd_momentum_ is not None  # usable(): numba is there, so is the kernel
        jit.sgd_momentum_(p.reshape(-1), g.reshape(-1), buf.reshape(-1), t(self.lr), t(self.momentum),
                           t(self.weight_decay), bool(decay and self.weight_decay != 0.0))
        return True

    def extra_repr(self) -> str:
        return (
            f"lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
            f"nesterov={self.nesterov}, dampening={self.dampening}"
        )
