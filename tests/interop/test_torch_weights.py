"""PyTorch weights in safetensors files: cnnkit -> PyTorch and PyTorch -> cnnkit against PyTorch itself, then malformed files.

For every network below the same architecture is built in cnnkit and in PyTorch (``nn.Sequential`` of
the matching modules, ``nn.Flatten``; a module with ``body``/``shortcut`` for a Residual, attributes named
like a Graph's nodes). Both directions are compared on evaluation-mode outputs in float32 with
``RTOL``/``ATOL`` (the largest absolute difference measured is 2.4e-7, on outputs below 1 in magnitude): export from
cnnkit and ``load_state_dict(safetensors.torch.load_file(path))`` strictly in PyTorch; save PyTorch's
``state_dict`` with ``safetensors.torch.save_file`` and load it with ``load_torch_state_dict``. After the
import one cnnkit training step (SGD on an MSE loss) is compared with the same step in PyTorch.

The malformed-file tests need safetensors only (no torch): each error is one line naming the file.
"""

from __future__ import annotations

import inspect
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnkit.errors import MismatchError, ModelFileError, ShapeError, StateError
from cnnkit.interop import (
    IncompatibleKeys,
    load_torch_arrays,
    load_torch_state_dict,
    save_torch_state_dict,
    torch_state_dict,
)
from cnnkit.limits import LIMITS
from cnnkit.models import build
from cnnkit.models.zoo import base_spec
from cnnkit.nn import (
    Add,
    BatchNorm1d,
    BatchNorm2d,
    Concatenate,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Graph,
    Layer,
    Linear,
    LocallyConnected2d,
    MaxPool2d,
    MSELoss,
    PReLU,
    ReLU,
    Residual,
    Sequential,
)
from cnnkit.optim import SGD

RTOL, ATOL = 1e-4, 1e-5  # float32, outputs of order 1
LR = 0.05

pytest.importorskip("safetensors")


def _torch() -> Any:
    return pytest.importorskip("torch")


# -- the networks, each in cnnkit and in PyTorch ---------------------------------------------------------


@dataclass
class Case:
    name: str
    input_shape: tuple[int, int, int]  # (H, W, C)
    cnnkit: Callable[[np.random.Generator], Layer]
    torch: Callable[[], Any]  # builds the PyTorch model (torch imported)
    dropout: bool = False


def _tnn() -> Any:
    return _torch().nn


def _base_cnnkit(rng: np.random.Generator) -> Layer:
    return build(base_spec(), (28, 28, 1), rng)


def _base_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Conv2d(50, 500, 4),
                         nn.ReLU(), nn.Conv2d(500, 10, 1))


def _fc_cnnkit(rng: np.random.Generator) -> Layer:  # (12, 10, 3) -> 12x10 -> 6x5 -> 4x3x8 = 96 features
    return Sequential(Conv2d(3, 6, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Conv2d(6, 8, 3, rng=rng), ReLU(), Flatten(),
                      Linear(96, 32, rng=rng), ReLU(), Dropout(0.5, rng=rng), Linear(32, 5, rng=rng))


def _fc_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(96, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5))


def _bn_cnnkit(rng: np.random.Generator) -> Layer:  # (10, 8, 3) -> 8x6 -> 4x3x8 = 96 features, BatchNorm1d between Flatten and Linear
    return Sequential(Conv2d(3, 8, 3, bias=False, rng=rng), BatchNorm2d(8), ReLU(), MaxPool2d(2), Flatten(), BatchNorm1d(96),
                      ReLU(), Linear(96, 16, rng=rng), BatchNorm1d(16), ReLU(), Linear(16, 4, rng=rng))


def _bn_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.BatchNorm1d(96), nn.ReLU(), nn.Linear(96, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def _grouped_cnnkit(rng: np.random.Generator) -> Layer:
    return Sequential(Conv2d(4, 8, 3, padding=1, groups=2, rng=rng), ReLU(),
                      Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8, rng=rng),  # depthwise
                      Conv2d(8, 6, (1, 3), groups=2, rng=rng))


def _grouped_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8),
                         nn.Conv2d(8, 6, (1, 3), groups=2))


