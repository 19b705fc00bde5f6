"""The per-layer summary against the seeds' VGG-16 tables (seed 000 Table 15.2, seed 002's memory table)."""

from __future__ import annotations

import pytest

from cnnkit.models import get_model_def
from cnnkit.summary import summarize


@pytest.fixture(scope="module")
def vgg():
    d = get_model_def("vgg16")
    return summarize(d.spec, d.input_shape)


# Seed 000, Table 15.2 ("VGG-Verydeep-16 的结构与感受野"), the receptive-field column of layers 1..32
# (32 is the first FC layer, whose input is one element: 1).
TABLE_15_2_RF = [212, 210, 210, 208, 208, 104, 102, 102, 100, 100, 50, 48, 48, 46, 46, 44, 44, 22, 20, 20,
                 18, 18, 16, 16, 8, 6, 6, 4, 4, 2, 2, 1]
TABLE_15_2_TYPES = (["conv", "relu", "conv", "relu", "maxpool"] * 2 + ["conv", "relu"] * 3 + ["maxpool"]
                    + (["conv", "relu"] * 3 + ["maxpool"]) * 2 + ["fc", "relu", "dropout", "fc", "relu", "dropout", "fc"])


def test_vgg16_layers_follow_table_15_2(vgg) -> None:
    assert [r.kind for r in vgg.rows] == TABLE_15_2_TYPES
    assert len(vgg.rows) == 38  # Table 15.2's 39 layers without the final softmax


def test_vgg16_receptive_field_column_of_table_15_2(vgg) -> None:
    assert [r.rf_seed for r in vgg.rows[:32]] == TABLE_15_2_RF
    assert all(r.rf_seed is None for r in vgg.rows[32:])


def test_vgg16_forward_receptive_field(vgg) -> None:
    # the other direction: one element of pool5's output sees 212x212 input pixels
    assert vgg.rows[30].rf == 212
    assert vgg.rows[0].rf == 3


# Seed 002's VGG-16 table: (output shape, memory = output elements, weights without biases) per row,
# INPUT excluded; ReLUs are not rows there (done in place).
SEED_002_ROWS = [
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, 1_728),
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, 36_864),
    ("POOL2", (112, 112, 64), 112 * 112 * 64, 0),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, 73_728),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, 147_456),
    ("POOL2", (56, 56, 128), 56 * 56 * 128, 0),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 294_912),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 589_824),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, 589_824),
    ("POOL2", (28, 28, 256), 28 * 28 * 256, 0),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 1_179_648),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 2_359_296),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, 2_359_296),
    ("POOL2", (14, 14, 512), 14 * 14 * 512, 0),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, 2_359_296),
    ("POOL2", (7, 7, 512), 7 * 7 * 512, 0),
    ("FC", (4096,), 4096, 102_760_448),
    ("FC", (4096,), 4096, 16_777_216),
    ("FC", (1000,), 1000, 4_096_000),
]


def test_vgg16_rows_of_seed_002_memory_table(vgg) -> None:
    rows = [r for r in vgg.rows if r.kind in ("conv", "maxpool", "fc")]
    assert len(rows) == len(SEED_002_ROWS)
    for r, (name, shape, memory, weights) in zip(rows, SEED_002_ROWS):
        assert r.out_shape == shape, name
        assert r.activations == memory, name
        bias = shape[-1] if r.kind in ("conv", "fc") else 0
        assert r.params - bias == weights, name


def test_vgg16_totals(vgg) -> None:
    assert vgg.total_params == 138_357_544  # seed 002: "TOTAL params: 138M parameters"
    # Seed 002 says "TOTAL memory: 24M * 4 bytes ~= 93MB / image", but its own rows (input + every CONV/POOL/FC
    # output, ReLUs in place) add up to 15,237,608 elements, about 15.2M (58 MiB in float32), not 24M; the
    # 24M/93MB figure does not follow from the table. We assert the per-row values (above) and our sums.
    seed_rows_sum = 224 * 224 * 3 + sum(m for _, _, m, _ in SEED_002_ROWS)
    assert seed_rows_sum == 15_237_608
    assert vgg.total_activations == seed_rows_sum
    # counting the ReLU and dropout outputs too (a framework that stores every layer's output)
    relu_dropout = sum(r.activations for r in vgg.rows if r.kind in ("relu", "dropout"))
    assert vgg.all_activations == seed_rows_sum + relu_dropout
    assert vgg.rows[0].params == 1_792  # 1,728 weights + 64 biases
    assert vgg.rows[0].workspace == 224 * 224 * 27  # im2row of conv1: (H_out W_out) x (3*3*3)
    assert vgg.rows[0].flops == 2 * 224 * 224 * 27 * 64
    assert 30.5e9 < vgg.total_flops < 31.5e9  # ~15.5 G multiply-adds (2 FLOPs each) for one 224x224 image


def test_format_mentions_totals(vgg) -> None:
    text = vgg.format()
    assert "138,357,544" in text
    assert "212" in text
    assert "15,237,608" in text
    assert "window does not tile" not in text


def test_non_tiling_window_is_flagged() -> None:
    # Seed 002: W = 10, P = 0, F = 3, S = 2 gives (10 - 3 + 0) / 2 + 1 = 4.5: the window does not tile.
    for spec in ("conv3x3x1x1s2", "pool3s2"):
        s = summarize(spec, (10, 10, 1))
        (row,) = s.rows
        assert row.tiles is False
        assert row.out_shape == (4, 4, 1)  # floor(4.5)
        assert "window does not tile its input" in s.format()
    # with P = 1, (10 - 3 + 2) / 2 + 1 = 5.5 still does not tile; 11 inputs tile: (11 - 3) / 2 + 1 = 5
    assert summarize("conv3x3x1x1s2p1", (10, 10, 1)).rows[0].tiles is False
    ok = summarize("conv3x3x1x1s2", (11, 11, 1)).rows[0]
    assert ok.tiles is True and ok.out_shape == (5, 5, 1)


def test_small_network_numbers() -> None:
    s = summarize("conv5x5x1x20,pool2,conv5x5x20x50nobias,bn,relu,fc10", (28, 28, 1))
    shapes = [r.out_shape for r in s.rows]
    assert shapes == [(24, 24, 20), (12, 12, 20), (8, 8, 50), (8, 8, 50), (8, 8, 50), (10,)]
    params = [r.params for r in s.rows]
    assert params == [5 * 5 * 20 + 20, 0, 5 * 5 * 20 * 50, 2 * 50, 0, 8 * 8 * 50 * 10 + 10]
    assert s.total_params == sum(params)
    assert [r.rf for r in s.rows] == [5, 6, 14, 14, 14, None]
    # Table-15.2-style column: extents in each layer's input for one element of the FC layer's input
    assert [r.rf_seed for r in s.rows] == [14, 10, 5, 1, 1, 1]


def test_dilated_and_strided_receptive_field() -> None:
    s = summarize("conv3x3x1x1d2,conv3x3x1x1s2,conv3x3x1x1", (32, 32, 1))
    # effective kernel of the dilated conv is 5; the stride-2 conv doubles the later growth
    assert [r.rf for r in s.rows] == [5, 7, 11]


def test_base_summary() -> None:
    d = get_model_def("base")
    s = summarize(d.spec, d.input_shape)
    assert s.total_params == 431_080
    assert s.rows[-1].out_shape == (1, 1, 10)
    assert s.rows[0].rf_seed == 28  # the classifier's output element sees the whole 28x28 image
