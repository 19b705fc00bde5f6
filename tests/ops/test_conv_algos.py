"""Every convolution algorithm computes the reference's function and its gradients; the planner's choices.

Tolerances. float64: 1e-10 relative to the largest entry (every algorithm is exact up to rounding).
float32 against a float64 reference, relative to the largest entry: 2e-6 for im2row, im2row-jit, direct,
winograd2 and fft (the reference itself is at about 5e-7), 5e-5 for winograd4 (F(4x4, 3x3)'s transforms
lose about a decimal digit; measured about 1e-5 on the VGG-style stack's layers, docs/perf-notes.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit import jit
from cnnkit.gradcheck import check_layer
from cnnkit.nn import Conv2d
from cnnkit.ops import conv_algos
from cnnkit.ops.conv import conv2d_backward, conv2d_forward, keeps_rows
from cnnkit.ops.conv_algos import ALGORITHMS, geometry, planner

F32_TOL = {"winograd4": 5e-5}
F32_DEFAULT = 2e-6

# (x shape, weight shape, stride, padding, dilation, groups)
GRID = [
    ((3, 9, 8, 4), (3, 3, 4, 5), 1, 1, 1, 1),
    ((2, 5, 5, 3), (3, 3, 3, 2), 1, 0, 1, 1),
    ((2, 10, 11, 4), (3, 3, 4, 3), 1, ((0, 2), (1, 0)), 1, 1),
    ((2, 6, 7, 2), (3, 3, 2, 3), 1, 4, 1, 1),
    ((2, 13, 12, 3), (5, 5, 3, 4), 1, 2, 1, 1),
    ((2, 12, 12, 2), (7, 6, 2, 3), 1, 0, 1, 1),
    ((3, 28, 28, 1), (5, 5, 1, 4), 1, 0, 1, 1),
    ((2, 9, 9, 4), (3, 3, 1, 4), 2, 1, 1, 4),
    ((2, 9, 9, 4), (3, 3, 1, 8), 1, 2, 2, 4),
    ((2, 8, 8, 6), (3, 3, 2, 6), 1, 1, 1, 3),
    ((2, 7, 7, 5), (2, 3, 5, 4), (2, 1), "same", (1, 2), 1),
]


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def _cases() -> list[tuple[str, tuple]]:
    out = []
    for case in GRID:
        xs, ws, st, pad, dil, groups = case
        g = geometry(xs, ws, st, pad, dil, groups, "float64")
        out += [(name, case) for name in conv_algos.supported(g) if name != "im2row"]
    return out


def test_every_algorithm_is_exercised_by_the_grid() -> None:
    names = {name for name, _ in _cases()}
    expected = {"winograd2", "winograd4", "fft"} | ({"im2row-jit", "direct"} if jit.HAVE_NUMBA else set())
    assert names == expected


@pytest.mark.parametrize("name,case", _cases())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_algorithm_equals_reference(name: str, case: tuple, dtype: type) -> None:
    xs, ws, st, pad, dil, groups = case
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) / np.sqrt(np.prod(ws[:3])), rng.standard_normal(ws[3])
    y_ref, c_ref = conv2d_forward(x, w, b, st, pad, dil, groups, algo="im2row")
    dy = rng.standard_normal(y_ref.shape)
    refs = conv2d_backward(dy, c_ref)
    cast = [a.astype(dtype) for a in (x, w, b, dy)]
    y, cache = conv2d_forward(*cast[:3], st, pad, dil, groups, algo=name)
    assert cache.algo == name and y.dtype == dtype
    got = conv2d_backward(cast[3], cache)
    tol = 1e-10 if dtype == np.float64 else F32_TOL.get(name, F32_DEFAULT)
    for what, a, ref in zip(("y", "dx", "dw", "db"), (y, *got), (y_ref, *refs)):
        assert a.dtype == dtype and a.shape == ref.shape, what
        assert _rel(a, ref) < tol, f"{name} {what}: {_rel(a, ref):.2e}"
    dx, dw, _ = conv2d_backward(cast[3], cache, need_dx=False)
    assert dx is None and _rel(dw, refs[1]) < tol


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_gradient_check_through_every_algorithm(name: str) -> None:
    """float64 centred differences through a Conv2d layer that is forced to use the algorithm."""
    cases = {
        "im2row": (Conv2d(2, 3, 3, padding=1), (2, 5, 5, 2)),
        "im2row-jit": (Conv2d(2, 3, 3, stride=2, padding=1), (2, 5, 5, 2)),
        "direct": (Conv2d(2, 4, 3, padding=1, groups=2), (2, 5, 5, 2)),
        "winograd2": (Conv2d(2, 3, 3, padding=1), (2, 5, 5, 2)),
        "winograd4": (Conv2d(2, 3, 3, padding=((0, 1), (2, 1))), (2, 6, 5, 2)),
        "fft": (Conv2d(2, 2, 5, padding=1), (1, 6, 7, 2)),
    }
    layer, shape = cases[name]
    layer.algo = name
    layer = layer.astype(np.float64)
    if not ALGORITHMS[name].supports(geometry(shape, layer.params["weight"].shape, layer.stride, layer.padding,
                                              layer.dilation, layer.groups, "float64")):
        pytest.skip(f"{name} is not available here (numba)")
    x = np.random.default_rng(1).standard_normal(shape)
    layer.forward(x, train=True)
    assert layer._cache.algo == name
    errors = check_layer(layer, x, train=True)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.skipif(not jit.HAVE_NUMBA, reason="compares the compiled transforms with the NumPy ones")
@pytest.mark.parametrize("m", [2, 4])
def test_winograd_numpy_transforms_equal_compiled(m: int) -> None:
    from cnnkit.jit import conv as kernels
    from cnnkit.ops.conv_algos import winograd as wg

    alg = ALGORITHMS[f"winograd{m}"]
    assert isinstance(alg, wg.Winograd)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 9, 3))  # padding 1: a 7 x 9 output
    bt, at, _, b_mat = alg._mats(np.float64)
    tiles, a = (-(-7 // m), -(-9 // m)), m + 2
    p = 2 * tiles[0] * tiles[1]
    v1, v2 = np.empty((a * a, p, 3)), np.empty((a * a, p, 3))
    kernels.wino_gather(x, bt, m, (1, 1), tiles, v1)
    wg.gather_numpy(x, bt, m, (1, 1), tiles, v2)
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)
    for mat, pads, add in ((at, (0, 0), False), (b_mat, (1, 1), True)):
        o1, o2 = np.ones(x.shape), np.ones(x.shape)
        bias = np.arange(3.0)
        kernels.wino_scatter(v1, mat, m, pads, tiles, o1, bias, add)
        wg.scatter_numpy(v1, mat, m, pads, tiles, o2, bias, add)
        np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-12)


def test_winograd_f4_float32_error_is_bounded() -> None:
    """The accuracy claim of the module docstring, on a VGG-like layer with He-initialised weights."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 16, 16, 64)), rng.standard_normal((3, 3, 64, 64)) * np.sqrt(2 / 576)
    ref, _ = conv2d_forward(x, w, None, 1, 1, algo="im2row")
    errs = {n: _rel(conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1, algo=n)[0], ref)
            for n in ("im2row", "winograd2", "winograd4")}
    assert errs["im2row"] < 2e-6 and errs["winograd2"] < 2e-6 and errs["winograd4"] < 5e-5, errs


