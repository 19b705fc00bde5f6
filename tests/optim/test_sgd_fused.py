"""The compiled single-pass SGD update gives the same bits as the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import jit
from cnnkit.models import create
from cnnkit.nn import SoftmaxCrossEntropy
from cnnkit.optim import SGD

pytestmark = pytest.mark.skipif(not jit.HAVE_NUMBA, reason="numba not installed (extra 'fast')")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_fused_sgd_is_bit_identical(dtype, weight_decay: float) -> None:
    spec = "conv5x5x1x4,bn,relu,pool2,conv5x5x4x8,pool2,conv4x4x8x10"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 28, 28, 1)).astype(dtype)
    labels = rng.integers(0, 10, 16)
    runs = []
    for use_jit in (True, False):
        net = create(spec, np.random.default_rng(1), np.dtype(dtype), input_shape=(28, 28, 1))
        opt = SGD(net, lr=0.05, momentum=0.9, weight_decay=weight_decay)
        opt.use_jit = use_jit
        loss = SoftmaxCrossEntropy()
        for _ in range(4):
            loss.forward(net.forward(x, train=True), labels)
            net.backward(loss.backward())
            opt.step()
        runs.append((net.params, opt.state))
    (pa, sa), (pb, sb) = runs
    for k in pa:
        assert pa[k].dtype == dtype and np.array_equal(pa[k], pb[k]), k
        assert np.array_equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]), k
