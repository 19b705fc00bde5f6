"""The exercise 15.1-15.5 programmes' plans (what each run is) and reports (tables and commentary computed from
made-up numbers), and the generalised programme machinery (keys, sharing runs with ex15.6, stale run directories)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnkit.experiment import PROGRAMMES, ReportContext, ex15_1_5c, ex15_2_4a, ex15_4c, ex15_5a, ex15_5b, ex15_6
from cnnkit.experiment.analysis import ensemble_errors, epochs_to_reach
from cnnkit.experiment.plan import job_key
from cnnkit.experiment.runner import set_aside_stale
from cnnkit.models import create, resolve
from cnnkit.summary import summarize
from cnnkit.train import TrainConfig

NEW = ("ex15.2-4a", "ex15.4c", "ex15.5a", "ex15.5b", "ex15.1-5c")


def _fake(jobs: dict, table: dict, **per_job) -> dict:
    """Made-up results for every job: per-epoch curves and the last epoch's figures."""
    out = {}
    for i, (key, job) in enumerate(jobs.items()):
        errs = [0.5 / (e + 1) + 0.001 * i for e in range(job.config.epochs)]
        out[key] = {"key": key, "config": job.config.to_dict(), "test_error": errs[-1] + 0.01, "train_error": errs[-1],
                    "train_loss": 2 * errs[-1], "epochs": job.config.epochs, "wall_seconds": 10.0 + i,
                    "test_error_per_epoch": [v + 0.01 for v in errs], "train_error_per_epoch": errs,
                    "train_loss_per_epoch": [2 * v for v in errs], **per_job.get(key, {})}
    return out


def _ctx(tmp_path: Path, name: str, results: dict | None = None, parts=None, **plan_args) -> ReportContext:
    prog = PROGRAMMES[name]
    jobs, table = prog.plan(parts or prog.parts, plan_args.pop("epochs", prog.epochs), **plan_args)
    return ReportContext(tmp_path, prog, jobs, table, _fake(jobs, table) if results is None else results, {"runs": len(jobs)})


# -- plans ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_every_job_is_keyed_by_its_configuration(name: str) -> None:
    prog = PROGRAMMES[name]
    jobs, table = prog.plan(prog.parts, prog.epochs, None, None)
    assert set(table) == set(prog.parts) and all(table.values())
    assert {e.job for es in table.values() for e in es} == set(jobs)
    for key, job in jobs.items():
        assert job.config == job.config.resolved()
        assert key == job_key(job.config, key.split("_")[0]) or key == job_key(job.config)
        assert re.fullmatch(r"[A-Za-z0-9._-]+", key), key
    assert len({json.dumps(j.config.to_dict(), sort_keys=True) for j in jobs.values()}) == len(jobs)
    shrunk, _ = prog.plan(prog.parts, 1, 100, 50)
    assert all(j.config.epochs == 1 and (j.config.train_limit or 0) <= 100 and j.config.test_limit == 50 for j in shrunk.values())


def test_keys_of_ex15_6_are_unchanged() -> None:
    jobs, table = ex15_6.plan()
    assert table["b"][0].job == "base_n10000_seed0_ep20" and table["h"][1].job == "sk-0.2_10001-20000_seed0_ep20"
    assert len(jobs) == 27


def test_grad_part_plain_20_without_bn_sigmoid_and_relu() -> None:
    jobs, table = ex15_2_4a.plan(("grad",))
    relu, sig = (jobs[e.job].config for e in table["grad"])
    assert relu.model.replace("relu", "sigmoid") == sig.model and "bn" not in relu.model.split(",")
    weights = [k for k, v in create(relu.model).params.items() if v.ndim >= 2]
    assert len(weights) == 20  # 19 convolutions and the classifier
    for c in (relu, sig):
        assert (c.data, c.init, c.epochs, c.train_limit, c.grad_norms, c.lr) == ("fashion-mnist", "he", 1, 5000, "0,1,10,49", 0.01)


