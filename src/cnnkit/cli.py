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
from cnnkit.cli_args import number as _number
from cnnkit.cli_args import positive_int as _positive_int


class UsageError(Exception):
    """A mistake in the command's arguments: exit code 2."""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it has none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text or "default" in text or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


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


def _positive_float(value: str) -> float:
    v = _number(value)
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


def _epochs_arg(value: str) -> int:
    from cnnkit.limits import LIMITS

    v = _positive_int(value)
    if v > LIMITS.epochs:
        raise argparse.ArgumentTypeError(f"at most {LIMITS.epochs:,} epochs (CNNKIT_MAX_EPOCHS), got {value[:40]!r}")
    return v


def _nonnegative_float(value: str) -> float:
    v = _number(value)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return v


def _fraction_arg(value: str) -> float:
    v = _number(value)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}")
    return v


def _open_fraction_arg(value: str) -> float:
    v = _number(value)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1, e.g. 0.1, got {value!r}")
    return v


def _size_arg(value: str) -> str:
    from cnnkit.data.images import parse_size

    try:
        h, w = parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{h}x{w}"


def _augment_arg(value: str) -> str:
    from cnnkit.data import augment

    try:
        augment.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _subparser_class() -> type[argparse.ArgumentParser]:
    class Parser(argparse.ArgumentParser):
        def __init__(self, *a: object, **kw: object) -> None:
            kw.setdefault("formatter_class", _Help)
            super().__init__(*a, **kw)  # type: ignore[arg-type]

    return Parser


