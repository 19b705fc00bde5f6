"""Receptive fields: the geometry's set of input pixels equals the support of the gradient of the unit, for
stacks with stride, padding and dilation and for residual and graph networks; the sizes are the summary's."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.inspect import LayerError, places, receptive_field
from cnnkit.inspect.receptive import geometry
from cnnkit.nn import (
    Add,
    AvgPool2d,
    Concatenate,
    Conv2d,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from cnnkit.nn.base import Trace, TraceRow
from tests.inspect.conftest import png_size, run_command


def _chain(rng: np.random.Generator) -> Sequential:
    """Conv/pool with stride, padding and dilation; 3 input channels."""
    return Sequential(
        Conv2d(3, 6, 3, padding=1, rng=rng), ReLU(),
        MaxPool2d(2),
        Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, rng=rng), ReLU(),
        AvgPool2d(3, stride=1, padding=1),
        Conv2d(6, 4, 5, stride=1, padding=0, dilation=1, rng=rng),
        MaxPool2d(3, stride=2, padding=1),
    )


def _trace_rf(net, shape):
    rows: list[TraceRow] = []
    net.trace(Trace(shape), "", rows)
    return {r.name: r.rf for r in rows}


@pytest.mark.parametrize("unit_at", ["centre", "corner", "far corner"])
def test_chain_geometry_equals_gradient_support(unit_at: str) -> None:
    rng = np.random.default_rng(0)
    net = _chain(rng)
    shape = (32, 32, 3)
    rfs = _trace_rf(net, shape)
    for p in places(net):
        _, row, _, _ = geometry(net, shape, p.name)
        h, w = row.info.out_shape[:2]
        unit = {"centre": None, "corner": (0, 0), "far corner": (h - 1, w - 1)}[unit_at]
        rf = receptive_field(net, shape, p.name, unit=unit)
        assert rf.agrees, (p.name, rf.box, np.argwhere(rf.support != rf.mask)[:5])
        assert rf.equal, p.name  # random weights and 16 random inputs reach every pixel the geometry allows
        assert rf.exact
        if unit_at == "centre":  # the extent (padding included) is the summary's receptive field
            assert rf.size == (rfs[p.name], rfs[p.name]), p.name
        t, b, l, r = rf.extent  # the box lies in the extent (dilation's holes can leave its last rows out)
        bt, bb, bl, br = rf.box
        assert t <= bt <= bb <= b and l <= bl <= br <= r


def test_dilation_leaves_holes_the_gradient_sees_too() -> None:
    net = Sequential(Conv2d(1, 2, 3, dilation=3, rng=np.random.default_rng(1)))
    rf = receptive_field(net, (9, 9, 1), 0, unit=(1, 1))
    assert rf.size == (7, 7) and rf.box == (1, 7, 1, 7)
    assert int(rf.mask.sum()) == 9 and rf.equal
    assert rf.mask[1::3, 1::3].all()


def test_stride_and_padding_at_the_border() -> None:
    net = Sequential(Conv2d(1, 1, 5, stride=2, padding=2, rng=np.random.default_rng(2)),
                     Conv2d(1, 1, 3, stride=2, padding=1, rng=np.random.default_rng(3)))
    rf = receptive_field(net, (16, 16, 1), "1", unit=(0, 0))
    # layer 1's unit 0 reads layer 0's rows -1..1; those read input rows -2-2 .. 1*2-2+4 = -4..4
    assert rf.extent == (-4, 4, -4, 4) and rf.size == (9, 9)
    assert rf.box == (0, 4, 0, 4) and rf.equal


def test_residual_network() -> None:
    rng = np.random.default_rng(4)
    body = Sequential(Conv2d(4, 4, 3, padding=1, rng=rng), ReLU(), Conv2d(4, 4, 3, padding=2, dilation=2, rng=rng))
    net = Sequential(Conv2d(1, 4, 3, rng=rng), Residual(body), MaxPool2d(2),
                     Residual(Conv2d(4, 8, 1, rng=rng), Conv2d(4, 8, 3, padding=1, rng=rng)))
    shape = (20, 20, 1)
    rfs = _trace_rf(net, shape)
    names = [p.name for p in places(net)]
    assert names == ["0", "1.body.0", "1.body.1", "1.body.2", "1.add", "2", "3.body", "3.shortcut", "3.add"]
    for name in names:
        rf = receptive_field(net, shape, name)
        assert rf.equal and rf.exact, name
        assert rf.size[0] == rfs[name], name  # the largest branch's, as the summary says
    # the identity shortcut adds nothing outside the body's field; the 1x1 body of block 3 is inside its 3x3 shortcut
    assert receptive_field(net, shape, "1.add").mask.sum() == receptive_field(net, shape, "1.body.2").mask.sum()


def test_graph_union_of_branches() -> None:
    rng = np.random.default_rng(5)
    g = Graph()
    h = g.add("stem", Conv2d(1, 4, 3, padding=1, rng=rng), "input")
    a = g.add("wide", Conv2d(4, 4, 5, padding=2, rng=rng), h)
    b = g.add("holes", Conv2d(4, 4, 3, padding=3, dilation=3, rng=rng), h)
    c = g.add("shift", Conv2d(4, 4, (1, 3), padding=(0, 1), stride=1, rng=rng), h)
    s = g.add("sum", Add(), a, b)
    cat = g.add("cat", Concatenate(), s, c)
    g.set_output(g.add("pool", MaxPool2d(2), cat))
    shape = (16, 16, 1)
    for p in places(g):
        rf = receptive_field(g, shape, p.name)
        assert rf.equal, p.name
    sum_rf = receptive_field(g, shape, "sum", unit=(8, 8))
    wide = receptive_field(g, shape, "wide", unit=(8, 8))
    holes = receptive_field(g, shape, "holes", unit=(8, 8))
    assert np.array_equal(sum_rf.mask, wide.mask | holes.mask)  # the union, not a rectangle
    assert not sum_rf.mask.all() and sum_rf.size == (9, 9)


def test_flattened_layers_see_everything_and_units_are_checked() -> None:
    rng = np.random.default_rng(6)
    net = Sequential(Conv2d(1, 2, 3, rng=rng), Flatten(), Linear(2 * 6 * 6, 3, rng=rng))
    rf = receptive_field(net, (8, 8, 1), "2")
    assert rf.unit is None and rf.mask.all() and rf.equal
    with pytest.raises(ShapeError, match="outside"):
        receptive_field(net, (8, 8, 1), "0", unit=(6, 0))
    with pytest.raises(LayerError, match="no layer 'fc'"):
        receptive_field(net, (8, 8, 1), "fc")
    with pytest.raises(ShapeError, match="H x W x C"):
        receptive_field(Linear(3, 2, rng=rng), (3,), 0)


def test_picture_on_image_and_canvas(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    net = _chain(np.random.default_rng(7))
    image = np.random.default_rng(8).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    rf = receptive_field(net, (32, 32, 3), "3", image=image, out=tmp_path / "rf.png")
    assert rf.agrees
    w, h = png_size(tmp_path / "rf.png")
    assert w > 200 and h > 200
    receptive_field(net, (32, 32, 3), "3", out=tmp_path / "blank.png")
    assert png_size(tmp_path / "blank.png")[0] > 200
    with pytest.raises(ShapeError, match="image is 8 x 8"):
        receptive_field(net, (32, 32, 3), "3", image=image[:8, :8], out=tmp_path / "x.png")


def test_command_on_trained_base(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "rf.png"
    r = run_command(["show", "receptive-field", trained.run, "--layer", "3", "--unit", "1,2", "--image", trained.digits[0],
                     "--out", out])
    assert r.code == 0 and r.out.count("\n") == 1
    # BASE: 5, pool +1, 5x5 after a stride of 2 (+8), pool +2: 16 pixels; unit (1, 2) starts at (4, 8)
    assert "16x16, rows 4-19, columns 8-23; gradient support agrees" in r.out
    w, h = png_size(out)
    assert h > w * 0.8