def test_depth_part_pairs_plain_and_residual_of_8_20_56_layers() -> None:
    jobs, table = ex15_2_4a.plan(("depth",), epochs=10)
    rows = [(e.group, int(e.x), jobs[e.job].config) for e in table["depth"]]
    assert [(g, d) for g, d, _ in rows] == [(g, d) for d in (8, 20, 56) for g in ("plain", "residual")]
    named = {("plain", 20): "plain20-mnist", ("residual", 20): "resnet20-mnist", ("plain", 56): "plain56-mnist",
             ("residual", 56): "resnet56-mnist"}
    for g, d, c in rows:
        if (g, d) in named:
            assert c.model == resolve(named[(g, d)]).spec
        assert ("res(" in c.model) == (g == "residual")
        assert (c.lr, c.init, c.preprocess, c.data, c.train_limit) == (0.1, "he", "per_channel", "fashion-mnist", 10000)
        assert c.schedule.startswith("list:0.01,0.1,") and len(c.schedule.split(",")) == 10
    params = {(g, d): summarize(resolve(c.model).spec, (28, 28, 1)).total_params for g, d, c in rows}
    assert all(params[("plain", d)] == params[("residual", d)] for d in (8, 20, 56))  # option A shortcuts: no parameters


def test_ex15_4c_5a_1_5c_settings() -> None:
    jobs, table = ex15_4c.plan()
    assert [jobs[e.job].config.model for e in table["heads"]] == ["cnn-fc-mnist", "cnn-gap-mnist"]
    jobs, table = ex15_5a.plan()
    cfgs = [jobs[e.job].config for e in table["speed"]]
    assert [(e.group, e.x) for e in table["speed"]] == [("relu", 0.01), ("relu", 0.05), ("tanh", 0.01), ("tanh", 0.05)]
    assert all(c.weight_decay == 0 and c.init == "pytorch" and c.model.count(e.group) == 3 for c, e in zip(cfgs, table["speed"]))
    jobs, table = ex15_1_5c.plan()
    plain, drop = (jobs[e.job].config for e in table["dropout"])
    assert drop.model == plain.model.replace("fc512,relu,", "fc512,relu,dropout,")
    assert plain.val_split == drop.val_split == 0.1 and plain.weight_decay == 0 and plain.epochs == 30


def test_ex15_5b_reuses_the_seven_seeds_of_ex15_6_i() -> None:
    jobs, table = ex15_5b.plan(epochs=20)
    ref_jobs, ref_table = ex15_6.plan(("i",))
    assert jobs == ref_jobs and [e.job for e in table["ensemble"]] == [e.job for e in ref_table["i"]]
    assert PROGRAMMES["ex15.5b"].out == PROGRAMMES["ex15.6"].out
    own, _ = ex15_5b.plan(epochs=20, matconvnet=False)
    assert set(own).isdisjoint(jobs) and all(not j.config.momentum_reset for j in own.values())


def test_ex15_6_matconvnet_settings_by_default() -> None:
    jobs, _ = ex15_6.plan()
    bn_family = [j.config for j in jobs.values()]
    assert all(c.momentum_reset and c.bn_eps == 1e-4 for c in bn_family)
    own, _ = ex15_6.plan(matconvnet=False)
    assert all(not j.config.momentum_reset and j.config.bn_eps == 1e-5 for j in own.values())


# -- reports -------------------------------------------------------------------------------------------------

def test_grad_report_states_the_attenuation(tmp_path: Path) -> None:
    jobs, table = ex15_2_4a.plan(("grad",))
    relu, sig = (e.job for e in table["grad"])
    layers = [f"{i}.weight" for i in range(20)]
    steps = {relu: [{"step": 0, "norms": [1.0] * 20}], sig: [{"step": 0, "norms": [0.25 ** (19 - i) for i in range(20)]},
                                                              {"step": 49, "norms": [0.5 ** (19 - i) for i in range(20)]}]}
    results = _fake(jobs, table, **{k: {"grad_norms": {"layers": layers, "steps": v, "epoch_mean": [[1.0] * 20]}}
                                    for k, v in steps.items()})
    ctx = ReportContext(tmp_path, PROGRAMMES["ex15.2-4a"], jobs, table, results, {"runs": 2})
    text = PROGRAMMES["ex15.2-4a"].report(ctx).read_text()
    assert "plain-20, no BN, relu, step 0 (at initialisation): the first layer receives a gradient 1 times smaller" in text
    assert f"sigmoid, step 0 (at initialisation): the first layer receives a gradient {4 ** 19:.3g} times smaller" in text
    assert "a factor 0.250 per layer" in text and "after 49 steps" in text and "a factor 0.500 per layer" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| \d+\.weight \|", line)]
    assert len(rows) == 20
    payload = json.loads((tmp_path / "results-ex15.2-4a.json").read_text())
    assert payload["analysis"]["grad"][0].startswith("plain-20, no BN, relu")