def _deconv_cnnkit(rng: np.random.Generator) -> Layer:
    return Sequential(Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), ReLU(),
                      ConvTranspose2d(4, 5, 3, stride=2, padding=1, output_padding=1, rng=rng), ReLU(),
                      ConvTranspose2d(5, 2, (2, 3), stride=(2, 1), dilation=(1, 2), bias=False, rng=rng))


def _deconv_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(4, 5, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(5, 2, (2, 3), stride=(2, 1), dilation=(1, 2), bias=False))


_DECONV_GROUPS = "groups" in inspect.signature(ConvTranspose2d).parameters


def _deconv_grouped_cnnkit(rng: np.random.Generator) -> Layer:
    kwargs: dict[str, Any] = {"groups": 2}  # weight (kh, kw, in, out/groups)
    return Sequential(ConvTranspose2d(4, 6, 3, stride=2, rng=rng, **kwargs), ReLU(), ConvTranspose2d(6, 2, 2, rng=rng, **kwargs))


def _deconv_grouped_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), nn.ReLU(), nn.ConvTranspose2d(6, 2, 2, groups=2))


def _prelu_cnnkit(rng: np.random.Generator) -> Layer:  # (7, 6, 3) -> 5x4x4 = 80 features; one slope per feature after Flatten
    return Sequential(Conv2d(3, 4, 3, rng=rng), PReLU(4), Conv2d(4, 4, 3, padding=1, rng=rng), PReLU(), Flatten(), PReLU(80),
                      Linear(80, 3, rng=rng))


def _prelu_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(), nn.Flatten(), nn.PReLU(80),
                         nn.Linear(80, 3))


def _residual_cnnkit(rng: np.random.Generator) -> Layer:  # (8, 6, 3) -> 8x6x8 -> 4x3x12 = 144 features
    return Sequential(
        Conv2d(3, 8, 3, padding=1, rng=rng),
        Residual(Sequential(Conv2d(8, 8, 3, padding=1, bias=False, rng=rng), BatchNorm2d(8), ReLU(), Conv2d(8, 8, 3, padding=1, rng=rng))),
        Residual(Sequential(Conv2d(8, 12, 3, stride=2, padding=1, rng=rng), ReLU()), Conv2d(8, 12, 1, stride=2, rng=rng)),
        Flatten(), Linear(144, 5, rng=rng),
    )


def _residual_torch() -> Any:
    torch = _torch()
    nn = torch.nn

    class TorchResidual(nn.Module):  # cnnkit's Residual: body(x) + shortcut(x), the identity without a shortcut
        def __init__(self, body: Any, shortcut: Any = None) -> None:
            super().__init__()
            self.body = body
            if shortcut is not None:
                self.shortcut = shortcut

        def forward(self, x: Any) -> Any:
            return self.body(x) + (self.shortcut(x) if hasattr(self, "shortcut") else x)

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        TorchResidual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1))),
        TorchResidual(nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU()), nn.Conv2d(8, 12, 1, stride=2)),
        nn.Flatten(), nn.Linear(144, 5),
    )


def _graph_cnnkit(rng: np.random.Generator) -> Layer:  # (6, 5, 3): an Inception-style concat, a residual sum, Flatten + Linear
    g = Graph()
    g.add("stem", Conv2d(3, 6, 3, padding=1, rng=rng), "input")
    g.add("relu", ReLU(), "stem")
    g.add("b1", Conv2d(6, 3, 1, rng=rng), "relu")
    g.add("b3", Conv2d(6, 5, 3, padding=1, rng=rng), "relu")
    g.add("cat", Concatenate(), "b1", "b3")
    g.add("proj", Conv2d(6, 8, 1, bias=False, rng=rng), "relu")
    g.add("bn", BatchNorm2d(8), "proj")
    g.add("sum", Add(), "cat", "bn")
    g.add("flat", Flatten(), "sum")
    g.add("fc", Linear(6 * 5 * 8, 4, rng=rng), "flat")
    return g