def _schedule_arg(value: str) -> str:
    from cnnkit.optim import schedule_from_spec

    try:
        schedule_from_spec(value, 1.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnkit", description="Train, evaluate, inspect and run CNNs built from their mathematics.",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"cnnkit {cnnkit.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_subparser_class())
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
    t.add_argument("--epochs", type=_epochs_arg, default=20, help="epochs to train (with --resume: extends a finished run to this many)")
    t.add_argument("--batch-size", type=_positive_int, default=100, help="mini-batch size")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the model's own: 0.001 for the book's networks and network strings "
                        "(MatConvNet), 0.01 for lenet5, cifar, vgg16 and alexnet)")
    t.add_argument("--schedule", type=_schedule_arg, default="constant",
                   help="constant | step:EPOCHS:GAMMA | cosine:T_MAX[:ETA_MIN] | list:LR1,LR2,...")
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "rmsprop", "adagrad"], help="optimiser")
    t.add_argument("--momentum", type=_fraction_arg, default=0.9, help="momentum (SGD, RMSProp)")
    t.add_argument("--weight-decay", type=_nonnegative_float, default=5e-4, help="L2 weight decay")
    t.add_argument("--seed", type=int, default=0, help="seed of every random draw (initialisation, order, dropout, augmentation)")
    t.add_argument("--preprocess", default=None, choices=["mean_image", "scale", "per_channel", "none"],
                   help="input preprocessing (default: the model's own: mean_image for the book's networks and network "
                        "strings, scale for lenet5, per_channel for cifar, vgg16 and alexnet)")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter and activation dtype")
    t.add_argument("--val-split", type=_open_fraction_arg, default=None,
                   help="hold out this fraction of the training examples as validation data (val_* in metrics.jsonl)")
    t.add_argument("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
                   help="stop when the validation loss has not improved for PATIENCE epochs (needs --val-split)")
    t.add_argument("--keep-best", action="store_true",
                   help="also write best.npz, the model of the epoch with the lowest validation loss (needs --val-split)")
    t.add_argument("--init-from", default=None, metavar="MODEL",
                   help="start from the weights of this model file or run directory (fine-tuning)")
    t.add_argument("--color", default=None, choices=["grayscale", "rgb"],
                   help="image folders: read images as grayscale or rgb (default: what the model takes)")
    t.add_argument("--size", default=None, type=_size_arg, metavar="HxW",
                   help="image folders: resize images (bilinear) to HxW (default: a named model's input size; "
                        "a network string needs images of one size)")
    t.add_argument("--augment", default=None, type=_augment_arg,
                   help="training augmentation, e.g. crop:4,flip or shift:2 (random crop after padding, horizontal flip, "
                        "random shift; drawn from --seed and the epoch)")
    t.add_argument("--out", default=None, help="run directory (default: runs/<model>-<data>-seed<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")
    t.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                   help="where the arrays live: cpu (NumPy) or gpu (CuPy, CUDA; not yet verified on a GPU) (default: cpu)")
    from cnnkit.train.distributed import add_distributed_flag

    add_distributed_flag(t)

    e = sub.add_parser("eval", help="evaluate a trained model on a dataset split",
                       description="Evaluate a model file (or a run directory's model.npz).")
    e.add_argument("model_file", help="model.npz, or a run directory")
    e.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    e.add_argument("--data-dir", default=None, help=data_dir_help)
    e.add_argument("--split", default="test", choices=["train", "test"], help="which split")
    e.add_argument("--batch-size", type=_positive_int, default=1000, help="examples per evaluation batch")
    e.add_argument("--color", default=None, choices=["grayscale", "rgb"], help="image folders: colour (default: what the model takes)")
    e.add_argument("--size", default=None, type=_size_arg, metavar="HxW",
                   help="image folders: resize to HxW (default: the model's input size)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                   help="where the arrays live: cpu (NumPy) or gpu (CuPy, CUDA; not yet verified on a GPU) (default: cpu)")

    pr = sub.add_parser("predict", help="classify image files", description="Classify image files (PNG/JPEG via Pillow, or .npy arrays).")
    pr.add_argument("model_file", help="model.npz, or a run directory")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--top", type=_positive_int, default=3, help="how many classes to show per image")
    pr.add_argument("--color", default=None, choices=["grayscale", "rgb"],
                    help="colour the images are read in; must be what the model takes (default: that)")
    pr.add_argument("--size", default=None, type=_size_arg, metavar="HxW",
                    help="size the images are resized to (bilinear, as in training); must be the model's input size (default: that)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--score-map", action="store_true",
                    help="slide the network (fully connected layers as convolutions) over an image larger than its input: "
                         "a map of class scores at the network's stride")
    pr.add_argument("--out", default=None, help="with --score-map: a PNG of the class map and per-class heat maps")
    pr.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                    help="where the arrays live: cpu (NumPy) or gpu (CuPy, CUDA; not yet verified on a GPU) (default: cpu)")

    s = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs, memory, receptive fields",
                       description="Summarise a model name, a network string, a model file or a run directory.")
    s.add_argument("model", help="model name, network string, model.npz or a run directory")
    s.add_argument("--input-shape", type=_shape_arg, default=None, help="HxWxC (default: the model's own)")

    ex = sub.add_parser("export", help="write a model as ONNX (or as PyTorch weights)",
                        description="Write a model file (or a run directory's model) as an ONNX model for onnxruntime and other "
                                    "frameworks, with its preprocessing and class names; OUT ending in .safetensors writes the "
                                    "weights as a PyTorch state dict instead. Needs: pip install 'cnnkit[interop]'.")
    ex.add_argument("model_file", help="model.npz, or a run directory")
    ex.add_argument("out", help="OUT.onnx, or OUT.safetensors for a PyTorch state dict")
    ex.add_argument("--opset", type=_positive_int, default=None, help="ONNX opset to write (default: 17)")
    ex.add_argument("--no-preprocess", action="store_true",
                    help="leave the preprocessing out of the graph: it then takes preprocessed float32 NCHW input, "
                         "not uint8 pixels")

    def _thread_counts(value: str) -> tuple[int, ...]:
        """--threads: one count or several, comma-separated (each its own set of rows), at most 4x the cores."""
        import os

        counts = tuple(_positive_int(v.strip()) for v in value.split(","))
        top = 4 * (os.cpu_count() or 1)
        if max(counts) > top:
            raise argparse.ArgumentTypeError(f"at most {top} threads (4x this machine's cores), got {value!r}")
        return counts

    b = sub.add_parser("bench", help="time cnnkit against PyTorch and onnxruntime on the CPU",
                       description="Benchmark cnnkit against PyTorch (NCHW and channels_last) and onnxruntime: every "
                                   "measurement in its own process with the same thread count, in rounds that interleave "
                                   "the engines; medians over rounds, their spread, and the issue's targets.")
    b.add_argument("--threads", type=_thread_counts, default=None, metavar="N[,N...]",
                   help="thread counts, each its own set of rows, e.g. 1,2 (default: 1 and all cores)")
    b.add_argument("--rounds", type=_positive_int, default=3,
                   help="rounds per measurement, each a fresh process per engine, engines interleaved (default: 3)")
    b.add_argument("--min-time", type=_nonnegative_float, default=1.0,
                   help="seconds of timed calls per measurement and round (at least 0.2 for per-convolution rows) (default: 1)")
    b.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    b.add_argument("--no-ort", action="store_true", help="leave onnxruntime out")
    b.add_argument("--layers", action="store_true",
                   help="also time every convolution alone (forward, backward GFLOP/s); a call under 50 us is dropped")
    b.add_argument("--no-memory", action="store_true", help="skip VGG-16 224x224 batch-8 training peak memory")
    b.add_argument("--ex156", default=None, metavar="RESULTS_DIR",
                   help="a finished `cnnkit experiment ex15.6 --out RESULTS_DIR`: report its wall time as a row")
    b.add_argument("--scaling", action="store_true", help="also measure the scaling curves (slow)")
    b.add_argument("--plot", default="bench_scaling.png", help="PNG for the scaling curves (with --scaling)")
    b.add_argument("--json", default=None, help="write everything (all rounds' raw times, machine info) as JSON to this file")
    b.add_argument("--markdown", default=None, metavar="FILE", help="write the README-ready tables as Markdown to this file")
    b.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    b.add_argument("--no-layers", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts

    x = sub.add_parser("experiment", help="run a programme of experiments (exercises 15.1-15.6) with a report",
                       description="Exercises 15.1-15.6 as programmes of parallel, resumable training runs, then a report: "
                                   "ex15.6 (MNIST (b)-(j), report.md), ex15.2-4a (gradient norms; plain vs residual depth), "
                                   "ex15.4c (FC vs GAP head), ex15.5a (ReLU vs tanh speed), ex15.5b (ensemble of 15.6(i)'s "
                                   "seeds, in ex15.6's directory by default), ex15.1-5c (dropout's cost); the others write "
                                   "report-<name>.md.")
    x.add_argument("name", choices=["ex15.6", "ex15.2-4a", "ex15.4c", "ex15.5a", "ex15.5b", "ex15.1-5c"], help="the programme")
    x.add_argument("--parts", default=None,
                   help="comma-separated parts (default: all): ex15.6 b,c,d,e,f,g,h,i,j; ex15.2-4a grad,depth")
    x.add_argument("--out", default=None,
                   help="experiment directory, rerun to resume (default: runs/<name>; runs/ex15.6 for ex15.6 and ex15.5b)")
    x.add_argument("--data-dir", default=None, help=data_dir_help)
    x.add_argument("--executor", default="local", choices=["local", "ray"], help="where the runs go: local processes or a Ray cluster")
    x.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    x.add_argument("--workers", type=_positive_int, default=None, help="local worker processes (default: one per core)")
    x.add_argument("--threads", type=_positive_int, default=None, help="BLAS threads per run (default: cores / workers)")
    x.add_argument("--epochs", type=_epochs_arg, default=None,
                   help="epochs of every run (default: the programme's: 20 for ex15.6 and ex15.5b, 10 for ex15.2-4a and "
                        "ex15.4c, 15 for ex15.5a, 30 for ex15.1-5c)")
    x.add_argument("--max-train", type=_positive_int, default=None, help="cap every training subset (shrunken runs)")
    x.add_argument("--test-limit", type=_positive_int, default=None, help="evaluate on the first N test images only")
    x.add_argument("--no-matconvnet", action="store_true",
                   help="ex15.6, ex15.5b: keep the SGD momentum across epochs and use BN epsilon 1e-5 (cnnkit's own way) "
                        "instead of MatConvNet 1.0-beta20's momentum reset at every epoch and epsilon 1e-4")

    d = sub.add_parser("data", help="list, verify or download datasets", description="Dataset files: list, verify checksums, download.")
    d.add_argument("action", choices=["list", "verify", "download"])
    d.add_argument("name", nargs="?", default=None, help="dataset name (verify/download; default all for verify)")
    d.add_argument("--data-dir", default=None, help=data_dir_help)
    from cnnkit.inspect.cli import add_commands

    COMMANDS.update(add_commands(sub))
    return p


# -- commands ---------------------------------------------------------------------------------

def cmd_summary(args: argparse.Namespace) -> int:
    from cnnkit.models import resolve
    from cnnkit.summary import summarize, summary

    path = Path(args.model)
    try:
        is_file = path.is_dir() or path.suffix == ".npz" or path.is_file()
    except OSError:  # a network string longer than a file name can be
        is_file = False
    if is_file:
        from cnnkit.models.file import load_model

        if path.suffix.lower() == ".onnx":
            from cnnkit.onnx import load_model_file

            model_file = load_model_file(_model_path(args.model))
        else:
            model_file = load_model(_model_path(args.model))
        shape = args.input_shape or model_file.input_shape
        if shape is None:
            raise UsageError(f"{args.model} does not record its input shape; give --input-shape HxWxC")
        print(f"{path}: {model_file.meta.get('model', 'model file')}")
        spec = model_file.meta.get("spec")
        if isinstance(spec, str) and len(shape) == 3:  # built from a network string: one row per token
            print(summarize(spec, shape).format())
        else:
            print(summary(model_file.network, shape).format())
        return 0
    d = resolve(args.model, args.input_shape)
    table = summarize(d.spec, args.input_shape or d.input_shape).format()  # raises SpecError before printing
    print(f"{d.name}: {d.description}" if d.description else d.name)
    print(table)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cnnkit.train import TrainConfig
    from cnnkit.train.run import train

    if (args.early_stopping or args.keep_best) and args.val_split is None:
        flag = "--early-stopping" if args.early_stopping else "--keep-best"
        raise UsageError(f"{flag} watches the validation loss: give --val-split too (e.g. --val-split 0.1)")
    if args.out == "":
        raise UsageError("--out must name a directory")
    init_from = str(_model_path(args.init_from)) if args.init_from else None
    cfg = TrainConfig(
        model=args.model, data=args.data, train_limit=args.train_limit, train_range=args.train_range, test_limit=args.test_limit,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
        preprocess=args.preprocess, dtype=args.dtype, val_split=args.val_split, early_stopping=args.early_stopping,
        keep_best=args.keep_best, init_from=init_from, color=args.color, size=args.size, augment=args.augment,
    )
    out = args.out or f"runs/{args.model}-{Path(args.data).name}-seed{args.seed}"
    from cnnkit.train.distributed import communicator_from_args

    comm = communicator_from_args(args)  # None without --distributed
    # overflow on the way to a diverging loss is detected and reported by the trainer (TrainingDiverged)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        record = train(cfg, out, data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress, download=args.download,
                       distributed=comm)
    if comm is not None and comm.rank != 0:
        return 0  # rank 0 prints the summary line
    line = f"done: {out}"
    if "test_top1_error" in record:
        line += f"  epoch {record['epoch']}: test error {_errors(record, 'test_')}"
    if "best_epoch" in record:
        line += f"; best model (epoch {record['best_epoch']}, {out}/best.npz)"
        if "best_test_top1_error" in record:
            line += f": test error {_errors(record, 'best_test_')}"
    print(line)
    return 0


