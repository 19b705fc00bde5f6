"""From a configuration to a trained model file: data loading, preprocessing, model, trainer; eval; predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.train.config import TrainConfig
from cnnkit.train.loop import evaluate
from cnnkit.train.trainer import Trainer


def load_split(data: str, split: str, data_dir: str | None, download: bool = False) -> Any:
    """A dataset split by name (mnist, fashion-mnist, cifar10) or an image-folder path (``<path>/<split>`` if present)."""
    from cnnkit import data as cdata

    path = Path(data)
    if path.is_dir():
        root = path / split if (path / split).is_dir() else path
        return cdata.load_image_folder(root)
    return cdata.load_dataset(data, split, data_dir, download=download)


def train(
    config: TrainConfig,
    out: str | Path,
    data_dir: str | None = None,
    resume: bool = False,
    progress: bool = True,
    download: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run a training configuration end to end; writes ``out/model.npz`` at the end. Returns the last epoch's record."""
    from cnnkit.data import Preprocessor, parse_subset
    from cnnkit.models import create, resolve
    from cnnkit.models.file import save_model
    from cnnkit.nn import SoftmaxCrossEntropy

    train_set = load_split(config.data, "train", data_dir, download)
    try:
        test_set = load_split(config.data, "test", data_dir, download)
    except FileNotFoundError:
        test_set = None
    # statistics come from the training split only (MatConvNet: the mean of all 60,000 MNIST training images)
    pre = Preprocessor(config.preprocess).fit(train_set.images)
    subset = config.train_range if config.train_range else config.train_limit
    idx = parse_subset(subset, len(train_set))
    dtype = np.dtype(config.dtype)
    x_train = pre.transform(train_set.images[idx], dtype=dtype)
    y_train = train_set.labels[idx]
    if test_set is not None and config.test_limit:
        test_set = test_set.subset(slice(0, config.test_limit))
    x_test = pre.transform(test_set.images, dtype=dtype) if test_set is not None else None
    y_test = test_set.labels if test_set is not None else None

    model_def = resolve(config.model, train_set.image_shape)
    model = create(config.model, np.random.default_rng(config.seed), dtype, input_shape=train_set.image_shape)

    test = (x_test, y_test) if x_test is not None and y_test is not None else None
    trainer = Trainer(config, model, SoftmaxCrossEntropy(), (x_train, y_train), test, out, progress=progress, log=log)
    record = trainer.run(resume=resume)
    save_model(trainer.run_dir.model_path, model, model_def.spec, train_set.image_shape, list(train_set.classes),
               pre.to_dict(), {"data": config.data, "model": config.model})
    return record


def evaluate_model_file(
    path: str | Path, data: str | None, split: str, data_dir: str | None, batch_size: int = 1000
) -> dict[str, Any]:
    """Loss and top-1/top-5 error of a saved model on a dataset split."""
    from cnnkit.data import Preprocessor
    from cnnkit.models.file import load_model
    from cnnkit.nn import SoftmaxCrossEntropy

    model, pre_d, meta = load_model(path)
    data = data or meta.get("data")
    if not data:
        raise ValueError(f"{path} does not record its dataset; pass --data")
    ds = load_split(data, split, data_dir)
    if ds.image_shape != tuple(meta["input_shape"]):
        raise ValueError(f"{data}/{split} images are {ds.image_shape}; the model expects {tuple(meta['input_shape'])}")
    pre = Preprocessor.from_dict(pre_d)
    x = pre.transform(ds.images, dtype=model.dtype)
    metrics = evaluate(model, SoftmaxCrossEntropy(), x, ds.labels, batch_size)
    return {"data": data, "split": split, "n": len(ds), **metrics}


def _read_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as uint8 (H, W, C) of the model's input shape: .npy arrays, or PNG/JPEG through Pillow."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        from cnnkit.data.folder import require_pillow

        Image = require_pillow()  # the PIL.Image module
        with Image.open(path) as im:
            im = im.convert("L" if shape[2] == 1 else "RGB")
            if im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]))
            arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{path}: image has shape {arr.shape}; the model expects {tuple(shape)}")
    return arr


def predict_files(path: str | Path, files: Sequence[str], top: int = 3) -> list[dict[str, Any]]:
    """Classify image files with a saved model: the best class and the ``top`` probabilities per file."""
    from cnnkit.data import Preprocessor
    from cnnkit.models.file import load_model
    from cnnkit.ops.activation import softmax

    model, pre_d, meta = load_model(path)
    shape = tuple(meta["input_shape"])
    classes = meta["classes"]
    images = np.stack([_read_image(Path(f), shape) for f in files])  # (N, H, W, C) uint8
    x = Preprocessor.from_dict(pre_d).transform(images, dtype=model.dtype)
    probs = softmax(model.forward(x, train=False).reshape(len(files), -1))
    out = []
    for f, p in zip(files, probs):
        order = np.argsort(-p)[:top]
        out.append({"file": str(f), "class": classes[order[0]], "top": [(classes[i], float(p[i])) for i in order]})
    return out
