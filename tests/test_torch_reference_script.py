"""Smoke test of scripts/torch_reference.py (the independent PyTorch reference for the exercise-15.6 runs).

Skipped without torch or without the MNIST files. One epoch on 500 training and 1000 test images: seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "torch_reference.py"


def _load_script() -> ModuleType:
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("torch_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    module = _load_script()
    if not module.mnist_available():
        pytest.skip(f"MNIST files not found in {module.default_data_dir()}")
    return module


@pytest.mark.parametrize("model, extra, worst", [("base", [], 0.9), ("bn", [], 0.9),
                                                 ("sk-0.2", ["--keep-momentum", "--bn-eps", "1e-5"], 1.0),
                                                 ("sk-0.2-sigmoid", [], 1.0)])  # SK-0.2: BN moments still warming up
def test_one_epoch_writes_sane_json(ref: ModuleType, tmp_path: Path, model: str, extra: list[str], worst: float) -> None:
    out = tmp_path / "res.json"
    ref.main([
        "--model", model, "--train-limit", "500", "--test-limit", "1000", "--epochs", "1", "--seed", "0",
        "--threads", "1", "--memory-format", "contiguous", "--out", str(out), "--quiet", *extra,
    ])
    res = json.loads(out.read_text())
    assert len(res["epochs"]) == 1
    ep = res["epochs"][0]
    for key in ("train_loss", "train_error", "test_loss", "test_error", "seconds"):
        assert math.isfinite(ep[key]), key
    assert 0.0 <= ep["train_error"] <= 1.0 and ep["train_loss"] > 0.0
    assert res["final_test_error"] == ep["test_error"] <= worst
    assert res["config"]["train_limit"] == 500 and res["config"]["test_limit"] == 1000


def test_models_shapes_init_and_decay_groups(ref: ModuleType) -> None:
    import torch

    torch.manual_seed(0)
    x = torch.zeros(2, 1, 28, 28)
    for name, n_bn in (("base", 0), ("bn", 3), ("sk-1", 4), ("sk-0.5", 4)):
        m = ref.build_model(name)
        assert ref.logits_of(m, x).shape == (2, 10)
        convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
        bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
        assert len(bns) == n_bn
        assert all(b.momentum == 0.05 and b.eps == 1e-4 for b in bns)  # MatConvNet's vl_nnbnorm epsilon
        # Convs followed by BN carry no bias; the rest have zero biases.
        assert sum(c.bias is None for c in convs) == n_bn
        assert all(float(c.bias.detach().abs().max()) == 0.0 for c in convs if c.bias is not None)
        w = convs[2].weight.detach().numpy()  # the big 4x4 conv in base/bn: 0.01 * N(0, 1)
        assert 0.007 < w.std() < 0.013
        opt = ref.make_optimizer(m, 0.001, 0.9, 5e-4)
        decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        assert decayed == {id(p) for c in convs for p in c.parameters()}
    assert [c.out_channels for c in ref.build_model("sk-0.5") if isinstance(c, torch.nn.Conv2d)] == [
        10, 10, 25, 250, 10,
    ]
    with pytest.raises(ValueError, match="unknown model"):
        ref.build_model("resnet")


def test_options_match_cnnkit(ref: ModuleType) -> None:
    """The options that keep the side-by-side comparison meaningful: BN epsilon, sigmoid variants, momentum reset."""
    import torch

    from cnnkit.models import create

    torch.manual_seed(0)
    assert {b.eps for b in ref.build_model("sk-0.2", bn_eps=1e-5).modules() if isinstance(b, torch.nn.BatchNorm2d)} == {1e-5}
    # the same layers as cnnkit's book models, whose BN epsilon is MatConvNet's too
    for name in ("sk-0.2-sigmoid", "base-sigmoid", "bn-sigmoid"):
        mine = [type(m).__name__ for m in create(name)]
        theirs = [type(m).__name__ for m in ref.build_model(name)]
        norm = {"Conv2d": "conv", "BatchNorm2d": "bn", "MaxPool2d": "pool", "Sigmoid": "sigmoid", "ReLU": "relu"}
        assert [norm[t] for t in theirs] == [norm[t] for t in mine], name
        assert [m.eps for m in create(name) if hasattr(m, "eps")] == [
            b.eps for b in ref.build_model(name) if isinstance(b, torch.nn.BatchNorm2d)]
    m = ref.build_model("base")
    opt = ref.make_optimizer(m, 0.001, 0.9, 5e-4)
    ref.logits_of(m, torch.ones(2, 1, 28, 28)).sum().backward()
    opt.step()
    bufs = [st["momentum_buffer"] for st in opt.state.values()]
    assert bufs and any(float(b.abs().sum()) > 0 for b in bufs)
    ref.reset_momentum(opt)
    assert all(float(b.abs().sum()) == 0 for b in bufs)
    args = ref.parse_args(["--keep-momentum", "--bn-eps", "1e-5"])
    assert args.keep_momentum and args.bn_eps == 1e-5
    assert not ref.parse_args([]).keep_momentum and ref.parse_args([]).bn_eps == 1e-4


def test_idx_reader_and_preprocessing(ref: ModuleType) -> None:
    raw = ref.load_mnist()
    assert raw["train-images"].shape == (60000, 28, 28) and raw["test-labels"].shape == (10000,)
    xtr, ytr, xte, _yte = ref.prepare_data(raw, 100, 50)
    assert tuple(xtr.shape) == (100, 1, 28, 28) and tuple(xte.shape) == (50, 1, 28, 28)
    mean = raw["train-images"].astype(np.float64).mean(0)
    np.testing.assert_allclose(xtr[0, 0].numpy(), raw["train-images"][0] - mean, atol=1e-3)
    assert ytr.dtype.is_floating_point is False and int(ytr.max()) <= 9