def test_depth_report_finds_degradation_and_its_removal(tmp_path: Path) -> None:
    jobs, table = ex15_2_4a.plan(("depth",))
    train = {("plain", 8): 0.06, ("plain", 20): 0.07, ("plain", 56): 0.10,
             ("residual", 8): 0.06, ("residual", 20): 0.04, ("residual", 56): 0.03}
    results = _fake(jobs, table)
    for e in table["depth"]:
        results[e.job]["train_error"] = train[(e.group, int(e.x))]
        results[e.job]["params"] = summarize(resolve(jobs[e.job].config.model).spec, (28, 28, 1)).total_params
    text = PROGRAMMES["ex15.2-4a"].report(ReportContext(tmp_path, PROGRAMMES["ex15.2-4a"], jobs, table, results, {})).read_text()
    assert "plain: training error 6.00% at 8 layers, 7.00% at 20 layers, 10.00% at 56 layers: the deepest is worse" in text
    assert "residual: training error 6.00% at 8 layers, 4.00% at 20 layers, 3.00% at 56 layers: deeper fits" in text
    assert "At 56 layers the residual network's training error is 7.00 points below the plain one's" in text
    assert "| residual-56 | 56 | 852,730 | 3.00% |" in text


def test_heads_report(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "ex15.4c")
    text = PROGRAMMES["ex15.4c"].report(ctx).read_text()
    assert "The GAP head has 650 parameters against the FC head's 805,642 (1239x fewer)" in text
    assert "| FC head (fc256 + dropout + fc10) | 870,826 | 805,642 |" in text
    assert "Shared by every run: data fashion-mnist; training examples first 10,000; epochs 10;" in text


def test_speed_report_compares_each_activations_fastest_rate(tmp_path: Path) -> None:
    jobs, table = ex15_5a.plan(epochs=6)
    curves = {"ReLU, lr 0.01": [0.3, 0.15, 0.09, 0.07, 0.06, 0.05], "ReLU, lr 0.05": [0.25, 0.12, 0.08, 0.06, 0.05, 0.04],
              "tanh, lr 0.01": [0.4, 0.3, 0.2, 0.15, 0.12, 0.11], "tanh, lr 0.05": [0.35, 0.2, 0.15, 0.12, 0.1, 0.09]}
    results = _fake(jobs, table)
    for e in table["speed"]:
        results[e.job]["train_error_per_epoch"] = curves[e.label]
    text = PROGRAMMES["ex15.5a"].report(ReportContext(tmp_path, PROGRAMMES["ex15.5a"], jobs, table, results, {})).read_text()
    relu = epochs_to_reach(curves["ReLU, lr 0.05"], 0.10, 0.9)
    tanh = epochs_to_reach(curves["tanh, lr 0.05"], 0.10, 0.9)
    assert (relu, tanh) == (2.5, 5.0)
    assert ("ReLU reaches 10% training error after 2.5 epochs (ReLU, lr 0.05); tanh after 5.0 epochs (tanh, lr 0.05): "
            "ReLU is 2.0 times as fast.") in text
    assert "| tanh, lr 0.01 | 2.5 | 4.0 | – | – |" in text


def test_dropout_report(tmp_path: Path) -> None:
    jobs, table = ex15_1_5c.plan(epochs=4)
    results = _fake(jobs, table)
    plain, drop = (e.job for e in table["dropout"])
    results[plain].update(train_loss_per_epoch=[0.6, 0.3, 0.15, 0.08], val_error_per_epoch=[0.14, 0.12, 0.11, 0.12])
    results[drop].update(train_loss_per_epoch=[0.7, 0.45, 0.35, 0.28], val_error_per_epoch=[0.16, 0.13, 0.11, 0.10])
    text = PROGRAMMES["ex15.1-5c"].report(ReportContext(tmp_path, PROGRAMMES["ex15.1-5c"], jobs, table, results, {})).read_text()
    assert "Training loss 0.3: without dropout after 2.0 epochs, with dropout after 3.7 epochs (1.9x as many)." in text
    assert "Best validation error: without dropout 11.00% (epoch 3), with dropout 10.00% (epoch 4)" in text


