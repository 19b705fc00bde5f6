"""The exercise-15.6 report on synthetic results (tables, computed commentary, plots, results.json) and the progress ETA."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from cnnkit.experiment.ex15_6 import TITLES, plan
from cnnkit.experiment.report import commentary, part_table, write_report
from cnnkit.experiment.runner import Progress

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic(parts=("b", "c", "d", "e", "f", "g", "h", "i", "j")) -> tuple[dict, dict, dict]:
    """The real plan with made-up numbers: test error 1% + 0.1% per job index, training error half of it."""
    jobs, table = plan(tuple(parts))
    results = {}
    for i, (key, job) in enumerate(jobs.items()):
        err = 0.01 + 0.001 * i
        results[key] = {"key": key, "config": job.config.to_dict(), "test_error": err, "train_error": err / 2,
                        "epochs": 20, "wall_seconds": 60.0 + i, "test_error_per_epoch": [0.5, 0.1, err],
                        "train_error_per_epoch": [0.6, 0.2, err / 2]}
    return jobs, table, results


def _set(results: dict, table: dict, part: str, errors: list[float]) -> None:
    for e, err in zip(table[part], errors):
        results[e.job]["test_error"] = err


def test_h_and_i_mean_and_std_over_slices_and_seeds() -> None:
    h = [0.020, 0.022, 0.018, 0.025, 0.021, 0.019]
    i = [0.030, 0.031, 0.029, 0.035, 0.028, 0.030, 0.032]
    _, table, results = synthetic(("h",))
    _set(results, table, "h", h)
    [line] = commentary("h", table["h"], results)
    m, s = statistics.fmean(h), statistics.stdev(h)
    assert line == (f"Over the six slices: test error {100 * m:.2f}% ± {100 * s:.2f}% (mean ± standard deviation), "
                    f"from 1.80% (examples 20,001-30,000) to 2.50% (examples 30,001-40,000).")
    _, table, results = synthetic(("i",))
    _set(results, table, "i", i)
    [line] = commentary("i", table["i"], results)
    m, s = statistics.fmean(i), statistics.stdev(i)
    assert line.startswith(f"Over the seven seeds: test error {100 * m:.2f}% ± {100 * s:.2f}% (mean ± standard deviation)")
    assert line.endswith("from 2.80% (seed 1234) to 3.50% (seed 123).")


def test_best_variant_and_by_how_much() -> None:
    _, table, results = synthetic(("d", "f"))
    _set(results, table, "d", [0.012, 0.010, 0.009, 0.015])
    lines = commentary("d", table["d"], results)
    assert lines[0] == "Best: BN at 0.90% test error; worst: BN + dropout at 1.50% (0.60 points, 40% relative)."
    assert lines[1].startswith("Largest gap between test and training error: BN + dropout (0.85 points)")
    _set(results, table, "f", [0.011, 0.010, 0.012, 0.015, 0.020])
    lines = commentary("f", table["f"], results)
    assert lines[0] == "Best: SK-1.5 at 1.00% test error; worst: SK-0.2 at 2.00% (1.00 points, 50% relative)."
    assert lines[1] == "Ordered by test error: SK-1.5 < SK-2 < SK-1 < SK-0.5 < SK-0.2."


def test_g_error_against_training_set_size() -> None:
    _, table, results = synthetic(("g",))
    # error halves for every tenfold increase: 10 ** slope == 0.5
    sizes = [500, 1000, 2000, 5000, 10000, 20000, 60000]
    _set(results, table, "g", [0.1 * (n / 500) ** -0.30103 for n in sizes])
    lines = commentary("g", table["g"], results)
    assert lines[0].startswith("Test error falls from 10.00% with 500 examples to ")
    assert "slope -0.30" in lines[1] and "by about 0.50" in lines[1]
    assert len(lines) == 2  # fell at every step
    _set(results, table, "g", [0.10, 0.08, 0.09, 0.05, 0.04, 0.045, 0.02])
    assert commentary("g", table["g"], results)[-1] == "Error did not fall at every step: it rose when going to 2,000, 20,000 examples."


def test_commentary_without_results_is_empty_and_table_shows_missing_runs() -> None:
    _, table, results = synthetic(("c",))
    assert commentary("c", table["c"], {}) == []
    missing = part_table(table["c"], {})
    assert missing.count("| n/a | n/a | n/a | nan s |") == 2
    text = part_table(table["c"], results)
    assert text.splitlines()[0] == "| configuration | test error | training error | epochs | wall time |"
    assert re.search(r"^\| BN \| \d+\.\d\d% \| \d+\.\d\d% \| 20 \| \d+ s \|$", text, re.M)


def test_write_report_all_parts(tmp_path: Path) -> None:
    _, table, results = synthetic()
    meta = {"parts": "b,c,d,e,f,g,h,i,j", "runs": len(results)}
    report = write_report(tmp_path, table, results, meta)
    text = report.read_text()
    for part in table:
        assert text.count(f"## {TITLES[part]}\n") == 1
    assert text.count("| configuration | test error | training error | epochs | wall time |") == len(table)
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["meta"] == meta and payload["results"] == results
    assert {p: [e["job"] for e in es] for p, es in payload["parts"].items()} == {p: [e.job for e in es] for p, es in table.items()}
    pytest.importorskip("matplotlib")
    for name in ("error_vs_train_size.png", "error_vs_multiplier.png", "test_error_curves.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"![{name}]({name})" in text


def test_write_report_only_the_plots_of_the_parts_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _, table, results = synthetic(("h", "j"))
    text = write_report(tmp_path, table, results, {}).read_text()
    assert not list(tmp_path.glob("*.png")) and "## Plots" not in text


# -- progress ---------------------------------------------------------------------------------------------

LINE = re.compile(r"^\[(\d+)/(\d+)\] done   (\S+): test error (n/a|\d+\.\d\d%) in (\d+)s; elapsed (\d+)s, ETA (\d+)s$")


def test_progress_lines_and_eta_from_run_wall_times() -> None:
    lines: list[str] = []
    p = Progress(total=5, workers=2, log=lines.append)
    p.started("a")
    assert lines[-1] == "[0/5] start  a"
    # queued for 100 s, but the run itself took 10 s: the ETA uses the run's own wall time
    p.finished("a", {"test_error": 0.0123, "wall_seconds": 10.0}, 100.0)
    m = LINE.match(lines[-1])
    assert m and m.group(1, 2, 3, 4, 5) == ("1", "5", "a", "1.23%", "10")
    assert m.group(7) == "20"  # 4 runs of 10 s left on 2 workers
    p.finished("b", {"test_error": None, "wall_seconds": 30.0}, 31.0)
    m = LINE.match(lines[-1])
    assert m.group(4) == "n/a" and m.group(7) == "30"  # 3 runs of 20 s on 2 workers
    p.finished("c", {"test_error": 0.5}, 20.0)  # no wall_seconds: the measured time
    assert LINE.match(lines[-1]).group(7) == "20"  # 2 runs of 20 s on 2 workers
    p.finished("d", {"test_error": 0.5, "wall_seconds": 20.0}, 20.0)
    assert LINE.match(lines[-1]).group(7) == "20"  # the last run uses one worker only
    p.finished("e", {"test_error": 0.5, "wall_seconds": 20.0}, 20.0)
    assert LINE.match(lines[-1]).group(1, 7) == ("5", "0")


def test_progress_eta_with_more_workers_than_runs() -> None:
    p = Progress(total=3, workers=8, log=lambda s: None)
    assert p.eta() == 0.0  # nothing finished: nothing to estimate from
    p.finished("a", {"wall_seconds": 12.0}, 50.0)
    assert p.eta() == pytest.approx(12.0)


def test_progress_eta_from_estimated_costs() -> None:
    """With costs, the ETA is seconds-per-cost so far times the cost left (long runs first stay right)."""
    costs = {"big": 10.0, "mid": 4.0, "s1": 1.0, "s2": 1.0}
    p = Progress(total=4, workers=2, log=lambda s: None, costs=costs)
    p.finished("big", {"wall_seconds": 100.0}, 100.0)  # 10 s per unit of cost
    assert p.eta() == pytest.approx((4 + 1 + 1) * 10 / 2)
    p.finished("mid", {"wall_seconds": 40.0}, 40.0)
    assert p.eta() == pytest.approx((1 + 1) * 10 / 2)
    p.finished("s1", {"wall_seconds": 10.0}, 10.0)
    assert p.eta() == pytest.approx(1 * 10 / 1)  # the last run has one worker


def test_a_resumed_run_says_so_in_its_wall_time() -> None:
    from cnnkit.experiment.report import _wall

    assert _wall({"wall_seconds": 31.6}) == "32 s"
    assert _wall({"wall_seconds": 31.6, "resumed_after_epoch": 5}) == "32 s (resumed after epoch 5)"
