"""The ``cnnkit`` command line: train, eval, predict, summary, data.

Exit codes: 0 success; 2 usage error (bad arguments, unknown model, malformed network string);
1 failure, with a one-line reason on stderr and no traceback (missing or corrupt data, diverged training ...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import cnnkit


class UsageError(Exception):
    """A mistake in the command's arguments: exit code 2."""


def _model_arg(value: str) -> str:
    from cnnkit.models import SpecError, resolve

    try:
        resolve(value)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _shape_arg(value: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in value.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 28x28x1, got {value!r}")
    return parts


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def _positive_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v


def _range_arg(value: str) -> str:
    """--train-range: its form is checked here (exit 2); its upper end against the dataset when it is loaded."""
    text = value.strip().lower()
    m = re.fullmatch(r"(\d+)\s*[-:]\s*(\d+)", text)
    ok = text == "all" or (text.isdigit() and int(text) >= 1) or (m is not None and 1 <= int(m.group(1)) <= int(m.group(2)))
    if not ok:
        raise argparse.ArgumentTypeError(f"expected a 1-based inclusive range A-B with 1 <= A <= B, e.g. 10001-20000, got {value!r}")
    return value


def _schedule_arg(value: str) -> str:
    from cnnkit.optim import schedule_from_spec

    try:
        schedule_from_spec(value, 1.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnkit", description="Train, evaluate, inspect and run CNNs built from their mathematics.")
    p.add_argument("--version", action="version", version=f"cnnkit {cnnkit.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data_dir_help = "dataset directory (default: $CNNKIT_DATA, else ~/.cache/cnnkit)"

    t = sub.add_parser("train", help="train a model; writes a run directory",
                       description="Train a model with mini-batch SGD (MatConvNet 1.0-beta20 MNIST defaults).")
    t.add_argument("--model", type=_model_arg, default="base",
                   help="model name (base, bn, sk, sk-0.2, base-dropout, sk-0.2-sigmoid, lenet5, cifar, vgg16, alexnet) "
                        "or a network string")
    t.add_argument("--data", default="mnist", help="dataset: mnist, fashion-mnist, cifar10 or an image folder path")
    t.add_argument("--data-dir", default=None, help=data_dir_help)
    t.add_argument("--download", action="store_true", help="download missing dataset files into the data directory")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--train-limit", type=_positive_int, default=None, help="train on the first N training examples")
    g.add_argument("--train-range", type=_range_arg, default=None, help="train on examples A-B (1-based, inclusive), e.g. 10001-20000")
    t.add_argument("--test-limit", type=_positive_int, default=None, help="evaluate on the first N test examples only (quick runs)")
    t.add_argument("--epochs", type=_positive_int, default=20)
    t.add_argument("--batch-size", type=_positive_int, default=100)
    t.add_argument("--lr", type=_positive_float, default=0.001, help="learning rate (default 0.001)")
    t.add_argument("--schedule", type=_schedule_arg, default="constant",
                   help="constant | step:EPOCHS:GAMMA | cosine:T_MAX[:ETA_MIN] | list:LR1,LR2,...")
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "rmsprop", "adagrad"])
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--preprocess", default="mean_image", choices=["mean_image", "scale", "per_channel", "none"])
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--out", default=None, help="run directory (default runs/<model>-<data>-seed<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="evaluate a trained model on a dataset split",
                       description="Evaluate a model file (or a run directory's model.npz).")
    e.add_argument("model_file", help="model.npz, or a run directory")
    e.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    e.add_argument("--data-dir", default=None, help=data_dir_help)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--batch-size", type=_positive_int, default=1000)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")

    pr = sub.add_parser("predict", help="classify image files", description="Classify image files (PNG/JPEG via Pillow, or .npy arrays).")
    pr.add_argument("model_file", help="model.npz, or a run directory")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--top", type=_positive_int, default=3, help="how many classes to show per image")
    pr.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs, memory, receptive fields",
                       description="Summarise a model or network string.")
    s.add_argument("model", type=_model_arg, help="model name or network string")
    s.add_argument("--input-shape", type=_shape_arg, default=None, help="HxWxC (default: the model's own)")

    b = sub.add_parser("bench", help="time cnnkit against PyTorch on the CPU",
                       description="Benchmark cnnkit and PyTorch side by side (same threads, same work).")
    b.add_argument("--threads", type=_positive_int, default=None, help="threads for both frameworks (default: all cores)")
    b.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (default 1.0)")
    b.add_argument("--no-torch", action="store_true", help="time cnnkit only")
    b.add_argument("--no-layers", action="store_true", help="skip the per-convolution GFLOP/s rows")
    b.add_argument("--memory", action="store_true", help="also measure VGG-16 224x224 batch-8 training peak memory (slow)")
    b.add_argument("--scaling", action="store_true", help="also measure the scaling curves (slow)")
    b.add_argument("--plot", default="bench_scaling.png", help="PNG for the scaling curves (with --scaling)")
    b.add_argument("--json", default=None, help="write the results as JSON to this file")

    x = sub.add_parser("experiment", help="run a programme of experiments (ex15.6) with a report",
                       description="Exercise 15.6 on MNIST: every part as parallel, resumable training runs, then report.md.")
    x.add_argument("name", choices=["ex15.6"], help="the programme")
    x.add_argument("--parts", default="b,c,d,e,f,g,h,i,j", help="comma-separated parts, e.g. b,c,e (default: all)")
    x.add_argument("--out", default="runs/ex15.6", help="experiment directory (rerun to resume)")
    x.add_argument("--data-dir", default=None, help=data_dir_help)
    x.add_argument("--executor", default="local", choices=["local", "ray"])
    x.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    x.add_argument("--workers", type=_positive_int, default=None, help="local worker processes (default: one per core)")
    x.add_argument("--threads", type=_positive_int, default=None, help="BLAS threads per run (default: cores / workers)")
    x.add_argument("--epochs", type=_positive_int, default=20)
    x.add_argument("--max-train", type=_positive_int, default=None, help="cap every training subset (shrunken runs)")
    x.add_argument("--test-limit", type=_positive_int, default=None, help="evaluate on the first N test images only")

    d = sub.add_parser("data", help="list, verify or download datasets", description="Dataset files: list, verify checksums, download.")
    d.add_argument("action", choices=["list", "verify", "download"])
    d.add_argument("name", nargs="?", default=None, help="dataset name (verify/download; default all for verify)")
    d.add_argument("--data-dir", default=None, help=data_dir_help)
    return p


