"""The command line with ONNX: ``cnnkit export`` (ONNX and PyTorch safetensors), ``cnnkit predict model.onnx`` and
``cnnkit summary model.onnx`` (both on cnnkit's NumPy engine)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import cnnkit
import cnnkit.onnx
from cnnkit.cli import main
from cnnkit.data import Preprocessor
from cnnkit.nn import Conv2d, Flatten, Linear, LocallyConnected2d, MaxPool2d, ReLU, Sequential
from tests.onnx.helpers import assert_close, nchw, onnx, run_ort

CLASSES = ["a", "b", "c"]


def cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, Sequential, Preprocessor, np.ndarray]:
    """A run directory with a small model trained on nothing, its preprocessing (mean_image) and some images."""
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(1, 4, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 4 * 4, 3, rng=rng))
    images = rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    pre = Preprocessor("mean_image").fit(images)
    (tmp_path / "run").mkdir()
    cnnkit.save(net, str(tmp_path / "run" / "model.npz"), input_shape=(8, 8, 1), classes=CLASSES, preprocess=pre.to_dict())
    return tmp_path / "run", net, pre, images


def test_export_predict_summary(run_dir: tuple[Path, Sequential, Preprocessor, np.ndarray], tmp_path: Path) -> None:
    run, net, pre, images = run_dir
    code, out, err = cli("export", run, tmp_path / "m.onnx")
    assert code == 0, err
    assert "input 'input' (N, 1, 8, 8) uint8 pixels (mean_image preprocessing inside)" in out
    expected = np.asarray(net.forward(pre.transform(images), train=False))
    assert_close(run_ort(tmp_path / "m.onnx", nchw(images)), expected, "onnxruntime on raw pixels")

    for i, image in enumerate(images[:2]):
        np.save(tmp_path / f"{i}.npy", image)
    files = [tmp_path / "0.npy", tmp_path / "1.npy"]
    code, from_onnx, err = cli("predict", tmp_path / "m.onnx", *files, "--json", "--top", "3")
    assert code == 0, err
    code, from_npz, _ = cli("predict", run, *files, "--json", "--top", "3")
    got, want = json.loads(from_onnx), json.loads(from_npz)
    assert [r["class"] for r in got] == [r["class"] for r in want]
    for g, w in zip(got, want):
        assert [c for c, _ in g["top"]] == [c for c, _ in w["top"]]
        np.testing.assert_allclose([p for _, p in g["top"]], [p for _, p in w["top"]], rtol=1e-5, atol=1e-6)

    code, out, err = cli("summary", tmp_path / "m.onnx")
    assert code == 0, err
    assert "m.onnx" in out and "Conv2d" in out and "Linear" in out


def test_export_options(run_dir: tuple[Path, Sequential, Preprocessor, np.ndarray], tmp_path: Path) -> None:
    run, net, pre, images = run_dir
    code, _out, err = cli("export", run / "model.npz", tmp_path / "raw.onnx", "--no-preprocess", "--opset", "13")
    assert code == 0, err
    model = onnx.load(str(tmp_path / "raw.onnx"))
    assert model.opset_import[0].version == 13
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = pre.transform(images)
    assert_close(run_ort(tmp_path / "raw.onnx", nchw(x)), np.asarray(net.forward(x, train=False)))
    m = cnnkit.onnx.load_model_file(tmp_path / "raw.onnx")
    assert m.preprocess is None and m.classes == CLASSES


def test_export_safetensors(run_dir: tuple[Path, Sequential, Preprocessor, np.ndarray], tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    run, _net, _, _ = run_dir
    code, _out, err = cli("export", run, tmp_path / "w.safetensors")
    assert code == 0, err
    from safetensors.numpy import load_file

    state = load_file(str(tmp_path / "w.safetensors"))
    assert sorted(state) == ["0.bias", "0.weight", "4.bias", "4.weight"]
    assert state["0.weight"].shape == (4, 1, 3, 3) and state["4.weight"].shape == (3, 64)


def test_export_errors(run_dir: tuple[Path, Sequential, Preprocessor, np.ndarray], tmp_path: Path) -> None:
    run, _, _, _ = run_dir
    code, _, err = cli("export", run, tmp_path / "m.pt")
    assert code == 2 and "must end in .onnx" in err
    code, _, err = cli("export", run, tmp_path / "w.safetensors", "--opset", "13")
    assert code == 2 and "--opset" in err
    code, _, err = cli("export", tmp_path / "missing", tmp_path / "m.onnx")
    assert code == 1 and "no model file" in err

    local = Sequential(LocallyConnected2d(1, 2, 3, in_size=(8, 8), rng=np.random.default_rng(0)), Flatten())
    cnnkit.save(local, str(tmp_path / "local.npz"), input_shape=(8, 8, 1))
    code, _out, err = cli("export", tmp_path / "local.npz", tmp_path / "local.onnx")
    assert code == 1 and err.strip().splitlines() == ["cnnkit export: error: export: 1 layer(s) have no ONNX form: 0 (LocallyConnected2d)"]
    assert not (tmp_path / "local.onnx").exists()

    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    code, _, err = cli("predict", tmp_path / "bad.onnx", tmp_path / "x.npy")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "not an ONNX model" in err
