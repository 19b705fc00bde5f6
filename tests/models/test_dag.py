"""Network strings beyond the chain: residual blocks, concatenated branches, repetitions, global pooling, LRN,
grouped convolutions and channel padding. Parsing (round trips, errors pointing inside parentheses), shapes,
building, gradient checks of small DAG strings, summaries with branches, and PyTorch oracles with copied weights."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.gradcheck import check_layer
from cnnkit.models import BuildOptions, SpecError, build, infer_shapes, parse, to_string
from cnnkit.models.spec import MAX_NESTING, count_layers, leaves
from cnnkit.models.tokens import EXPECTED, entry, kind_of
from cnnkit.nn import Concat, Residual, Sequential
from cnnkit.summary import summarize, summary
from tests.oracle import assert_close, require_torch

RESNET_TINY = ("conv3x3x3x8p1nobias,bn,relu,res(conv3x3x8x8p1nobias,bn,relu,conv3x3x8x8p1nobias,bn),relu,"
               "res(conv3x3x8x16s2p1nobias,bn,relu,conv3x3x16x16p1nobias,bn|conv1x1x8x16s2nobias,bn),relu,gap,fc5")

# -- parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, args",
    [
        ("gap", "gap", {}),
        ("gmp", "gmp", {}),
        ("lrn5", "lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}),
        ("lrn5a0.0005k2", "lrn", {"size": 5, "alpha": 5e-4, "beta": 0.75, "k": 2.0}),
        ("lrn3a1e-3b0.5k1.5", "lrn", {"size": 3, "alpha": 1e-3, "beta": 0.5, "k": 1.5}),
        ("padc16", "padc", {"pad": 16}),
        ("conv3x3x32x32g32p1", "conv",
         {"kernel": (3, 3), "in": 32, "out": 32, "stride": 1, "padding": 1, "dilation": 1, "bias": True, "groups": 32}),
        ("conv5x5x96x256g2p2nobias", "conv",
         {"kernel": (5, 5), "in": 96, "out": 256, "stride": 1, "padding": 2, "dilation": 1, "bias": False, "groups": 2}),
    ],
)
def test_parse_new_simple_tokens(text, kind, args):
    (tok,) = parse(text)
    assert (tok.kind, tok.text, tok.args) == (kind, text, args)
    assert kind_of(text).name == kind


def _texts(branch):
    return [t.text for t in branch]


def test_parse_residual_concat_repeat():
    body, = parse("res(conv3x3x8x8p1,relu)")[0].args["branches"]
    assert _texts(body) == ["conv3x3x8x8p1", "relu"]
    res = parse("res(conv3x3x8x16s2p1,bn|conv1x1x8x16s2)")[0]
    assert res.kind == "res" and [_texts(b) for b in res.args["branches"]] == [["conv3x3x8x16s2p1", "bn"], ["conv1x1x8x16s2"]]
    cat = parse("cat(conv1x1x8x4|conv1x1x8x2,conv3x3x2x4p1|pool3s1p1,conv1x1x8x2)")[0]
    assert cat.kind == "cat" and [len(b) for b in cat.args["branches"]] == [1, 2, 2]
    rep = parse("3*res(relu)")[0]
    assert rep.kind == "repeat" and rep.args["times"] == 3 and rep.args["branches"][0][0].kind == "res"
    rep = parse("2*(conv3x3x8x8p1,relu)")[0]
    assert rep.args["times"] == 2 and _texts(rep.args["branches"][0]) == ["conv3x3x8x8p1", "relu"]
    nested = parse("cat(res(relu|cat(gap|gmp))|2*(bn,relu))")[0]
    inner = nested.args["branches"][0][0].args["branches"][1][0]
    assert inner.kind == "cat" and _texts(inner.args["branches"][0]) == ["gap"]


@pytest.mark.parametrize(
    "spec",
    [
        RESNET_TINY,
        "conv3x3x1x8p1,3*(res(conv3x3x8x8p1,bn,relu),relu),cat(conv1x1x8x4|pool3s1p1,conv1x1x8x4),gmp,flatten,fc3",
        "conv11x11x3x96s4,relu,lrn5a0.0005k2,pool3s2,conv5x5x96x256g2p2,relu,lrn3a1e-3b0.5k1.5",
        "res(conv3x3x16x32s2p1nobias,bn|pool1s2,padc16),2*relu,1*(bn),cat(res(relu|cat(gap|gmp))|2*(bn,relu))",
        "2*3*relu,2*(3*(relu,bn),tanh)",
    ],
)
def test_round_trip(spec):
    tokens = parse(spec)
    assert to_string(tokens) == spec
    assert parse(to_string(tokens)) == tokens


def test_canonical_form_and_helpers():
    tokens = parse(" RES( Conv3x3x8x8P1 , ReLU | conv1x1x8x8 ) , 2 * ( Relu , BN ) ")
    assert to_string(tokens) == "res(conv3x3x8x8p1,relu|conv1x1x8x8),2*(relu,bn)"
    assert [t.text for t in leaves(tokens)] == ["conv3x3x8x8p1", "relu", "conv1x1x8x8", "relu", "bn"]
    assert count_layers(tokens) == 7  # 3 + 2 copies of 2
    assert count_layers(parse("2*(3*res(relu,bn),tanh)")) == 14
    assert entry("res").text(tokens[0].args) == tokens[0].text
    assert entry("repeat").text(tokens[1].args) == tokens[1].text
    assert "res(<chain>[|<shortcut chain>])" in EXPECTED and "cat(<chain>|<chain>[|...])" in EXPECTED
    assert "<n>*(<chain>)" in EXPECTED and "gap" in EXPECTED and "lrn<size>" in EXPECTED and "[g<groups>]" in EXPECTED


# -- errors point inside parentheses --------------------------------------------------------------------------

_WHERE = re.compile(r"token (\d+) '([^']*)'((?: in (?:the body|the shortcut|branch \d+|the repeated part|copy \d+) of token \d+)*)"
                    r" \(character (\d+) of '([^']*)'\)")


@pytest.mark.parametrize(
    "spec, token, context",
    [
        ("conv3x3x3x8,res(conv3x3x8x8p1,poo2)", "poo2", " in the body of token 2"),
        ("cat(conv1x1x8x4|conv1x1x8x4,relu6)", "relu6", " in branch 2 of token 1"),
        ("res(relu|conv1x1x8x8q)", "conv1x1x8x8q", " in the shortcut of token 1"),
        ("2*(relu,foo)", "foo", " in the repeated part of token 1"),
        ("4*bar", "bar", " in the repeated part of token 1"),
        ("relu,cat(relu|res(relu,bar))", "bar", " in the body of token 1 in branch 2 of token 2"),
        ("res(conv3x3x8x8s0)", "conv3x3x8x8s0", " in the body of token 1"),
        ("cat(relu|lrn5k0)", "lrn5k0", " in branch 2 of token 1"),
        ("cat(relu|gap,,relu)", "", " in branch 2 of token 1"),
        ("res(conv3x3x8x8g3)", "conv3x3x8x8g3", " in the body of token 1"),
        ("RES( Relu, POO2 )", "poo2", " in the body of token 1"),
    ],
)
def test_error_inside_parentheses_points_at_the_token(spec, token, context):
    with pytest.raises(SpecError) as info:
        parse(spec)
    m = _WHERE.search(str(info.value))
    assert m, str(info.value)
    assert (m.group(2), m.group(3)) == (token, context)
    char, quoted = int(m.group(4)), m.group(5)
    assert quoted == "".join(spec.split())
    assert quoted[char - 1 :].lower().startswith(token)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("res(relu", r"unbalanced parentheses: '\(' at character 4 of 'res\(relu' is never closed"),
        ("relu)", r"unbalanced parentheses: '\)' at character 5 of 'relu\)' closes nothing"),
        ("cat(relu|res(relu)", r"'\(' at character 4 of .* is never closed"),
        ("cat(relu|res(relu)))", r"'\)' at character 20 of .* closes nothing"),
        ("relu,res(bn)x", r"token 2 'res\(bn\)x' \(character 6 of .*\): 'x' follows the '\)' at character 12"),
        ("res(relu|bn|relu)", r"token 1 .*: res takes a body and at most one shortcut, not 3 branches"),
        ("res()", r"token 1 'res\(\)' \(character 1 of 'res\(\)'\): the body is empty \(character 5\)"),
        ("cat(relu|)", r"branch 2 is empty \(character 10\)"),
        ("res(relu|)", r"the shortcut is empty"),
        ("relu,0*relu", r"token 2 '0\*relu' .*: a repetition count must be >= 1"),
        ("2*", r"token 1 '2\*' .*: nothing to repeat"),
        ("2*()", r"the repeated part is empty"),
        ("relu|bn", r"cannot parse token 1 'relu\|bn' .*: '\|' separates the branches"),
        ("foo(relu)", r"cannot parse token 1 'foo\(relu\)' .*: parentheses follow only res and cat"),
        ("2*(relu)bn", r"cannot parse token 1 .*parentheses follow only"),
        ("9999*9999*relu", r"99,980,001 tokens once its repetitions are expanded, over the limit"),
        ("12345678901*relu", r"a number of 10 or more digits"),
        ("padc0", r"at least 1 channel"),
        ("lrn0", r"size must be a positive integer"),
        ("conv3x3x8x6g4", r"4 groups must divide the 8 input and 6 output channels"),
    ],
)
def test_structural_errors(spec, message):
    with pytest.raises(SpecError, match=message):
        parse(spec)


def test_nesting_is_bounded():
    deep = "res(" * (MAX_NESTING + 1) + "relu" + ")" * (MAX_NESTING + 1)
    with pytest.raises(SpecError, match=f"nested more than {MAX_NESTING} deep at character {MAX_NESTING * 4 + 4}"):
        parse(deep)
    with pytest.raises(SpecError, match=f"nested more than {MAX_NESTING} deep"):
        parse("1*" * (MAX_NESTING + 1) + "relu")
    ok = "res(" * MAX_NESTING + "relu" + ")" * MAX_NESTING
    assert to_string(parse(ok)) == ok


# -- shapes and building errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, input_shape, expected",
    [
        (RESNET_TINY, (8, 8, 3), [(8, 8, 8), (8, 8, 8), (8, 8, 8), (8, 8, 8), (8, 8, 8), (4, 4, 16), (4, 4, 16), (1, 1, 16), (5,)]),
        ("cat(conv1x1x3x4|conv3x3x3x2p1|pool3s1p1,conv1x1x3x1)", (6, 6, 3), [(6, 6, 7)]),
        ("conv3x3x1x8p1,3*(conv3x3x8x8p1,relu),gap,gmp", (5, 7, 1), [(5, 7, 8), (5, 7, 8), (1, 1, 8), (1, 1, 8)]),
        ("res(conv3x3x16x32s2p1|pool1s2,padc16)", (9, 9, 16), [(5, 5, 32)]),
        ("conv3x3x4x8g4p1,lrn5,conv1x1x8x8g2", (6, 6, 4), [(6, 6, 8), (6, 6, 8), (6, 6, 8)]),
        ("flatten,res(fc12,relu,fc12),cat(fc3|fc4)", (2, 2, 3), [(12,), (12,), (7,)]),
    ],
)
def test_infer_shapes(spec, input_shape, expected):
    assert infer_shapes(parse(spec), input_shape) == expected


@pytest.mark.parametrize(
    "spec, token, context, detail",
    [
        ("conv3x3x1x8,res(conv3x3x8x16p1)", "res(conv3x3x8x16p1)", "",
         "the body gives 6x6x16 but the identity shortcut gives 6x6x8; expected equal shapes (add a projection shortcut"),
        ("conv3x3x1x8p1,res(conv3x3x8x8p1,conv3x3x16x8p1)", "conv3x3x16x8p1", " in the body of token 2",
         "expects 16 input channels but 8 arrive"),
        ("res(conv3x3x1x8s2p1|conv1x1x1x8)", "res(conv3x3x1x8s2p1|conv1x1x1x8)", "",
         "the body gives 4x4x8 but the shortcut gives 8x8x8"),
        ("cat(conv3x3x1x4|conv1x1x1x4)", "cat(conv3x3x1x4|conv1x1x1x4)", "",
         "branch 2 gives 8x8x4 but branch 1 gives 6x6x4; expected the same height and width"),
        ("conv3x3x1x8p1,2*conv3x3x8x16p1", "conv3x3x8x16p1", " in copy 2 of token 2", "expects 8 input channels but 16 arrive"),
        ("relu,2*(relu,cat(relu|res(conv1x1x1x2)))", "res(conv1x1x1x2)",
         " in branch 2 of token 2 in copy 1 of token 2", "the body gives 8x8x2 but the identity"),
        ("relu,2*(relu,cat(relu|res(conv1x1x2x2)))", "conv1x1x2x2",
         " in the body of token 1 in branch 2 of token 2 in copy 1 of token 2", "expects 2 input channels but 1 arrive"),
    ],
)
def test_build_errors_point_inside(spec, token, context, detail):
    with pytest.raises(SpecError) as info:
        infer_shapes(parse(spec), (8, 8, 1))
    msg = str(info.value)
    m = _WHERE.search(msg)
    assert m, msg
    assert (m.group(2), m.group(3)) == (token, context), msg
    char, quoted = int(m.group(4)), m.group(5)
    assert quoted[char - 1 :].startswith(token)
    assert detail in msg
    with pytest.raises(SpecError, match=re.escape(detail)):
        build(spec, (8, 8, 1), np.random.default_rng(0))


# -- building and gradients ---------------------------------------------------------------------------------------


def test_build_gives_residual_and_concat_containers():
    net = build(RESNET_TINY, (8, 8, 3), np.random.default_rng(0))
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Residual", "ReLU", "Residual", "ReLU", "GlobalAvgPool2d", "Flatten", "Linear"]
    identity, projection = net[3], net[5]
    assert isinstance(identity, Residual) and "shortcut" not in dict(identity.named_children())
    assert isinstance(dict(projection.named_children())["shortcut"], Sequential)
    assert "5.shortcut.0.weight" in net.params and "5.body.3.weight" in net.params
    cat = build("cat(conv1x1x3x4|pool3s1p1,conv1x1x3x2)", (6, 6, 3), np.random.default_rng(0))[0]
    assert isinstance(cat, Concat) and sorted(cat.params) == ["0.0.bias", "0.0.weight", "1.1.bias", "1.1.weight"]
    rep = build("conv3x3x1x4p1,3*(conv3x3x4x4p1,relu)", (6, 6, 1), np.random.default_rng(0))
    assert len(rep) == 7 and not np.array_equal(rep.params["1.weight"], rep.params["3.weight"])  # each copy its own weights
    assert build("conv3x3x8x8g8p1", (5, 5, 8), np.random.default_rng(0)).params["0.weight"].shape == (3, 3, 1, 8)


def test_batch_norm_before_the_first_convolution_learns(rng):
    net = build("bn,conv3x3x1x2,res(bn,conv3x3x2x2p1),fc2", (5, 5, 1), np.random.default_rng(0), BuildOptions(dtype=np.float64))
    assert max(check_layer(net, rng.standard_normal((3, 5, 5, 1)), train=True, check_input=False).values()) < 1e-6
    assert np.any(net.grads["0.weight"] != 0)


def test_he_init_uses_the_group_fan_in():
    net = build("conv3x3x64x64g64p1nobias", (4, 4, 64), np.random.default_rng(0), BuildOptions(init="he"))
    assert abs(float(net.params["0.weight"].std()) - np.sqrt(2 / 9)) < 0.05  # fan-in 3*3*1, not 3*3*64


@pytest.mark.parametrize(
    "spec, input_shape, train",
    [
        ("conv3x3x2x3p1,res(conv3x3x3x3p1,bn,relu,conv3x3x3x3p1,bn),relu", (4, 4, 2), True),
        ("res(conv3x3x2x4s2p1,bn,tanh,conv3x3x4x4p1|conv1x1x2x4s2,bn)", (5, 5, 2), True),
        ("cat(conv1x1x2x2|conv1x1x2x1,sigmoid,conv3x3x1x2p1|pool3s1p1,conv1x1x2x2|avgpool3s1p1)", (4, 4, 2), False),
        ("conv3x3x2x4g2p1,lrn3a0.5k2,res(conv3x3x4x6s2p1,tanh|pool1s2,padc2),gap,fc3", (5, 5, 2), False),
        ("2*(res(conv3x3x2x2p1,tanh),sigmoid),cat(gap|gmp),flatten", (3, 3, 2), False),
        ("conv1x1x2x4g2,2*res(cat(conv1x1x4x2|conv3x3x4x2g2p1)),gmp", (3, 3, 2), False),
    ],
)
def test_gradient_check_of_dag_strings(spec, input_shape, train):
    opts = BuildOptions(init="pytorch", dtype=np.float64, first_layer_input_grad=True)
    net = build(spec, input_shape, np.random.default_rng(1), opts)
    x = np.random.default_rng(2).standard_normal((2, *input_shape))
    errors = check_layer(net, x, train=train)
    assert set(errors) == {"x", *net.params}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("spec, input_shape", [(RESNET_TINY, (8, 8, 3)), ("conv3x3x1x8p1,2*(res(conv3x3x8x8p1,relu),relu),"
                                                                     "cat(conv1x1x8x4|pool3s1p1,conv1x1x8x4),lrn5,gmp,fc3", (7, 7, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_build_forward_shapes(spec, input_shape, dtype):
    net = build(spec, input_shape, np.random.default_rng(0), BuildOptions(dtype=dtype))
    x = np.random.default_rng(1).standard_normal((2, *input_shape)).astype(dtype)
    for train in (False, True):
        y = net.forward(x, train=train)
        assert y.shape == (2, *infer_shapes(parse(spec), input_shape)[-1]) and y.dtype == dtype
    assert net.backward(np.ones_like(y)) is None  # the first layer with parameters skips dL/dx


# -- summaries with branches ----------------------------------------------------------------------------------------


def test_summary_rows_per_token_and_branch():
    s = summarize("conv3x3x1x4p1,cat(conv1x1x4x2|conv5x5x4x3p2,relu),res(conv3x3x5x5p1,bn),gap,fc2", (8, 8, 1))
    rows = [(r.path, r.token, r.depth, r.group, r.out_shape, r.params, r.rf) for r in s.rows]
    assert rows == [
        ("1", "conv3x3x1x4p1", 0, False, (8, 8, 4), 40, 3),
        ("2", "cat(conv1x1x4x2|conv5x5x4x3p2,relu)", 0, True, (8, 8, 5), 10 + 303, 7),
        ("2.b1.1", "conv1x1x4x2", 1, False, (8, 8, 2), 10, 3),  # each branch's receptive field
        ("2.b2.1", "conv5x5x4x3p2", 1, False, (8, 8, 3), 303, 7),
        ("2.b2.2", "relu", 1, False, (8, 8, 3), 0, 7),
        ("2.concat", "concat", 1, False, (8, 8, 5), 0, 7),
        ("3", "res(conv3x3x5x5p1,bn)", 0, True, (8, 8, 5), 230 + 10, 9),
        ("3.body.1", "conv3x3x5x5p1", 1, False, (8, 8, 5), 230, 9),
        ("3.body.2", "bn", 1, False, (8, 8, 5), 10, 9),
        ("3.add", "add", 1, False, (8, 8, 5), 0, 9),
        ("4", "gap", 0, False, (1, 1, 5), 0, 16),
        ("5", "fc2", 0, False, (2,), 12, None),
    ]
    assert [r.token for r in s.tokens] == [t.text for t in parse("conv3x3x1x4p1,cat(conv1x1x4x2|conv5x5x4x3p2,relu),"
                                                                 "res(conv3x3x5x5p1,bn),gap,fc2")]
    assert s.total_params == 40 + 313 + 240 + 12
    assert s.rows[6].flops == s.rows[7].flops + s.rows[8].flops + s.rows[9].flops  # the block's row: its rows' totals
    assert all(r.rf_seed is None for r in s.rows)  # Table 15.2's column is for chains
    text = s.format()
    assert re.search(r"^\s+2 cat\(conv1x1x4x2\|conv5x5x4x3p2,relu\)\s+8x8x5\s+313 ", text, re.M)
    assert re.search(r"^\s+  b2\.1 conv5x5x4x3p2\s+8x8x3\s+303 ", text, re.M)
    assert re.search(r"^\s+  add\s+8x8x5\s+0 ", text, re.M)
    assert "parameters: 605" in text


def test_repetition_rows_and_totals_agree_with_the_built_network():
    spec = "conv3x3x1x4p1,2*(res(conv3x3x4x4p1,relu|conv1x1x4x4),relu),cat(gap|gmp),fc3"
    s = summarize(spec, (6, 6, 1))
    assert [r.path for r in s.rows if r.depth == 1] == ["2.copy1.1", "2.copy1.2", "2.copy2.1", "2.copy2.2", "3.b1.1", "3.b2.1",
                                                       "3.concat"]
    assert [r.path for r in s.rows if r.depth == 2] == ["2.copy1.1.body.1", "2.copy1.1.body.2", "2.copy1.1.shortcut.1",
                                                       "2.copy1.1.add"] + [p.replace("copy1", "copy2") for p in
                                                                           ["2.copy1.1.body.1", "2.copy1.1.body.2",
                                                                            "2.copy1.1.shortcut.1", "2.copy1.1.add"]]
    net = build(spec, (6, 6, 1), np.random.default_rng(0))
    layer_summary = summary(net, (6, 6, 1))
    assert s.total_params == layer_summary.total_params == net.num_params()
    assert s.total_flops == layer_summary.total_flops
    assert s.tokens[1].rf == 3 + 2 * 2 and s.tokens[1].params == 2 * (148 + 20)


def test_summary_is_shapes_only_even_for_large_dag_strings():
    s = summarize("conv3x3x3x256p1," + "16*res(conv3x3x256x256p1nobias,bn,relu,conv3x3x256x256p1nobias,bn)", (512, 512, 3))
    assert s.total_params == 3 * 9 * 256 + 256 + 16 * (2 * 9 * 256 * 256 + 2 * 512)


# -- PyTorch oracles with copied weights ----------------------------------------------------------------------------


def _torch_step(net, module, x, torch):
    """Training-mode forward and backward of both networks on x with the same random dL/dy; compare everything."""
    from tests.models.torch_refs import copy_weights, grads_pairs

    module = module.double()
    copy_weights(net, module)
    module.train()
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    yt = module(xt)
    y = net.forward(x, train=True)
    y_nchw = y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
    assert_close(y_nchw, yt.detach().numpy())
    r = np.random.default_rng(7).standard_normal(y.shape)
    yt.backward(torch.tensor(np.ascontiguousarray(r.transpose(0, 3, 1, 2) if r.ndim == 4 else r)))
    dx = net.backward(r)
    assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
    for ours, theirs in grads_pairs(net, module):
        assert_close(ours, theirs)
    net.eval()
    module.eval()
    with torch.no_grad():
        assert_close(net.forward(x).reshape(yt.shape if y.ndim == 2 else y.shape),
                     module(xt).numpy() if y.ndim == 2 else module(xt).numpy().transpose(0, 2, 3, 1))


def _randomise_bn(net, rng):
    for name, v in net.params.items():
        if v.ndim == 1:
            v[...] = rng.uniform(0.5, 1.5, v.shape) if name.endswith("weight") else rng.standard_normal(v.shape) * 0.1
    for name, v in net.buffers.items():
        if name.endswith("running_mean"):
            v[...] = rng.standard_normal(v.shape) * 0.1
        elif name.endswith("running_var"):
            v[...] = rng.uniform(0.5, 1.5, v.shape)


@pytest.mark.oracle
def test_oracle_small_resnet_from_a_string():
    torch = require_torch()
    import torch.nn as tnn

    from tests.models.torch_refs import BasicBlock, OptionABlock

    spec = RESNET_TINY.replace(",gap,fc5", ",res(conv3x3x16x32s2p1nobias,bn,relu,conv3x3x32x32p1nobias,bn|pool1s2,padc16),relu,gap,fc5")
    rng = np.random.default_rng(0)
    net = build(spec, (8, 8, 3), rng, BuildOptions(init="pytorch", dtype=np.float64, first_layer_input_grad=True))
    _randomise_bn(net, rng)
    module = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8), tnn.ReLU(), BasicBlock(8, 8),
                            BasicBlock(8, 16, 2), OptionABlock(16, 32, 2), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(32, 5))
    _torch_step(net, module, rng.standard_normal((3, 8, 8, 3)), torch)


@pytest.mark.oracle
def test_oracle_inception_block_from_a_string():
    torch = require_torch()
    import torch.nn as tnn

    from cnnkit.models.zoo import inception
    from tests.models.torch_refs import Inception

    rng = np.random.default_rng(1)
    spec = "conv3x3x3x8p1," + inception(8, 4, 3, 5, 2, 3, 2) + ",lrn5," + inception(14, 2, 2, 3, 2, 2, 2, bn=True, k5=3)
    net = build(spec, (7, 7, 3), rng, BuildOptions(init="pytorch", dtype=np.float64, first_layer_input_grad=True))
    _randomise_bn(net, rng)
    module = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), Inception(8, 4, 3, 5, 2, 3, 2), tnn.LocalResponseNorm(5),
                            Inception(14, 2, 2, 3, 2, 2, 2, bn=True, k5=3))
    for m in module.modules():  # torchvision's BasicConv2d uses eps 1e-3; the string's bn the default 1e-5
        if isinstance(m, tnn.BatchNorm2d):
            m.eps = 1e-5
    _torch_step(net, module, rng.standard_normal((2, 7, 7, 3)), torch)


@pytest.mark.oracle
@pytest.mark.parametrize("spec, input_shape", [
    (RESNET_TINY, (8, 8, 3)),
    ("conv3x3x3x8g1p1,cat(conv1x1x8x4|pool3s1p1,conv1x1x8x4),lrn3a0.1,2*(res(conv3x3x8x8g4p1,relu),relu),"
     "res(conv3x3x8x12s2p1|pool1s2,padc4),cat(gap|gmp),fc4", (6, 6, 3)),
])
def test_oracle_the_token_tables_torch_translation(spec, input_shape):
    """The bench translator (the token table's PyTorch entries, composites included) computes the same network."""
    torch = require_torch()
    import torch.nn as tnn

    from cnnkit.models.tokens import torch_chain

    rng = np.random.default_rng(3)
    net = build(spec, input_shape, rng, BuildOptions(init="pytorch", dtype=np.float64, first_layer_input_grad=True))
    _randomise_bn(net, rng)
    _torch_step(net, tnn.Sequential(*torch_chain(parse(spec), input_shape)), rng.standard_normal((2, *input_shape)), torch)
