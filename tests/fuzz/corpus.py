"""Small valid seeds for the fuzzers, built with cnnkit's own APIs in a temporary directory.

* an image folder (``data/train/<class>/*.png``, ``data/test/<class>/*.png``, 8 x 8 grayscale) and a run
  trained on it for one epoch with :func:`cnnkit.train.run.train`: its ``model.npz`` (a network string, a
  mean image), ``checkpoint.npz`` (SGD with momentum), ``config.json`` and ``metrics.jsonl``;
* a second model file with a residual block, a concatenation, batch normalisation and dropout, trained for one
  step, with per-channel statistics, and its Adam checkpoint; a model file of the first format (a network string);
* an IDX pair (raw and gzip) and IDX files of every element type;
* CIFAR-10 batches: python pickles at protocols 2, 4 and 5 (and with str keys), the binary format, both metas;
* single images: PNG (grayscale, RGB, palette, 16-bit, interlaced), JPEG (RGB, grayscale, progressive), BMP,
  GIF, TIFF, WebP (when Pillow writes it) and ``.npy``;
* network strings with the input shapes they fit.

Everything is deterministic: the same seeds byte for byte on every run (Pillow's encoders and the trainer are).
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEC = "conv3x3x1x4,relu,pool2,fc2"
INPUT_SHAPE = (8, 8, 1)
CLASSES = ("dark", "light")
TRAIN_ARGS = ["--model", SPEC, "--epochs", "2", "--batch-size", "2", "--lr", "0.01", "--seed", "0", "--no-progress"]
"""``cnnkit train`` arguments that continue the seed run (``--data`` and ``--out`` added by the caller)."""

SPECS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("conv5x5x1x20,pool2,conv5x5x20x50,pool2,conv4x4x50x500,relu,conv1x1x500x10", (28, 28, 1)),
    ("conv3x3x1x4,relu,pool2,fc2", (8, 8, 1)),
    ("conv3x3x3x8p1,bn,relu,pool2,conv3x3x8x16psame,relu,avgpool2,dropout0.3,fc10", (16, 16, 3)),
    ("conv3x3x1x4s2d1nobias,tanh,maxpool3s1p1,flatten,fc5,sigmoid", (9, 9, 1)),
    ("fc10", (4, 4, 1)),
    ("conv1x1x2x2,bn,fc3,relu,bn,dropout,fc2", (3, 3, 2)),
)
"""Valid network strings and the input shapes they fit."""


@dataclass
class ModelSeed:
    """A model file and how to rebuild its network and optimiser (for checkpoints of it)."""

    path: Path
    network: Callable[[], Any]
    optimizer: Callable[[Any], Any]
    checkpoint: Path | None = None


@dataclass
class Corpus:
    root: Path
    data: Path
    run: Path
    models: dict[str, ModelSeed] = field(default_factory=dict)
    idx: dict[str, Path] = field(default_factory=dict)
    cifar: dict[str, Path] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    specs: tuple[tuple[str, tuple[int, int, int]], ...] = SPECS


def _png(path: Path, array: np.ndarray, **kw: Any) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


def _image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, cls in enumerate(CLASSES):
            for i in range(2 if split == "test" else 4):
                base = 40 if label == 0 else 200
                pixels = np.clip(base + rng.integers(-30, 30, (8, 8)), 0, 255).astype(np.uint8)
                _png(root / split / cls / f"{i}.png", pixels)


def _train_run(corpus: Corpus) -> None:
    from cnnkit.train import TrainConfig
    from cnnkit.train.run import train

    config = TrainConfig(model=SPEC, data=str(corpus.data), epochs=1, batch_size=2, lr=0.01, seed=0)
    train(config, corpus.run, progress=False, log=lambda line: None)

    def network() -> Any:
        from cnnkit.models import create

        return create(SPEC, np.random.default_rng(1), np.float32, input_shape=INPUT_SHAPE)

    def optimizer(net: Any) -> Any:
        return config.resolved().make_optimizer(net)

    corpus.models["run"] = ModelSeed(corpus.run / "model.npz", network, optimizer, corpus.run / "checkpoint.npz")


def _graph_network(seed: int = 0) -> Any:
    from cnnkit.nn import BatchNorm2d, Concat, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Residual, Sequential

    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 4, 3, padding=1, rng=rng), BatchNorm2d(4), ReLU(),
        Residual(Sequential(Conv2d(4, 4, 3, padding=1, rng=rng), ReLU())),
        Concat(Conv2d(4, 2, 1, rng=rng), Conv2d(4, 2, 3, padding=1, rng=rng)),
        MaxPool2d(2), Flatten(), Dropout(0.5, rng=np.random.default_rng(seed)), Linear(64, 2, rng=rng),
    )


def _graph_model(corpus: Corpus) -> None:
    from cnnkit.data import Preprocessor
    from cnnkit.data.folder import load_image_folder
    from cnnkit.models.file import save_model
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import Adam
    from cnnkit.train.checkpoint import save_checkpoint
    from cnnkit.train.fit import fit

    ds = load_image_folder(corpus.data / "train", color="grayscale")
    pre = Preprocessor("per_channel").fit(ds.images)
    net = _graph_network()
    opt = Adam(net, lr=1e-3)
    fit(net, (pre.transform(ds.images), ds.labels), epochs=1, batch_size=len(ds.labels), loss=SoftmaxCrossEntropy(), optimizer=opt)
    path = corpus.root / "graph.npz"
    save_model(path, net, input_shape=INPUT_SHAPE, classes=list(CLASSES), preprocess=pre.to_dict(), extra={"data": "mnist"})
    ckpt = corpus.root / "graph-checkpoint.npz"
    save_checkpoint(ckpt, net, opt, epoch=1, extra={"records": [{"epoch": 1, "train_loss": 0.7}]})
    corpus.models["graph"] = ModelSeed(path, lambda: _graph_network(1), lambda n: Adam(n, lr=1e-3), ckpt)


def _v1_model(corpus: Corpus) -> None:
    from cnnkit.models import build
    from cnnkit.models.spec import BuildOptions
    from cnnkit.serialize import save_arrays

    net = build(SPEC, INPUT_SHAPE, np.random.default_rng(0), BuildOptions(init="pytorch"))
    arrays = {f"param/{k}": v for k, v in net.params.items()}
    meta = {"format": "cnnkit-model-1", "spec": SPEC, "input_shape": list(INPUT_SHAPE), "classes": list(CLASSES),
            "dtype": "float32", "preprocess": {"mode": "scale"}}
    path = corpus.root / "v1.npz"
    save_arrays(path, arrays, meta)
    corpus.models["v1"] = ModelSeed(path, lambda: None, lambda n: None)


def _idx(corpus: Corpus) -> None:
    from cnnkit.data import write_idx

    d = corpus.root / "idx"
    d.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0, 9], np.uint8)
    corpus.idx["images"] = write_idx(d / "images-idx3-ubyte", images)
    corpus.idx["labels"] = write_idx(d / "labels-idx1-ubyte", labels)
    corpus.idx["images.gz"] = write_idx(d / "images-idx3-ubyte.gz", images)
    corpus.idx["labels.gz"] = write_idx(d / "labels-idx1-ubyte.gz", labels)
    for dtype in (np.int8, np.int16, np.int32, np.float32, np.float64):
        name = np.dtype(dtype).name
        corpus.idx[name] = write_idx(d / f"{name}.idx", np.arange(12, dtype=dtype).reshape(3, 4))


def _cifar(corpus: Corpus) -> None:
    d = corpus.root / "cifar"
    d.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    labels = [3, 5, 0, 9]
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
             b"filenames": [f"img{i}.png".encode() for i in range(4)]}
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 4, b"num_vis": 3072}
    for protocol in (2, 4, 5):
        corpus.cifar[f"p{protocol}"] = d / f"batch-p{protocol}"
        corpus.cifar[f"p{protocol}"].write_bytes(pickle.dumps(batch, protocol=protocol))
    corpus.cifar["p2-str"] = d / "batch-p2-str"
    corpus.cifar["p2-str"].write_bytes(pickle.dumps({k.decode(): v for k, v in batch.items()}, protocol=2))
    corpus.cifar["meta"] = d / "batches.meta"
    corpus.cifar["meta"].write_bytes(pickle.dumps(meta, protocol=2))
    corpus.cifar["bin"] = d / "test_batch.bin"
    corpus.cifar["bin"].write_bytes(b"".join(bytes([lab]) + data[i].tobytes() for i, lab in enumerate(labels)))
    corpus.cifar["meta.txt"] = d / "batches.meta.txt"
    corpus.cifar["meta.txt"].write_text("\n".join(names) + "\n", encoding="utf-8")


def _images(corpus: Corpus) -> None:
    from PIL import Image

    d = corpus.root / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = corpus.images
    _png(d / "gray.png", gray)
    out["gray.png"] = d / "gray.png"
    _png(d / "rgb.png", rgb)
    out["rgb.png"] = d / "rgb.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(d / "palette.png")
    out["palette.png"] = d / "palette.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(d / "gray16.png")
    out["gray16.png"] = d / "gray16.png"
    Image.fromarray(rgb).save(d / "interlaced.png", interlace=1)
    out["interlaced.png"] = d / "interlaced.png"
    Image.fromarray(rgb).save(d / "rgb.jpg", quality=90)
    out["rgb.jpg"] = d / "rgb.jpg"
    Image.fromarray(gray).save(d / "gray.jpg", quality=90)
    out["gray.jpg"] = d / "gray.jpg"
    Image.fromarray(rgb).save(d / "progressive.jpg", quality=80, progressive=True)
    out["progressive.jpg"] = d / "progressive.jpg"
    Image.fromarray(rgb).save(d / "rgb.bmp")
    out["rgb.bmp"] = d / "rgb.bmp"
    Image.fromarray(gray).save(d / "gray.bmp")
    out["gray.bmp"] = d / "gray.bmp"
    Image.fromarray(rgb).save(d / "rgb.gif")
    out["rgb.gif"] = d / "rgb.gif"
    Image.fromarray(rgb).save(d / "rgb.tiff")
    out["rgb.tiff"] = d / "rgb.tiff"
    try:
        Image.fromarray(rgb).save(d / "rgb.webp", lossless=True)
        out["rgb.webp"] = d / "rgb.webp"
    except (OSError, KeyError, ValueError):  # Pillow built without WebP
        pass
    np.save(d / "gray.npy", gray)
    out["gray.npy"] = d / "gray.npy"
    np.save(d / "rgb.npy", rgb)
    out["rgb.npy"] = d / "rgb.npy"


def build_corpus(root: Path) -> Corpus:
    """Every seed, written under ``root`` (an empty directory)."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(root=root, data=root / "data", run=root / "run")
    _image_folder(corpus.data)
    _train_run(corpus)
    _graph_model(corpus)
    _v1_model(corpus)
    _idx(corpus)
    _cifar(corpus)
    _images(corpus)
    (root / "specs.json").write_text(json.dumps(corpus.specs), encoding="utf-8")
    return corpus


def copy_tree(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def gunzip(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())
