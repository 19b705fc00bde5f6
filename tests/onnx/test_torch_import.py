"""cnnkit.onnx.load on real architectures built in PyTorch (random weights) and exported with
``torch.onnx.export(..., dynamo=False)``: cnnkit's output on the imported network equals onnxruntime's and
torch's to float32 tolerance (tests/onnx/helpers.py); the largest differences are printed at the end of the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.onnx.helpers import assert_close, nhwc, run_ort, slow

torch = pytest.importorskip("torch")

import cnnkit  # noqa: E402
import cnnkit.onnx  # noqa: E402
from cnnkit.errors import OnnxError  # noqa: E402
from cnnkit.nn import BatchNorm2d, Graph, Sequential  # noqa: E402
from tests.onnx import torch_models as tm  # noqa: E402
from tests.onnx.conftest import DIFFERENCES  # noqa: E402


def export_torch(model: Any, x: np.ndarray, path: Path, keep_batch_norm: bool = False) -> None:
    """The TorchScript-based exporter with a dynamic batch; ``keep_batch_norm`` writes BatchNormalization nodes
    (TrainingMode.PRESERVE of an eval-mode model) instead of folding them into the convolutions."""
    mode = torch.onnx.TrainingMode.PRESERVE if keep_batch_norm else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=17, training=mode)


# name -> (model factory, input size, keep batch norm nodes)
ARCHITECTURES: dict[str, tuple[Callable[[], Any], int, bool]] = {
    "alexnet": (lambda: tm.AlexNet(10, hidden=512), 224, False),
    "vgg11": (lambda: tm.VGG(tm.VGG11, 10, pool=2, hidden=512), 64, False),
    "resnet18": (lambda: tm.ResNet18(10), 64, True),
    "squeezenet1_1": (lambda: tm.SqueezeNet11(10), 64, False),
    "mobilenet_v2": (lambda: tm.MobileNetV2(10, act=torch.nn.ReLU), 64, True),
    "inception": (lambda: tm.InceptionNet(10), 64, True),
}
FULL_SIZE: dict[str, tuple[Callable[[], Any], int, bool]] = {
    "alexnet": (lambda: tm.AlexNet(1000), 224, False),
    "vgg11": (lambda: tm.VGG(tm.VGG11, 1000), 224, False),
    "resnet18": (lambda: tm.ResNet18(1000), 224, False),
}


def _check(name: str, factory: Callable[[], Any], size: int, keep_bn: bool, path: Path, batch: int = 2) -> Any:
    torch.manual_seed(0)
    model = tm.randomize(factory())
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    export_torch(model, x, path, keep_bn)
    with torch.no_grad():
        expected_torch = model(torch.from_numpy(x)).numpy()
    expected_ort = run_ort(path, x)
    net = cnnkit.onnx.load(path)
    got = nhwc(np.asarray(net.forward(nhwc(x), train=False)))
    d_ort = assert_close(got, expected_ort, f"{name}: cnnkit vs onnxruntime")
    d_torch = assert_close(got, expected_torch, f"{name}: cnnkit vs torch")
    what = f"{batch}x3x{size}x{size}" + (", BatchNormalization" if keep_bn else "")
    scale = float(np.abs(expected_ort).max())
    DIFFERENCES.append((name, what, d_ort, d_torch, scale))
    print(f"{name} ({what}): largest |cnnkit - onnxruntime| = {d_ort:.3g}, |cnnkit - torch| = {d_torch:.3g} "
          f"(outputs up to {scale:.3g})")
    return net


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture(name: str, tmp_path: Path) -> None:
    factory, size, keep_bn = ARCHITECTURES[name]
    net = _check(name, factory, size, keep_bn, tmp_path / f"{name}.onnx")
    assert isinstance(net, Graph if name in ("resnet18", "squeezenet1_1", "mobilenet_v2", "inception") else Sequential)
    if keep_bn:
        assert any(isinstance(m, BatchNorm2d) for m in net.modules())


@slow
@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_architecture_full_size(name: str, tmp_path: Path) -> None:
    """The torchvision sizes: 224 x 224 inputs, 4096-wide classifiers, 1000 classes (minutes on a small machine)."""
    factory, size, keep_bn = FULL_SIZE[name]
    _check(f"{name} (full)", factory, size, keep_bn, tmp_path / f"{name}.onnx", batch=1)


def test_relu6_is_refused_listing_every_clip(tmp_path: Path) -> None:
    """torchvision's MobileNetV2 as it is: ReLU6 is Clip(0, 6), which cnnkit has no layer for; every one is listed."""
    torch.manual_seed(0)
    model = tm.randomize(tm.MobileNetV2(10))
    export_torch(model, np.zeros((1, 3, 32, 32), np.float32), tmp_path / "m.onnx")
    with pytest.raises(OnnxError) as info:
        cnnkit.onnx.load(tmp_path / "m.onnx")
    message = str(info.value)
    assert "cannot import it (35 problem(s))" in message and message.count("(Clip): Clip to [0, 6]") == 35
    assert "\n" not in message


def test_fine_tune_an_imported_network_and_export_it_again(tmp_path: Path) -> None:
    """An imported Graph (residual blocks with batch norm) is an ordinary cnnkit network: one step of cnnkit.fit
    changes its weights and running statistics, it still exports, and onnxruntime agrees with it afterwards."""
    from cnnkit.optim import SGD

    torch.manual_seed(0)
    model = tm.randomize(torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        tm.BasicBlock(8, 8), tm.BasicBlock(8, 16, 2, torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, 2, bias=False),
                                                                          torch.nn.BatchNorm2d(16))),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4)))
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    export_torch(model, x, tmp_path / "r.onnx", keep_batch_norm=True)
    net = cnnkit.onnx.load(tmp_path / "r.onnx")
    assert isinstance(net, Graph)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    images, labels = nhwc(x), np.array([0, 1, 2, 3])
    history = cnnkit.fit(net, (images, labels), epochs=1, batch_size=4, optimizer=SGD(net, lr=0.01))
    assert np.isfinite(history.records[-1]["train_loss"])
    changed = {k for k, v in net.state_dict().items() if not np.array_equal(before[k], v)}
    assert set(net.params) <= changed and any(k.endswith("running_mean") for k in changed)
    cnnkit.onnx.export(net, (16, 16, 3), tmp_path / "tuned.onnx")
    assert_close(run_ort(tmp_path / "tuned.onnx", x), np.asarray(net.forward(images, train=False)), "re-exported")
