"""From a configuration to a trained model file (``cnnkit train``), and the model-file commands (``eval``, ``predict``).

The data side checks what a user's own data can get wrong before any training: a test folder's classes
are matched by name onto the training classes, a missing test split is an error unless a validation split
is asked for, and the network must give one output per class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.backend import to_numpy
from cnnkit.data.source import ArraySource, Source, SubsetSource
from cnnkit.data.subset import parse_subset
from cnnkit.errors import MismatchError, quote
from cnnkit.train.config import TrainConfig
from cnnkit.train.trainer import Trainer


@dataclass
class Data:
    """The training set (and the test set, if there is one) of a run, as sources of preprocessed batches.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import ArraySource
    >>> from cnnkit.train.run import Data
    >>> data = Data(ArraySource(np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 0, 1])), None, ("cat", "dog"), (2, 2, 1),
    ...             {"mode": "scale"})
    >>> len(data.train), data.test, data.classes, data.image_shape
    (4, None, ('cat', 'dog'), (2, 2, 1))
    """

    train: Source
    test: Source | None
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    preprocess: dict[str, Any]


def _folder_options(config: TrainConfig) -> tuple[str, tuple[int, int] | None]:
    """Colour and size for an image folder: the flags, else what the model takes."""
    from cnnkit.data.images import color_for, parse_size
    from cnnkit.models import model_input

    named_shape, channels = model_input(config.model)
    color = config.color or (color_for(channels) if channels in (1, 3) else "rgb")
    size = parse_size(config.size) if config.size else (named_shape[:2] if named_shape else None)
    return color, size


def _map_classes(test: Any, train_classes: Sequence[str], where: str, against: str = "the training data") -> Any:
    """``test`` with its labels renumbered by class name onto ``train_classes`` (a test split may hold a subset)."""
    from cnnkit.data import Dataset

    unknown = [c for c in test.classes if c not in train_classes]
    if unknown:
        raise MismatchError(
            f"{where} has classes {against} does not know: {unknown[:10]} (its classes: {list(train_classes)[:10]})"
        )
    mapping = np.array([list(train_classes).index(c) for c in test.classes], dtype=np.int64)
    return Dataset(test.images, mapping[test.labels], tuple(train_classes), test.name)


def load_data(config: TrainConfig, data_dir: str | None, download: bool = False, need_test: bool = True) -> Data:
    """The run's data: a registered dataset (mnist, fashion-mnist, cifar10) or an image folder.

    A folder with ``train/`` and ``test/`` sub-folders gives both splits (test classes matched by name);
    a folder without ``test/`` has no test split, which is an error unless ``need_test`` is False (a
    validation split was asked for).

    Examples
    --------
    An image folder with ``train/`` and ``test/`` (PNGs written with Pillow, the ``images`` extra):

    >>> import itertools, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cnnkit.train import TrainConfig
    >>> from cnnkit.train.run import load_data
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for split, cls, i in itertools.product(("train", "test"), ("dark", "light"), range(3)):
    ...         (Path(d) / split / cls).mkdir(parents=True, exist_ok=True)
    ...         Image.fromarray(np.full((4, 4), 40 if cls == "dark" else 200, np.uint8)).save(Path(d) / split / cls / f"{i}.png")
    ...     data = load_data(TrainConfig(model="fc2", data=d, preprocess="scale", color="grayscale"), None)
    ...     x, y = data.train.take(np.arange(6))
    >>> data.classes, data.image_shape, len(data.train), len(data.test), x.dtype, float(x.max()), y
    (('dark', 'light'), (4, 4, 1), 6, 6, dtype('float32'), 0.78431..., array([0, 0, 0, 1, 1, 1]))
    """
    from cnnkit import data as cdata
    from cnnkit.data.augment import parse as parse_augment

    path = Path(config.data)
    if path.is_dir():
        return _load_folder(config, path, need_test)
    else:
        train_set = cdata.load_dataset(config.data, "train", data_dir, download=download)
        test_set = cdata.load_dataset(config.data, "test", data_dir, download=download)
    # statistics come from the whole training split, also when a subset is trained on (MatConvNet: the mean of all
    # 60,000 MNIST training images); never from test images
    pre = cdata.Preprocessor(config.preprocess or "scale").fit(train_set.images)
    subset = config.train_range if config.train_range else config.train_limit
    train_set = train_set.subset(cdata.parse_subset(subset, len(train_set)))
    if test_set is not None and config.test_limit:
        test_set = test_set.subset(slice(0, config.test_limit))
    dtype = np.dtype(config.dtype)

    def transform(images: np.ndarray) -> Any:
        return pre.transform(images, dtype=dtype)

    augment = parse_augment(config.augment) if config.augment else None
    train = ArraySource(train_set.images, train_set.labels, train_set.classes, transform, augment)
    test = ArraySource(test_set.images, test_set.labels, test_set.classes, transform) if test_set is not None else None
    return Data(train, test, tuple(train_set.classes), train_set.image_shape, pre.to_dict())


def _load_folder(config: TrainConfig, path: Path, need_test: bool) -> Data:
    """An image folder (``path/train`` and ``path/test`` when present), decoded lazily batch by batch."""
    from cnnkit.data import Preprocessor
    from cnnkit.data.augment import parse as parse_augment
    from cnnkit.data.folder import ImageFolder, MixedSizesError

    color, size = _folder_options(config)
    train_root = path / "train" if (path / "train").is_dir() else path
    test_root = path / "test" if (path / "test").is_dir() else None
    if test_root is None and need_test:
        raise MismatchError(
            f"{path} has no test/ sub-folder, so there is nothing to measure test error on (the training images "
            f"would be their own test); use --val-split 0.1 to hold out part of them, or put a test/ folder next to train/"
        )
    try:
        train = ImageFolder(train_root, color=color, size=size)
        test = None
        if test_root is not None:
            unknown = sorted(set(find_class_names(test_root)) - set(train.classes))
            if unknown:
                raise MismatchError(
                    f"{test_root} has classes the training data does not: {unknown[:10]} (training classes: {list(train.classes)[:10]})"
                )
            test = ImageFolder(test_root, color=color, size=size, classes=train.classes)
            if test.image_shape != train.image_shape:
                raise MismatchError(f"{test_root} images are {test.image_shape}, the training images {train.image_shape}: "
                                    f"give --size HxW to resize both to one size")
        pre = Preprocessor(config.preprocess or "scale")
        pre.fit_batches(train.batches)  # every training image, as for a registered dataset
    except MixedSizesError as exc:
        raise MismatchError(f"{exc.path} is {exc.shape[0]}x{exc.shape[1]} but {exc.first} is {exc.first_shape[0]}x"
                            f"{exc.first_shape[1]}: give --size HxW to resize every image to one size") from None
    dtype = np.dtype(config.dtype)

    def transform(images: np.ndarray) -> Any:
        return pre.transform(images, dtype=dtype)

    train.transform = test_transform = transform
    train.augment = parse_augment(config.augment) if config.augment else None
    source: Source = train
    subset = config.train_range if config.train_range else config.train_limit
    if subset is not None:
        source = SubsetSource(train, parse_subset(subset, len(train)))
    test_source: Source | None = None
    if test is not None:
        test.transform = test_transform
        test_source = test if not config.test_limit else SubsetSource(test, np.arange(min(config.test_limit, len(test))))
    return Data(source, test_source, tuple(train.classes), train.image_shape, pre.to_dict())


def find_class_names(root: Path) -> list[str]:
    """The class sub-folder names of an image folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.train.run import find_class_names
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("cat/1.png", "dog/1.png", "dog/2.png"):
    ...         (Path(d) / name).parent.mkdir(exist_ok=True)
    ...         _ = (Path(d) / name).write_bytes(b"")
    ...     print(find_class_names(Path(d)))
    ['cat', 'dog']
    """
    from cnnkit.data.folder import find_images

    return list(find_images(root)[0])


def _check_memory(config: TrainConfig, image_shape: tuple[int, int, int]) -> None:
    """MismatchError before anything is allocated when one training step cannot fit in this machine's memory."""
    from cnnkit.models import create
    from cnnkit.nn.init import shapes_only
    from cnnkit.summary import training_bytes

    with shapes_only():
        template = create(config.model, np.random.default_rng(0), np.dtype(config.dtype), input_shape=image_shape)
    need = training_bytes(template, image_shape, config.batch_size, np.dtype(config.dtype).itemsize)
    have = _physical_memory()
    if have and need > have:
        raise MismatchError(
            f"--model {quote(config.model, 80)} with --batch-size {config.batch_size} needs at least {need / 2**30:,.1f} GiB for "
            f"one training step, more than this machine's {have / 2**30:,.1f} GiB; use a smaller batch or network"
        )


