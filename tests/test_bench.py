"""The benchmark's formatting helpers (the timed runs themselves are exercised in tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.bench import Row, format_scaling_table, format_table, plot_scaling

CURVES = {
    "batch": [{"x": 1, "batch": 1, "cnnkit": 100.0, "torch": 200.0}, {"x": 4, "batch": 4, "cnnkit": 400.0, "torch": 300.0}],
    "multiplier": [{"x": 0.2, "batch": 100, "cnnkit": 5.0}],
    "image_size": [{"x": 32, "batch": 64, "cnnkit": 150.0, "torch": 300.0}],
}


def test_scaling_table_has_a_row_per_point_and_ratios() -> None:
    lines = format_scaling_table(CURVES).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2].endswith("| 100 | 200 | 0.50x |") and lines[3].endswith("| 400 | 300 | 1.33x |")
    assert lines[4].endswith("| 5.00 | - | - |")  # no PyTorch column: no ratio


def test_table_ratio_uses_the_faster_torch_layout() -> None:
    row = Row("BASE training step", "img/s", 5000.0, 4000.0, 6250.0)
    assert row.ratio == pytest.approx(0.8)
    assert "0.80x" in format_table([row])


def test_scaling_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "scaling.png"
    assert plot_scaling(CURVES, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_ratio_compares_with_the_leaner_torch_layout() -> None:
    row = Row("peak RSS", "MiB", 7800.0, 2400.0, 2350.0)
    assert row.torch_best == 2350.0 and row.ratio == pytest.approx(7800 / 2350)