# -- the planner ------------------------------------------------------------------------------------------

BIG = geometry((4, 16, 16, 32), (3, 3, 32, 32), padding=1)  # 9.4M multiply-adds: worth timing


@pytest.fixture
def clean_planner(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CNNKIT_CONV_ALGO", raising=False)
    monkeypatch.delenv("CNNKIT_CONV_PLAN", raising=False)
    planner.clear()
    planner.set_plan_file(None)
    yield planner
    planner.clear()
    planner._plan_file_set = False
    planner._plan_file = None


def _fake_runner(times: dict[str, float]):
    calls: list[str] = []

    def runner(name, g, mode):
        calls.append(name)
        return lambda: None

    def measure(g, mode, names, runner_):
        for n in names:
            runner_(n, g, mode)
        return {n: times.get(n, 100.0) for n in names}

    return runner, measure, calls


def test_planner_times_once_and_remembers(clean_planner, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, measure, calls = _fake_runner({"im2row": 10.0, "winograd4": 5.0})
    monkeypatch.setattr(planner, "measure", measure)
    assert planner.choose(BIG, "train", runner) == "winograd4"
    n = len(calls)
    assert n >= 2 and set(calls) == set(conv_algos.supported(BIG))
    assert planner.choose(BIG, "train", runner) == "winograd4" and len(calls) == n  # remembered
    assert planner.plans()[planner.key(BIG, "train")].times_ms["im2row"] == 10.0


def test_planner_margin_prefers_the_reference() -> None:
    assert planner.pick({"im2row": 10.0, "winograd4": 9.7}, ["im2row", "winograd4"]) == "im2row"
    assert planner.pick({"im2row": 10.0, "winograd2": 9.0, "winograd4": 8.9}, ["im2row", "winograd2", "winograd4"]) == "winograd2"


def test_train_and_eval_are_planned_separately(clean_planner, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, measure, _ = _fake_runner({"im2row": 10.0, "winograd2": 5.0})
    monkeypatch.setattr(planner, "measure", measure)
    planner.choose(BIG, "eval", runner)
    planner.choose(BIG, "train", runner)
    keys = set(planner.plans())
    assert planner.key(BIG, "eval") in keys and planner.key(BIG, "train") in keys and len(keys) == 2


def test_plan_file_gives_the_same_choice_every_time(clean_planner, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = tmp_path / "plans.json"
    planner.set_plan_file(str(path))
    runner, measure, _ = _fake_runner({"im2row": 10.0, "winograd2": 4.0})
    monkeypatch.setattr(planner, "measure", measure)
    assert planner.choose(BIG, "eval", runner) == "winograd2"
    data = json.loads(path.read_text())
    entry = data["machines"][planner.machine_id()]["plans"][planner.key(BIG, "eval")]
    assert entry["algo"] == "winograd2" and data["machines"][planner.machine_id()]["machine"]["cores"]
    # the file decides from now on, whatever a new measurement would say
    entry["algo"] = "winograd4"
    path.write_text(json.dumps(data))
    runner2, measure2, calls2 = _fake_runner({"im2row": 1.0})
    monkeypatch.setattr(planner, "measure", measure2)
    for _ in range(3):
        planner.clear()
        p = planner.plan(BIG, "eval", runner2)
        assert (p.algo, p.source) == ("winograd4", "file")
    assert calls2 == []


def test_plan_file_from_the_environment(clean_planner, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    planner._plan_file_set = False
    monkeypatch.setenv("CNNKIT_CONV_PLAN", str(tmp_path / "p.json"))
    assert planner.plan_file() == str(tmp_path / "p.json")
    monkeypatch.setenv("CNNKIT_CONV_PLAN", "off")
    assert planner.plan_file() is None
    monkeypatch.setenv("CNNKIT_CONV_PLAN", "user")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert planner.plan_file() == str(tmp_path / "cnnkit" / "conv-plans.json")


def test_real_measurement_picks_a_supported_algorithm(clean_planner) -> None:
    p = planner.plan(BIG, "train")
    assert p.source == "measured" and p.algo in conv_algos.supported(BIG)
    assert set(p.times_ms) == set(conv_algos.supported(BIG)) and all(t > 0 for t in p.times_ms.values())
    assert planner.plan(geometry((1, 6, 6, 2), (3, 3, 2, 2)), "train").source == "small"


def test_environment_forces_an_algorithm(clean_planner, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    conv3, conv5 = Conv2d(4, 4, 3, padding=1, rng=rng), Conv2d(4, 4, 5, padding=2, rng=rng)
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    for forced, expect3, expect5 in (("im2row", "im2row", "im2row"), ("winograd4", "winograd4", "im2row"), ("fft", "im2row", "fft")):
        monkeypatch.setenv("CNNKIT_CONV_ALGO", forced)
        conv3.forward(x, train=True)
        conv5.forward(x, train=True)
        assert (conv3._cache.algo, conv5._cache.algo) == (expect3, expect5)
        assert conv2d_forward(x, conv3.params["weight"], None, 1, 1)[1].algo == expect3  # the op's default too
    monkeypatch.setenv("CNNKIT_CONV_ALGO", "nonsense")
    with pytest.raises(ValueError, match="CNNKIT_CONV_ALGO"):
        conv3.forward(x)


def test_layer_rejects_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown convolution algorithm"):
        Conv2d(1, 1, 3, algo="magic")


def test_training_keeps_x_rather_than_a_large_phi() -> None:
    assert keeps_rows(geometry((100, 12, 12, 20), (5, 5, 20, 50)))
    assert not keeps_rows(geometry((64, 32, 32, 64), (3, 3, 64, 64), padding=1))
    assert keeps_rows(geometry((64, 32, 32, 64), (1, 1, 64, 64)))  # phi(x) is x itself
    x, w = np.ones((64, 32, 32, 64), np.float32), np.ones((3, 3, 64, 8), np.float32)
    _, cache = conv2d_forward(x, w, None, 1, 1, algo="im2row")
    assert cache.rows is None and cache.x is x