def _graph_torch() -> Any:
    torch = _torch()
    nn = torch.nn

    class TorchGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.relu = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
            self.b1, self.b3 = nn.Conv2d(6, 3, 1), nn.Conv2d(6, 5, 3, padding=1)
            self.proj, self.bn = nn.Conv2d(6, 8, 1, bias=False), nn.BatchNorm2d(8)
            self.flat, self.fc = nn.Flatten(), nn.Linear(6 * 5 * 8, 4)

        def forward(self, x: Any) -> Any:
            h = self.relu(self.stem(x))
            s = torch.cat([self.b1(h), self.b3(h)], dim=1) + self.bn(self.proj(h))
            return self.fc(self.flat(s))

    return TorchGraph()


def _nchw_flatten_cnnkit(rng: np.random.Generator) -> Layer:  # Flatten(order="nchw"): PyTorch's order, no input_shape needed
    return Sequential(Conv2d(2, 3, 3, rng=rng), ReLU(), Flatten(order="nchw"), Linear(3 * 4 * 3, 4, rng=rng))


def _nchw_flatten_torch() -> Any:
    nn = _tnn()
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 3, 4))


CASES = [
    Case("base", (28, 28, 1), _base_cnnkit, _base_torch),
    Case("flatten_linear_dropout", (12, 10, 3), _fc_cnnkit, _fc_torch, dropout=True),
    Case("batchnorm", (10, 8, 3), _bn_cnnkit, _bn_torch),
    Case("grouped_depthwise", (9, 7, 4), _grouped_cnnkit, _grouped_torch),
    Case("conv_transpose", (7, 6, 3), _deconv_cnnkit, _deconv_torch),
    pytest.param(Case("conv_transpose_grouped", (4, 5, 4), _deconv_grouped_cnnkit, _deconv_grouped_torch),
                 marks=pytest.mark.skipif(not _DECONV_GROUPS, reason="ConvTranspose2d has no groups yet")),
    Case("prelu", (7, 6, 3), _prelu_cnnkit, _prelu_torch),
    Case("residual", (8, 6, 3), _residual_cnnkit, _residual_torch),
    Case("graph", (6, 5, 3), _graph_cnnkit, _graph_torch),
    Case("flatten_nchw", (6, 5, 2), _nchw_flatten_cnnkit, _nchw_flatten_torch),
]


def _case_id(case: Any) -> str:
    return case.name if isinstance(case, Case) else str(case)


# -- helpers -------------------------------------------------------------------------------------------


def _disturb_cnnkit(net: Layer, rng: np.random.Generator) -> None:
    """Non-trivial batch-norm statistics, scales and PReLU slopes (defaults would hide a layout mistake)."""
    for name, v in {**net.params, **net.buffers}.items():
        if name.endswith("num_batches_tracked"):
            v[...] = 7
        elif name.endswith(("running_var",)) or (name.endswith("weight") and v.ndim == 1):
            v[...] = rng.uniform(0.5, 1.5, v.shape)
        elif name.endswith("running_mean") or v.ndim == 1:
            v[...] = rng.normal(0.0, 0.2, v.shape)


def _disturb_torch(model: Any) -> None:
    torch = _torch()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, v in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                v.fill_(11)
            elif name.endswith("running_var") or (name.endswith("weight") and v.ndim == 1):
                v.copy_(0.5 + torch.rand(v.shape, generator=g))
            elif name.endswith("running_mean") or v.ndim == 1:
                v.copy_(0.2 * torch.randn(v.shape, generator=g))


def _nchw(y: np.ndarray) -> np.ndarray:
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def _torch_out(model: Any, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(_nchw(x)))).numpy()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _input(case: Case, n: int = 4, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *case.input_shape)).astype(np.float32)


# -- cnnkit -> PyTorch -----------------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cnnkit_to_torch(case: Case, tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch = _torch()
    rng = np.random.default_rng(0)
    net = case.cnnkit(rng)
    _disturb_cnnkit(net, rng)
    path = tmp_path / "net.safetensors"
    save_torch_state_dict(net, path, input_shape=case.input_shape)
    state = safetensors_torch.load_file(path)
    for k, v in state.items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
    model = case.torch()
    model.load_state_dict(state)  # strict: the same names, PyTorch's shapes
    model.eval()
    x = _input(case)
    ours = _nchw(net.eval()(x))
    theirs = _torch_out(model, x)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temporary left behind


