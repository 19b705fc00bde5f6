"""The ``cnnkit`` command line: every command, its help, and its exit codes.

Exit codes: 0 success; 2 usage error (argparse, bad network string, unknown dataset name ...); 1 failure with
a one-line reason on stderr and no traceback (missing/corrupt model, missing data, missing image, a run
directory that already holds a run ...).

Most cases call ``cnnkit.cli.main(argv)`` in-process (fast); a few run ``python -m cnnkit.cli`` in a
subprocess to check the real exit status and that no traceback reaches the user. Tests that need the real
MNIST files find them through ``$CNNKIT_DATA`` (see tests/data/__init__.py) and skip without them. No test
touches the network: the download case replaces ``urllib.request.urlopen``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import build_parser, main
from tests.data import real_data_dir

TINY_NET = "conv5x5x1x4,pool2,conv5x5x4x8,pool2,conv4x4x8x10"
TINY_TRAIN = ["--model", TINY_NET, "--train-limit", "200", "--test-limit", "100", "--epochs", "1",
              "--batch-size", "50", "--no-progress"]
COMMANDS = ("train", "eval", "predict", "summary", "data", "bench", "experiment")


@dataclass
class Result:
    code: int
    out: str
    err: str


def _exit_code(exc: SystemExit) -> int:
    return 0 if exc.code is None else int(exc.code)


def cli(argv: Sequence[str]) -> Result:
    """Run ``cnnkit argv`` in this process; argparse's SystemExit becomes the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = _exit_code(exc)
    return Result(code, out.getvalue(), err.getvalue())


def cli_subprocess(argv: Sequence[str], timeout: float = 120) -> Result:
    """Run ``python -m cnnkit.cli argv`` in a fresh process: the real exit status and streams."""
    proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_usage_error(r: Result, *fragments: str) -> None:
    assert r.code == 2, (r.code, r.err)
    assert "usage:" in r.err and "error:" in r.err
    assert "Traceback" not in r.err
    for f in fragments:
        assert f in r.err, (f, r.err)


def assert_failure(r: Result, command: str, *fragments: str) -> None:
    """Exit 1 with exactly one line on stderr, ``cnnkit <command>: error: ...``, and no traceback."""
    assert r.code == 1, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith(f"cnnkit {command}: error: "), lines[0]
    assert "Traceback" not in r.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# -- top level and --help of every command ------------------------------------------------------

def test_top_level_help_lists_every_command() -> None:
    r = cli(["--help"])
    assert r.code == 0
    for command in COMMANDS:
        assert command in r.out
    assert "--version" in r.out


def test_version() -> None:
    r = cli(["--version"])
    assert r.code == 0
    assert r.out.strip() == f"cnnkit {cnnkit.__version__}"


def test_no_command_or_unknown_command_is_a_usage_error() -> None:
    assert_usage_error(cli([]))
    assert_usage_error(cli(["bogus"]), "invalid choice")


@pytest.mark.parametrize(
    "command, options",
    [
        ("train", ["--model", "--data", "--data-dir", "--train-limit", "--train-range", "--test-limit", "--epochs",
                   "--batch-size", "--lr", "--schedule", "--optimizer", "--out", "--resume", "--no-progress"]),
        ("eval", ["model_file", "--data", "--data-dir", "--split", "--batch-size", "--json"]),
        ("predict", ["model_file", "images", "--top", "--json"]),
        ("summary", ["model", "--input-shape"]),
        ("data", ["list", "verify", "download", "--data-dir"]),
        ("bench", ["--threads", "--rounds", "--min-time", "--no-torch", "--no-ort", "--layers", "--no-memory", "--ex156",
                   "--scaling", "--json", "--markdown"]),
        ("experiment", ["ex15.6", "--parts", "--out", "--executor", "--workers", "--threads", "--epochs",
                        "--max-train", "--test-limit"]),
    ],
)
def test_subcommand_help(command: str, options: list[str]) -> None:
    r = cli([command, "--help"])
    assert r.code == 0
    assert r.out.startswith(f"usage: cnnkit {command}")
    for opt in options:
        assert opt in r.out, (command, opt)


