"""The command-line forms of :mod:`cnnkit.inspect`: ``cnnkit show ...``, ``cnnkit report``, ``cnnkit filter``,
and the score map of ``cnnkit predict --score-map``.

:func:`add_commands` adds the commands to the ``cnnkit`` parser's sub-parsers and returns {command name:
function}; each function takes the parsed arguments, prints one line saying what it wrote and returns 0.
Errors are cnnkit's error types (and FileNotFoundError), which the command line prints as one line.

``RUN`` is a run directory (its ``model.npz``) or a model file, as for ``cnnkit eval``. Images are decoded in
the model's colour and resized (bilinear) to its input size, then preprocessed as its training data were,
as ``cnnkit predict`` does.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="cnnkit")
>>> commands = add_commands(parser.add_subparsers(dest="command"))
>>> sorted(commands)
['filter', 'report', 'show']
>>> args = parser.parse_args(["show", "receptive-field", "runs/a", "--layer", "3", "--unit", "2,5", "--out", "rf.png"])
>>> args.command, args.what, args.layer, args.unit
('show', 'receptive-field', '3', (2, 5))
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.cli_args import number as _number
from cnnkit.cli_args import positive_int as _positive_int
from cnnkit.errors import MismatchError

Command = Callable[[argparse.Namespace], int]


def _unit_arg(value: str) -> tuple[int, int]:
    parts = value.replace(" ", "").split(",")
    try:
        i, j = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a unit as ROW,COLUMN such as 3,4, got {value!r}") from None
    if i < 0 or j < 0:
        raise argparse.ArgumentTypeError(f"a unit's row and column are >= 0, got {value!r}")
    return i, j


def _kernel_arg(value: str) -> str:
    from cnnkit import kernels

    try:
        kernels.get(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_commands(sub: Any) -> dict[str, Command]:
    """Add ``show``, ``report`` and ``filter`` to ``sub`` (an ``add_subparsers()`` result); returns {name: function}.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="cnnkit")
    >>> commands = add_commands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["filter", "gaussian:7:1.5", "in.png", "-o", "out.png", "--relu"])
    >>> commands[args.command].__name__, args.kernel, args.relu, args.border
    ('cmd_filter', 'gaussian:7:1.5', True, 'replicate')
    """
    data_dir_help = "dataset directory (default: $CNNKIT_DATA, else ~/.cache/cnnkit)"
    show = sub.add_parser("show", help="pictures of a trained model: filters, features, saliency, receptive fields, errors",
                          description="Draw what a trained model has learned and computes, as PNG pictures.")
    what = show.add_subparsers(dest="what", metavar="WHAT")
    what.required = True

    def run_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", metavar="RUN", help="run directory or model file")

    def out_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", "-o", required=True, help="PNG file to write")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default=None, help="dataset or image folder (default: the one the model was trained on)")
        p.add_argument("--data-dir", default=None, help=data_dir_help)
        p.add_argument("--split", default="test", choices=["train", "test"], help="which split")

    p = what.add_parser("filters", help="the first convolution's filters (or another layer's)",
                        description="Draw a convolution's filters, each tile min-max scaled.")
    run_arg(p)
    p.add_argument("--layer", default=None,
                   help="a convolution's dotted name (0, 1, ... along a chain) or index from 0 (default: the first convolution)")
    out_arg(p)

    p = what.add_parser("features", help="every layer's feature maps for one image",
                        description="Draw every layer's output for one image file.")
    run_arg(p)
    p.add_argument("image", metavar="IMAGE", help="image file (PNG/JPEG via Pillow, or .npy)")
    out_arg(p)

    p = what.add_parser("saliency", help="the gradient of a class score with respect to the image",
                        description="Draw |d score / d image| and gradient x input for one image file.")
    run_arg(p)
    p.add_argument("image", metavar="IMAGE", help="image file (PNG/JPEG via Pillow, or .npy)")
    p.add_argument("--class", dest="class_", default=None, metavar="C",
                   help="class name or index (default: the predicted class)")
    out_arg(p)

    p = what.add_parser("receptive-field", help="the input region one unit of a layer sees",
                        description="Draw the receptive field of one unit of a layer, from the geometry and the gradient.")
    run_arg(p)
    p.add_argument("--layer", required=True,
                   help="the layer's dotted name (0, 1, ... along a chain; 3.body.0, 3.add inside blocks) or its index from 0")
    p.add_argument("--unit", type=_unit_arg, default=None, metavar="I,J", help="row,column of the unit (default: the centre)")
    p.add_argument("--image", default=None, help="draw on this image (default: a blank canvas)")
    out_arg(p)

    p = what.add_parser("confusion", help="the confusion matrix on a dataset split",
                        description="Draw the confusion matrix of a model on a dataset split (as cnnkit eval evaluates it).")
    run_arg(p)
    data_args(p)
    out_arg(p)

    p = what.add_parser("errors", help="the test images the model gets most wrong",
                        description="Draw the images with the lowest probability of their true class.")
    run_arg(p)
    p.add_argument("--count", type=_positive_int, default=16, help="how many images")
    data_args(p)
    p.add_argument("--limit", type=_positive_int, default=None, help="look at the first N images of the split only")
    out_arg(p)

    r = sub.add_parser("report", help="one self-contained HTML page about a run",
                       description="Write an HTML report of a run: learning curves, filters, confusion matrix, worst errors, "
                                   "summary table, configuration and final metrics, pictures embedded.")
    r.add_argument("run", metavar="RUN", help="run directory")
    r.add_argument("--out", "-o", required=True, help="HTML file to write")
    data_args(r)
    r.add_argument("--limit", type=_positive_int, default=None, help="evaluate the first N images of the split only")
    r.add_argument("--count", type=_positive_int, default=24, help="worst errors to show")

    f = sub.add_parser("filter", help="apply a classic kernel (Sobel, Gaussian, ...) to an image",
                       description="Cross-correlate an image with a classic kernel and write the response as a PNG "
                                   "(scaled to 0-255; the scaling is printed and stored in the PNG's metadata).")
    f.add_argument("kernel", metavar="KERNEL", type=_kernel_arg,
                   help="sobel-x, sobel-y, prewitt-x, prewitt-y, laplacian, sharpen, box[:SIZE], gaussian[:SIZE[:SIGMA]]")
    f.add_argument("image", metavar="IMAGE", help="image file (PNG/JPEG via Pillow, or .npy)")
    f.add_argument("-o", "--out", required=True, help="PNG file to write")
    f.add_argument("--bias", type=_number, default=0.0, help="added to the response (before --relu)")
    f.add_argument("--relu", action="store_true", help="keep max(0, response + bias)")
    f.add_argument("--border", default="replicate", choices=["replicate", "zero"], help="how the image is padded")
    f.add_argument("--color", default="grayscale", choices=["grayscale", "rgb"], help="read the image in this colour")
    return {"show": cmd_show, "report": cmd_report, "filter": cmd_filter}


# -- helpers ----------------------------------------------------------------------------------------------
def _model(run: str) -> Any:
    from cnnkit.inspect.evaluation import load

    return load(run)


def _image_input(model: Any, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image (H, W, C) at the model's input size, its preprocessed form (H, W, C))."""
    from cnnkit.data.images import color_for, decode_image
    from cnnkit.inspect.evaluation import preprocess

    shape = model.input_shape
    if shape is None or len(shape) != 3:
        raise MismatchError("the model file does not record an image input shape (H, W, C), so image files cannot be fed to it")
    raw = decode_image(path, color_for(shape[2]), (shape[0], shape[1]))
    return raw, preprocess(model, raw[None])[0]


