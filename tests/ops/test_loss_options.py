"""Softmax cross entropy and negative log-likelihood with class weights, ignore_index and reduction
mean/sum/none, for (N, K) and spatial (N, ..., K) inputs (classes last): gradient checks (with an upstream
dy for every reduction), PyTorch's cross_entropy / nll_loss as oracle, onnx.reference's
SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (classes moved to axis 1)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops import loss as L
from tests.onnx_oracle import run_node, to_nchw
from tests.oracle import assert_close, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

LOSSES = {
    "ce": (L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward),
    "nll": (L.nll_loss_forward, L.nll_loss_backward),
}
SHAPES = [(6, 4), (2, 3, 2, 4), (3, 5, 4)]  # (N, K), (N, H, W, K), (N, D, K)
IGNORE = -100


def _case(rng: np.random.Generator, shape, weighted: bool, ignore: bool):
    x = 1.5 * rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    if ignore:
        labels.reshape(-1)[::3] = IGNORE  # every third example ignored
    w = rng.uniform(0.2, 2.0, size=shape[-1]) if weighted else None
    return x, labels, w


def _value(fwd, x, labels, w, ignore, reduction, r=None) -> float:
    value = fwd(x, labels, w, IGNORE if ignore else None, reduction)[0]
    return float(np.sum(r * value)) if r is not None else float(value)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradcheck(shape, name: str, reduction: str, rng: np.random.Generator) -> None:
    fwd, bwd = LOSSES[name]
    for weighted, ignore in [(False, False), (True, False), (False, True), (True, True)]:
        x, labels, w = _case(rng, shape, weighted, ignore)
        value, cache = fwd(x, labels, w, IGNORE if ignore else None, reduction)
        if reduction == "none":
            assert isinstance(value, np.ndarray) and value.shape == labels.shape
            dy = rng.standard_normal(value.shape)
        else:
            assert type(value) is float
            dy = 0.7
        g = bwd(cache, dy)
        assert g.shape == x.shape
        r = dy if reduction == "none" else None

        def f(x=x, labels=labels, w=w, ignore=ignore, r=r) -> float:
            return _value(fwd, x, labels, w, ignore, reduction, r) * (0.7 if r is None else 1.0)

        numeric = numerical_grad(f, x)
        assert max_rel_error(g, numeric) < 1e-8, (weighted, ignore)
        if ignore:  # ignored examples get no gradient
            assert np.all(g.reshape(-1, shape[-1])[labels.reshape(-1) == IGNORE] == 0)


def test_defaults_unchanged(rng: np.random.Generator) -> None:
    """No options: the same float mean and gradient as before; reduction="mean" spelled out changes nothing."""
    x, labels, _ = _case(rng, (5, 4), False, False)
    v0, c0 = L.softmax_cross_entropy_forward(x, labels)
    v1, c1 = L.softmax_cross_entropy_forward(x, labels, None, None, "mean")
    assert type(v0) is float and v0 == v1
    np.testing.assert_array_equal(L.softmax_cross_entropy_backward(c0), L.softmax_cross_entropy_backward(c1))
    assert c0.coefficients is None
    # weights of one are the plain mean
    v2, c2 = L.softmax_cross_entropy_forward(x, labels, np.ones(4))
    assert abs(v2 - v0) < 1e-14
    np.testing.assert_allclose(L.softmax_cross_entropy_backward(c2), L.softmax_cross_entropy_backward(c0), rtol=1e-13)


TORCH_CASES = [(shape, reduction, np.float64) for shape in SHAPES for reduction in ("mean", "sum", "none")]
TORCH_CASES += [((2, 3, 2, 4), "mean", np.float32), ((6, 4), "none", np.float32)]


@pytest.mark.oracle
@pytest.mark.parametrize("shape,reduction,dtype", TORCH_CASES, ids=str)
def test_matches_torch(shape, reduction: str, dtype, rng: np.random.Generator) -> None:
    torch = require_torch()
    F = torch.nn.functional
    for weighted, ignore in [(False, False), (True, False), (False, True), (True, True)]:
        x, labels, w = _case(rng, shape, weighted, ignore)
        x = x.astype(dtype)
        logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))  # log-probabilities for the NLL
        for name, inp, tfn in (("ce", x, F.cross_entropy), ("nll", logp, F.nll_loss)):
            fwd, bwd = LOSSES[name]
            value, cache = fwd(inp, labels, w, IGNORE if ignore else None, reduction)
            dy = rng.standard_normal(labels.shape).astype(dtype) if reduction == "none" else None
            g = bwd(cache, dy)
            xt = torch.tensor(np.ascontiguousarray(np.moveaxis(inp, -1, 1)), requires_grad=True)
            wt = None if w is None else torch.tensor(w.astype(dtype))
            vt = tfn(xt, torch.tensor(labels), weight=wt, ignore_index=IGNORE, reduction=reduction)
            vt.backward(None if dy is None else torch.tensor(dy))
            assert_close(value, vt.detach().numpy(), dtype)
            assert_close(g, np.moveaxis(xt.grad.numpy(), 1, -1), dtype)


@pytest.mark.oracle
def test_probability_targets_with_weights_match_torch(rng: np.random.Generator) -> None:
    torch = require_torch()
    F = torch.nn.functional
    x = rng.standard_normal((5, 2, 3))
    t = rng.dirichlet(np.ones(3), size=(5, 2))
    w = rng.uniform(0.2, 2.0, size=3)
    for reduction in ("mean", "sum", "none"):
        value, cache = L.softmax_cross_entropy_forward(x, t, w, None, reduction)
        dy = rng.standard_normal((5, 2)) if reduction == "none" else None
        g = L.softmax_cross_entropy_backward(cache, dy)
        xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)), requires_grad=True)
        vt = F.cross_entropy(xt, torch.tensor(np.moveaxis(t, -1, 1).copy()), weight=torch.tensor(w), reduction=reduction)
        vt.backward(None if dy is None else torch.tensor(dy))
        assert_close(value, vt.detach().numpy())
        assert_close(g, np.moveaxis(xt.grad.numpy(), 1, -1))


@pytest.mark.oracle
def test_everything_ignored_matches_torch(rng: np.random.Generator) -> None:
    """A mean over no example: NaN, as PyTorch, and no gradient."""
    torch = require_torch()
    x = rng.standard_normal((3, 4))
    labels = np.full(3, IGNORE)
    value, cache = L.softmax_cross_entropy_forward(x, labels, ignore_index=IGNORE)
    xt = torch.tensor(x, requires_grad=True)
    vt = torch.nn.functional.cross_entropy(xt, torch.tensor(labels), ignore_index=IGNORE)
    vt.backward()
    assert np.isnan(value) and np.isnan(vt.item())
    np.testing.assert_array_equal(L.softmax_cross_entropy_backward(cache), xt.grad.numpy())
    value, cache = L.nll_loss_forward(x, labels, np.ones(4), IGNORE, "sum")
    assert value == 0.0 and not np.any(L.nll_loss_backward(cache))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, 1, -5, 10])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 3)], ids=str)
def test_matches_onnx_reference(shape, ignore_index, reduction, rng: np.random.Generator) -> None:
    """ONNX's SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (scores (N, C, d...) with the classes on axis 1).
    Not ignore_index=-1 without weights: there the reference's NegativeLogLikelihoodLoss averages over every
    example, ignored ones included (a special case in its code); SoftmaxCrossEntropyLoss and PyTorch do not."""
    x = rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    if ignore_index is not None:
        labels.reshape(-1)[::2] = ignore_index
    for w in (None, rng.uniform(0.2, 2.0, size=shape[-1])):
        attrs = dict(reduction=reduction) if ignore_index is None else dict(reduction=reduction, ignore_index=ignore_index)
        inputs = {"scores": to_nchw(x), "labels": labels.astype(np.int64)}
        if w is not None:
            inputs["weights"] = w
        ref = run_node("SoftmaxCrossEntropyLoss", inputs, opset=13, **attrs)[0]
        value, _ = L.softmax_cross_entropy_forward(x, labels, w, ignore_index, reduction)
        assert_close(value, ref)
        logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        inputs["scores"] = to_nchw(logp)
        ref = run_node("NegativeLogLikelihoodLoss", inputs, opset=13, **attrs)[0]
        value, _ = L.nll_loss_forward(logp, labels, w, ignore_index, reduction)
        assert_close(value, ref)


def test_onnx_worked_examples() -> None:
    """The NegativeLogLikelihoodLoss examples of ONNX's operator documentation, classes moved last."""
    x = np.array([[[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]], [[0.0, 1.0], [2.0, 2.0], [1.0, 2.0]]]).transpose(0, 2, 1)
    target = np.array([[2, 1], [0, 2]])
    value, _ = L.nll_loss_forward(x, target, reduction="none")
    np.testing.assert_array_equal(value, [[-3.0, -2.0], [-0.0, -2.0]])
    weight = np.array([0.2, 0.3, 0.1])
    assert L.nll_loss_forward(x, target, weight, reduction="sum")[0] == pytest.approx(-1.1)
    assert L.nll_loss_forward(x, target, weight)[0] == pytest.approx(-1.1 / 0.7)


