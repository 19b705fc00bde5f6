"""The array-module seam (cnnkit.backend): switching, ``xp``'s identity, the helpers, the CLI's --device, and a
CPU check of the seam with a NumPy in disguise (arrays of an ndarray subclass) standing in for CuPy."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnkit import backend, jit
from cnnkit.backend import xp
from cnnkit.errors import MissingDependencyError

HAVE_CUPY = importlib.util.find_spec("cupy") is not None
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _restore_numpy() -> Iterator[None]:
    yield
    backend.use("numpy")


# --------------------------------------------------------------------------------------------------
# a NumPy in disguise: every array it makes is a DeviceArray (an ndarray subclass), as CuPy's are cupy.ndarray
# --------------------------------------------------------------------------------------------------
class DeviceArray(np.ndarray):
    """An array 'on the fake device'; NumPy's ufuncs and methods keep the subclass."""


def _wrap(fn):  # type: ignore[no-untyped-def]
    def made(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = fn(*args, **kwargs)
        return out.view(DeviceArray) if isinstance(out, np.ndarray) else out

    return made


MAKERS = ("array", "asarray", "ascontiguousarray", "zeros", "ones", "empty", "full", "zeros_like", "ones_like",
          "empty_like", "full_like", "arange", "eye", "concatenate", "stack", "pad", "einsum", "matmul", "where")


def fake_module() -> types.ModuleType:
    mod = types.ModuleType("fakenp")
    mod.__dict__.update({k: v for k, v in vars(np).items() if not k.startswith("__")})
    for name in MAKERS:
        setattr(mod, name, _wrap(getattr(np, name)))
    mod.ndarray = DeviceArray  # type: ignore[attr-defined]  # isinstance(a, xp.ndarray): on the device
    mod.asnumpy = lambda a: np.asarray(a).view(np.ndarray)  # type: ignore[attr-defined]
    return mod


# --------------------------------------------------------------------------------------------------
# switching
# --------------------------------------------------------------------------------------------------
def test_use_round_trip_keeps_xp_the_same_object() -> None:
    before = xp
    assert backend.name() == "numpy" and backend.module() is np and not backend.is_gpu() and backend.IS_NUMPY
    fake = fake_module()
    backend.use_module(fake, "fake")
    assert backend.xp is before  # modules that imported xp at import time see the switch
    assert backend.name() == "fake" and backend.module() is fake and not backend.IS_NUMPY
    assert xp.ndarray is DeviceArray and xp.zeros is fake.zeros
    assert isinstance(xp.zeros(2), xp.ndarray)
    backend.use("numpy")
    assert backend.xp is before and backend.name() == "numpy" and backend.IS_NUMPY
    assert xp.matmul is np.matmul and xp.ndarray is np.ndarray and xp.float32 is np.float32
    assert isinstance(np.zeros(1), xp.ndarray) and xp.fft is np.fft


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        backend.use("torch")
    assert backend.name() == "numpy"


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is installed here")
def test_cupy_without_cupy_is_a_missing_dependency() -> None:
    with pytest.raises(MissingDependencyError, match="CuPy") as info:
        backend.use("cupy")
    assert "\n" not in str(info.value) and isinstance(info.value, ImportError)
    assert backend.name() == "numpy" and backend.IS_NUMPY


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


def test_environment_variable_is_read_at_import() -> None:
    done = _run("from cnnkit import backend; print(backend.name())", CNNKIT_BACKEND="numpy")
    assert done.returncode == 0 and done.stdout.strip() == "numpy", done.stderr
    if not HAVE_CUPY:
        bad = _run("import cnnkit.backend", CNNKIT_BACKEND="cupy")
        assert bad.returncode != 0 and "MissingDependencyError" in bad.stderr and "CuPy" in bad.stderr


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is installed here")
@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_device_gpu_without_cupy_is_one_line_and_exit_1(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    argv = {"train": ["train", "--out", str(tmp_path / "run")], "eval": ["eval", str(tmp_path)],
            "predict": ["predict", str(tmp_path), "x.png"]}[command]
    assert main([*argv, "--device", "gpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CuPy" in err and err.startswith(f"cnnkit {command}: error:")
    assert backend.name() == "numpy"


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_device_flag_is_documented_with_its_default(command: str) -> None:
    from cnnkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in sub.choices[command]._actions if "--device" in a.option_strings)  # type: ignore[union-attr]
    assert action.default == "cpu" and action.choices == ["cpu", "gpu"] and "(default: cpu)" in (action.help or "")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def test_helpers_are_no_ops_under_numpy() -> None:
    a = np.arange(6.0).reshape(2, 3)
    assert backend.to_numpy(a) is a and backend.asarray(a) is a and backend.to_device(a) is a
    lst = [1, 2]
    assert backend.to_device(lst) is lst  # untouched under NumPy, whatever it is
    assert isinstance(backend.to_numpy(lst), np.ndarray)
    out = np.zeros(3)
    backend.scatter_add(out, np.array([0, 2, 0]), np.array([1.0, 2.0, 3.0]))
    assert out.tolist() == [4.0, 0.0, 2.0]
    view = backend.as_strided(np.arange(4.0), (3, 2), (8, 8), writeable=False)
    assert view.tolist() == [[0, 1], [1, 2], [2, 3]] and not view.flags.writeable


def test_to_numpy_copies_off_the_device() -> None:
    backend.use_module(fake_module(), "fake")
    d = xp.ones(3)
    assert type(d) is DeviceArray
    host = backend.to_numpy(d)
    assert type(host) is np.ndarray and host.tolist() == [1.0, 1.0, 1.0]
    assert type(backend.to_device(np.zeros(2))) is DeviceArray


def test_jit_and_cpu_conv_algorithms_are_bypassed_off_numpy() -> None:
    from cnnkit.ops.conv import resolve_algo
    from cnnkit.ops.conv_algos import geometry, supported

    g = geometry((2, 8, 8, 4), (3, 3, 4, 4), padding=1)
    assert jit.active() == jit.HAVE_NUMBA
    assert jit.usable(np.zeros(2, np.float32)) == jit.HAVE_NUMBA
    assert resolve_algo("winograd2", g) == "winograd2"
    backend.use_module(fake_module(), "fake")
    assert not jit.active() and not jit.usable(np.zeros(2, np.float32))
    assert resolve_algo("winograd2", g) == "im2row" and resolve_algo("auto", g) == "im2row"
    assert "im2row-jit" not in supported(g) and "direct" not in supported(geometry((1, 8, 8, 3), (3, 3, 1, 3), groups=3))


# --------------------------------------------------------------------------------------------------
# the seam on the CPU: a tiny conv net's step under the fake backend equals NumPy's
# --------------------------------------------------------------------------------------------------
def _net_step(x: np.ndarray, y: np.ndarray) -> tuple[object, dict[str, np.ndarray], float]:
    from cnnkit.nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(2, 4, 3, padding=1, rng=rng, dtype=np.float64), BatchNorm2d(4), ReLU(), MaxPool2d(2),
                     Flatten(), Linear(4 * 3 * 3, 3, rng=rng, dtype=np.float64))
    loss = SoftmaxCrossEntropy()
    opt = SGD(net, lr=0.1, momentum=0.9, weight_decay=1e-3)
    xb, yb = backend.to_device(x), backend.to_device(y)
    value = loss.forward(net.forward(xb, train=True), yb)
    net.backward(loss.backward())
    opt.step()
    scores = net.forward(xb, train=False)
    return scores, dict(net.params), float(value)


def test_a_conv_net_step_under_a_fake_backend_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 6, 6, 2)), np.array([0, 1, 2, 1, 0])
    ref_scores, ref_params, ref_value = _net_step(x, y)
    backend.use_module(fake_module(), "fake")
    scores, params, value = _net_step(x, y)
    assert type(scores) is DeviceArray  # computed by the backend, not on plain NumPy arrays
    assert all(type(p) is DeviceArray for p in params.values()), {k: type(p) for k, p in params.items()}
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(scores), ref_scores, rtol=1e-10, atol=1e-12)
    for k, p in params.items():
        np.testing.assert_allclose(backend.to_numpy(p), ref_params[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_saving_converts_device_parameters(tmp_path: Path) -> None:
    from cnnkit.serialize import load_arrays, save_arrays

    backend.use_module(fake_module(), "fake")
    save_arrays(tmp_path / "s.npz", {"w": xp.ones((2, 2))})
    arrays, _ = load_arrays(tmp_path / "s.npz")
    assert type(arrays["w"]) is np.ndarray and arrays["w"].tolist() == [[1, 1], [1, 1]]