def test_one_subprocess_run_for_help_version_and_usage_errors() -> None:
    r = cli_subprocess(["--version"])
    assert r.code == 0 and r.out.strip() == f"cnnkit {cnnkit.__version__}"
    r = cli_subprocess(["train", "--epochs", "0"])
    assert r.code == 2 and "Traceback" not in r.err
    assert "argument --epochs: expected a positive integer, got '0'" in r.err


# -- train ----------------------------------------------------------------------------------------

@dataclass
class Run:
    out: Path
    data_dir: Path
    result: Result


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One tiny training run on real MNIST (about two seconds), shared by the train/eval/predict tests."""
    data_dir = real_data_dir()
    out = tmp_path_factory.mktemp("cli") / "run"
    r = cli(["train", *TINY_TRAIN, "--data-dir", data_dir, "--out", out])
    return Run(out, data_dir, r)


def test_train_tiny_run(trained_run: Run) -> None:
    r = trained_run.result
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "model.npz"):
        assert (trained_run.out / name).is_file(), name
    assert f"done: {trained_run.out}" in r.out
    assert re.search(r"test error \d+\.\d\d% \(top-5 \d+\.\d\d%\)", r.out)
    config = json.loads((trained_run.out / "config.json").read_text())
    assert config["epochs"] == 1 and config["train_limit"] == 200 and config["model"] == TINY_NET
    records = [json.loads(line) for line in (trained_run.out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert records and records[-1]["epoch"] == 1


def test_train_refuses_an_existing_run_without_resume(trained_run: Run) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.out.iterdir()}
    r = cli(["train", *TINY_TRAIN, "--data-dir", trained_run.data_dir, "--out", trained_run.out])
    assert_failure(r, "train", "already holds a run", "--resume")
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.out.iterdir()} == before  # nothing touched


def test_train_existing_run_in_a_subprocess(trained_run: Run) -> None:
    """The same refusal as a real process: exit status 1, one line on stderr, no traceback."""
    r = cli_subprocess(["train", *TINY_TRAIN, "--data-dir", trained_run.data_dir, "--out", trained_run.out])
    assert_failure(r, "train", "already holds a run")


def test_train_resume_of_a_finished_run(trained_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(trained_run.out, out)
    r = cli(["train", *TINY_TRAIN, "--data-dir", trained_run.data_dir, "--out", out, "--resume"])
    assert r.code == 0, r.err
    assert "resuming" in r.out and f"done: {out}" in r.out
    assert (out / "model.npz").is_file()
    # resuming with other settings is refused with a one-line reason
    r = cli(["train", *TINY_TRAIN, "--lr", "0.5", "--data-dir", trained_run.data_dir, "--out", out, "--resume"])
    assert_failure(r, "train", "--resume", "lr")


def test_train_network_string_that_does_not_fit_the_data(tmp_path: Path) -> None:
    data_dir = real_data_dir()
    r = cli(["train", "--model", "conv5x5x1x4,conv99x99x4x4", "--epochs", "1", "--train-limit", "10",
             "--no-progress", "--data-dir", data_dir, "--out", tmp_path / "run"])
    assert r.code == 2, r.err
    assert "token 2 'conv99x99x4x4'" in r.err and "Traceback" not in r.err


def test_train_missing_dataset_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(["train", *TINY_TRAIN, "--data-dir", empty, "--out", tmp_path / "run"])
    assert_failure(r, "train", "mnist: missing", str(empty))


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--epochs", "0"], ["argument --epochs", "positive integer"]),
        (["--epochs", "two"], ["argument --epochs"]),
        (["--batch-size", "-5"], ["argument --batch-size"]),
        (["--lr", "-1"], ["argument --lr", "positive number"]),
        (["--lr", "0"], ["argument --lr"]),
        (["--model", "conv5x5x1"], ["argument --model", "token 1 'conv5x5x1'"]),
        (["--model", "conv5x5x1x4,pool2,bogus7"], ["argument --model", "token 3 'bogus7'"]),
        (["--model", "nosuchmodel"], ["argument --model", "unknown model 'nosuchmodel'"]),
        (["--schedule", "bogus"], ["argument --schedule", "unknown kind 'bogus'"]),
        (["--train-limit", "10", "--train-range", "1-10"], ["not allowed with argument"]),
        (["--train-limit", "0"], ["argument --train-limit"]),
        (["--train-range", "10-1"], ["argument --train-range", "'10-1'"]),
        (["--train-range", "abc"], ["argument --train-range", "'abc'"]),
        (["--optimizer", "lbfgs"], ["argument --optimizer", "invalid choice"]),
        (["--dtype", "float16"], ["argument --dtype", "invalid choice"]),
        (["--bogus-option"], ["unrecognized arguments: --bogus-option"]),
    ],
)
def test_train_bad_arguments(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    r = cli(["train", *args, "--out", tmp_path / "never"])
    assert_usage_error(r, *fragments)
    assert not (tmp_path / "never").exists()


def test_train_range_accepts_ranges() -> None:
    parser = build_parser()
    assert parser.parse_args(["train", "--train-range", "10001-20000"]).train_range == "10001-20000"
    assert parser.parse_args(["train", "--train-range", "1-1"]).train_range == "1-1"


# -- eval -------------------------------------------------------------------------------------------

def test_eval_json_on_the_run_directory(trained_run: Run) -> None:
    assert trained_run.result.code == 0
    r = cli(["eval", trained_run.out, "--json", "--data-dir", trained_run.data_dir])
    assert r.code == 0, r.err
    metrics = json.loads(r.out)
    assert metrics["data"] == "mnist" and metrics["split"] == "test" and metrics["n"] == 10000
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert 0.0 <= metrics["top5_error"] <= metrics["top1_error"] <= 1.0


def test_eval_text_on_the_model_file(trained_run: Run) -> None:
    assert trained_run.result.code == 0
    r = cli(["eval", trained_run.out / "model.npz", "--data-dir", trained_run.data_dir, "--batch-size", "5000"])
    assert r.code == 0, r.err
    assert re.match(r"mnist/test: 10000 images {2}loss \d+\.\d{4} {2}accuracy \d+\.\d\d% "
                    r"{2}top-1 error \d+\.\d\d% {2}top-5 error \d+\.\d\d%$", r.out.strip()), r.out


def test_eval_missing_model_file(tmp_path: Path) -> None:
    r = cli(["eval", tmp_path / "nope.npz"])
    assert_failure(r, "eval", "no model file at", "nope.npz")
    r = cli(["eval", tmp_path])  # a directory without model.npz
    assert_failure(r, "eval", "no model file at", "model.npz")


@pytest.mark.parametrize("content", [b"this is not a model\n", bytes(range(256)) * 4, b"PK\x03\x04truncated zip"])
def test_eval_corrupt_model_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "x.npz"
    bad.write_bytes(content)
    r = cli(["eval", bad])
    assert_failure(r, "eval", str(bad))


def test_eval_npz_that_is_not_a_cnnkit_model(tmp_path: Path) -> None:
    bad = tmp_path / "other.npz"
    np.savez(bad, a=np.zeros(3))
    assert_failure(cli(["eval", bad]), "eval", "not a cnnkit model file")


def test_eval_corrupt_model_file_in_a_subprocess(tmp_path: Path) -> None:
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"\x00garbage\xff" * 50)
    r = cli_subprocess(["eval", bad])
    assert_failure(r, "eval", str(bad))


def test_eval_missing_dataset_directory(trained_run: Run, tmp_path: Path) -> None:
    assert trained_run.result.code == 0
    r = cli(["eval", trained_run.out, "--data-dir", tmp_path])
    assert_failure(r, "eval", "mnist: missing")


def test_eval_bad_arguments(tmp_path: Path) -> None:
    assert_usage_error(cli(["eval"]), "model_file")
    assert_usage_error(cli(["eval", tmp_path / "m.npz", "--split", "validation"]), "argument --split")
    assert_usage_error(cli(["eval", tmp_path / "m.npz", "--batch-size", "0"]), "argument --batch-size")


# -- predict ----------------------------------------------------------------------------------------

@pytest.fixture
def digit_files(tmp_path: Path) -> tuple[Path, Path]:
    """A 28x28 greyscale PNG and the same image as a .npy array."""
    Image = pytest.importorskip("PIL.Image")
    img = np.zeros((28, 28), dtype=np.uint8)
    img[4:24, 12:16] = 255  # a "1"
    png = tmp_path / "one.png"
    Image.fromarray(img, mode="L").save(png)
    npy = tmp_path / "one.npy"
    np.save(npy, img)
    return png, npy


def test_predict_png_and_npy(trained_run: Run, digit_files: tuple[Path, Path]) -> None:
    assert trained_run.result.code == 0
    png, npy = digit_files
    r = cli(["predict", trained_run.out, png, npy])
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert len(lines) == 2
    for line, f in zip(lines, (png, npy)):
        m = re.match(rf"{re.escape(str(f))}: (\d)  \(((?:\d \d+\.\d%(?:, )?){{3}})\)$", line)
        assert m, line
        assert line.split("(")[1].startswith(m.group(1) + " ")  # the best class comes first
    # the PNG and the .npy hold the same pixels: the same answer
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]


def test_predict_json(trained_run: Run, digit_files: tuple[Path, Path]) -> None:
    assert trained_run.result.code == 0
    png, npy = digit_files
    r = cli(["predict", trained_run.out / "model.npz", png, npy, "--json", "--top", "5"])
    assert r.code == 0, r.err
    results = json.loads(r.out)
    assert [x["file"] for x in results] == [str(png), str(npy)]
    for x in results:
        assert x["class"] in [str(d) for d in range(10)]
        classes = [c for c, _ in x["top"]]
        probs = [p for _, p in x["top"]]
        assert len(x["top"]) == 5 and classes[0] == x["class"] and len(set(classes)) == 5
        assert probs == sorted(probs, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-6


def test_predict_resizes_a_colour_png(trained_run: Run, tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    assert trained_run.result.code == 0
    png = tmp_path / "colour.png"
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8), mode="RGB").save(png)
    r = cli(["predict", trained_run.out, png, "--top", "1"])
    assert r.code == 0, r.err
    assert re.match(rf"{re.escape(str(png))}: \d  \(\d \d+\.\d%\)  \[resized from 40x40 to 28x28\]$", r.out.strip()), r.out


def test_predict_missing_and_bad_images(trained_run: Run, tmp_path: Path) -> None:
    assert trained_run.result.code == 0
    assert_failure(cli(["predict", trained_run.out, tmp_path / "missing.png"]), "predict", "missing.png")
    assert_failure(cli(["predict", trained_run.out, tmp_path / "missing.npy"]), "predict", "missing.npy")
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((5, 5), dtype=np.uint8))
    assert_failure(cli(["predict", trained_run.out, small]), "predict", "(5, 5, 1)", "(28, 28, 1)")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png")
    assert_failure(cli(["predict", trained_run.out, fake]), "predict", "fake.png")


def test_predict_missing_image_in_a_subprocess(trained_run: Run, tmp_path: Path) -> None:
    assert trained_run.result.code == 0
    r = cli_subprocess(["predict", trained_run.out, tmp_path / "missing.png"])
    assert_failure(r, "predict", "No such file or directory", "missing.png'")


def test_predict_missing_or_corrupt_model(tmp_path: Path) -> None:
    img = tmp_path / "x.npy"
    np.save(img, np.zeros((28, 28), dtype=np.uint8))
    assert_failure(cli(["predict", tmp_path / "nope.npz", img]), "predict", "no model file at")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert_failure(cli(["predict", bad, img]), "predict", str(bad))


def test_predict_bad_arguments(tmp_path: Path) -> None:
    assert_usage_error(cli(["predict", tmp_path / "m.npz"]), "images")
    assert_usage_error(cli(["predict", tmp_path / "m.npz", "x.png", "--top", "0"]), "argument --top")


# -- summary ----------------------------------------------------------------------------------------

def test_summary_vgg16() -> None:
    r = cli(["summary", "vgg16"])
    assert r.code == 0, r.err
    assert r.out.startswith("vgg16: ")
    assert "parameters: 138,357,544 (527.8 MiB)" in r.out
    header = next(line for line in r.out.splitlines() if line.lstrip().startswith("#"))
    assert header.split()[-2:] == ["rf", "rf(T15.2)"]
    # receptive fields: 3 after the first convolution, 212 at the last pooling layer (pool5)
    assert re.search(r"^\s+1 conv3x3x3x64p1\s+224x224x64\s+1,792\s.*\s3\s+212$", r.out, re.M)
    assert re.search(r"^\s+31 pool2\s+7x7x512\s+0\s.*\s212\s+2$", r.out, re.M)
    assert "fc1000" in r.out


def test_summary_base() -> None:
    r = cli(["summary", "base"])
    assert r.code == 0, r.err
    assert "parameters: 431,080" in r.out
    assert "input 28x28x1" in r.out
    assert re.search(r"^\s+7 conv1x1x500x10\s+1x1x10\s+5,010\s.*\s28\s+1$", r.out, re.M)


def test_summary_network_string_and_input_shape() -> None:
    r = cli(["summary", TINY_NET])
    assert r.code == 0, r.err
    assert "parameters: 2,202" in r.out
    assert re.search(r"^\s+5 conv4x4x8x10\s+1x1x10\s+1,290\s.*\s28\s+4$", r.out, re.M)
    r = cli(["summary", "conv3x3x3x8p1,pool2", "--input-shape", "32x32x3"])
    assert r.code == 0, r.err
    assert "16x16x8" in r.out and "parameters: 224" in r.out


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["base", "--input-shape", "28x28"], ["argument --input-shape", "HxWxC"]),
        (["base", "--input-shape", "0x28x1"], ["argument --input-shape"]),
        (["base", "--input-shape", "axbxc"], ["argument --input-shape"]),
        (["nosuchmodel"], ["unknown model 'nosuchmodel'"]),
        (["conv5x5x1"], ["token 1 'conv5x5x1'"]),
        (["base", "--input-shape", "8x8x1"], ["token 3 'conv5x5x20x50'", "does not fit"]),  # valid shape, too small
        (["conv3x3x3x8", "--input-shape", "32x32x1"], ["3 input channels"]),
        ([], ["model"]),
    ],
)
def test_summary_bad_arguments(args: list[str], fragments: list[str]) -> None:
    r = cli(["summary", *args])
    assert_usage_error(r, *fragments)
    assert r.out == ""  # nothing printed before the error


# -- data -------------------------------------------------------------------------------------------

def test_data_list(tmp_path: Path) -> None:
    root = real_data_dir()
    r = cli(["data", "list", "--data-dir", root])
    assert r.code == 0, r.err
    assert re.search(r"^mnist\s+4/4 files present", r.out, re.M)
    assert re.search(r"^fashion-mnist\s+\d/4 files present", r.out, re.M)
    assert re.search(r"^cifar10\s+\d/2 files present", r.out, re.M)
    assert r.out.strip().endswith(f"data directory: {root}")
    r = cli(["data", "list", "--data-dir", tmp_path])
    assert r.code == 0 and re.search(r"^mnist\s+0/4 files present", r.out, re.M)


def test_data_verify_real_mnist() -> None:
    root = real_data_dir()
    r = cli(["data", "verify", "mnist", "--data-dir", root])
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert len(lines) == 4 and all(re.match(r"mnist\s+\S+-ubyte\.gz\s+ok$", line) for line in lines), r.out


def test_data_verify_all_tolerates_missing_datasets(tmp_path: Path) -> None:
    r = cli(["data", "verify", "--data-dir", tmp_path])
    assert r.code == 0, r.err  # without a name only corrupt files fail
    assert "missing" in r.out


def test_data_verify_empty_directory(tmp_path: Path) -> None:
    r = cli(["data", "verify", "mnist", "--data-dir", tmp_path])
    assert_failure(r, "data", "4 dataset file(s) missing or corrupt", str(tmp_path))
    assert r.out.count("missing") == 4


def test_data_verify_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    r = cli(["data", "verify", "--data-dir", tmp_path])  # without a name a corrupt file still fails
    assert_failure(r, "data", "1 dataset file(s) corrupt")


def test_data_download_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing download (no network: urlopen is replaced, nothing leaves this machine) exits 1, one line."""
    calls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        calls.append(str(url))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    r = cli(["data", "download", "mnist", "--data-dir", tmp_path])
    assert_failure(r, "data", "could not download", "network disabled in tests")
    assert calls, "the download never tried a mirror"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no partial files left


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["bogus"], ["argument action", "invalid choice"]),
        ([], ["action"]),
        (["download"], ["data download needs a dataset name"]),
        (["verify", "nosuch"], ["unknown dataset 'nosuch'"]),
        (["download", "nosuch"], ["unknown dataset 'nosuch'"]),
        (["list", "--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_data_bad_arguments(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    assert_usage_error(cli(["data", *args, "--data-dir", tmp_path] if args else ["data"]), *fragments)


# -- bench ------------------------------------------------------------------------------------------

def test_bench_with_tiny_workloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole ``cnnkit bench`` path (arguments, child processes, table, JSON and Markdown files) on tiny work:
    the networks are swapped for two tiny ones (the children get them in their jobs), one round, cnnkit only."""
    from cnnkit.bench import runner
    from cnnkit.bench.workloads import Network

    tiny = (Network("tiny training, batch 2", "conv3x3x1x4,relu,pool2,fc10", (8, 8, 1), 2, True),
            Network("tiny inference, batch 2", "conv3x3x1x4,relu,pool2,fc10", (8, 8, 1), 2, False))
    monkeypatch.setattr(runner, "NETWORKS", tiny)
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    r = cli(["bench", "--no-torch", "--no-ort", "--no-memory", "--min-time", "0", "--threads", "1", "--rounds", "1",
             "--json", out, "--markdown", md])
    assert r.code == 0, r.err
    assert "SGEMM ceiling" in r.out and "tiny training, batch 2" in r.out and "not measured" in r.out
    results = json.loads(out.read_text())
    assert results["info"]["options"]["threads"] == [1] and results["info"]["engines"] == ["cnnkit"]
    (run,) = results["runs"]
    assert run["threads"] == 1 and run["sgemm_gflops"] > 0 and not run["failed"]
    assert [row["name"] for row in run["rows"]] == [n.name for n in tiny]
    assert all(row["cnnkit"] > 0 and row["torch_nchw"] is None and row["ratio"] is None for row in run["rows"])
    assert all(len(row["raw_seconds"]["cnnkit"]) == 1 for row in run["rows"])  # one round of per-call times
    assert "| tiny inference, batch 2 | img/s |" in md.read_text()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--threads", "0"], ["argument --threads"]),
        (["--threads", "-1"], ["argument --threads"]),
        (["--threads", "many"], ["argument --threads"]),
        (["--threads", "1,0"], ["argument --threads"]),
        (["--threads", "100000"], ["argument --threads", "at most"]),
        (["--rounds", "0"], ["argument --rounds"]),
        (["--ex156", "/nonexistent/ex156"], ["--ex156", "not a directory"]),
        (["--markdown", "/nonexistent/dir/b.md"], ["--markdown", "does not exist"]),
        (["--min-time", "fast"], ["argument --min-time"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
        (["extra"], ["unrecognized arguments: extra"]),
    ],
)
def test_bench_bad_arguments(args: list[str], fragments: list[str]) -> None:
    assert_usage_error(cli(["bench", *args]), *fragments)


# -- experiment (arguments only; the end-to-end runs are tested elsewhere) ---------------------------

@pytest.mark.parametrize(
    "args, fragments",
    [
        (["ex15.6", "--parts", "z"], ["--parts: unknown part(s) z"]),
        (["ex15.6", "--parts", "b,zz"], ["unknown part(s) zz"]),
        (["ex15.6", "--parts", ","], ["(none given)"]),
        (["ex99"], ["argument name", "invalid choice"]),
        ([], ["name"]),
        (["ex15.6", "--executor", "slurm"], ["argument --executor", "invalid choice"]),
        (["ex15.6", "--workers", "0"], ["argument --workers"]),
        (["ex15.6", "--epochs", "0"], ["argument --epochs"]),
        (["ex15.6", "--max-train", "-3"], ["argument --max-train"]),
    ],
)
def test_experiment_bad_arguments(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    out = tmp_path / "exp"
    r = cli(["experiment", *args, "--out", out] if args else ["experiment"])
    assert_usage_error(r, *fragments)
    assert not out.exists()  # nothing started
