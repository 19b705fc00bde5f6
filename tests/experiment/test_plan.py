"""The exercise-15.6 job list: every part's configurations as the exercise states them, and deduplication."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cnnkit.data import parse_subset
from cnnkit.experiment.ex15_6 import MULTIPLIERS, PARTS, SEEDS, SIZES, TITLES, job_key, plan
from cnnkit.models import resolve
from cnnkit.train import TrainConfig

SHAPE = (28, 28, 1)
DEFAULTS = TrainConfig().resolved()  # MatConvNet 1.0-beta20's MNIST settings (the book models' lr and preprocessing)


@pytest.fixture(scope="module")
def full():
    return plan()


def rows(full, part):
    jobs, table = full
    return [(e.label, jobs[e.job].config, e.x) for e in table[part]]


def _indices(cfg: TrainConfig) -> np.ndarray:
    return parse_subset(cfg.train_range if cfg.train_range else cfg.train_limit, 60000)


def _span(cfg: TrainConfig) -> tuple[int, int]:
    """(first, last) 1-based example numbers of a config's training subset, checking it is contiguous."""
    idx = _indices(cfg)
    assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))
    return int(idx[0]) + 1, int(idx[-1]) + 1


def _is_default_except(cfg: TrainConfig, **expected) -> None:
    for f in dataclasses.fields(TrainConfig):
        want = expected.get(f.name, getattr(DEFAULTS, f.name))
        assert getattr(cfg, f.name) == want, (f.name, getattr(cfg, f.name), want)


def test_parts_and_titles() -> None:
    assert tuple("bcdefghij") == PARTS
    assert set(TITLES) == set(PARTS)
    _, table = plan()
    assert list(table) == list(PARTS)
    with pytest.raises(ValueError, match="unknown part"):
        plan(("b", "z"))


def test_b_base_on_first_10000_20_epochs_seed_0(full) -> None:
    [(label, cfg, x)] = rows(full, "b")
    assert label == "BASE" and x is None
    _is_default_except(cfg, model="base", train_limit=10000)
    assert cfg.epochs == 20 and cfg.seed == 0 and cfg.lr == 0.001 and cfg.batch_size == 100
    assert _span(cfg) == (1, 10000)


def test_c_bn_next_to_base(full) -> None:
    (l1, base, _), (l2, bn, _) = rows(full, "c")
    assert (l1, l2) == ("BASE", "BN")
    _is_default_except(base, model="base", train_limit=10000)
    _is_default_except(bn, model="bn", train_limit=10000)
    assert full[1]["c"][0].job == full[1]["b"][0].job  # (c)'s BASE is (b)'s run
    spec = resolve("bn", SHAPE).spec.split(",")
    convs = [i for i, layer in enumerate(spec) if layer.startswith("conv")]
    assert len(convs) == 4 and spec.count("bn") == 3
    assert all(spec[i + 1] == "bn" for i in convs[:3]) and convs[3] == len(spec) - 1  # blocks 1-3, not the classifier


def test_d_dropout_after_block_4_classifier(full) -> None:
    got = [(label, cfg.model) for label, cfg, _ in rows(full, "d")]
    assert got == [("BASE", "base"), ("BASE + dropout", "base-dropout"), ("BN", "bn"), ("BN + dropout", "bn-dropout")]
    for _, cfg, _ in rows(full, "d"):
        _is_default_except(cfg, model=cfg.model, train_limit=10000)
    for name in ("base", "bn"):
        plain, drop = resolve(name, SHAPE).spec.split(","), resolve(f"{name}-dropout", SHAPE).spec.split(",")
        assert drop == [*plain, "dropout"]  # right after the classifier conv1x1x500x10
        assert plain[-1] == "conv1x1x500x10"


def test_e_sk_next_to_bn(full) -> None:
    got = [(label, cfg.model) for label, cfg, _ in rows(full, "e")]
    assert got == [("BN", "bn"), ("SK", "sk")]
    sk = resolve("sk", SHAPE).spec.split(",")
    assert sk[:6] == ["conv3x3x1x20nobias", "bn", "relu", "conv3x3x20x20nobias", "bn", "relu"]


def test_f_channel_multipliers(full) -> None:
    got = [(label, cfg.model, x) for label, cfg, x in rows(full, "f")]
    assert got == [("SK-2", "sk-2", 2.0), ("SK-1.5", "sk-1.5", 1.5), ("SK-1", "sk", 1.0),
                   ("SK-0.5", "sk-0.5", 0.5), ("SK-0.2", "sk-0.2", 0.2)]
    assert tuple(x for *_, x in got) == MULTIPLIERS
    for _, cfg, _ in rows(full, "f"):
        _is_default_except(cfg, model=cfg.model, train_limit=10000)
    assert full[1]["f"][2].job == full[1]["e"][1].job  # SK-1 is (e)'s SK


def test_g_training_set_sizes(full) -> None:
    got = rows(full, "g")
    assert [label for label, _, _ in got] == ["first 500", "first 1,000", "first 2,000", "first 5,000", "first 10,000",
                                              "first 20,000", "first 60,000"]
    assert SIZES == (500, 1000, 2000, 5000, 10000, 20000, 60000)
    for (_label, cfg, x), n in zip(got, SIZES):
        assert cfg.model == "sk-0.2" and cfg.seed == 0 and x == float(n)
        assert _span(cfg) == (1, n)
    _is_default_except(got[-1][1], model="sk-0.2")  # all 60,000: no limit at all


