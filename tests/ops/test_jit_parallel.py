"""The parallel copies of the compiled kernels give the serial kernels' bits; the ReLU kernels give NumPy's;
the thread count follows BLAS's; evaluation-mode max pooling computes no switches."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import jit
from cnnkit.ops import pool as pool_ops
from cnnkit.ops.activation import relu_backward, relu_forward

needs_numba = pytest.mark.skipif(not jit.HAVE_NUMBA, reason="numba not installed (extra 'fast')")


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _nasty(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Many ties, zeros of both signs, NaNs and infinities: the cases where a different order of operations shows."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    flat = x.reshape(-1)
    idx = rng.permutation(flat.size)
    flat[idx[:3]] = np.nan
    flat[idx[3:6]] = -0.0
    flat[idx[6:8]] = -np.inf
    flat[idx[8:10]] = np.inf
    return x


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [0, 1, 2])
@pytest.mark.parametrize("geometry", [(2, 2, 1), (3, 2, 1), (2, 1, 1), (3, 2, 2)])
def test_pool_kernels_parallel_equal_serial(rng: np.random.Generator, dtype, relu: int, geometry) -> None:
    from cnnkit.jit import pool as jp

    k, s, d = geometry
    x = _nasty(rng, (3, 11, 10, 5), dtype)
    ext = d * (k - 1) + 1
    ho, wo = (11 - ext) // s + 1, (10 - ext) // s + 1
    for want_tap in (False, True):  # the taps of the last pass feed the backward below
        serial, par = jp._FORWARD[(relu, want_tap)]
        ys, ts = serial(x, k, k, s, s, d, d, ho, wo)
        yp, tp = par(x, k, k, s, s, d, d, ho, wo)
        assert _bits_equal(ys, yp) and _bits_equal(ts, tp)
    dy = _nasty(rng, ys.shape, dtype)
    y = ys if relu else None
    if s >= ext:
        for fused in (False, True):
            serial, par = jp._BACKWARD_DISJOINT[fused]
            outs = [np.zeros_like(x), np.zeros_like(x)]
            for kern, out in zip((serial, par), outs):
                kern(dy, ts, ys if fused else ts, out, k, k, s, s, d, d)
            assert _bits_equal(*outs)
    serial, par = jp._BACKWARD[relu]
    outs = [np.zeros_like(x), np.zeros_like(x)]
    for kern, out in zip((serial, par), outs):
        kern(dy, ts, ys if y is not None else ts, out, k, s, s, d, d)
    assert _bits_equal(*outs)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_kernels_parallel_equal_serial(rng: np.random.Generator, dtype) -> None:
    from cnnkit.jit import activation as ja
    from cnnkit.jit import optim as jo

    n = 5003
    t = np.dtype(dtype).type
    g, y = _nasty(rng, (n,), dtype), _nasty(rng, (n,), dtype)
    outs = []
    for kern in ja._FWD:
        out = np.empty_like(g)
        kern(g, out)
        outs.append(out)
    assert _bits_equal(*outs)
    outs = []
    for kern in ja._BWD:
        out = np.empty_like(g)
        kern(g, y, out)
        outs.append(out)
    assert _bits_equal(*outs)
    a0 = _nasty(rng, (n // 7, 7), dtype)
    outs = []
    for kern in ja._BIAS:
        a = a0.copy()
        kern(a, np.arange(7, dtype=dtype) - 3, True)
        outs.append(a)
    assert _bits_equal(*outs)
    p0, g0, b0 = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    results = []
    for kern in jo._SGD:
        p, b = p0.copy(), b0.copy()
        kern(p, g0, b, t(0.1), t(0.9), t(5e-4), True)
        results.append((p, b))
    assert all(_bits_equal(a, b) for a, b in zip(*results))
    results = []
    for kern in jo._ADAM:
        p, m, v, vmax = p0.copy(), b0.copy(), np.abs(b0), np.abs(g0)
        kern(p, g0, m, v, vmax, t(5e-4), t(0.1), t(0.999), t(1e-3), t(1e-3), t(0.05), t(1e-8), True, True, True)
        results.append((p, m, v, vmax))
    assert all(_bits_equal(a, b) for a, b in zip(*results))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_give_numpys_bits(rng: np.random.Generator, dtype) -> None:
    x = _nasty(rng, (4, 37, 41), dtype)  # over RELU_KERNEL_MIN elements: the compiled backward runs
    y, cache = relu_forward(x)
    ref = np.maximum(x, 0)
    assert _bits_equal(y, ref)
    dy = _nasty(rng, x.shape, dtype)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference, as in the kernel
        expected = dy * (ref > 0)
    assert _bits_equal(relu_backward(dy, cache), expected)
    out = np.empty_like(x)
    jit.relu_forward(x, out)
    assert _bits_equal(out, ref)


@needs_numba
@pytest.mark.parametrize("relu", [False, True])
def test_bias_relu_epilogue_gives_numpys_bits(rng: np.random.Generator, relu: bool) -> None:
    a = _nasty(rng, (23, 9), np.float32)
    bias = rng.standard_normal(9).astype(np.float32)
    ref = a + bias
    if relu:
        np.maximum(ref, 0, out=ref)
    jit.bias_relu_(a, bias, relu)
    assert _bits_equal(a, ref)


def test_threads_follow_blas_and_the_override() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        assert jit.threads() == 1
    try:
        jit.set_threads(1)
        assert jit.threads() == 1
    finally:
        jit.set_threads(None)
    assert jit.threads() >= 1
    with pytest.raises(ValueError):
        jit.set_threads(0)


@needs_numba
def test_launch_takes_the_parallel_copy_only_above_the_threshold() -> None:
    calls: list[str] = []
    serial = lambda: calls.append("serial")  # noqa: E731
    parallel = lambda: calls.append("parallel")  # noqa: E731
    jit.launch(serial, parallel, 10, 100)
    try:
        jit.set_threads(1)
        jit.launch(serial, parallel, 1000, 100)
        jit.set_threads(2)
        jit.launch(serial, parallel, 1000, 100)
    finally:
        jit.set_threads(None)
    expected_last = "parallel" if jit.numba.config.NUMBA_NUM_THREADS >= 2 else "serial"
    assert calls == ["serial", "serial", expected_last]


@needs_numba
def test_evaluation_pooling_computes_no_switches(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    kernel = jit.maxpool_forward

    def spy(*args, **kwargs):
        seen.append(args[-1])  # want_tap
        return kernel(*args, **kwargs)

    monkeypatch.setattr(jit, "maxpool_forward", spy)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    win = pool_ops.max_pool2d_window(x.shape, 2)
    y, cache = pool_ops.max_pool2d_apply(x, win, keep=False)
    assert cache is None and seen == [False]
    y2, cache2 = pool_ops.max_pool2d_apply(x, win)
    assert cache2 is not None and cache2.tap is not None and seen == [False, True]
    assert _bits_equal(y, y2)


def test_numpy_pooling_without_cache_copies_nothing(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 6, 6, 3))
    win = pool_ops.max_pool2d_window(x.shape, 3, 2, 1)
    y, cache = pool_ops.max_pool2d_apply(x, win, keep=False, use_jit=False)
    assert cache is None
    ref, _ = pool_ops.max_pool2d_forward(x, 3, 2, 1, use_jit=False)
    assert _bits_equal(y, ref)