def _errors(record: dict, prefix: str) -> str:
    """'1.23%' or '1.23% (top-5 0.12%)' from a record's top-1 (and top-5, when there are over 5 classes) error."""
    text = f"{100 * record[prefix + 'top1_error']:.2f}%"
    if prefix + "top5_error" in record:
        text += f" (top-5 {100 * record[prefix + 'top5_error']:.2f}%)"
    return text


def _model_path(p: str) -> Path:
    """A model file, or a run directory's model.npz; FileNotFoundError naming what is missing."""
    path = Path(p)
    if path.is_dir():
        path = path / "model.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}" if not path.exists() else f"{path} is not a regular file")
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnkit.train.run import evaluate_model_file

    metrics = evaluate_model_file(_model_path(args.model_file), args.data, args.split, args.data_dir, args.batch_size,
                                  args.color, args.size, progress=not args.no_progress)
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        top5 = f"  top-5 error {100 * metrics['top5_error']:.2f}%" if "top5_error" in metrics else ""
        print(f"{metrics['data']}/{metrics['split']}: {metrics['n']} images  loss {metrics['loss']:.4f}  "
              f"accuracy {100 * metrics['accuracy']:.2f}%  top-1 error {100 * metrics['top1_error']:.2f}%{top5}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnkit.train.run import predict_files

    if args.score_map:
        from cnnkit.inspect.cli import score_map_command

        return score_map_command(args)

    results = predict_files(_model_path(args.model_file), args.images, args.top, color=args.color, size=args.size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            best = ", ".join(f"{c} {100 * p:.1f}%" for c, p in r["top"])
            note = ""
            if "resized_from" in r:
                (h, w), (mh, mw) = r["resized_from"], r["resized_to"]
                note = f"  [resized from {h}x{w} to {mh}x{mw}"
                if abs(h / w - mh / mw) > 0.1 * h / w:
                    note += "; its aspect ratio changed: for an image larger than the model's input, see predict --score-map"
                note += "]"
            print(f"{r['file']}: {r['class']}  ({best}){note}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnkit.models.file import load_model

    source = _model_path(args.model_file)
    out = Path(args.out)
    kind = out.suffix.lower()
    if kind not in (".onnx", ".safetensors"):
        raise UsageError(f"OUT must end in .onnx (an ONNX model) or .safetensors (PyTorch weights), got {args.out!r}")
    if kind == ".safetensors" and (args.opset is not None or args.no_preprocess):
        raise UsageError("--opset and --no-preprocess are for ONNX output; a .safetensors file holds the weights only")
    model_file = load_model(source)
    shape = model_file.input_shape
    if shape is None:
        raise UsageError(f"{source} does not record its input shape, which the export needs")
    if kind == ".safetensors":
        from cnnkit.interop.torch_weights import save_torch_state_dict

        save_torch_state_dict(model_file.network, out, input_shape=shape)
        print(f"{out}: PyTorch state dict of {source} (torch.nn module names, NCHW layouts)")
        return 0
    from cnnkit.onnx import export

    opset = args.opset or 17
    preprocess = None if args.no_preprocess else model_file.preprocess
    export(model_file.network, shape, out, preprocess=preprocess, classes=model_file.classes, opset=opset)
    c, h, w = (shape[2], shape[0], shape[1]) if len(shape) == 3 else (None, None, None)
    takes = f"(N, {c}, {h}, {w})" if c is not None else f"(N, {shape[0]})"
    takes += f" uint8 pixels ({preprocess['mode']} preprocessing inside)" if preprocess else " float32"
    print(f"{out}: ONNX opset {opset}; input 'input' {takes}; output 'output'")
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
    from cnnkit.experiment import PROGRAMMES, run_programme

    prog = PROGRAMMES[args.name]
    parts = prog.parts if args.parts is None else tuple(p.strip().lower().strip("()") for p in args.parts.split(",") if p.strip())
    bad = [p for p in parts if p not in prog.parts]
    if bad or not parts:
        raise UsageError(f"--parts: unknown part(s) {', '.join(bad) or '(none given)'} of {args.name}; "
                         f"expected some of {','.join(prog.parts)}")
    if args.no_matconvnet and "matconvnet" not in prog.options:
        raise UsageError(f"--no-matconvnet applies to ex15.6 and ex15.5b, not {args.name}")
    common = (args.name, args.out, parts, args.data_dir, args.executor, args.workers, args.threads, args.address, args.epochs,
              args.max_train, args.test_limit)
    if "matconvnet" in prog.options:
        run_programme(*common, matconvnet=not args.no_matconvnet)
    else:
        run_programme(*common)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cnnkit.bench import BenchOptions, run

    for flag, target in (("--json", args.json), ("--markdown", args.markdown), ("--plot", args.plot if args.scaling else None)):
        if target:
            parent = Path(target).resolve().parent
            if not parent.is_dir():
                raise UsageError(f"{flag} {target}: the directory {parent} does not exist")
    if args.ex156 is not None and not Path(args.ex156).is_dir():
        raise UsageError(f"--ex156 {args.ex156}: not a directory (expected a finished `cnnkit experiment ex15.6 --out DIR`)")
    if args.layers and args.no_layers:
        raise UsageError("--layers and --no-layers contradict each other")

    run(BenchOptions(threads=args.threads, rounds=args.rounds, min_time=args.min_time, no_torch=args.no_torch,
                     no_ort=args.no_ort, layers=args.layers, memory=not args.no_memory, scaling=args.scaling,
                     plot=args.plot, json=args.json, markdown=args.markdown, ex156=args.ex156))
    return 0


COMMANDS = {"experiment": cmd_experiment, "bench": cmd_bench, "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict,
            "summary": cmd_summary, "data": cmd_data, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    from cnnkit.errors import CnnkitError, SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", "cpu") == "gpu":  # before anything is built: every array is then CuPy's
            from cnnkit import backend

            backend.use("cupy")
        return COMMANDS[args.command](args)
    except (UsageError, SpecError) as exc:  # SpecError: a network string that does not fit its input
        parser.print_usage(sys.stderr)
        print(f"cnnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"cnnkit {args.command}: error: out of memory (use a smaller --batch-size, a smaller network, or a machine "
              f"with more memory)", file=sys.stderr)
        return 1
    except (CnnkitError, ValueError, OSError, RuntimeError, KeyError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)  # KeyError: no repr quotes
        msg = " ".join(line.strip() for line in text.strip().splitlines()) or type(exc).__name__  # one line
        if len(msg) > 1000:
            msg = msg[:997] + "..."
        print(f"cnnkit {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