def test_h_six_disjoint_slices(full) -> None:
    got = rows(full, "h")
    assert [label for label, _, _ in got] == [f"examples {10000 * i + 1:,}-{10000 * (i + 1):,}" for i in range(6)]
    assert [_span(cfg) for _, cfg, _ in got] == [(10000 * i + 1, 10000 * (i + 1)) for i in range(6)]
    idx = np.concatenate([_indices(cfg) for _, cfg, _ in got])
    assert np.array_equal(np.sort(idx), np.arange(60000))  # disjoint and covering the training set
    for _, cfg, _ in got:
        assert cfg.model == "sk-0.2" and cfg.seed == 0 and cfg.epochs == 20


def test_i_seven_seeds(full) -> None:
    got = rows(full, "i")
    assert SEEDS == (0, 1, 12, 123, 1234, 12345, 123456)
    assert [(label, cfg.seed) for label, cfg, _ in got] == [(f"seed {s}", s) for s in SEEDS]
    for _, cfg, _ in got:
        _is_default_except(cfg, model="sk-0.2", train_limit=10000, seed=cfg.seed)


def test_j_sigmoid_next_to_relu(full) -> None:
    got = [(label, cfg.model) for label, cfg, _ in rows(full, "j")]
    assert got == [("SK-0.2 (ReLU)", "sk-0.2"), ("SK-0.2 (sigmoid)", "sk-0.2-sigmoid")]
    relu, sig = resolve("sk-0.2", SHAPE).spec, resolve("sk-0.2-sigmoid", SHAPE).spec
    assert "sigmoid" not in relu and sig == relu.replace("relu", "sigmoid")


def test_sk_02_on_first_10000_seed_0_is_one_job_shared_by_f_g_h_i_j(full) -> None:
    jobs, table = full
    shared = {p: [e.job for e in table[p] if _span(jobs[e.job].config) == (1, 10000) and jobs[e.job].config.seed == 0
                  and jobs[e.job].config.model == "sk-0.2"] for p in "fghij"}
    assert all(len(v) == 1 for v in shared.values()), shared
    assert len({v[0] for v in shared.values()}) == 1, shared
    assert table["h"][0].job == table["g"][4].job == table["i"][0].job == table["f"][4].job == table["j"][0].job


def test_jobs_are_deduplicated_and_keyed(full) -> None:
    jobs, table = full
    # b 1, c +1, d +2, e +1, f +4, g +6, h +5, i +6, j +1
    assert len(jobs) == 27
    assert {e.job for es in table.values() for e in es} == set(jobs)
    for key, job in jobs.items():
        assert job.key == key == job_key(job.config) and "/" not in key and " " not in key
    # no two jobs train the same network on the same examples with the same settings
    def identity(cfg: TrainConfig) -> tuple:
        d = dataclasses.asdict(cfg)
        d.pop("train_limit"), d.pop("train_range")
        return (*sorted(d.items()), _span(cfg))

    ids = [identity(j.config) for j in jobs.values()]
    assert len(set(ids)) == len(ids)
    # a part's jobs are the same whether it is planned alone or with others
    for p in PARTS:
        alone_jobs, alone = plan((p,))
        assert [e.job for e in alone[p]] == [e.job for e in table[p]]
        assert all(alone_jobs[k].config == jobs[k].config for k in alone_jobs)


def test_shrunken_plan_caps_subsets_epochs_and_test_set() -> None:
    jobs, table = plan(PARTS, epochs=1, max_train=300, test_limit=200)
    for job in jobs.values():
        first, last = _span(job.config)
        assert last - first + 1 <= 300 and job.config.epochs == 1 and job.config.test_limit == 200
        assert job.key.endswith("_ep1_test200")
    assert [_span(jobs[e.job].config) for e in table["h"]] == [(10000 * i + 1, 10000 * i + 300) for i in range(6)]
    # (g): every size of 300 or more collapses onto the first 300, one job
    assert len({e.job for e in table["g"]}) == 1
    small = plan(("g",), epochs=1, max_train=1000)[1]["g"]
    assert [e.job for e in small][:2] == ["sk-0.2_n500_seed0_ep1", "sk-0.2_n1000_seed0_ep1"]
    assert len({e.job for e in small}) == 2


def test_estimated_cost_orders_the_longest_runs_first() -> None:
    from cnnkit.experiment import estimated_cost

    jobs, _ = plan()
    cost = {k: estimated_cost(j.config.to_dict()) for k, j in jobs.items()}
    order = sorted(cost, key=lambda k: -cost[k])
    assert order[0] == "sk-2_n10000_seed0_ep20"  # the widest network
    assert cost["sk-0.2_all_seed0_ep20"] > cost["sk-0.2_n20000_seed0_ep20"] > cost["sk-0.2_n10000_seed0_ep20"]
    assert cost["sk-0.2_10001-20000_seed0_ep20"] == cost["sk-0.2_n10000_seed0_ep20"]  # same size, same model
    assert order[-1] == "sk-0.2_n500_seed0_ep20"
