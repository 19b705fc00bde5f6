"""cnnkit.onnx.load on hand-written ONNX graphs: the glue other exporters emit (folded into cnnkit layers, checked
against onnxruntime), every unsupported operator and attribute listed at once, and files that are not trusted.

Tolerance: see tests/onnx/helpers.py (rtol 1e-4, atol 1e-5 times the output's scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cnnkit.onnx
from cnnkit.errors import ModelFileError, OnnxError
from cnnkit.limits import LIMITS
from cnnkit.nn import Conv2d, Flatten, Graph, Linear, Sequential
from tests.onnx.helpers import assert_close, nchw, nhwc, onnx, run_ort

helper, numpy_helper, TP = onnx.helper, onnx.numpy_helper, onnx.TensorProto
R = np.random.default_rng(5)


def _f32(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (R.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes: list[Any], inits: dict[str, np.ndarray], in_shape: list[Any], opset: int = 17,
           in_type: int = TP.FLOAT, out_rank: int = 4) -> Any:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", in_type, in_shape)],
        [helper.make_tensor_value_info("y", TP.FLOAT, [f"d{i}" for i in range(out_rank)])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: Any, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _compare(model: Any, path: Path, x_nchw: np.ndarray) -> Any:
    """Load with cnnkit, run on the NHWC input, compare with onnxruntime; returns the network."""
    _save(model, path)
    net = cnnkit.onnx.load(path)
    expected = run_ort(path, x_nchw)
    assert_close(nchw(np.asarray(net.forward(nhwc(x_nchw), train=False))), expected, "cnnkit vs onnxruntime")
    return net


def test_pad_into_conv_bias_add_transpose_flatten_matmul(tmp_path: Path) -> None:
    """Pad -> Conv (no bias) -> Add(per-channel constant) -> Relu -> Transpose(0,2,3,1) -> Reshape(0, -1) -> MatMul ->
    Add(bias) -> Softmax: the Pad is folded into the convolution, the Adds into biases, the Transpose into an NHWC
    Flatten, MatMul + Add into one Linear."""
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 0, 0, 1]),
        helper.make_node("Add", ["c", "cb"], ["cbias"]),
        helper.make_node("Relu", ["cbias"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "fw"], ["m"]),
        helper.make_node("Add", ["m", "fb"], ["l"]),
        helper.make_node("Softmax", ["l"], ["y"], axis=-1),
    ]
    inits = {"pads": np.array([0, 0, 2, 0, 0, 0, 1, 1], np.int64), "w": _f32(5, 3, 3, 3), "cb": _f32(1, 5, 1, 1),
             "shape": np.array([0, -1], np.int64), "fw": _f32(10 * 6 * 5, 4, scale=0.1), "fb": _f32(4)}
    net = _compare(_model(nodes, inits, ["N", 3, 8, 6], out_rank=2), tmp_path / "m.onnx", _f32(2, 3, 8, 6, scale=1.0))
    assert [type(layer).__name__ for layer in net] == ["Conv2d", "ReLU", "Flatten", "Linear", "Softmax"]
    assert net[0].padding == ((3, 1), (0, 2)) and net[2].order == "nhwc" and "bias" in net[3].params


def test_torch_style_flatten_arithmetic_and_reductions(tmp_path: Path) -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (PyTorch's x.view(x.size(0), -1)), Sum of three tensors,
    ReduceMean over H and W, Clip to [0, inf), Squeeze, Resize by sizes built from Shape, LRN, Gemm with transB."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["c", "zero", ""], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Slice", ["s", "s0", "s2"], ["nc"]),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["r", "", "", "sizes"], ["up"], mode="nearest"),
        helper.make_node("LRN", ["up"], ["lrn"], size=3, alpha=0.01, beta=0.75, bias=2.0),
        helper.make_node("MaxPool", ["lrn"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sum", ["pool", "r", "pool"], ["sum"]),
        helper.make_node("ReduceMean", ["sum"], ["mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Squeeze", ["mean", "axes"], ["sq"]),
        helper.make_node("Shape", ["sq"], ["s2_"]),
        helper.make_node("Gather", ["s2_", "zero_i"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["sq", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gw", "gb"], ["y"], transB=1, alpha=0.5, beta=2.0),
    ]
    inits = {"w": _f32(6, 3, 1, 1), "zero": np.array(0, np.float32), "s0": np.array([0], np.int64), "s2": np.array([2], np.int64),
             "hw": np.array([8, 12], np.int64), "axes": np.array([2, 3], np.int64), "zero_i": np.array(0, np.int64),
             "axis0": np.array([0], np.int64), "minus1": np.array([-1], np.int64), "gw": _f32(3, 6), "gb": _f32(3)}
    if not hasattr(cnnkit.nn, "LocalResponseNorm"):
        pytest.skip("this tree's cnnkit.nn has no LocalResponseNorm")
    net = _compare(_model(nodes, inits, ["N", 3, 4, 6], out_rank=2), tmp_path / "m.onnx", _f32(2, 3, 4, 6, scale=1.0))
    assert isinstance(net, Graph)


def test_opset_11_model_and_same_lower(tmp_path: Path) -> None:
    """Older opsets: Softmax's 2-D coercion, Clip with inputs, Dropout with its ratio as an attribute (opset 11);
    auto_pad SAME_LOWER and a Conv of group 3 (depthwise)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[4, 4], auto_pad="SAME_LOWER", group=3, strides=[2, 2]),
        helper.make_node("Dropout", ["c"], ["d"], ratio=0.25),
        helper.make_node("GlobalAveragePool", ["d"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Softmax", ["f"], ["y"], axis=1),
    ]
    inits = {"w": _f32(6, 1, 4, 4), "b": _f32(6)}
    net = _compare(_model(nodes, inits, ["N", 3, 9, 7], opset=11, out_rank=2), tmp_path / "m.onnx", _f32(2, 3, 9, 7, scale=1.0))
    assert [type(layer).__name__ for layer in net] == ["Conv2d", "Dropout", "GlobalAvgPool2d", "Flatten", "Softmax"]
    assert net[1].p == 0.25


def test_maxpool_indices_feed_maxunpool(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("MaxUnpool", ["r", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    net = _compare(_model(nodes, {}, ["N", 2, 6, 5]), tmp_path / "m.onnx", _f32(2, 2, 6, 5, scale=1.0))
    assert [type(layer).__name__ for layer in net] == ["MaxPool2d", "ReLU", "MaxUnpool2d"]


def test_every_unsupported_operator_and_attribute_is_listed(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
        helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
        helper.make_node("Resize", ["h", "", "scales"], ["r"], mode="linear", name="resize_linear"),
        helper.make_node("Relu", ["r"], ["a"], name="relu_fine"),
        helper.make_node("Mul", ["x", "x"], ["m"], name="square"),
        helper.make_node("Conv", ["a", "w2"], ["c2"], kernel_shape=[1, 1], name="conv_fine"),
        helper.make_node("Softmax", ["c2"], ["s"], axis=2, name="softmax_rows"),
        helper.make_node("Gemm", ["s", "gw"], ["g"], transA=1, name="gemm_t"),
        helper.make_node("FusedConv", ["g"], ["f"], domain="com.microsoft", name="fused"),
        helper.make_node("Transpose", ["f"], ["y"], perm=[0, 3, 1, 2], name="transpose"),
    ]
    model = _model(nodes, {"w": _f32(4, 3, 3, 3), "scales": np.array([1, 1, 2, 2], np.float32), "w2": _f32(4, 4, 1, 1),
                    "gw": _f32(4, 4)},
                   ["N", 3, 8, 8])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxError) as info:
        cnnkit.onnx.load(_save(model, tmp_path / "m.onnx"))
    message = str(info.value)
    assert "cannot import it (5 problem(s))" in message and "\n" not in message
    for part in ("node 'hswish' (HardSwish): operator HardSwish is not supported",
                 "node 'resize_linear' (Resize): mode='linear'",
                 "node 'square' (Mul): Mul of computed tensors",
                 "node 'gemm_t' (Gemm): transA=1",
                 "node 'fused' (FusedConv): operator com.microsoft.FusedConv is outside the standard ONNX domain"):
        assert part in message, message
    # nodes after a problem are not blamed for it; softmax_rows follows one (its shape is unknown), so it is not checked either
    assert "relu_fine" not in message and "transpose" not in message and "conv_fine" not in message


def test_graph_level_problems(tmp_path: Path) -> None:
    two_inputs = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TP.FLOAT, ["N", 3]) for n in "ab"], [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxError, match="the graph has 2 inputs"):
        cnnkit.onnx.load(_save(two_inputs, tmp_path / "a.onnx"))
    dynamic = _model([helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 3, "H", "W"])
    with pytest.raises(OnnxError, match=r"input dimension 2 .* is not a fixed size"):
        cnnkit.onnx.load(_save(dynamic, tmp_path / "b.onnx"))
    odd_preprocessing = _model([helper.make_node("Cast", ["x"], ["f"], to=TP.FLOAT), helper.make_node("Sub", ["f", "m"], ["s"]),
                                helper.make_node("Relu", ["s"], ["y"])], {"m": np.ones((1, 3, 1, 1), np.float32)},
                               ["N", 3, 4, 4], in_type=TP.UINT8)
    with pytest.raises(OnnxError, match="none of cnnkit's preprocessing modes"):
        cnnkit.onnx.load(_save(odd_preprocessing, tmp_path / "c.onnx"))


def test_untrusted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = Sequential(Conv2d(3, 4, 3, rng=np.random.default_rng(0)), Flatten(), Linear(64, 2, rng=np.random.default_rng(1)))
    good = tmp_path / "good.onnx"
    model = cnnkit.onnx.export(net, (6, 6, 3), good)

    with pytest.raises(ModelFileError, match="is not a regular file"):
        cnnkit.onnx.load(tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07\x12\xff\xff\xff\xff garbage")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        cnnkit.onnx.load(tmp_path / "junk.onnx")
    monkeypatch.setattr(LIMITS, "file_bytes", 1000)
    with pytest.raises(ModelFileError, match="CNNKIT_MAX_FILE_BYTES"):
        cnnkit.onnx.load(good)
    monkeypatch.undo()

    external = tmp_path / "external.onnx"
    onnx.save(model, str(external), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    with pytest.raises(ModelFileError, match="external file"):
        cnnkit.onnx.load(external)

    lying = onnx.load(str(good))
    lying.graph.initializer[0].raw_data = lying.graph.initializer[0].raw_data[:-4]  # one float32 short of its dims
    with pytest.raises(ModelFileError, match="declares dims"):
        cnnkit.onnx.load(_save(lying, tmp_path / "lying.onnx"))

    huge = onnx.load(str(good))
    huge.graph.initializer[0].dims[0] = 1 << 40  # declares 4 TiB
    with pytest.raises(ModelFileError, match="CNNKIT_MAX_PARAM_BYTES"):
        cnnkit.onnx.load(_save(huge, tmp_path / "huge.onnx"))

    with pytest.raises(FileNotFoundError):
        cnnkit.onnx.load(tmp_path / "missing.onnx")
    assert_close(cnnkit.onnx.load(good).eval()(np.ones((1, 6, 6, 3), np.float32)), net.eval()(np.ones((1, 6, 6, 3), np.float32)))


def test_metadata_must_agree_with_the_graph(tmp_path: Path) -> None:
    model = cnnkit.onnx.export(Flatten(), (2, 2, 1), tmp_path / "m.onnx", classes=["a", "b", "c", "d"])
    for prop in model.metadata_props:
        if prop.key == "cnnkit.input_shape":
            prop.value = "[3, 3, 1]"
    with pytest.raises(ModelFileError, match="disagrees with the graph's input"):
        cnnkit.onnx.load_model_file(_save(model, tmp_path / "m.onnx"))


def test_float_input_models_are_imported_without_preprocessing(tmp_path: Path) -> None:
    x = _f32(2, 3, 5, 5)
    net = _compare(_model([helper.make_node("Relu", ["x"], ["y"])], {}, [2, 3, 5, 5]), tmp_path / "m.onnx", x)  # a static batch
    m = cnnkit.onnx.load_model_file(tmp_path / "m.onnx")
    assert m.preprocess is None and m.classes is None and m.input_shape == (5, 5, 3)
    assert net(np.zeros((7, 5, 5, 3), np.float32)).shape == (7, 5, 5, 3)  # any batch size
    assert_close(run_ort(tmp_path / "m.onnx", x), nchw(np.asarray(m.network.forward(nhwc(x), train=False))))