def _physical_memory() -> int:
    """Bytes of memory the machine has (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 0


def train(
    config: TrainConfig,
    out: str | Path,
    data_dir: str | None = None,
    resume: bool = False,
    progress: bool = True,
    download: bool = False,
    log: Any = print,
    distributed: Any = None,
) -> dict[str, Any]:
    """Run a training configuration end to end; writes ``out/model.npz`` (and ``best.npz`` with ``keep_best``).

    Returns the last epoch's record; with ``keep_best`` it also holds ``best_epoch`` and the best model's
    ``best_test_*`` figures.

    ``distributed``: a :class:`~cnnkit.train.distributed.Communicator` (``cnnkit train --distributed`` passes an
    :class:`~cnnkit.train.distributed.MPICommunicator`): every process runs this function with the same
    arguments, trains its slice of every mini-batch, and only rank 0 logs and writes ``out``. An error met by
    one process alone is printed as one line and aborts all; an error met by all (a configuration that differs
    between processes, a run that cannot be resumed) is raised on rank 0, and the other ranks exit with status 1.

    Examples
    --------
    A whole run on a folder of dark and light 4 x 4 PNGs (Pillow writes them): ``run/`` ends up holding the
    run directory's files and the trained ``model.npz``.

    >>> import itertools, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cnnkit.train import TrainConfig
    >>> from cnnkit.train.run import train
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for split, cls, i in itertools.product(("train", "test"), ("dark", "light"), range(3)):
    ...         (Path(d) / "data" / split / cls).mkdir(parents=True, exist_ok=True)
    ...         Image.fromarray(np.full((4, 4), 40 if cls == "dark" else 200, np.uint8)).save(Path(d) / "data" / split / cls / f"{i}.png")
    ...     config = TrainConfig(model="fc2", data=str(Path(d) / "data"), epochs=5, batch_size=2, lr=0.1, preprocess="scale")
    ...     record = train(config, Path(d) / "run", progress=False, log=lambda line: None)
    ...     files = sorted(p.name for p in (Path(d) / "run").iterdir() if p.suffix != ".png")
    >>> record["epoch"], record["test_accuracy"], files
    (5, 1.0, ['checkpoint.npz', 'config.json', 'metrics.jsonl', 'model.npz'])
    """
    from cnnkit.train.distributed import as_parallel

    parallel = as_parallel(distributed)
    if parallel is not None:
        with parallel.guard(quiet_followers=True):
            return _train(config, out, data_dir, resume, progress and parallel.root, download,
                          log if parallel.root else (lambda line: None), parallel)
    return _train(config, out, data_dir, resume, progress, download, log, None)


def _train(config: TrainConfig, out: str | Path, data_dir: str | None, resume: bool, progress: bool, download: bool, log: Any,
           parallel: Any) -> dict[str, Any]:
    from cnnkit.models import create, resolve
    from cnnkit.models.file import load_model, save_model
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.train.fit import check_fits, evaluate

    root = parallel is None or parallel.root
    config = config.resolved()
    data = load_data(config, data_dir, download, need_test=config.val_split is None)
    model_def = resolve(config.model, data.image_shape)
    dtype = np.dtype(config.dtype)
    _check_memory(config, data.image_shape)
    model = create(config.model, np.random.default_rng(config.seed), dtype, input_shape=data.image_shape, init=config.init,
                   bn_eps=config.bn_eps)
    check_fits(model, data.train)
    if config.init_from and not (resume and (Path(out) / "checkpoint.npz").exists()):
        start = load_model(config.init_from)
        try:
            model.load_state_dict(start.network.state_dict())
        except ValueError as exc:
            raise MismatchError(f"--init-from {config.init_from}: its weights do not fit --model {config.model}: {exc}") from None
    meta = {"data": config.data, "model": config.model}

    def save(m: Any, name: str) -> None:
        save_model(Path(out) / name, m, input_shape=data.image_shape, classes=list(data.classes), preprocess=data.preprocess,
                   extra=meta, spec=model_def.spec)

    trainer = Trainer(config, model, SoftmaxCrossEntropy(), data.train, data.test, out, progress=progress, log=log,
                      save_best=lambda m: save(m, "best.npz"), distributed=parallel)
    if not root:  # rank 0 writes the run directory
        return dict(trainer.run(resume=resume))
    Path(out).mkdir(parents=True, exist_ok=True)
    trainer.run_dir.lock()  # held until model.npz is written
    try:
        record = dict(trainer.run(resume=resume))
        save(model, "model.npz")
    finally:
        trainer.run_dir.unlock()
    if trainer.keep_best is not None and trainer.keep_best.best_epoch is not None:
        record["best_epoch"] = trainer.keep_best.best_epoch
        if data.test is not None:
            best = load_model(Path(out) / "best.npz").network
            for k, v in evaluate(best, data.test, batch_size=config.eval_batch_size).items():
                record[f"best_test_{k}"] = v
    return record


def _model_data(meta: dict[str, Any], data: str | None, path: Any) -> str:
    """The dataset to evaluate on: ``--data``, else the registered dataset the file names. A file's own
    ``data`` entry is never used as a path (a file from a stranger must not make cnnkit read a directory)."""
    from cnnkit.data import DATASETS

    if data:
        return data
    recorded = meta.get("data")
    if isinstance(recorded, str) and recorded in DATASETS:
        return recorded
    if recorded is None:
        raise ValueError(f"{path} does not record its dataset; pass --data")
    raise ValueError(f"{path} was trained on {quote(recorded, 80)}, which is not a registered dataset; "
                     f"pass --data to say what to evaluate on")


def evaluate_model_file(
    path: str | Path, data: str | None, split: str, data_dir: str | None, batch_size: int = 1000,
    color: str | None = None, size: str | None = None, progress: bool = False,
) -> dict[str, Any]:
    """Loss, errors, accuracy and confusion matrix of a saved model on a dataset split.

    The data's class names must be the model's (or a subset of them, matched by name); MismatchError otherwise.

    Examples
    --------
    A hand-made brightness classifier saved as a model file, evaluated on a test folder of PNGs (Pillow writes them):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> import cnnkit
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> from cnnkit.train.run import evaluate_model_file
    >>> net = Sequential(Flatten(), Linear(16, 2, rng=np.random.default_rng(0)))
    >>> net[1].params["weight"][...] = [[-1, 1]]; net[1].params["bias"][...] = [8, -8]  # dark: sum < 8, light: sum > 8
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for cls, value in (("dark", 40), ("light", 200)):
    ...         (Path(d) / "test" / cls).mkdir(parents=True)
    ...         for i in range(2):
    ...             Image.fromarray(np.full((4, 4), value, np.uint8)).save(Path(d) / "test" / cls / f"{i}.png")
    ...     cnnkit.save(net, str(Path(d) / "model.npz"), input_shape=(4, 4, 1), classes=["dark", "light"], preprocess={"mode": "scale"})
    ...     m = evaluate_model_file(Path(d) / "model.npz", d, "test", None)
    >>> m["n"], m["accuracy"], m["confusion"]
    (4, 1.0, [[2, 0], [0, 2]])
    """
    from cnnkit import data as cdata
    from cnnkit.data import Preprocessor
    from cnnkit.data.images import color_for, parse_size
    from cnnkit.models.file import load_model
    from cnnkit.train.fit import evaluate

    model_file = load_model(path)
    net, shape, classes = model_file.network, model_file.input_shape, model_file.classes
    name = _model_data(model_file.meta, data, path)
    pre = Preprocessor.from_dict(model_file.preprocess) if model_file.preprocess else None
    dtype = net.dtype

    def transform(images: np.ndarray) -> Any:
        return pre.transform(images, dtype=dtype) if pre is not None else images.astype(dtype)

    folder = Path(name)
    source: Source
    if folder.is_dir():
        from cnnkit.data.folder import ImageFolder

        root = folder / split if (folder / split).is_dir() else folder
        c = color or (color_for(shape[-1]) if shape else "rgb")
        s = parse_size(size) if size else (shape[:2] if shape and len(shape) == 3 else None)
        unknown = sorted(set(find_class_names(root)) - set(classes or []))
        if classes is not None and unknown:
            raise MismatchError(f"{root} has classes the model does not know: {unknown[:10]} (its classes: {classes[:10]})")
        images = ImageFolder(root, color=c, size=s, transform=transform, classes=classes)
        source, image_shape, n = images, images.image_shape, len(images)
    else:
        ds = cdata.load_dataset(name, split, data_dir)
        if classes is not None and list(ds.classes) != list(classes):
            ds = _map_classes(ds, classes, f"{name}/{split}", against="the model")
        source, image_shape, n = ArraySource(ds.images, ds.labels, ds.classes, transform), ds.image_shape, len(ds)
    if shape is not None and image_shape != tuple(shape):
        raise MismatchError(f"{name}/{split} images are {image_shape}; the model expects {tuple(shape)}")
    metrics = evaluate(net, source, batch_size=batch_size, progress=progress)
    return {"data": name, "split": split, "n": n, **metrics}


def predict_files(
    path: str | Path, files: Sequence[str], top: int = 3, batch_size: int = 256, color: str | None = None, size: str | None = None
) -> list[dict[str, Any]]:
    """Classify image files with a saved model: the best class and the ``top`` probabilities per file.

    Images are decoded as training decoded them (the model's colour, resized bilinearly to its input size);
    ``.npy`` arrays must already have the input size.

    Examples
    --------
    The hand-made brightness classifier on two ``.npy`` images (which need no Pillow):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import cnnkit
    >>> from cnnkit.nn import Flatten, Linear, Sequential
    >>> from cnnkit.train.run import predict_files
    >>> net = Sequential(Flatten(), Linear(16, 2, rng=np.random.default_rng(0)))
    >>> net[1].params["weight"][...] = [[-1, 1]]; net[1].params["bias"][...] = [8, -8]  # dark: sum < 8, light: sum > 8
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cnnkit.save(net, str(Path(d) / "model.npz"), input_shape=(4, 4, 1), classes=["dark", "light"], preprocess={"mode": "scale"})
    ...     for name, value in (("a.npy", 200), ("b.npy", 40)):
    ...         np.save(Path(d) / name, np.full((4, 4, 1), value, np.uint8))
    ...     results = predict_files(Path(d) / "model.npz", [str(Path(d) / "a.npy"), str(Path(d) / "b.npy")], top=2)
    >>> [(Path(r["file"]).name, r["class"], [(c, round(p, 4)) for c, p in r["top"]]) for r in results]
    [('a.npy', 'light', [('light', 0.9999), ('dark', 0.0001)]), ('b.npy', 'dark', [('dark', 1.0), ('light', 0.0)])]
    """
    from cnnkit.data import Preprocessor
    from cnnkit.data.images import color_for, decode_image, parse_size, read_image_size
    from cnnkit.models.file import load_model
    from cnnkit.train.fit import predict

    if Path(path).suffix.lower() == ".onnx":  # run on cnnkit's engine, as any model file
        from cnnkit.onnx import load_model_file

        model_file = load_model_file(path)
    else:
        model_file = load_model(path)
    net, shape = model_file.network, model_file.input_shape
    if shape is None or len(shape) != 3:
        raise MismatchError(f"{path} does not record an image input shape (H, W, C), so image files cannot be fed to it")
    classes = model_file.classes or [str(i) for i in range(net.output_shape(shape)[-1])]
    out_k = int(np.prod(net.output_shape(shape)))
    if out_k != len(classes):
        raise MismatchError(f"{path}: the network gives {out_k} outputs but the file names {len(classes)} classes")
    if color is not None and color != color_for(shape[2]):
        raise MismatchError(f"the model takes {color_for(shape[2])} images ({shape[2]} channel(s)); --color {color} would not fit it")
    if size is not None and parse_size(size) != tuple(shape[:2]):
        raise MismatchError(
            f"the model takes {shape[0]}x{shape[1]} images; --size {size} would not fit it (images are resized to its size anyway)"
        )
    color = color_for(shape[2])
    pre = Preprocessor.from_dict(model_file.preprocess) if model_file.preprocess else None
    results: list[dict[str, Any]] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = np.stack([decode_image(f, color, (shape[0], shape[1])) for f in chunk])
        x = pre.transform(images, dtype=net.dtype) if pre is not None else images.astype(net.dtype)
        for f, p in zip(chunk, to_numpy(predict(net, x))):
            order = np.argsort(-p)[: max(1, min(top, len(classes)))]
            result: dict[str, Any] = {"file": str(f), "class": classes[order[0]], "top": [(classes[i], float(p[i])) for i in order]}
            source = read_image_size(f)  # the header only; an image of another size was resized, and that is said
            if tuple(source) != tuple(shape[:2]):
                result["resized_from"] = [int(source[0]), int(source[1])]
                result["resized_to"] = [int(shape[0]), int(shape[1])]
            results.append(result)
    return results
