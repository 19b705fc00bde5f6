"""Adaptive-step optimisers: Adam, RMSProp and Adagrad (the semantics of their torch.optim namesakes).

All three add L2 weight decay to the gradient (d = g + weight_decay * w, skipped for the model's
``no_decay`` names) and then scale each element's step by a running measure of its past gradient
magnitudes. Updates are elementwise and in place; at most two reusable scratch arrays per dtype are
used (see :meth:`Optimizer._scratch`), so a step allocates nothing once warmed up.
"""

from __future__ import annotations

import math
from typing import Any

from cnnkit import jit
from cnnkit.backend import Array, xp
from cnnkit.optim.base import Optimizer, _check_real


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam (weight decay as L2 in the gradient, not AdamW).

    At the parameter's step t (elementwise, all arrays shaped like w):

        d   = g + weight_decay * w
        m   = beta1 * m + (1 - beta1) * d              (``exp_avg``)
        v   = beta2 * v + (1 - beta2) * d * d          (``exp_avg_sq``)
        vmax = max(vmax, v) with amsgrad               (``max_exp_avg_sq``; v is used otherwise)
        w  <- w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State: ``step`` (int), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Examples
    --------
    The bias correction makes the first step lr long in every coordinate, whatever the gradient's size.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import Adam
    >>> model = SimpleNamespace(params={"w": np.array([1.0, 2.0])}, grads={"w": np.array([0.5, -100.0])})
    >>> Adam(model, lr=0.1).step()
    >>> np.round(model.params["w"], 4)
    array([0.9, 2.1])
    """

    _array_keys = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
    _scalar_keys = frozenset({"step"})

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(model, lr)
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            _check_real(betas[0], "beta1", 0.0, 1.0, closed_high=False),
            _check_real(betas[1], "beta2", 0.0, 1.0, closed_high=False),
        )
        self.eps = _check_real(eps, "eps")
        self.weight_decay = _check_real(weight_decay, "weight_decay")
        self.amsgrad = bool(amsgrad)
        self.use_jit = True  # the compiled single-pass update when numba is there (identical results)

    def _update(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> None:
        beta1, beta2 = self.betas
        t = st["step"] = int(st.get("step", 0)) + 1
        if self.use_jit and self._fused(p, g, st, decay, t):
            return
        s0, s1 = self._scratch(p, 0), self._scratch(p, 1)
        d = self._decayed(p, g, self.weight_decay if decay else 0.0, s0)
        m = self._buffer(st, "exp_avg", p)
        v = self._buffer(st, "exp_avg_sq", p)
        self._lerp_(m, d, 1.0 - beta1, s1)
        v *= beta2
        xp.multiply(d, 1.0 - beta2, out=s1)
        s1 *= d
        v += s1
        if self.amsgrad:
            vmax = self._buffer(st, "max_exp_avg_sq", p)
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = self.lr / (1.0 - beta1**t)
        denom = s1
        xp.sqrt(v, out=denom)
        denom /= math.sqrt(1.0 - beta2**t)
        denom += self.eps
        xp.multiply(m, step_size, out=s0)  # d is no longer needed
        s0 /= denom
        p -= s0

    def _fused(self, p: Array, g: Array, st: dict[str, Any], decay: bool, t: int) -> bool:
        """The whole update in one compiled pass over the arrays instead of the NumPy path's dozen; the same
        operations on the same dtype, so the same bits (tests/optim/test_sgd_fused.py). False when it does not apply."""
        if not (jit.usable(p, g) and g.dtype == p.dtype and p.flags.c_contiguous and g.flags.c_contiguous):
            return False
        m = self._buffer(st, "exp_avg", p)
        v = self._buffer(st, "exp_avg_sq", p)
        vmax = self._buffer(st, "max_exp_avg_sq", p) if self.amsgrad else v
        if not (m.flags.c_contiguous and v.flags.c_contiguous and vmax.flags.c_contiguous):
            return False
        beta1, beta2 = self.betas
        w = 1.0 - beta1  # the NumPy path's _lerp_ weight, and its factor for |w| >= 0.5
        small = abs(w) < 0.5
        wd = self.weight_decay if decay else 0.0
        f = p.dtype.type
        assert jit.adam_ is not None  # usable(): numba is there, so is the kernel
        jit.adam_(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), vmax.reshape(-1), f(wd), f(w if small else 1.0 - w),
                  f(beta2), f(1.0 - beta2), f(self.lr / (1.0 - beta1**t)), f(math.sqrt(1.0 - beta2**t)), f(self.eps),
                  wd != 0.0, small, self.amsgrad)
        return True

    def extra_repr(self) -> str:
        return (
            f"lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay}, "
            f"amsgrad={self.amsgrad}"
        )


class RMSProp(Optimizer):
    """RMSProp (Hinton), as torch.optim.RMSprop.

    Per parameter step (elementwise):

        d = g + weight_decay * w
        s = alpha * s + (1 - alpha) * d * d                 (``square_avg``)
        centered: a = alpha * a + (1 - alpha) * d            (``grad_avg``), r = sqrt(s - a * a) + eps
        otherwise:  r = sqrt(s) + eps
        momentum > 0: b = momentum * b + d / r (``momentum_buffer``), w <- w - lr * b
        otherwise:    w <- w - lr * d / r

    State: ``step`` (int), ``square_avg``, plus ``grad_avg`` (centered) and ``momentum_buffer``
    (momentum > 0), all starting at zero.

    Examples
    --------
    The first step divides d by sqrt(1 - alpha) |d|: a step of lr / sqrt(0.01) = 10 lr per coordinate.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import RMSProp
    >>> model = SimpleNamespace(params={"w": np.array([1.0, 2.0])}, grads={"w": np.array([0.5, -100.0])})
    >>> RMSProp(model, lr=0.01).step()
    >>> np.round(model.params["w"], 4)
    array([0.9, 2.1])
    """

    _array_keys = frozenset({"square_avg", "grad_avg", "momentum_buffer"})
    _scalar_keys = frozenset({"step"})

    def __init__(
        self,
        model: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(model, lr)
        self.alpha = _check_real(alpha, "alpha", 0.0, 1.0)
        self.eps = _check_real(eps, "eps")
        self.weight_decay = _check_real(weight_decay, "weight_decay")
        self.momentum = _check_real(momentum, "momentum")
        self.centered = bool(centered)

    def _update(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> None:
        alpha = self.alpha
        st["step"] = int(st.get("step", 0)) + 1
        s0, s1 = self._scratch(p, 0), self._scratch(p, 1)
        d = self._decayed(p, g, self.weight_decay if decay else 0.0, s0)
        sq = self._buffer(st, "square_avg", p)
        sq *= alpha
        xp.multiply(d, 1.0 - alpha, out=s1)
        s1 *= d
        sq += s1
        r = s1
        if self.centered:
            a = self._buffer(st, "grad_avg", p)
            self._lerp_(a, d, 1.0 - alpha, s1)
            xp.multiply(a, a, out=r)
            xp.subtract(sq, r, out=r)
            xp.sqrt(r, out=r)
        else:
            xp.sqrt(sq, out=r)
        r += self.eps
        if self.momentum > 0:
            buf = self._buffer(st, "momentum_buffer", p)
            buf *= self.momentum
            xp.divide(d, r, out=r)
            buf += r
            xp.multiply(buf, self.lr, out=r)
            p -= r
        else:
            xp.multiply(d, self.lr, out=s0)
            s0 /= r
            p -= s0

    def extra_repr(self) -> str:
        return (
            f"lr={self.lr}, alpha={self.alpha}, eps={self.eps}, weight_decay={self.weight_decay}, "
            f"momentum={self.momentum}, centered={self.centered}"
        )


RMSprop = RMSProp
"""PyTorch's spelling of :class:`RMSProp`."""


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), as torch.optim.Adagrad.

    At the parameter's step t (elementwise):

        d   = g + weight_decay * w
        h   = h + d * d                        (``sum``, starting at initial_accumulator_value)
        w  <- w - lr / (1 + (t - 1) * lr_decay) * d / (sqrt(h) + eps)

    State: ``step`` (int) and ``sum``.

    Examples
    --------
    The accumulated squares shrink the steps: lr, then lr / sqrt(2) for a constant gradient.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from cnnkit.optim import Adagrad
    >>> model = SimpleNamespace(params={"w": np.array([1.0, 2.0])}, grads={"w": np.array([0.5, -100.0])})
    >>> opt = Adagrad(model, lr=0.1)
    >>> opt.step(); opt.step()
    >>> np.round(model.params["w"], 4)
    array([0.8293, 2.1707])
    """

    _array_keys = frozenset({"sum"})
    _scalar_keys = frozenset({"step"})

    def __init__(
        self,
        model: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(model, lr)
        self.lr_decay = _check_real(lr_decay, "lr_decay")
        self.weight_decay = _check_real(weight_decay, "weight_decay")
        self.initial_accumulator_value = _check_real(initial_accumulator_value, "initial_accumulator_value")
        self.eps = _check_real(eps, "eps")

    def _update(self, p: Array, g: Array, st: dict[str, Any], decay: bool) -> None:
        t = st["step"] = int(st.get("step", 0)) + 1
        s0, s1 = self._scratch(p, 0), self._scratch(p, 1)
        d = self._decayed(p, g, self.weight_decay if decay else 0.0, s0)
        h = self._buffer(st, "sum", p, self.initial_accumulator_value)
        xp.multiply(d, d, out=s1)
        h += s1
        xp.sqrt(h, out=s1)
        s1 += self.eps
        clr = self.lr / (1.0 + (t - 1) * self.lr_decay)
        xp.multiply(d, clr, out=s0)
        s0 /= s1
        p -= s0

    def extra_repr(self) -> str:
        return (
            f"lr={self.lr}, lr_decay={self.lr_decay}, weight_decay={self.weight_decay}, "
            f"initial_accumulator_value={self.initial_accumulator_value}, eps={self.eps}"
        )
