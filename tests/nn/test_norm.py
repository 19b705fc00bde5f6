"""BatchNorm2d / BatchNorm1d layers: gradient checks, PyTorch oracle over several steps, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn.norm import BatchNorm1d, BatchNorm2d
from tests.oracle import assert_close, nchw, nhwc, require_torch


def _randomise(layer, rng):
    for v in layer.params.values():
        v[...] = rng.uniform(0.5, 1.5, v.shape)
    for v in layer.buffers.values():
        v[...] = rng.uniform(0.5, 1.5, v.shape)


@pytest.mark.parametrize(
    "cls,shape", [(BatchNorm2d, (2, 3, 3, 2)), (BatchNorm2d, (3, 1, 2, 3)), (BatchNorm1d, (5, 3)), (BatchNorm1d, (2, 3, 4))]
)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck(cls, shape, train, affine, rng):
    layer = cls(shape[-1], eps=1e-3, affine=affine, dtype=np.float64)
    _randomise(layer, rng)
    errors = check_layer(layer, rng.standard_normal(shape) + 0.5, train=train)
    assert set(errors) == ({"x", "weight", "bias"} if affine else {"x"})
    assert max(errors.values()) < 1e-7


def test_defaults_and_contract():
    bn = BatchNorm2d(4)
    assert bn.params["weight"].dtype == np.float32
    np.testing.assert_array_equal(bn.params["weight"], 1)
    np.testing.assert_array_equal(bn.params["bias"], 0)
    np.testing.assert_array_equal(bn.buffers["running_mean"], 0)
    np.testing.assert_array_equal(bn.buffers["running_var"], 1)
    assert BatchNorm2d.no_decay == frozenset({"weight", "bias"}) and BatchNorm1d.no_decay == BatchNorm2d.no_decay
    assert set(bn.grads) == {"weight", "bias"}
    assert "4, eps=1e-05, momentum=0.1" in repr(bn)
    bn.astype(np.float64)
    assert bn.buffers["running_var"].dtype == np.float64 and bn.grads["weight"].dtype == np.float64
    bare = BatchNorm2d(3, affine=False, track_running_stats=False)
    assert bare.params == {} and bare.buffers == {}


def test_grads_written_in_place(rng):
    bn = BatchNorm2d(2, dtype=np.float64)
    g = bn.grads["weight"]
    for _ in range(2):
        x = rng.standard_normal((2, 2, 2, 2))
        bn.forward(x, train=True)
        bn.backward(np.ones_like(x))
    assert bn.grads["weight"] is g


@pytest.mark.oracle
def test_oracle_batchnorm2d_steps(rng):
    """Three training steps then evaluation, momentum 0.3 and eps 1e-3, against torch.nn.BatchNorm2d."""
    torch = require_torch()
    c = 3
    ours = BatchNorm2d(c, eps=1e-3, momentum=0.3, dtype=np.float64)
    ref = torch.nn.BatchNorm2d(c, eps=1e-3, momentum=0.3).double()
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    ours.params["weight"][...] = gamma
    ours.params["bias"][...] = beta
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(gamma))
        ref.bias.copy_(torch.tensor(beta))
    ref.train()
    for step in range(3):
        x = rng.standard_normal((4, 5, 3, c)) * (step + 1) + step
        dy = rng.standard_normal(x.shape)
        xt = nchw(x)
        ref.zero_grad()
        yt = ref(xt)
        yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
        y = ours.forward(x, train=True)
        dx = ours.backward(dy)
        assert_close(y, nhwc(yt))
        assert_close(dx, nhwc(xt.grad))
        assert_close(ours.grads["weight"], ref.weight.grad.numpy())
        assert_close(ours.grads["bias"], ref.bias.grad.numpy())
    assert_close(ours.buffers["running_mean"], ref.running_mean.numpy())
    assert_close(ours.buffers["running_var"], ref.running_var.numpy())
    assert ours.num_batches_tracked == int(ref.num_batches_tracked) == 3
    ref.eval()
    ours.eval()
    x = rng.standard_normal((2, 3, 3, c))
    dy = rng.standard_normal(x.shape)
    xt = nchw(x)
    ref.zero_grad()
    yt = ref(xt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    assert_close(ours.forward(x, grad=True), nhwc(yt))  # evaluation mode, kept for backward
    assert_close(ours.backward(dy), nhwc(xt.grad))
    assert_close(ours.grads["weight"], ref.weight.grad.numpy())
    assert_close(ours.grads["bias"], ref.bias.grad.numpy())


@pytest.mark.oracle
@pytest.mark.parametrize("momentum,track", [(None, True), (0.1, False)])
def test_oracle_cumulative_average_and_untracked(momentum, track, rng):
    torch = require_torch()
    ours = BatchNorm1d(4, momentum=momentum, track_running_stats=track, dtype=np.float64)
    ref = torch.nn.BatchNorm1d(4, momentum=momentum, track_running_stats=track).double()
    for step in range(3):
        x = rng.standard_normal((6, 4)) + step
        ref.train()
        yt = ref(torch.tensor(x))
        assert_close(ours.forward(x, train=True), yt.detach().numpy())
    x = rng.standard_normal((6, 4))
    ref.eval()
    ours.eval()
    assert_close(ours.forward(x), ref(torch.tensor(x)).detach().numpy())
    if track:
        assert_close(ours.buffers["running_mean"], ref.running_mean.numpy())
        assert_close(ours.buffers["running_var"], ref.running_var.numpy())


@pytest.mark.oracle
def test_oracle_float32(rng):
    torch = require_torch()
    ours = BatchNorm2d(5, momentum=0.2)
    ref = torch.nn.BatchNorm2d(5, momentum=0.2)
    x = (rng.standard_normal((8, 6, 6, 5)) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    y = ours.forward(x, train=True)
    dx = ours.backward(dy)
    assert y.dtype == dx.dtype == np.float32
    assert_close(y, nhwc(yt), np.float32)
    assert_close(dx, nhwc(xt.grad), np.float32)
    np.testing.assert_allclose(ours.grads["weight"], ref.weight.grad.numpy(), rtol=2e-4, atol=2e-3)
    assert_close(ours.buffers["running_var"], ref.running_var.numpy(), np.float32)


def test_reset_running_stats(rng):
    bn = BatchNorm1d(2)
    bn.forward(rng.standard_normal((4, 2)).astype(np.float32), train=True)
    assert bn.num_batches_tracked == 1
    bn.reset_running_stats()
    np.testing.assert_array_equal(bn.buffers["running_mean"], 0)
    np.testing.assert_array_equal(bn.buffers["running_var"], 1)
    assert bn.num_batches_tracked == 0


def test_errors(rng):
    bn = BatchNorm2d(3)
    with pytest.raises(StateError):
        bn.backward(np.ones((1, 2, 2, 3)))
    with pytest.raises(ShapeError, match=r"\(N, H, W, C\) with C = 3, got shape \(2, 3\)"):
        bn.forward(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"C = 3, got shape \(2, 2, 2, 4\)"):
        bn.forward(np.ones((2, 2, 2, 4)))
    with pytest.raises(ShapeError, match=r"\(N, C\) or \(N, L, C\)"):
        BatchNorm1d(3).forward(np.ones((2, 2, 2, 3)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3).forward(np.ones((1, 3)), train=True)
    with pytest.raises(ShapeError, match="num_features"):
        BatchNorm2d(0)