def _class_index(value: str | None, classes: list[str]) -> int | None:
    if value is None:
        return None
    if value in classes:
        return classes.index(value)
    try:
        k = int(value)
    except ValueError:
        k = -1
    if not 0 <= k < len(classes):
        raise MismatchError(f"--class {value!r} is neither a class name nor an index below {len(classes)}; "
                            f"the classes are {', '.join(classes[:20])}")
    return k


def _wrote(out: str, what: str, start: float) -> None:
    print(f"wrote {out}: {what} ({time.perf_counter() - start:.1f} s)")


# -- commands ---------------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    """``cnnkit show WHAT RUN ...``: one picture of a trained model (see :func:`add_commands`).

    Examples
    --------
    >>> import argparse, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.inspect._draw import pyplot
    >>> from cnnkit.nn import Conv2d, MaxPool2d, Sequential
    >>> _ = pyplot()  # needs matplotlib
    >>> net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0)), MaxPool2d(2))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "model.npz"), input_shape=(8, 8, 1))
    ...     cmd_show(argparse.Namespace(what="receptive-field", run=d, layer="1", unit=(0, 0), image=None,
    ...                                 out=str(Path(d) / "rf.png")))
    wrote .../rf.png: receptive field of layer 1 unit (0, 0): 4x4, rows 0-3, columns 0-3; gradient support agrees (... s)
    0
    """
    start = time.perf_counter()
    model = _model(args.run)
    net = model.network
    from cnnkit.inspect import evaluation, pictures, receptive
    from cnnkit.inspect.evaluation import class_names

    if args.what == "filters":
        pictures.filters(net, args.layer, out=args.out)
        name, conv, _ = pictures.conv_layer(net, args.layer)
        shape = "x".join(map(str, conv.params["weight"].shape))
        _wrote(args.out, f"filters of layer {name} (Conv2d, weight {shape})", start)
    elif args.what == "features":
        _, x = _image_input(model, args.image)
        maps = pictures.features(net, x, out=args.out)
        _wrote(args.out, f"feature maps of {len(maps)} layers for {args.image}", start)
    elif args.what == "saliency":
        _, x = _image_input(model, args.image)
        classes = class_names(model)
        s = pictures.saliency(net, x, _class_index(args.class_, classes), out=args.out, classes=classes)
        _wrote(args.out, f"saliency of class {classes[s.class_index]!r} for {args.image}", start)
    elif args.what == "receptive-field":
        if model.input_shape is None:
            raise MismatchError(f"{args.run} does not record its input shape, so the receptive field has nothing to be drawn on")
        raw = _image_input(model, args.image)[0] if args.image else None
        rf = receptive.receptive_field(net, model.input_shape, args.layer, args.unit, image=raw, out=args.out)
        t, b, l, r = rf.box
        unit = "" if rf.unit is None else f" unit {rf.unit}"
        check = "gradient support agrees" if rf.agrees else "gradient support differs"
        _wrote(args.out, f"receptive field of layer {rf.layer}{unit}: {rf.size[0]}x{rf.size[1]}, rows {t}-{b}, columns {l}-{r}; "
                         f"{check}", start)
    elif args.what == "confusion":
        m = evaluation.confusion(args.run, args.data, split=args.split, data_dir=args.data_dir, out=args.out)
        n = int(m.sum())
        _wrote(args.out, f"confusion matrix of {n} images, accuracy {100 * np.trace(m) / max(n, 1):.2f}%", start)
    elif args.what == "errors":
        e = evaluation.worst_errors(args.run, args.data, count=args.count, split=args.split, data_dir=args.data_dir,
                                    limit=args.limit, out=args.out)
        _wrote(args.out, f"the {len(e.indices)} images with the lowest probability of their true class", start)
    else:  # pragma: no cover - argparse allows only the choices above
        raise ValueError(f"unknown picture {args.what!r}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``cnnkit report RUN --out FILE.html``: the run's self-contained HTML report (:func:`cnnkit.inspect.report`).

    Examples
    --------
    >>> import argparse, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.inspect._draw import pyplot
    >>> from cnnkit.nn import Conv2d, Flatten, Sequential
    >>> _ = pyplot()  # needs matplotlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(Sequential(Conv2d(1, 2, 4, rng=np.random.default_rng(0)), Flatten()), str(Path(d) / "model.npz"),
    ...                 input_shape=(4, 4, 1))
    ...     cmd_report(argparse.Namespace(run=d, out=str(Path(d) / "r.html"), data=None, data_dir=None, split="test",
    ...                                   limit=None, count=8))
    wrote .../r.html: HTML report of ... (... KiB, ... s)
    0
    """
    from cnnkit.inspect.evaluation import model_path
    from cnnkit.inspect.report import report

    start = time.perf_counter()
    run = Path(args.run)
    if not run.is_dir():
        model_path(run)  # FileNotFoundError for a missing path
        raise MismatchError(f"{run} is not a run directory; a report needs the directory (its model.npz, metrics.jsonl, config.json)")
    page = report(run, args.out, data=args.data, data_dir=args.data_dir, split=args.split, limit=args.limit, count=args.count)
    print(f"wrote {args.out}: HTML report of {run} ({len(page.encode()) / 1024:.0f} KiB, {time.perf_counter() - start:.1f} s)")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    """``cnnkit filter KERNEL IMAGE -o OUT.png``: the image filtered by a classic kernel, scaled to 0-255.

    Examples
    --------
    >>> import argparse, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     step = np.zeros((4, 6), np.uint8); step[:, 3:] = 200
    ...     np.save(Path(d) / "step.npy", step)
    ...     cmd_filter(argparse.Namespace(kernel="sobel-x", image=str(Path(d) / "step.npy"), out=str(Path(d) / "e.png"),
    ...                                   bias=0.0, relu=False, border="replicate", color="grayscale"))
    wrote .../e.png: sobel-x response 4x6, pixel = round((value - lo) * 255 / (hi - lo)) with lo = 0, hi = 800 (0 is black)
    0
    """
    from cnnkit.inspect.filtering import filter_image

    f = filter_image(args.kernel, args.image, args.out, bias=args.bias, relu=args.relu, border=args.border, color=args.color)
    shape = "x".join(map(str, f.response.shape[:2]))
    print(f"wrote {args.out}: {args.kernel} response {shape}, {f.scaling}")
    return 0


