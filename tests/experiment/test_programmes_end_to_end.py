"""``cnnkit experiment`` end to end for the exercise 15.1-15.5 programmes, shrunken (at most 100 training
examples, one or two epochs, 100 test images): the runs, their results, the report with its computed
commentary and plots, resuming, and ex15.5b averaging the seven seeds that ex15.6(i) left in its directory.
Needs the real MNIST / Fashion-MNIST files ($CNNKIT_DATA) and skips without them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.experiment import PROGRAMMES
from tests.data import real_data_dir

MAX_TRAIN, TEST_LIMIT = 100, 100
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(name: str, out: Path, *extra: str, epochs: int = 1) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "cnnkit.cli", "experiment", name, "--out", str(out), "--data-dir", str(real_data_dir()),
            "--max-train", str(MAX_TRAIN), "--test-limit", str(TEST_LIMIT), "--epochs", str(epochs),
            "--workers", "1", "--threads", "1", *extra]
    proc = subprocess.run(args, env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def finished(name: str, out: Path, epochs: int = 1) -> tuple[str, dict]:
    """The report's text and the results file of a finished programme, after the checks every programme passes."""
    prog = PROGRAMMES[name]
    jobs, _table = prog.plan(prog.parts, epochs, MAX_TRAIN, TEST_LIMIT)
    text = (out / prog.report_name).read_text()
    payload = json.loads((out / prog.results_name).read_text())
    assert set(payload["results"]) == set(jobs)
    for key, r in payload["results"].items():
        assert r["config"] == jobs[key].config.to_dict() and r["epochs"] == epochs
        assert (out / "runs" / key / "model.npz").is_file()
        assert r["test_error"] * TEST_LIMIT == pytest.approx(round(r["test_error"] * TEST_LIMIT))
    assert "## Configuration" in text and "Shared by every run:" in text
    assert f"- max_train (shrunken run): {MAX_TRAIN}" in text
    for plot in re.findall(r"!\[([^\]]+)\]\(\1\)", text):
        assert (out / plot).read_bytes().startswith(PNG_MAGIC), plot
    return text, payload


def test_ex15_2_4a(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    proc = run("ex15.2-4a", out)
    assert "ex15.2-4a parts grad,depth: 8 runs, 0 already finished, 8 to do" in proc.stdout
    text, payload = finished("ex15.2-4a", out)
    grad = [r for r in payload["results"].values() if r["config"]["grad_norms"] == "0,1,10,49"]
    assert len(grad) == 2 and all(len(r["grad_norms"]["layers"]) == 20 and r["grad_norms"]["steps"][0]["step"] == 0 for r in grad)
    assert len([line for line in text.splitlines() if re.match(r"\| \d+ \| [\d.]+weight \|", line)]) == 20
    sig = next(r for r in grad if "sigmoid" in r["config"]["model"])["grad_norms"]["steps"][0]["norms"]
    assert sig[0] < 1e-4 * sig[-1]  # vanishing: 20 sigmoid layers
    assert re.search(r"no BN, sigmoid, step 0 \(at initialisation\): the first layer receives a gradient [\d.e+]+ times smaller", text)
    for params, depth in (("75,002", 8), ("269,434", 20), ("852,730", 56)):
        assert f"| plain-{depth} | {depth} | {params} |" in text and f"| residual-{depth} | {depth} | {params} |" in text
    assert re.search(r"^- plain: training error .* at 8 layers, .* at 20 layers, .* at 56 layers: ", text, re.M)
    assert "ex15.2-4a-grad_norms.png" in text and "ex15.2-4a-depth.png" in text


def test_ex15_4c_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    run("ex15.4c", out)
    text, payload = finished("ex15.4c", out)
    assert "The GAP head has 650 parameters against the FC head's 805,642" in text
    assert re.search(r"^- Test error: GAP [\d.]+%, FC [\d.]+%", text, re.M)
    again = run("ex15.4c", out)
    assert "2 runs, 2 already finished, 0 to do" in again.stdout
    assert json.loads((out / "results-ex15.4c.json").read_text())["results"] == payload["results"]


def test_ex15_5a(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    run("ex15.5a", out, epochs=2)
    text, _ = finished("ex15.5a", out, epochs=2)
    rows = [line for line in text.splitlines() if line.startswith(("| ReLU, lr", "| tanh, lr")) and line.endswith("% |")]
    assert len(rows) == 4  # the table (the configuration table lists the same runs)
    assert re.search(r"^- ReLU reaches 10% training error (after [\d.]+ epochs|not within 2 epochs)", text, re.M)


def test_ex15_1_5c(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    run("ex15.1-5c", out, epochs=2)
    text, payload = finished("ex15.1-5c", out, epochs=2)
    for r in payload["results"].values():
        assert len(r["val_error_per_epoch"]) == 2 and len(r["train_loss_per_epoch"]) == 2
    assert re.search(r"^- Best validation error: without dropout [\d.]+% \(epoch \d\), with dropout", text, re.M)


def test_ex15_5b_averages_the_seeds_ex15_6_left(tmp_path: Path) -> None:
    out = tmp_path / "ex15.6"
    run("ex15.6", out, "--parts", "i")
    proc = run("ex15.5b", out)
    assert "ex15.5b parts ensemble: 7 runs, 7 already finished, 0 to do" in proc.stdout  # reused, not retrained
    assert (out / "report.md").is_file()  # ex15.6's report is left alone
    text, payload = finished("ex15.5b", out)
    a = payload["analysis"]
    assert len(a["single"]) == len(a["ensemble"]) == 7 and a["n"] == TEST_LIMIT
    # the saved models, evaluated again, give the errors their runs reported
    runs = [payload["results"][e["job"]]["test_error"] for e in payload["parts"]["ensemble"]]
    assert a["single"] == pytest.approx(runs)
    assert re.search(r"^- Averaging all 7 networks' probabilities gives [\d.]+% test error; the single networks give", text, re.M)
    assert "ex15.5b-ensemble.png" in text