def test_log_softmax_then_nll_is_cross_entropy(rng: np.random.Generator) -> None:
    from cnnkit.ops.activation import log_softmax_backward, log_softmax_forward

    x, labels, w = _case(rng, (2, 3, 3, 5), True, True)
    v_ce, c_ce = L.softmax_cross_entropy_forward(x, labels, w, IGNORE, "none")
    logp, c_ls = log_softmax_forward(x)
    v_nll, c_nll = L.nll_loss_forward(logp, labels, w, IGNORE, "none")
    np.testing.assert_allclose(v_ce, v_nll, rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(labels.shape)
    g_chain = log_softmax_backward(L.nll_loss_backward(c_nll, dy), c_ls)
    np.testing.assert_allclose(L.softmax_cross_entropy_backward(c_ce, dy), g_chain, rtol=1e-10, atol=1e-14)


def test_errors() -> None:
    x = np.zeros((4, 3))
    labels = np.array([0, 1, 2, -100])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):  # without ignore_index every label is checked
        L.softmax_cross_entropy_forward(x, labels)
    with pytest.raises(ValueError, match=r"\[0, 3\).*ignore_index=-1"):
        L.nll_loss_forward(x, labels, ignore_index=-1)
    with pytest.raises(ValueError, match="reduction"):
        L.softmax_cross_entropy_forward(x, labels, reduction="avg")
    with pytest.raises(ShapeError, match=r"weight.*\(3,\)"):
        L.nll_loss_forward(x, labels, np.ones(4), -100)
    with pytest.raises(ValueError, match="probability targets"):
        L.softmax_cross_entropy_forward(x, np.full((4, 3), 1 / 3), ignore_index=0)
    _, cache = L.softmax_cross_entropy_forward(x, labels, ignore_index=-100, reduction="none")
    with pytest.raises(ShapeError, match=r"dy has shape \(3,\), expected the loss's shape \(4,\)"):
        L.softmax_cross_entropy_backward(cache, np.ones(3))
    _, cache = L.nll_loss_forward(x, labels, ignore_index=-100, reduction="sum")
    with pytest.raises(ShapeError, match="one number"):
        L.nll_loss_backward(cache, np.ones(4))