# -- PyTorch -> cnnkit, then one training step ---------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_torch_to_cnnkit_then_train(case: Case, tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch = _torch()
    torch.manual_seed(0)
    model = case.torch()
    _disturb_torch(model)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(model.state_dict(), path)
    net = case.cnnkit(np.random.default_rng(1))  # other weights, overwritten by the load
    grads_before = {k: id(g) for k, g in net.grads.items()}
    keys = load_torch_state_dict(net, path, input_shape=case.input_shape)
    assert keys == IncompatibleKeys([], [])
    for name, v in model.state_dict().items():  # buffers too, num_batches_tracked included
        ours = {**net.params, **net.buffers}[name]
        if v.ndim == 0:
            assert int(ours) == int(v), name
    x = _input(case, seed=4)
    model.eval()
    np.testing.assert_allclose(_nchw(net.eval()(x)), _torch_out(model, x), rtol=RTOL, atol=ATOL)

    # one training step in both (dropout draws differ, so that network is only checked to train)
    target = np.random.default_rng(5).standard_normal(net.output_shape(case.input_shape)).astype(np.float32)
    target = np.broadcast_to(target, (x.shape[0], *target.shape)).copy()
    net.train()
    loss = MSELoss()
    value = loss.forward(net(x), target)
    net.backward(loss.backward())
    SGD(net, lr=LR).step()
    assert np.isfinite(value) and {k: id(g) for k, g in net.grads.items()} == grads_before  # loaded in place
    if case.dropout:
        assert np.isfinite(net.eval()(x)).all()
        return
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    opt.zero_grad()
    out = model(torch.from_numpy(np.ascontiguousarray(_nchw(x))))
    torch_loss = torch.nn.functional.mse_loss(out, torch.from_numpy(np.ascontiguousarray(_nchw(target))))
    torch_loss.backward()
    opt.step()
    assert abs(value - torch_loss.item()) <= RTOL * abs(value) + ATOL
    after = torch_state_dict(net, case.input_shape)
    for name, v in model.state_dict().items():
        np.testing.assert_allclose(after[name], v.numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.oracle
def test_shared_layer_is_written_under_every_name(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch = _torch()
    fc = Linear(4, 4, rng=np.random.default_rng(0))
    net = Sequential(fc, ReLU(), fc)
    assert sorted(net.state_dict()) == ["0.bias", "0.weight"]
    save_torch_state_dict(net, tmp_path / "a.safetensors")
    t_fc = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(t_fc, torch.nn.ReLU(), t_fc)  # PyTorch lists the module under 0 and 2
    model.load_state_dict(safetensors_torch.load_file(tmp_path / "a.safetensors"))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(net(x, train=False), _torch_out(model, x), rtol=RTOL, atol=ATOL)
    # back: PyTorch's state_dict holds both names (cloned: safetensors refuses shared storage)
    safetensors_torch.save_file({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "b.safetensors")
    other = Linear(4, 4, rng=np.random.default_rng(2))
    assert load_torch_state_dict(Sequential(other, ReLU(), other), tmp_path / "b.safetensors") == IncompatibleKeys([], [])
    np.testing.assert_array_equal(other.params["weight"], fc.params["weight"])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["2.bias"] += 1
    safetensors_torch.save_file(state, tmp_path / "c.safetensors")
    with pytest.raises(StateError, match="name one shared layer"):
        load_torch_state_dict(Sequential(other, ReLU(), other), tmp_path / "c.safetensors")


# -- the reordering, without PyTorch ---------------------------------------------------------------------


def test_flatten_reorders_linear_columns_and_feature_vectors() -> None:
    rng = np.random.default_rng(0)
    h, w, c = 3, 2, 4
    net = Sequential(Flatten(), BatchNorm1d(h * w * c), ReLU(), Dropout(0.1), PReLU(h * w * c), Linear(h * w * c, 2, rng=rng))
    _disturb_cnnkit(net, rng)
    state = torch_state_dict(net, (h, w, c))
    x = rng.standard_normal((5, h, w, c)).astype(np.float32)
    x_torch = x.transpose(0, 3, 1, 2).reshape(5, -1)  # PyTorch's flatten of the NCHW image
    x_ours = x.reshape(5, -1)
    for key in ("1.running_mean", "1.weight", "4.weight"):  # the same feature in both orders
        ours = net.state_dict()[key]
        np.testing.assert_array_equal(state[key], ours.reshape(h, w, c).transpose(2, 0, 1).ravel())
    np.testing.assert_allclose(x_torch @ state["5.weight"].T, x_ours @ net.params["5.weight"], rtol=1e-5, atol=1e-6)
    other = Sequential(Flatten(), BatchNorm1d(h * w * c), ReLU(), Dropout(0.1), PReLU(h * w * c), Linear(h * w * c, 2))
    load_torch_arrays(other, state, (h, w, c))  # and back
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_no_reordering_without_an_image_to_flatten() -> None:
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(3, 2, 3, rng=rng), MaxPool2d(2), Conv2d(2, 5, 1, rng=rng))  # no Flatten: input_shape not needed
    state = torch_state_dict(net)
    np.testing.assert_array_equal(state["0.weight"], net.params["0.weight"].transpose(3, 2, 0, 1))
    one_pixel = Sequential(Flatten(), Linear(6, 2, rng=rng))  # a 1 x 1 x 6 image: the two orders agree
    np.testing.assert_array_equal(torch_state_dict(one_pixel, (1, 1, 6))["1.weight"], one_pixel.params["1.weight"].T)


def test_input_shape_needed_and_checked() -> None:
    net = Sequential(Conv2d(3, 4, 3, rng=np.random.default_rng(0)), Flatten(), Linear(4 * 2 * 2, 2))
    with pytest.raises(ShapeError, match=r"layer 1 \(Flatten\).*pass input_shape=\(H, W, C\)"):
        torch_state_dict(net)
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2d\).*expects 3 input channels"):
        torch_state_dict(net, (4, 4, 1))
    with pytest.raises(ShapeError, match=r"layer 2 \(Linear\).*expects 16 input features"):
        torch_state_dict(net, (5, 5, 3))


def test_layers_without_pytorch_equivalent_are_named() -> None:
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(1, 2, 3, rng=rng), LocallyConnected2d(2, 2, 2, in_size=(3, 3), rng=rng))
    with pytest.raises(ShapeError, match=r"layer 1 \(LocallyConnected2d\) has no PyTorch equivalent"):
        torch_state_dict(net, (5, 5, 1))
    mixed = Sequential(Flatten(), Residual(Linear(12, 12, rng=rng)))  # sums features of two orders
    with pytest.raises(ShapeError, match=r"layer 1 \(Residual\) combines flattened features of different orders"):
        torch_state_dict(mixed, (2, 2, 3))
    import cnnkit.nn as cnn

    if hasattr(cnn, "LocalResponseNorm"):  # mixes neighbouring features: reordered, its neighbours would change
        lrn = Sequential(Flatten(), cnn.LocalResponseNorm(3), Linear(12, 2, rng=rng))
        with pytest.raises(ShapeError, match=r"layer 1 \(LocalResponseNorm\) follows a Flatten"):
            torch_state_dict(lrn, (2, 2, 3))
    if "shape" in inspect.signature(PReLU).parameters:  # a slope per element: nn.PReLU has none such
        with pytest.raises(ShapeError, match=r"layer 0 \(PReLU\) has slopes of shape \(2, 2, 3\)"):
            torch_state_dict(Sequential(PReLU(shape=(2, 2, 3))), (2, 2, 3))
    partial = Sequential(Flatten(start_dim=1, end_dim=2), Linear(3, 2, rng=rng))
    with pytest.raises(ShapeError, match="flattens only some axes"):
        torch_state_dict(partial, (2, 2, 3))


