"""``cnnkit report``: one self-contained HTML page (pictures as data URIs, nothing loaded from elsewhere) with
the summary table, the metrics and the configuration, every string from the run's files escaped."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import MismatchError
from cnnkit.inspect import report
from tests.inspect.conftest import run_command

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def _check_self_contained(page: str) -> list[bytes]:
    """The PNGs of the page; fails if anything could be loaded from elsewhere."""
    pngs = [base64.b64decode(m.group(0).split(",", 1)[1]) for m in DATA_URI.finditer(page)]
    rest = DATA_URI.sub("", page)
    assert "http" not in rest.lower() and 'src="/' not in rest and "src='" not in rest
    assert "<script" not in rest.lower() and "<link" not in rest.lower() and "url(" not in rest
    assert re.findall(r'src="([^"]*)"', rest) == [""] * rest.count('src="')  # every src was a data URI
    for png in pngs:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return pngs


def test_report_of_the_trained_run(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / "report.html"
    r = run_command(["report", trained.run, "--out", out, "--limit", "300", "--count", "8"])
    assert r.code == 0 and r.out.startswith(f"wrote {out}: HTML report of {trained.run}") and r.out.count("\n") == 1
    page = out.read_text(encoding="utf-8")
    pngs = _check_self_contained(page)
    assert len(pngs) == 4  # curves, filters, confusion matrix, worst errors
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert min(im.size) > 100
    # the summary table: the BASE network string's rows with their shapes and parameter counts
    assert '<div class="summary"><table>' in page
    for cell in ("conv5x5x1x20", "24x24x20", "520", "conv4x4x50x500", "400,500", "431,080"):
        assert f">{cell}<" in page or cell in page, cell
    records = [json.loads(line) for line in (trained.run / "metrics.jsonl").read_text().splitlines()]
    assert f"{records[-1]['test_accuracy']:.6g}" in page  # the final metrics
    assert "mean_image" in page and ">train_limit<" in page  # the configuration
    assert "mnist/test" in page and page.rstrip().endswith("</html>")


def test_report_escapes_and_draws_missing_curves(trained, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    shutil.copytree(trained.run, run, ignore=shutil.ignore_patterns("checkpoint.npz", "curves.png"))
    (run / "curves.png").write_bytes(b"<img src=x onerror=alert(1)>")  # not a PNG: drawn again, never embedded
    config = json.loads((run / "config.json").read_text())
    config["data"] = "<script>alert('x')</script> & http://example.org"
    (run / "config.json").write_text(json.dumps(config))
    with (run / "metrics.jsonl").open("a") as f:
        f.write("garbage line\n")
    page = report(run, tmp_path / "r.html", data=str(trained.folder))  # an image folder, as cnnkit eval takes it
    assert "<script>" not in page and "onerror" not in page and base64.b64encode(b"<img src").decode() not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; http://example.org" in page
    pngs = _check_self_contained(page.replace("http://example.org", ""))
    assert len(pngs) == 4  # the curves were drawn from metrics.jsonl


def test_report_without_data_says_so(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential

    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(3, 4, 3, rng=rng), ReLU(), Flatten(), Linear(4 * 4 * 4, 2, rng=rng))
    run = tmp_path / "run"
    run.mkdir()
    cnnkit.save(net, str(run / "model.npz"), input_shape=(6, 6, 3), classes=["<cat>", "dog"])
    page = report(run, tmp_path / "r.html")
    assert "no evaluation:" in page and "does not record its dataset" in page
    assert "&lt;cat&gt;" in page and "<cat>" not in page
    assert "no metrics.jsonl records" in page and "no config.json" in page
    assert len(_check_self_contained(page)) == 1  # the colour filters only
    assert "0 Conv2d" in page and "4x4x4" in page  # summary rows of a Python-built network


def test_report_command_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        run_command(["report", tmp_path / "missing", "--out", tmp_path / "r.html"])
    from cnnkit.nn import Linear

    net = Linear(2, 2, rng=np.random.default_rng(0))
    cnnkit.save(net, str(tmp_path / "m.npz"))
    with pytest.raises(MismatchError, match="not a run directory"):
        run_command(["report", tmp_path / "m.npz", "--out", tmp_path / "r.html"])
    assert not Path(tmp_path / "r.html").exists()
