"""Graph networks (DAGs of layers with Add/Concatenate merges), global pooling, Identity and Flatten(order="nchw")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import ShapeError, StateError
from cnnkit.gradcheck import check_layer
from cnnkit.nn import (
    Add,
    Concatenate,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    Graph,
    Identity,
    Linear,
    ReLU,
    Residual,
    Sequential,
)
from tests.oracle import assert_close, nchw, nhwc, require_torch


def _conv(cin: int, cout: int, k: int, rng: np.random.Generator, **kw) -> Conv2d:
    return Conv2d(cin, cout, k, rng=rng, dtype=np.float64, **kw)


def _dag(rng: np.random.Generator) -> Graph:
    shared = _conv(2, 2, 3, rng, padding=1)
    g = Graph()
    g.add("c1", _conv(2, 4, 3, rng, padding=1), "input")
    g.add("r1", ReLU(), "c1")
    g.add("c2", _conv(4, 2, 1, rng), "r1")
    g.add("sum", Add(), "c2", "input")
    g.add("s1", shared, "sum")
    g.add("s2", shared, "input")  # the same layer on another tensor: weight sharing
    g.add("cat", Concatenate(), "s1", "s2", "sum")
    g.add("gap", GlobalAvgPool2d(), "cat")
    g.add("flat", Flatten(), "gap")
    g.add("fc", Linear(6, 3, rng=rng, dtype=np.float64), "flat")
    g.add("unused", Identity(), "input")  # reaches no output: never run
    g.set_output("fc")
    return g


def test_graph_gradients_match_numerical(rng: np.random.Generator) -> None:
    errors = check_layer(_dag(rng), rng.standard_normal((2, 4, 4, 2)), train=True)
    assert max(errors.values()) < 1e-7, errors


def test_graph_equals_the_same_network_written_with_containers(rng: np.random.Generator) -> None:
    """A residual block as a Graph computes exactly what Residual computes."""
    body = Sequential(_conv(3, 3, 3, rng, padding=1), ReLU())
    g = Graph()
    g.add("body", body, "input")
    g.add("add", Add(), "body", "input")
    block = Residual(body)
    x = rng.standard_normal((2, 5, 5, 3))
    np.testing.assert_array_equal(g.forward(x, train=True), block.forward(x, train=True))
    dy = rng.standard_normal((2, 5, 5, 3))
    np.testing.assert_allclose(g.backward(dy), block.backward(dy), rtol=1e-12)


def test_graph_round_trips_through_a_model_file(tmp_path: Path, rng: np.random.Generator) -> None:
    g = _dag(rng)
    cnnkit.save(g, str(tmp_path / "g.npz"), input_shape=(4, 4, 2))
    again = cnnkit.load(str(tmp_path / "g.npz"))
    assert isinstance(again, Graph) and again.nodes == g.nodes
    assert again._children["s1"] is again._children["s2"]
    x = rng.standard_normal((3, 4, 4, 2))
    np.testing.assert_array_equal(again.forward(x, train=False), g.forward(x, train=False))


def test_summary_counts_a_shared_layer_once(rng: np.random.Generator) -> None:
    g = _dag(rng)
    s = cnnkit.summary(g, (4, 4, 2))
    assert s.total_params == sum(p.size for p in g.params.values())
    assert [r.kind for r in s.rows if r.kind in ("add", "concat")] == ["add", "concat"]


def test_graph_errors_name_the_node(rng: np.random.Generator) -> None:
    g = Graph()
    with pytest.raises(ValueError, match="reads"):
        g.add("a", ReLU(), "nowhere")
    with pytest.raises(ValueError, match="takes one input"):
        g.add("b", ReLU(), "input", "input")
    g.add("c", _conv(2, 3, 1, rng), "input")
    g.add("d", Add(), "c", "input")  # 3 channels + 2 channels
    with pytest.raises(ShapeError, match=r"layer d \(Add\)"):
        g.forward(rng.standard_normal((1, 4, 4, 2)))


def test_graph_refuses_a_parameter_layer_cut_off_from_the_gradient(rng: np.random.Generator) -> None:
    g = Graph()
    g.add("first", _conv(2, 2, 1, rng), "input")
    g.add("second", Conv2d(2, 2, 1, rng=rng, dtype=np.float64, need_input_grad=False), "first")
    y = g.forward(rng.standard_normal((1, 3, 3, 2)), train=True)
    with pytest.raises(StateError, match="first"):
        g.backward(np.ones_like(y))


@pytest.mark.parametrize("layer", [GlobalAvgPool2d, GlobalMaxPool2d])
def test_global_pooling_gradients(layer: type, rng: np.random.Generator) -> None:
    errors = check_layer(layer(), rng.standard_normal((2, 3, 4, 5)), train=True)
    assert max(errors.values()) < 1e-8


@pytest.mark.oracle
@pytest.mark.parametrize("layer, name", [(GlobalAvgPool2d, "adaptive_avg_pool2d"), (GlobalMaxPool2d, "adaptive_max_pool2d")])
def test_global_pooling_oracle(layer: type, name: str, rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((2, 3, 4, 5))
    xt = nchw(x)
    out = getattr(torch.nn.functional, name)(xt, 1)
    yt = out[0] if isinstance(out, tuple) else out
    dy = rng.standard_normal((2, 1, 1, 5))
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    ours = layer()
    assert_close(ours.forward(x, train=True), nhwc(yt))
    assert_close(ours.backward(dy), nhwc(xt.grad))


@pytest.mark.oracle
def test_flatten_nchw_matches_pytorch(rng: np.random.Generator) -> None:
    torch = require_torch()
    x = rng.standard_normal((2, 3, 4, 5))
    flat = Flatten(order="nchw")
    np.testing.assert_array_equal(flat(x), torch.flatten(nchw(x), 1).detach().numpy())
    assert max(check_layer(flat, x, train=True).values()) < 1e-9
