"""The network-string grammar: parsing every token kind, round trips, errors that point at the bad token,
shape inference and the builder."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.models import BuildOptions, SpecError, build, infer_shapes, parse, to_string

TINY = "conv5x5x1x4,pool2,conv5x5x4x8,pool2,conv4x4x8x10"


# -- parsing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, kind, args",
    [
        ("conv5x5x1x20", "conv", {"kernel": (5, 5), "in": 1, "out": 20, "stride": 1, "padding": 0, "dilation": 1, "bias": True}),
        ("conv3x5x2x7", "conv", {"kernel": (3, 5), "in": 2, "out": 7, "stride": 1, "padding": 0, "dilation": 1, "bias": True}),
        ("conv3x3x64x64p1", "conv", {"kernel": (3, 3), "in": 64, "out": 64, "stride": 1, "padding": 1, "dilation": 1, "bias": True}),
        ("conv11x11x3x96s4", "conv", {"kernel": (11, 11), "in": 3, "out": 96, "stride": 4, "padding": 0, "dilation": 1, "bias": True}),
        ("conv3x3x1x8psame", "conv", {"kernel": (3, 3), "in": 1, "out": 8, "stride": 1, "padding": "same", "dilation": 1, "bias": True}),
        ("conv3x3x1x8d2", "conv", {"kernel": (3, 3), "in": 1, "out": 8, "stride": 1, "padding": 0, "dilation": 2, "bias": True}),
        ("conv5x5x1x20nobias", "conv", {"kernel": (5, 5), "in": 1, "out": 20, "stride": 1, "padding": 0, "dilation": 1, "bias": False}),
        ("conv3x3x1x8s2p1d2nobias", "conv", {"kernel": (3, 3), "in": 1, "out": 8, "stride": 2, "padding": 1, "dilation": 2, "bias": False}),
        ("pool2", "maxpool", {"kernel": 2, "stride": 2, "padding": 0}),
        ("maxpool3s2", "maxpool", {"kernel": 3, "stride": 2, "padding": 0}),
        ("pool3s2p1", "maxpool", {"kernel": 3, "stride": 2, "padding": 1}),
        ("avgpool2", "avgpool", {"kernel": 2, "stride": 2, "padding": 0}),
        ("avgpool3s1p1", "avgpool", {"kernel": 3, "stride": 1, "padding": 1}),
        ("relu", "relu", {}),
        ("sigmoid", "sigmoid", {}),
        ("tanh", "tanh", {}),
        ("bn", "bn", {}),
        ("flatten", "flatten", {}),
        ("dropout", "dropout", {"p": 0.5}),
        ("dropout0.3", "dropout", {"p": 0.3}),
        ("dropout.25", "dropout", {"p": 0.25}),
        ("dropout0", "dropout", {"p": 0.0}),
        ("fc10", "fc", {"out": 10}),
        ("fc4096", "fc", {"out": 4096}),
    ],
)
def test_parse_every_token_kind(text: str, kind: str, args: dict) -> None:
    (tok,) = parse(text)
    assert tok.kind == kind
    assert tok.text == text
    assert tok.args == args


def test_parse_is_case_and_space_insensitive() -> None:
    a = parse(" Conv5x5x1x20 , POOL2,ReLU,  conv4x4x20x10NoBias, Dropout0.3 ")
    b = parse("conv5x5x1x20,pool2,relu,conv4x4x20x10nobias,dropout0.3")
    assert a == b


@pytest.mark.parametrize(
    "spec",
    [
        TINY,
        "conv3x3x1x8s2p1d2nobias,bn,relu,avgpool3s1p1,conv3x3x8x8psame,tanh,pool3s2p1,dropout0.3,flatten,fc10",
        "conv5x5x1x6p2,tanh,avgpool2,conv5x5x6x16,tanh,avgpool2,fc120,tanh,fc84,tanh,fc10",
        "conv3x3x1x4nobias,bn,sigmoid,maxpool2,dropout,fc5",
    ],
)
def test_round_trip(spec: str) -> None:
    tokens = parse(spec)
    assert to_string(tokens) == spec
    assert parse(to_string(tokens)) == tokens


def test_round_trip_canonicalises() -> None:
    tokens = parse("CONV5x5x1x4 ,Pool2")
    assert to_string(tokens) == "conv5x5x1x4,pool2"
    assert parse(to_string(tokens)) == tokens


# -- errors point at the bad token ----------------------------------------------------------------------

def _position(message: str) -> tuple[int, str, int, str]:
    """(token number, token text, character, quoted string) from a SpecError message."""
    m = re.search(r"token (\d+) '([^']*)' \(character (\d+) of '([^']*)'\)", message)
    assert m, f"message does not point at a token: {message}"
    return int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)


@pytest.mark.parametrize(
    "spec, index, token",
    [
        ("conv5x5x1x20,poo2", 2, "poo2"),
        ("foo", 1, "foo"),
        ("conv5x5x1x20,pool2,relu6,fc10", 3, "relu6"),
        ("conv5x5x1", 1, "conv5x5x1"),
        ("conv5x5x1x20q3", 1, "conv5x5x1x20q3"),
        ("conv5x5x1x20, pool2, dropout1.5", 3, "dropout1.5"),
        ("conv5x5x1x20,dropout1", 2, "dropout1"),
        ("conv0x5x1x20", 1, "conv0x5x1x20"),
        ("conv5x5x1x20s0", 1, "conv5x5x1x20s0"),
        ("pool0", 1, "pool0"),
        ("pool2s0", 1, "pool2s0"),
        ("pool2p2", 1, "pool2p2"),
        ("fc0", 1, "fc0"),
        ("relu,fcx", 2, "fcx"),
    ],
)
def test_bad_token_is_pointed_at(spec: str, index: int, token: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(spec)
    number, text, char, quoted = _position(str(info.value))
    assert (number, text) == (index, token)
    # the character position is where the token starts in the (space-free) string quoted
    assert quoted[char - 1 :].lower().startswith(token)


def test_unknown_token_lists_the_grammar() -> None:
    with pytest.raises(SpecError, match="expected one of conv"):
        parse("conv5x5x1x20,poo2")


@pytest.mark.parametrize("spec", ["", "   ", "conv5x5x1x20,,pool2", "conv5x5x1x20,"])
def test_empty_tokens(spec: str) -> None:
    with pytest.raises(SpecError, match="empty"):
        parse(spec)


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_channel_mismatch_names_token_and_counts() -> None:
    spec = "conv5x5x1x20,conv5x5x30x50"
    with pytest.raises(SpecError) as info:
        infer_shapes(parse(spec), (28, 28, 1))
    msg = str(info.value)
    number, text, _, _ = _position(msg)
    assert (number, text) == (2, "conv5x5x30x50")
    assert "30" in msg and "20" in msg
    with pytest.raises(SpecError, match="conv5x5x30x50"):
        build(spec, (28, 28, 1), np.random.default_rng(0))


def test_first_layer_channel_mismatch() -> None:
    with pytest.raises(SpecError, match=r"token 1 'conv5x5x3x4'.*expects 3 input channels but 1 arrive"):
        infer_shapes(parse("conv5x5x3x4"), (28, 28, 1))


def test_window_larger_than_input_points_at_token() -> None:
    with pytest.raises(SpecError, match=r"token 3 'conv5x5x4x8'"):
        infer_shapes(parse("conv5x5x1x4,pool2,conv5x5x4x8"), (12, 12, 1))


def test_conv_after_flatten_is_refused() -> None:
    with pytest.raises(SpecError, match=r"token 2 'conv1x1x10x2'"):
        infer_shapes(parse("fc10,conv1x1x10x2"), (8, 8, 1))


# -- shapes and the builder ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "spec, input_shape, expected",
    [
        (TINY, (28, 28, 1), [(24, 24, 4), (12, 12, 4), (8, 8, 8), (4, 4, 8), (1, 1, 10)]),
        ("conv3x3x1x8psame,relu", (7, 9, 1), [(7, 9, 8), (7, 9, 8)]),
        ("conv3x3x1x8psames2", (8, 8, 1), [(4, 4, 8)]),
        ("conv3x3x2x4d2", (9, 9, 2), [(5, 5, 4)]),
        ("conv3x3x1x8s2p1d2nobias", (8, 8, 1), [(3, 3, 8)]),
        ("pool3s2p1,avgpool2s1", (8, 8, 3), [(4, 4, 3), (3, 3, 3)]),
        ("conv5x5x1x6p2,tanh,avgpool2,fc12", (28, 28, 1), [(28, 28, 6), (28, 28, 6), (14, 14, 6), (12,)]),
        ("flatten,fc10", (8, 8, 1), [(64,), (10,)]),
        ("conv3x3x1x4,bn,dropout0.3,relu", (6, 6, 1), [(4, 4, 4)] * 4),
    ],
)
def test_infer_shapes(spec: str, input_shape: tuple, expected: list) -> None:
    assert infer_shapes(parse(spec), input_shape) == expected


@pytest.mark.parametrize(
    "spec, input_shape",
    [
        (TINY, (28, 28, 1)),
        ("conv3x3x1x4nobias,bn,relu,conv3x3x4x4psame,sigmoid,pool2,dropout0.3,fc7", (10, 10, 1)),
        ("conv3x3x2x4s2p1d2,tanh,avgpool2s1,flatten,fc3", (9, 9, 2)),
        ("conv5x5x1x6p2,tanh,avgpool2,conv5x5x6x16,tanh,avgpool2,fc120,tanh,fc84,tanh,fc10", (28, 28, 1)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_build_output_shapes(spec: str, input_shape: tuple, dtype: type) -> None:
    model = build(spec, input_shape, np.random.default_rng(0), BuildOptions(dtype=dtype))
    x = np.random.default_rng(1).standard_normal((3, *input_shape)).astype(dtype)
    for train in (False, True):
        y = model.forward(x, train=train)
        assert y.shape == (3, *infer_shapes(parse(spec), input_shape)[-1])
        assert y.dtype == dtype
    assert model.dtype == dtype


def test_build_options_bias_and_init() -> None:
    model = build("conv3x3x1x4nobias,bn,conv3x3x4x5,fc6", (8, 8, 1), np.random.default_rng(0))
    names = sorted(model.params)
    assert not any(n.startswith("0.") and n.endswith("bias") for n in names)  # nobias conv
    assert "2.bias" in names
    # matconvnet init: biases zero
    assert np.all(model.params["2.bias"] == 0)


def test_build_is_deterministic_in_the_generator() -> None:
    a = build(TINY, (28, 28, 1), np.random.default_rng(5))
    b = build(TINY, (28, 28, 1), np.random.default_rng(5))
    c = build(TINY, (28, 28, 1), np.random.default_rng(6))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["0.weight"], c.params["0.weight"])


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown init"):
        build(TINY, (28, 28, 1), np.random.default_rng(0), BuildOptions(init="xavier"))