def test_save_is_atomic_and_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    bad = Sequential(LocallyConnected2d(1, 1, 2, in_size=(3, 3), rng=rng))
    with pytest.raises(ShapeError):
        save_torch_state_dict(bad, path, (3, 3, 1))
    assert path.read_bytes() == b"old"
    save_torch_state_dict(Sequential(Linear(2, 2, rng=rng)), path)
    assert path.read_bytes()[:8] != b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


# -- malformed files -------------------------------------------------------------------------------------


def _net() -> Sequential:
    rng = np.random.default_rng(0)
    return Sequential(Conv2d(1, 2, 3, rng=rng), BatchNorm2d(2), ReLU(), Flatten(), Linear(2 * 2 * 2, 3, rng=rng))


SHAPE = (4, 4, 1)


def _write(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]], header_extra: str = "") -> None:
    """A safetensors file written by hand (for dtypes NumPy lacks, and for broken headers)."""
    import json

    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header) + header_extra
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs))


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.safetensors"
    save_torch_state_dict(_net(), path, SHAPE)
    return path


def _load_error(net: Layer, path: Path, error: type[Exception], match: str) -> str:
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(error, match=match) as info:
        load_torch_state_dict(net, path, SHAPE)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for k, v in net.state_dict().items():  # nothing copied
        np.testing.assert_array_equal(v, before[k])
    return message


