"""conv_transpose2d with groups, asymmetric pads (ONNX's pads begin/end), output_padding with groups and
dilation: gradient checks, PyTorch's conv_transpose2d as oracle for groups, onnx.reference's ConvTranspose
for asymmetric pads, and groups=1 unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.gradcheck import max_rel_error, numerical_grad
from cnnkit.ops.conv import (
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose_out_size,
    conv_transpose_pads,
)
from tests.onnx_oracle import run_node, to_nchw, to_nhwc
from tests.oracle import assert_close, nchw, nhwc, require_torch
from tests.torch_threads import one_torch_thread_fixture

one_torch_thread = one_torch_thread_fixture()

GRAD_TOL = 1e-7


def torch_weight(w: np.ndarray):
    """(kh, kw, C_in, C_out/g) -> PyTorch's and ONNX's (C_in, C_out/g, kh, kw), requiring grad."""
    torch = require_torch()
    return torch.tensor(np.ascontiguousarray(w.transpose(2, 3, 0, 1)), requires_grad=True)


CASES = [  # (x shape, C_out, kernel, stride, padding, output_padding, dilation, groups)
    ((2, 3, 4, 4), 6, 3, 2, 1, 1, 1, 2),
    ((2, 4, 3, 6), 6, (2, 3), (2, 1), ((0, 1), (1, 0)), (1, 0), (1, 2), 2),
    ((1, 3, 3, 3), 3, 3, 3, ((1, 2), (2, 0)), (2, 1), (2, 1), 3),  # depthwise; output_padding >= stride needs dilation
    ((2, 4, 4, 4), 8, (3, 2), 2, ((2, 0), (0, 1)), 0, 2, 4),
    ((2, 3, 4, 2), 5, 2, 1, ((0, 1), (1, 1)), 0, 1, 1),  # groups = 1, asymmetric pads
]


@pytest.mark.parametrize("x_shape,c_out,k,s,p,op,d,g", CASES)
def test_gradcheck(x_shape, c_out, k, s, p, op, d, g, rng: np.random.Generator) -> None:
    x = rng.standard_normal(x_shape)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((kh, kw, x_shape[3], c_out // g))
    b = rng.standard_normal(c_out)
    y, cache = conv_transpose2d_forward(x, w, b, s, p, op, d, g)
    r = rng.standard_normal(y.shape)
    dx, dw, db = conv_transpose2d_backward(r, cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (c_out,)

    def f() -> float:
        return float(np.sum(r * conv_transpose2d_forward(x, w, b, s, p, op, d, g)[0]))

    for analytic, arg in ((dx, x), (dw, w), (db, b)):
        assert max_rel_error(analytic, numerical_grad(f, arg)) < GRAD_TOL


@pytest.mark.parametrize("x_shape,c_out,k,s,p,op,d,g", CASES)
def test_is_the_adjoint_of_conv2d(x_shape, c_out, k, s, p, op, d, g, rng: np.random.Generator) -> None:
    """<conv_transpose(x), z> = <x, conv2d(z)> with the same weight (C_out/g as conv2d's input per group)."""
    x = rng.standard_normal(x_shape)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((kh, kw, x_shape[3], c_out // g))
    y, _ = conv_transpose2d_forward(x, w, None, s, p, op, d, g)
    z = rng.standard_normal(y.shape)
    # conv2d's weight (kh, kw, C_out/g, C_in): per group the transpose of the (C_in/g, C_out/g) blocks
    cg = x_shape[3] // g
    w_conv = w.reshape(kh, kw, g, cg, c_out // g).transpose(0, 1, 4, 2, 3).reshape(kh, kw, c_out // g, x_shape[3])
    t, b, l, r = conv_transpose_pads(p)
    zx, _ = conv2d_forward(z, w_conv, None, s, ((t, b), (l, r)), d, g)
    zx = zx[:, : x_shape[1], : x_shape[2]]  # output_padding >= stride can leave extra windows
    assert abs(float(np.vdot(y, z)) - float(np.vdot(x, zx))) < 1e-9 * max(1.0, abs(float(np.vdot(y, z))))


@pytest.mark.oracle
@pytest.mark.parametrize("x_shape,c_out,k,s,p,op,d,g", [c for c in CASES if isinstance(c[4], int)] + [
    ((2, 6, 5, 4), 4, (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
    ((1, 3, 3, 4), 8, 4, 2, 1, 0, 1, 4),
])
def test_groups_match_torch(x_shape, c_out, k, s, p, op, d, g, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal(x_shape)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((kh, kw, x_shape[3], c_out // g))
    b = rng.standard_normal(c_out)
    y, cache = conv_transpose2d_forward(x, w, b, s, p, op, d, g)
    xt, wt, bt = nchw(x), torch_weight(w), torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, s, p, op, g, d)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    dx, dw, db = conv_transpose2d_backward(dy, cache)
    assert_close(y, nhwc(yt))
    assert_close(dx, nhwc(xt.grad))
    assert_close(dw, wt.grad.numpy().transpose(2, 3, 0, 1))
    assert_close(db, bt.grad.numpy())


@pytest.mark.oracle
def test_asymmetric_pads_match_torch_cropped(rng: np.random.Generator) -> None:
    """Asymmetric pads crop the unpadded transposed convolution: PyTorch's output with padding 0, sliced."""
    torch = require_torch()
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((3, 2, 4, 3))  # groups 2: C_out = 6
    (t, b, l, r), op = (2, 1, 0, 1), (1, 0)
    y, cache = conv_transpose2d_forward(x, w, None, 2, ((t, b), (l, r)), op, 1, 2)
    xt, wt = nchw(x), torch_weight(w)
    full = torch.nn.functional.conv_transpose2d(xt, wt, None, 2, 0, op, 2, 1)
    yt = full[:, :, t : full.shape[2] - b, l : full.shape[3] - r]
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    dx, dw, _ = conv_transpose2d_backward(dy, cache)
    assert_close(y, nhwc(yt))
    assert_close(dx, nhwc(xt.grad))
    assert_close(dw, wt.grad.numpy().transpose(2, 3, 0, 1))


ONNX_CASES = [  # (x shape, C_out, kernel, stride, pads (t, b, l, r), output_padding, dilation, groups)
    ((1, 3, 3, 1), 2, 3, 3, (1, 2, 2, 1), 0, 1, 1),  # onnx's test_convtranspose_pads geometry
    ((2, 3, 4, 2), 3, (3, 2), (2, 1), (0, 1, 1, 0), (1, 0), 1, 1),
    ((1, 4, 3, 3), 2, 2, (1, 2), (2, 0, 0, 1), (0, 1), (2, 1), 1),
    ((2, 3, 3, 4), 4, 3, 2, (1, 0, 0, 2), 1, (1, 2), 4),  # groups with one output channel each (see below)
    ((1, 4, 4, 2), 2, 2, 2, (0, 1, 1, 0), 0, 1, 2),
]


@pytest.mark.parametrize("x_shape,c_out,k,s,pads,op,d,g", ONNX_CASES)
def test_matches_onnx_reference(x_shape, c_out, k, s, pads, op, d, g, rng: np.random.Generator) -> None:
    """onnx.reference's ConvTranspose. Its grouped path is only right with one output channel per group and
    no bias (it writes each group's output into one channel and adds B[0..C_out/g) to every group), so the
    grouped cases keep to that; PyTorch checks the general grouped case above."""
    x = rng.standard_normal(x_shape)
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (s, s) if isinstance(s, int) else s
    dh, dw = (d, d) if isinstance(d, int) else d
    oph, opw = (op, op) if isinstance(op, int) else op
    w = rng.standard_normal((kh, kw, x_shape[3], c_out // g))
    b = rng.standard_normal(c_out) if g == 1 else None
    t, bot, l, r = pads
    y, _ = conv_transpose2d_forward(x, w, b, s, ((t, bot), (l, r)), op, d, g)
    inputs = {"x": to_nchw(x), "w": np.ascontiguousarray(w.transpose(2, 3, 0, 1))}
    if b is not None:
        inputs["b"] = b
    (ref,) = run_node("ConvTranspose", inputs, kernel_shape=[kh, kw], strides=[sh, sw], pads=[t, l, bot, r],
                      output_padding=[oph, opw], dilations=[dh, dw], group=g)
    assert y.shape[1:3] == (
        conv_transpose_out_size(x_shape[1], kh, sh, t, oph, dh, bot),
        conv_transpose_out_size(x_shape[2], kw, sw, l, opw, dw, r),
    )
    assert_close(y, to_nhwc(ref))


def test_groups_one_is_unchanged(rng: np.random.Generator) -> None:
    """groups=1 takes the same path as before: bit-identical to the explicit symmetric call."""
    x = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    y1, c1 = conv_transpose2d_forward(x, w, None, 2, 1, 1)
    y2, c2 = conv_transpose2d_forward(x, w, None, 2, ((1, 1), (1, 1)), 1, 1, 1)
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    for a, b in zip(conv_transpose2d_backward(dy, c1), conv_transpose2d_backward(dy, c2)):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_errors(rng: np.random.Generator) -> None:
    x = np.zeros((1, 3, 3, 4))
    with pytest.raises(ShapeError, match="groups=3"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 4, 1)), groups=3)
    with pytest.raises(ShapeError, match=r"C_out/groups\) with C_in = 4"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 2, 1)), groups=2)
    with pytest.raises(ShapeError, match=r"bias must have shape \(6,\)"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 4, 3)), np.zeros(3), groups=2)
    with pytest.raises(ShapeError, match=">= 0"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 4, 3)), padding=((0, -1), (0, 0)))
    with pytest.raises(ShapeError, match="padding"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 4, 3)), padding="same")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ShapeError, match="empty output"):
        conv_transpose2d_forward(x, np.zeros((2, 2, 4, 3)), padding=((3, 2), (0, 0)))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_conv2d_same_padding_names_match_onnx_reference(auto_pad: str, rng: np.random.Generator) -> None:
    """resolve_padding's "same_upper"/"same_lower" (shared with pooling) are ONNX Conv's auto_pad too."""
    x = rng.standard_normal((1, 6, 7, 2))
    w = rng.standard_normal((4, 3, 2, 3))
    y, _ = conv2d_forward(x, w, None, (2, 1), auto_pad.lower())
    (ref,) = run_node("Conv", {"x": to_nchw(x), "w": np.ascontiguousarray(w.transpose(3, 2, 0, 1))}, kernel_shape=[4, 3],
                      strides=[2, 1], auto_pad=auto_pad)
    assert_close(y, to_nhwc(ref))