def test_ensemble_numbers() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    probs = rng.dirichlet(np.ones(10), size=(5, 500))
    probs[:, np.arange(500), labels] += 0.35  # each network right most of the time, wrong on random examples
    r = ensemble_errors(probs, labels)
    single = [float((p.argmax(1) != labels).mean()) for p in probs]
    assert r["single"] == pytest.approx(single) and r["n"] == 500
    assert r["ensemble"][0] == pytest.approx(single[0]) and r["ensemble"][-1] == float((probs.mean(0).argmax(1) != labels).mean())
    assert r["ensemble"][-1] < min(single)  # independent errors: the average is better than any one
    assert r["oracle"] <= r["ensemble"][-1]


def test_ex15_6_report_part_j_last_epochs_and_deviations(tmp_path: Path) -> None:
    from cnnkit.experiment.report import DEVIATIONS, MATCHED_SETTINGS, write_report

    jobs, table = ex15_6.plan(("j",))
    relu, sig = (e.job for e in table["j"])
    results = _fake(jobs, table)
    results[relu].update(test_error=0.021, test_error_per_epoch=[0.1] * 15 + [0.022, 0.021, 0.023, 0.022, 0.021])
    results[sig].update(test_error=0.034, test_error_per_epoch=[0.2] * 15 + [0.05, 0.034, 0.045, 0.04, 0.034])
    text = write_report(tmp_path, table, results, {"runs": 2}).read_text()
    assert ("SK-0.2 (sigmoid): final test error 3.40%; over the last 5 epochs 4.06% ± 0.70% (mean ± sd), "
            "from 3.40% to 5.00%.") in text
    assert "SK-0.2 (ReLU): final test error 2.10%; over the last 5 epochs 2.18% ± 0.08%" in text
    assert "Averaged over the last 5 epochs, SK-0.2 (sigmoid) is +1.88 points from SK-0.2 (ReLU) (final epochs: +1.30)" in text
    assert all(d in text for d in DEVIATIONS + MATCHED_SETTINGS)
    own = write_report(tmp_path, table, results, {"settings": "cnnkit (SGD momentum kept across epochs, BN epsilon 1e-5)"}).read_text()
    assert "keep the SGD momentum across epochs and use BN epsilon 1e-5" in own
    assert not any(d in own for d in MATCHED_SETTINGS)


# -- machinery -------------------------------------------------------------------------------------------------

def test_reports_of_programmes_sharing_a_directory_do_not_collide() -> None:
    names = {(p.report_name, p.results_name) for p in PROGRAMMES.values()}
    assert len(names) == len(PROGRAMMES) and ("report.md", "results.json") in names


def test_a_stale_run_directory_is_set_aside_not_resumed(tmp_path: Path) -> None:
    cfg = TrainConfig(model="sk-0.2", train_limit=100, epochs=1).resolved()
    run = tmp_path / "runs" / job_key(cfg)
    run.mkdir(parents=True)
    (run / "checkpoint.npz").write_bytes(b"")
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("bn_eps", "momentum_reset", "init", "grad_norms")}
    (run / "config.json").write_text(json.dumps(old))  # a run of an earlier cnnkit: momentum kept, eps 1e-5
    assert set_aside_stale(run, cfg) == run.with_name(run.name + ".superseded") and not run.exists()
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(b"")
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert set_aside_stale(run, cfg) is None and run.exists()  # the same configuration: resumed, not moved
    (run / "config.json").write_text(json.dumps(old))
    assert set_aside_stale(run, cfg).name.endswith(".superseded2")


def test_unknown_programme_part_and_option() -> None:
    from cnnkit.experiment import run_programme

    with pytest.raises(ValueError, match="unknown part"):
        run_programme("ex15.4c", "/nonexistent/never", parts=("grad",))
    with pytest.raises(ValueError, match="takes no option"):
        run_programme("ex15.4c", "/nonexistent/never", matconvnet=False)
    assert not Path("/nonexistent/never").exists()