def test_round_trip_and_nothing_copied_when_a_later_tensor_is_wrong(tmp_path: Path) -> None:
    path = _good(tmp_path)
    net = _net()
    for v in net.params.values():
        v[...] = 0
    load_torch_state_dict(net, path, SHAPE)
    for k, v in _net().state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v)
    from safetensors.numpy import save

    state = torch_state_dict(_net(), SHAPE)
    state["4.bias"] = np.zeros(4, np.float32)  # the last entry of the network is wrong: the first are not copied either
    (tmp_path / "late.safetensors").write_bytes(save(state))
    _load_error(_net(), tmp_path / "late.safetensors", ShapeError, r"'4\.bias' has shape \(4,\); the network's 4\.bias expects \(3,\)")


@pytest.mark.parametrize("cut", [0, 5, 8, 40, -1, -9])
def test_truncated(tmp_path: Path, cut: int) -> None:
    data = _good(tmp_path).read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:cut])
    _load_error(_net(), path, ModelFileError, "truncated|not a safetensors file")


def test_wrong_dtype_int32(tmp_path: Path) -> None:
    from safetensors.numpy import save

    state = torch_state_dict(_net(), SHAPE)
    state["0.weight"] = state["0.weight"].astype(np.int32)
    path = tmp_path / "int.safetensors"
    path.write_bytes(save(state))
    _load_error(_net(), path, ModelFileError, r"tensor '0\.weight' has dtype 'I32'; expected a floating-point tensor")
    with pytest.raises(MismatchError, match="has dtype 'I32'"):
        load_torch_arrays(_net(), state, SHAPE)