# -- commands ---------------------------------------------------------------------------------

def cmd_summary(args: argparse.Namespace) -> int:
    from cnnkit.models import resolve
    from cnnkit.summary import summarize

    d = resolve(args.model, args.input_shape)
    table = summarize(d.spec, args.input_shape or d.input_shape).format()  # raises SpecError before printing
    print(f"{d.name}: {d.description}" if d.description else d.name)
    print(table)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cnnkit.train import TrainConfig
    from cnnkit.train.run import train

    cfg = TrainConfig(
        model=args.model, data=args.data, train_limit=args.train_limit, train_range=args.train_range, test_limit=args.test_limit,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
        preprocess=args.preprocess, dtype=args.dtype,
    )
    out = args.out or f"runs/{args.model}-{Path(args.data).name}-seed{args.seed}"
    # overflow on the way to a diverging loss is detected and reported by the trainer (TrainingDiverged)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        record = train(cfg, out, data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress, download=args.download)
    if "test_top1_error" in record:
        print(f"done: {out}  test error {100 * record['test_top1_error']:.2f}% (top-5 {100 * record['test_top5_error']:.2f}%)")
    else:
        print(f"done: {out}")
    return 0


def _model_path(p: str) -> Path:
    path = Path(p)
    if path.is_dir():
        path = path / "model.npz"
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnkit.train.run import evaluate_model_file

    metrics = evaluate_model_file(_model_path(args.model_file), args.data, args.split, args.data_dir, args.batch_size)
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        print(f"{metrics['data']}/{metrics['split']}: {metrics['n']} images  loss {metrics['loss']:.4f}  "
              f"top-1 error {100 * metrics['top1_error']:.2f}%  top-5 error {100 * metrics['top5_error']:.2f}%")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnkit.train.run import predict_files

    results = predict_files(_model_path(args.model_file), args.images, args.top)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            best = ", ".join(f"{c} {100 * p:.1f}%" for c, p in r["top"])
            print(f"{r['file']}: {r['class']}  ({best})")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cnnkit import data

    if args.action == "list":
        for spec, statuses in data.list_datasets(args.data_dir):
            present = sum(s.ok for s in statuses)
            print(f"{spec.name:<15} {present}/{len(statuses)} files present  {spec.description}")
        print(f"data directory: {data.resolve_data_dir(args.data_dir)}")
        return 0
    if args.name:
        try:
            data.get_spec(args.name)
        except ValueError as exc:  # an unknown dataset name is a usage error
            raise UsageError(str(exc)) from None
    if args.action == "verify":
        names = [args.name] if args.name else [s.name for s, _ in data.list_datasets(args.data_dir)]
        bad = 0
        for name in names:
            for st in data.verify(name, args.data_dir):
                print(f"{name:<15} {st.file.name:<32} {st.status}" + (f"  ({st.detail})" if st.detail else ""))
                # a named dataset must be complete; without a name only corrupt files (not missing ones) fail
                bad += st.status != "ok" if args.name else st.status not in ("ok", "missing")
        if bad:
            what = "missing or corrupt" if args.name else "corrupt"
            print(f"cnnkit data: error: {bad} dataset file(s) {what} in {data.resolve_data_dir(args.data_dir)}", file=sys.stderr)
            return 1
        return 0
    if not args.name:
        raise UsageError("data download needs a dataset name, e.g. cnnkit data download mnist")
    paths = data.download(args.name, args.data_dir)
    for path in paths:
        print(path)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from cnnkit.experiment import PARTS, run_ex15_6

    parts = tuple(p.strip().lower().strip("()") for p in args.parts.split(",") if p.strip())
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise UsageError(f"--parts: unknown part(s) {', '.join(bad) or '(none given)'}; expected some of {','.join(PARTS)}")
    run_ex15_6(args.out, parts, args.data_dir, args.executor, args.workers, args.threads, args.address,
               args.epochs, args.max_train, args.test_limit)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cnnkit.bench import BenchOptions, run

    run(BenchOptions(threads=args.threads, min_time=args.min_time, no_torch=args.no_torch, no_layers=args.no_layers,
                     memory=args.memory, scaling=args.scaling, plot=args.plot, json=args.json))
    return 0


COMMANDS = {"experiment": cmd_experiment, "bench": cmd_bench, "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict,
            "summary": cmd_summary, "data": cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    from cnnkit.models import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, SpecError) as exc:  # SpecError: a network string that does not fit its input
        parser.print_usage(sys.stderr)
        print(f"cnnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)  # KeyError: no repr quotes
        msg = " ".join(line.strip() for line in text.strip().splitlines()) or type(exc).__name__  # one line
        print(f"cnnkit {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