def score_map_command(args: argparse.Namespace) -> int:
    """``cnnkit predict RUN IMAGE... --score-map [--json]``: the model slid over each (larger) image.

    Reads ``args.model_file``, ``args.images``, ``args.json`` and, when present, ``args.out`` (a PNG picture; with
    several images ``-1``, ``-2``, ... are added to its name); ``--size`` is refused (each image is read at its own
    size) and ``--color`` must be the model's, as for ``cnnkit predict``. Prints the grid of predicted classes, or with
    ``--json`` one JSON object per image (:meth:`cnnkit.inspect.ScoreMap.to_json` plus the file).

    Examples
    --------
    >>> import argparse, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.models import build
    >>> net = build("conv3x3x1x2,pool2,fc2", (6, 6, 1), np.random.default_rng(0))
    >>> net[3].params["bias"][...] = [0, 100]  # always "yes"
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "model.npz"), input_shape=(6, 6, 1), classes=["no", "yes"])
    ...     np.save(Path(d) / "big.npy", np.zeros((8, 10), np.uint8))
    ...     score_map_command(argparse.Namespace(model_file=d, images=[str(Path(d) / "big.npy")], json=False))
    score map of .../big.npy: 2x3 windows of 6x6 at stride 2, best class per window:
      yes yes yes
      yes yes yes
    0
    """
    from cnnkit.data.images import color_for
    from cnnkit.inspect.evaluation import load
    from cnnkit.inspect.scoremap import draw_score_map, score_maps

    model = load(args.model_file)
    shape = model.input_shape
    if getattr(args, "size", None):
        raise MismatchError(f"--size {args.size}: a score map reads each image at its own size (it slides the model over it)")
    color = getattr(args, "color", None)
    if color is not None and shape is not None and color != color_for(shape[-1]):
        raise MismatchError(f"the model takes {color_for(shape[-1])} images; --color {color} would not fit it")
    out = getattr(args, "out", None)
    results = []
    for i, image in enumerate(args.images):
        m = score_maps(model, image)
        if out:
            target = Path(out) if len(args.images) == 1 else Path(out).with_name(f"{Path(out).stem}-{i + 1}{Path(out).suffix}")
            draw_score_map(m, target)
        if args.json:
            results.append({"file": str(image), **m.to_json()})
            continue
        h, w = m.predicted.shape
        names = [[m.classes[int(c)] for c in row] for row in m.predicted]
        width = max(len(n) for row in names for n in row)
        print(f"score map of {image}: {h}x{w} windows of {m.window[0]}x{m.window[1]} at stride {m.stride}, best class per window:")
        for row in names:
            print("  " + " ".join(n.rjust(width) for n in row))
        if out:
            print(f"wrote {target}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