def test_float64_refused_for_float32_network_half_precision_accepted(tmp_path: Path) -> None:
    from safetensors.numpy import save

    state = torch_state_dict(_net(), SHAPE)
    wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state.items()}
    (tmp_path / "f64.safetensors").write_bytes(save(wide))
    _load_error(_net(), tmp_path / "f64.safetensors", ModelFileError,
                r"has dtype 'F64'; expected .*\(F16, BF16, F32\) for a float32 network")
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in state.items()}
    (tmp_path / "f16.safetensors").write_bytes(save(half))
    net = _net()
    load_torch_state_dict(net, tmp_path / "f16.safetensors", SHAPE)
    assert net.params["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(net.params["0.weight"], _net().params["0.weight"].astype(np.float16).astype(np.float32))
    # bfloat16: the top 16 bits of float32 (written by hand: NumPy has no bfloat16)
    bf = {}
    for k, v in state.items():
        if v.dtype == np.float32:
            bf[k] = ("BF16", v.shape, (v.view(np.uint32) >> 16).astype("<u2").tobytes())
        else:
            bf[k] = ("I64", v.shape, v.astype("<i8").tobytes())
    _write(tmp_path / "bf16.safetensors", bf)
    net = _net()
    load_torch_state_dict(net, tmp_path / "bf16.safetensors", SHAPE)
    expected = (_net().params["4.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(net.params["4.weight"], expected)
    f64_net = _net().astype(np.float64)  # a float64 network takes float32 tensors
    load_torch_state_dict(f64_net, _good(tmp_path), SHAPE)
    assert f64_net.params["0.weight"].dtype == np.float64


def test_wrong_shapes(tmp_path: Path) -> None:
    from safetensors.numpy import save

    state = torch_state_dict(_net(), SHAPE)
    state["4.weight"] = np.ascontiguousarray(state["4.weight"].T)  # cnnkit's (in, out) instead of PyTorch's (out, in)
    path = tmp_path / "shape.safetensors"
    path.write_bytes(save(state))
    _load_error(_net(), path, ShapeError, r"tensor '4\.weight' has shape \(8, 3\); the network's 4\.weight expects \(3, 8\)")


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    from safetensors.numpy import save

    state = torch_state_dict(_net(), SHAPE)
    extra = {**state, "5.weight": np.zeros((2, 2), np.float32)}
    del extra["0.bias"]
    path = tmp_path / "keys.safetensors"
    path.write_bytes(save(extra))
    message = _load_error(_net(), path, StateError,
                          r"missing 1 entries of the network: \['0\.bias'\]; unexpected 1 entries .*\['5\.weight'\]")
    assert "strict=False" in message
    net = _net()
    for v in net.params.values():
        v[...] = 0
    keys = load_torch_state_dict(net, path, SHAPE, strict=False)
    assert keys == IncompatibleKeys(missing_keys=["0.bias"], unexpected_keys=["5.weight"])
    assert not net.params["0.bias"].any() and net.params["0.weight"].any()
    # num_batches_tracked may be missing (files of older PyTorch versions); it keeps its value
    no_count = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    (tmp_path / "nocount.safetensors").write_bytes(save(no_count))
    assert load_torch_state_dict(_net(), tmp_path / "nocount.safetensors", SHAPE) == IncompatibleKeys(["1.num_batches_tracked"], [])


def test_many_unexpected_keys_are_quoted_briefly(tmp_path: Path) -> None:
    from safetensors.numpy import save

    state = {**torch_state_dict(_net(), SHAPE), **{f"extra.{i:04d}.weight": np.zeros(1, np.float32) for i in range(500)}}
    path = tmp_path / "many.safetensors"
    path.write_bytes(save(state))
    message = _load_error(_net(), path, StateError, "unexpected 500 entries")
    assert len(message) < 400 + len(str(path)) and "characters)" in message


def test_fifo_is_refused(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)
    _load_error(_net(), path, ModelFileError, "not a regular file")  # and does not block


def test_too_large_and_bad_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _good(tmp_path)
    monkeypatch.setattr(LIMITS, "file_bytes", 16)
    monkeypatch.setattr(LIMITS, "meta_bytes", 16)
    _load_error(_net(), good, ModelFileError, "over the limit")
    monkeypatch.undo()
    cases = {
        "huge_header": struct.pack("<Q", 1 << 62) + b"{}",
        "not_json": struct.pack("<Q", 4) + b"{]}x",
        "list": struct.pack("<Q", 2) + b"[]",
        "npz": b"PK\x03\x04" + bytes(60),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        _load_error(_net(), tmp_path / name, ModelFileError, "over the limit|truncated|not a safetensors file")
    w = np.zeros((2, 1, 3, 3), np.float32).tobytes()
    _write(tmp_path / "gap", {"0.weight": ("F32", (2, 1, 3, 3), w)})
    data = (tmp_path / "gap").read_bytes()
    (tmp_path / "gap").write_bytes(data + b"\0" * 4)
    _load_error(_net(), tmp_path / "gap", ModelFileError, "bytes after the last tensor")
    _write(tmp_path / "odd", {"0.weight": ("F32", (2, 1, 3, 4), w)})
    _load_error(_net(), tmp_path / "odd", ModelFileError, "declares F32 .* but data_offsets of 72 bytes")
    _write(tmp_path / "dtype", {"0.weight": ("Q99", (2, 1, 3, 3), w)})
    _load_error(_net(), tmp_path / "dtype", ModelFileError, "unknown dtype 'Q99'")
    text = '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    (tmp_path / "dup").write_bytes(struct.pack("<Q", len(text)) + text.encode() + bytes(8))
    _load_error(_net(), tmp_path / "dup", ModelFileError, "its header names .a. twice")
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(_net(), tmp_path / "absent.safetensors", SHAPE)


def test_shared_containers_cannot_explode(monkeypatch: pytest.MonkeyPatch) -> None:
    block: Layer = Linear(2, 2, rng=np.random.default_rng(0))
    for _ in range(30):  # 2**30 paths to one leaf
        block = Sequential(block, block)
    monkeypatch.setattr(LIMITS, "layers", 1000)
    with pytest.raises(ShapeError, match="more than 1,000 layer uses"):
        torch_state_dict(block)
