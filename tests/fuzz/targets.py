"""The fuzzed formats: for each, its seeds, how a case is made from a seed and a random generator, what is
called on it, and what a returned value must satisfy.

=============  ===============================================================================================
``model``      :func:`cnnkit.models.file.load_model` on mutated model files (three seeds: a network string run,
               a residual/concat/batch-norm network, the first file format)
``checkpoint`` :func:`cnnkit.train.checkpoint.load_checkpoint` into a fresh network and optimiser (SGD, Adam),
               :class:`cnnkit.train.rundir.RunDirectory` resume with a mutated checkpoint, ``config.json`` or
               ``metrics.jsonl``, and :meth:`cnnkit.train.TrainConfig.from_dict`
``idx``        :func:`cnnkit.data.idx.read_idx` (raw and gzip, every element type) and
               :func:`cnnkit.data.mnist.load_mnist` with one of the pair mutated
``cifar``      :func:`cnnkit.data.cifar.read_python_batch` (protocols 2, 4, 5), ``read_binary_batch`` and
               :func:`cnnkit.data.cifar.load_cifar10` (either format, the batch or its meta mutated)
``image``      :func:`cnnkit.data.images.decode_image` (PNG, JPEG, BMP, GIF, TIFF, WebP, ``.npy``; both colours,
               with and without a size), ``read_image_size`` and :class:`cnnkit.data.folder.ImageFolder`
``spec``       :func:`cnnkit.models.parse`, ``infer_shapes``, :func:`cnnkit.summary.summarize` and ``build``
``cli``        ``cnnkit eval`` / ``predict`` on mutated model files and images, ``train --resume`` on a mutated
               run directory, ``summary`` on mutated model files and network strings
=============  ===============================================================================================

A correct value is checked, not trusted: a model runs a forward pass on a zero batch of its input shape and gives
one output per class; a checkpoint, once restored, takes one optimiser step; a dataset has the shapes, dtypes
and label range it should; a command that exits 0 printed something and nothing on stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.fuzz import mutators as mu
from tests.fuzz.corpus import CLASSES, INPUT_SHAPE, TRAIN_ARGS, Corpus, copy_tree
from tests.fuzz.harness import CLEAN, CORRECT, DOCUMENTED, FAILURE, Case, Verdict

DEFLATE = 1032.0
"""zlib's largest compression ratio: the most a deflated byte can decode to."""


def nbytes(*values: Any) -> int:
    """Bytes of the NumPy arrays in ``values`` (through tuples, lists and dicts)."""
    total, stack, seen = 0, list(values), set()
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return total


def _fail(why: str) -> Verdict:
    return Verdict(FAILURE, why)


class Format:
    """One fuzzed format. Subclasses fill :attr:`seeds` (name -> a maker of the seed's valid case) and
    :meth:`mutated` (a case from a seed name and a generator)."""

    name = ""

    def __init__(self, corpus: Corpus, work: Path) -> None:
        self.corpus = corpus
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.seeds: dict[str, Callable[[random.Random | None], Case]] = {}

    def seed_of(self, rng: random.Random) -> str:
        """The seed a case drawn from ``rng`` mutates (the generator's first draw)."""
        return rng.choice(sorted(self.seeds))

    def case(self, rng: random.Random | None, seed: str | None = None) -> Case:
        """A case made from ``seed`` (drawn by ``rng`` when None); ``rng`` None: the seed itself, unmutated."""
        if seed is None:
            assert rng is not None
            seed = self.seed_of(rng)
        case = self.seeds[seed](rng)
        case.seed = seed
        return case

    def write(self, name: str, data: bytes) -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path


# -- model files -----------------------------------------------------------------------------------

def judge_model(mf: Any) -> Verdict:
    from cnnkit.data import Preprocessor
    from cnnkit.errors import CnnkitError
    from cnnkit.models.file import ModelFile

    if not isinstance(mf, ModelFile):
        return _fail(f"load_model returned a {type(mf).__name__}")
    net = mf.network
    size = nbytes(dict(net.params), dict(net.buffers), mf.preprocess)
    if mf.input_shape is None:
        return Verdict(CORRECT, "loaded (no input shape to run)", size)
    try:
        out_shape = net.output_shape(tuple(mf.input_shape))
    except CnnkitError as exc:
        return _fail(f"loaded, but its network does not take its own input shape {mf.input_shape}: {exc}")
    if mf.classes is not None and math.prod(out_shape) != len(mf.classes):
        return _fail(f"loaded, but its network gives {out_shape} outputs for {len(mf.classes)} classes")
    if math.prod(mf.input_shape) > 1 << 20:
        return Verdict(CORRECT, "loaded (input too large to run)", size)
    x = np.zeros((1, *mf.input_shape), dtype=np.uint8)
    try:
        if mf.preprocess is not None:
            xs = Preprocessor.from_dict(mf.preprocess).transform(x, dtype=net.dtype) if len(mf.input_shape) == 3 else x.astype(net.dtype)
        else:
            xs = x.astype(net.dtype)
        y = net.forward(xs, train=False)
    except CnnkitError as exc:
        return _fail(f"loaded, but a forward pass on a zero batch fails: {type(exc).__name__}: {exc}")
    if tuple(y.shape[1:]) != tuple(out_shape):
        return _fail(f"forward gave {y.shape}, its output_shape says {out_shape}")
    return Verdict(CORRECT, "loaded and ran", size, work=sum(1 for _ in net.modules()) if hasattr(net, "modules") else 1)


class ModelFormat(Format):
    name = "model"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for seed, ms in corpus.models.items():
            self.seeds[seed] = self._maker(seed, ms.path.read_bytes())

    def _maker(self, seed: str, data: bytes) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            from cnnkit.models.file import load_model

            if rng is None:
                blob, mutation = data, "valid"
            elif rng.random() < 0.75:
                blob, mutation = mu.mutate_npz(data, rng)
            else:
                blob, mutation = mu.mutate_bytes(data, rng)
            path = self.write("model.npz", blob)
            return Case(seed, mutation, lambda: load_model(path), judge_model, len(blob), DEFLATE)

        return make


# -- checkpoints and run directories ---------------------------------------------------------------

def _train_step(net: Any, opt: Any) -> None:
    from cnnkit.nn import SoftmaxCrossEntropy

    loss = SoftmaxCrossEntropy()
    x = np.zeros((2, *INPUT_SHAPE), dtype=net.dtype)
    with np.errstate(all="ignore"):
        y = net.forward(x, train=True)
        loss.forward(y.reshape(2, -1), np.array([0, 1]))
        net.zero_grad()
        net.backward(loss.backward().reshape(y.shape))
        opt.step()


def judge_checkpoint(net: Any, opt: Any) -> Callable[[Any], Verdict]:
    def judge(meta: Any) -> Verdict:
        from cnnkit.errors import CnnkitError

        if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int):
            return _fail(f"load_checkpoint returned {type(meta).__name__} without an integer epoch")
        try:
            _train_step(net, opt)
        except CnnkitError as exc:
            return _fail(f"restored, but one training step fails: {type(exc).__name__}: {exc}")
        return Verdict(CORRECT, f"restored epoch {meta['epoch']}", nbytes(dict(net.params), opt.state_dict()))

    return judge


def judge_resume(net: Any, opt: Any) -> Callable[[Any], Verdict]:
    def judge(value: Any) -> Verdict:
        done, records = value
        if not isinstance(done, int) or done < 0:
            return _fail(f"resume gave {done!r} finished epochs")
        if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records):
            return _fail("resume gave records that are not per-epoch objects")
        return judge_checkpoint(net, opt)({"epoch": done})

    return judge


class CheckpointFormat(Format):
    name = "checkpoint"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for seed, ms in corpus.models.items():
            if ms.checkpoint is not None:
                self.seeds[f"load:{seed}"] = self._load(seed, ms.checkpoint.read_bytes())
        run = corpus.run
        for part in ("checkpoint.npz", "config.json", "metrics.jsonl"):
            self.seeds[f"resume:{part}"] = self._resume(part, (run / part).read_bytes())
        self.seeds["config"] = self._config((run / "config.json").read_bytes())

    def _mutate_checkpoint(self, data: bytes, rng: random.Random | None) -> tuple[bytes, str]:
        if rng is None:
            return data, "valid"
        return mu.mutate_npz(data, rng) if rng.random() < 0.8 else mu.mutate_bytes(data, rng)

    def _load(self, seed: str, data: bytes) -> Callable[[random.Random | None], Case]:
        ms = self.corpus.models[seed]

        def make(rng: random.Random | None) -> Case:
            from cnnkit.train.checkpoint import load_checkpoint

            blob, mutation = self._mutate_checkpoint(data, rng)
            path = self.write("checkpoint.npz", blob)
            net = ms.network()
            opt = ms.optimizer(net)
            return Case(f"load:{seed}", mutation, lambda: load_checkpoint(path, net, opt), judge_checkpoint(net, opt), len(blob), DEFLATE)

        return make

    def _resume(self, part: str, data: bytes) -> Callable[[random.Random | None], Case]:
        ms = self.corpus.models["run"]

        def make(rng: random.Random | None) -> Case:
            from cnnkit.train import TrainConfig
            from cnnkit.train.rundir import RunDirectory

            run = copy_tree(self.corpus.run, self.work / "run")
            if part == "checkpoint.npz":
                blob, mutation = self._mutate_checkpoint(data, rng)
            elif rng is None:
                blob, mutation = data, "valid"
            elif part == "config.json":
                blob, mutation = mutate_json_file(data, rng)
            else:
                blob, mutation = mutate_jsonl(data, rng)
            (run / part).write_bytes(blob)
            config = TrainConfig.from_dict(json.loads((self.corpus.run / "config.json").read_text(encoding="utf-8")))
            net = ms.network()
            opt = ms.optimizer(net)
            rd = RunDirectory(run, config)

            def call() -> Any:
                try:
                    return rd.start(net, opt, resume=True)
                finally:
                    rd.unlock()

            return Case(f"resume:{part}", mutation, call, judge_resume(net, opt), len(blob), DEFLATE if part.endswith(".npz") else 1.0)

        return make

    def _config(self, data: bytes) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            from cnnkit.train import TrainConfig

            blob, mutation = (data, "valid") if rng is None else mutate_json_file(data, rng)
            try:
                value = json.loads(blob.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                value = blob.decode("latin1")

            def judge(cfg: Any) -> Verdict:
                if not isinstance(cfg, TrainConfig):
                    return _fail(f"from_dict returned {type(cfg).__name__}")
                cfg.to_dict()
                return Verdict(CORRECT, "a configuration")

            # from_dict's documented error is a ValueError naming the entry (RunDirectory turns it into a CheckpointError)
            return Case("config", mutation, lambda: TrainConfig.from_dict(value), judge, len(blob), 1.0,
                        expected=(*DOCUMENTED, ValueError))

        return make


def mutate_json_file(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if rng.random() < 0.3:
        return mu.mutate_bytes(data, rng)
    text, name = mu.mutate_json(json.loads(data.decode("utf-8")), rng)
    return text.encode("utf-8", "surrogatepass"), name


def mutate_jsonl(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = data.decode("utf-8").splitlines()
    kind = rng.randrange(4)
    if kind == 0 and lines:
        i = rng.randrange(len(lines))
        text, name = mu.mutate_json(json.loads(lines[i]), rng)
        lines[i] = text
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), f"line{i}:{name}"
    if kind == 1:
        return (data.decode() + rng.choice(("{", "[]\n", "garbage\n", '{"epoch": "x"}\n', "\x00\n"))).encode(), "jsonl-append"
    if kind == 2:
        return (data * rng.choice((2, 1000))), "jsonl-repeat"
    return mu.mutate_bytes(data, rng)


# -- IDX -------------------------------------------------------------------------------------------

def judge_array(a: Any) -> Verdict:
    from cnnkit.data.idx import IDX_TYPES

    if not isinstance(a, np.ndarray):
        return _fail(f"read_idx returned a {type(a).__name__}")
    if not a.dtype.isnative and a.dtype.itemsize > 1:
        return _fail(f"read_idx returned a non-native dtype {a.dtype}")
    if a.dtype.newbyteorder(">") not in [t.newbyteorder(">") for t in IDX_TYPES.values()] or a.ndim < 1:
        return _fail(f"read_idx returned {a.dtype} {a.shape}")
    return Verdict(CORRECT, f"{a.dtype} {a.shape}", a.nbytes)


def judge_dataset(ds: Any) -> Verdict:
    from cnnkit.data import Dataset

    if not isinstance(ds, Dataset):
        return _fail(f"returned a {type(ds).__name__}")
    x, y = ds.images, ds.labels
    if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != np.int64 or y.shape != (x.shape[0],):
        return _fail(f"dataset of {x.dtype} {x.shape} and {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= len(ds.classes)):
        return _fail(f"labels {y.min()}..{y.max()} outside {len(ds.classes)} classes")
    x.sum(), y.sum()
    return Verdict(CORRECT, f"{x.shape}", x.nbytes + y.nbytes)


class IdxFormat(Format):
    name = "idx"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for name, path in corpus.idx.items():
            self.seeds[f"read:{name}"] = self._read(name, path)
        for which in ("images", "labels"):
            for gz in ("", ".gz"):
                self.seeds[f"mnist:{which}{gz}"] = self._mnist(which, gz)

    def mutate(self, raw_or_gz: bytes, rng: random.Random | None) -> tuple[bytes, str, float]:
        """A mutated IDX file (gzip or not), its mutation and its expansion bound."""
        if rng is None:
            return raw_or_gz, "valid", DEFLATE if raw_or_gz[:2] == b"\x1f\x8b" else 1.0
        gz = raw_or_gz[:2] == b"\x1f\x8b"
        raw = mu.gzip.decompress(raw_or_gz) if gz else raw_or_gz
        kind = rng.random()
        if kind < 0.08:
            # a gzip bomb behind a plausible header: declared n bytes, the stream n (valid), n + more or less
            n = rng.choice((1 << 20, 16 << 20, 64 << 20))
            head = bytes([0, 0, 0x08, 1]) + n.to_bytes(4, "big")
            actual = rng.choice((n, n + 1, n + (8 << 20), n // 2))
            return mu.gzip_bomb(head, n, actual), f"gzip-bomb{n}->{actual}", DEFLATE
        if kind < 0.6:
            raw, name = mu.mutate_idx(raw, rng)
        else:
            raw, name = (mu.mutate_bytes(raw_or_gz, rng) if gz and rng.random() < 0.5 else mu.mutate_bytes(raw, rng))
            if gz and name and raw[:2] == b"\x1f\x8b":
                return raw, f"bytes:{name}", DEFLATE
        if gz or rng.random() < 0.15:
            raw, gname = mu.gzip_bytes(raw, rng)
            return raw, f"{name}+{gname}", DEFLATE
        return raw, name, 1.0

    def _read(self, name: str, path: Path) -> Callable[[random.Random | None], Case]:
        data = path.read_bytes()

        def make(rng: random.Random | None) -> Case:
            from cnnkit.data.idx import read_idx

            blob, mutation, expansion = self.mutate(data, rng)
            p = self.write("file.idx", blob)
            return Case(f"read:{name}", mutation, lambda: read_idx(p), judge_array, len(blob), expansion)

        return make

    def _mnist(self, which: str, gz: str) -> Callable[[random.Random | None], Case]:
        images = self.corpus.idx["images" + gz].read_bytes()
        labels = self.corpus.idx["labels" + gz].read_bytes()

        def make(rng: random.Random | None) -> Case:
            from cnnkit.data import load_mnist

            d = self.work / "mnist"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            blob, mutation, expansion = self.mutate(images if which == "images" else labels, rng)
            names = {"images": "t10k-images-idx3-ubyte.gz", "labels": "t10k-labels-idx1-ubyte.gz"}
            (d / names["images"]).write_bytes(blob if which == "images" else images)
            (d / names["labels"]).write_bytes(blob if which == "labels" else labels)
            return Case(f"mnist:{which}{gz}", mutation, lambda: load_mnist("test", d, verify=False), judge_dataset,
                        len(blob) + len(images) + len(labels), expansion)

        return make


# -- CIFAR-10 ----------------------------------------------------------------------------------------

def judge_batch(value: Any) -> Verdict:
    images, labels = value
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (32, 32, 3)):
        return _fail(f"images {getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if not (isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (images.shape[0],)):
        return _fail(f"labels {getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')}")
    return Verdict(CORRECT, f"{images.shape}", images.nbytes + labels.nbytes)


class CifarFormat(Format):
    name = "cifar"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for p in ("p2", "p4", "p5", "p2-str"):
            self.seeds[f"python:{p}"] = self._python(p)
        self.seeds["binary"] = self._binary()
        for fmt in ("python", "binary"):
            for part in ("batch", "meta"):
                self.seeds[f"load:{fmt}:{part}"] = self._load(fmt, part)

    def mutate_pickle(self, data: bytes, rng: random.Random | None, meta: bool = False) -> tuple[bytes, str]:
        if rng is None:
            return data, "valid"
        kind = rng.random()
        names = []
        if kind < 0.4:
            obj = mu.pickle.loads(data)  # our own seed
            if meta:
                obj, name = mu.label_names_object(rng)
            else:
                obj, name = mu.mutate_batch_object(obj, rng)
            protocol = rng.choice((2, 4, 5))
            try:
                data = mu.dumps_pickle(obj, protocol)
            except RecursionError:
                data = mu.dumps_pickle([], protocol)
            names.append(f"{name}@p{protocol}")
            if rng.random() < 0.3:
                data, name = mu.mutate_pickle_ops(data, rng)
                names.append(name)
        elif kind < 0.8:
            data, name = mu.mutate_pickle_ops(data, rng)
            names.append(name)
        else:
            data, name = mu.mutate_bytes(data, rng)
            names.append(name)
        return data, "+".join(names)

    def mutate_binary(self, data: bytes, rng: random.Random | None) -> tuple[bytes, str]:
        if rng is None:
            return data, "valid"
        kind = rng.randrange(4)
        if kind == 0:
            return data[: rng.choice((0, 1, 3072, 3073, 3074, len(data) - 1))], "records-cut"
        if kind == 1:
            return data + (bytes([rng.choice((9, 10, 255))]) + bytes(3072)) * rng.choice((1, 100)), "records-added"
        if kind == 2:
            b = bytearray(data)
            for r in range(0, len(b), 3073):
                b[r] = rng.choice((0, 9, 10, 255))
            return bytes(b), "labels-set"
        return mu.mutate_bytes(data, rng)

    def _python(self, p: str) -> Callable[[random.Random | None], Case]:
        data = self.corpus.cifar[p].read_bytes()

        def make(rng: random.Random | None) -> Case:
            from cnnkit.data import read_python_batch

            blob, mutation = self.mutate_pickle(data, rng)
            path = self.write("data_batch_1", blob)
            return Case(f"python:{p}", mutation, lambda: read_python_batch(path), judge_batch, len(blob))

        return make

    def _binary(self) -> Callable[[random.Random | None], Case]:
        data = self.corpus.cifar["bin"].read_bytes()

        def make(rng: random.Random | None) -> Case:
            from cnnkit.data import read_binary_batch

            blob, mutation = self.mutate_binary(data, rng)
            path = self.write("data_batch_1.bin", blob)
            return Case("binary", mutation, lambda: read_binary_batch(path), judge_batch, len(blob))

        return make

    def _load(self, fmt: str, part: str) -> Callable[[random.Random | None], Case]:
        c = self.corpus.cifar
        batch = (c["p2"] if fmt == "python" else c["bin"]).read_bytes()
        meta = (c["meta"] if fmt == "python" else c["meta.txt"]).read_bytes()

        def make(rng: random.Random | None) -> Case:
            from cnnkit.data import load_cifar10

            root = self.work / "cifar-root"
            shutil.rmtree(root, ignore_errors=True)
            d = root / "cifar10" / ("cifar-10-batches-py" if fmt == "python" else "cifar-10-batches-bin")
            d.mkdir(parents=True)
            b, m, mutation = batch, meta, "valid"
            if part == "batch":
                b, mutation = self.mutate_pickle(batch, rng) if fmt == "python" else self.mutate_binary(batch, rng)
            elif rng is not None:
                if fmt == "python":
                    m, mutation = self.mutate_pickle(meta, rng, meta=True)
                else:
                    m, mutation = (mu.mutate_bytes(meta, rng) if rng.random() < 0.6 else
                                   (rng.choice((b"\xff\xfe\n", b"a\n" * 100_001, b"", b"\n\n", "é\n".encode("utf-16"))), "meta-text"))
            (d / ("test_batch" if fmt == "python" else "test_batch.bin")).write_bytes(b)
            (d / ("batches.meta" if fmt == "python" else "batches.meta.txt")).write_bytes(m)
            return Case(f"load:{fmt}:{part}", mutation, lambda: load_cifar10("test", root, format=fmt, verify=False),
                        judge_dataset, len(b) + len(m))

        return make


# -- images ------------------------------------------------------------------------------------------

IMAGE_EXPANSION = 3 * 8 * DEFLATE
"""The most a byte of a valid image file can decode to: a 1-bit deflated PNG row read as RGB (BMP and GIF codes
can leave any number of pixels unset: such a file that decodes is measured against its result instead)."""


def judge_image(color: str, size: tuple[int, int] | None) -> Callable[[Any], Verdict]:
    channels = 1 if color == "grayscale" else 3

    def judge(x: Any) -> Verdict:
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == channels):
            return _fail(f"decode_image returned {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        if size is not None and x.shape[:2] != size:
            return _fail(f"asked for {size}, got {x.shape}")
        return Verdict(CORRECT, f"{x.shape}", x.nbytes)

    return judge


def image_kind(name: str) -> str:
    ext = name.rsplit(".", 1)[-1]
    return {"jpg": "jpeg", "tiff": "tiff"}.get(ext, ext)


class ImageFormat(Format):
    name = "image"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for name in corpus.images:
            self.seeds[f"decode:{name}"] = self._decode(name)
        for name in ("gray.png", "rgb.jpg", "rgb.bmp", "rgb.png", "palette.png", "rgb.gif"):
            self.seeds[f"folder:{name}"] = self._folder(name)
        for name in ("gray.png", "rgb.jpg", "rgb.bmp", "gray.npy", "rgb.tiff"):
            self.seeds[f"size:{name}"] = self._size(name)

    def mutate(self, name: str, rng: random.Random | None) -> tuple[bytes, str]:
        data = self.corpus.images[name].read_bytes()
        if rng is None:
            return data, "valid"
        return mu.mutate_image(data, image_kind(name), rng)

    def _decode(self, name: str) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            from cnnkit.data.images import decode_image

            blob, mutation = self.mutate(name, rng)
            path = self.write("image." + name.rsplit(".", 1)[-1], blob)
            color = "rgb" if rng is None or rng.random() < 0.5 else "grayscale"
            if name.endswith(".npy"):
                color = "rgb" if name.startswith("rgb") else "grayscale"
            size = None if rng is None or rng.random() < 0.6 or name.endswith(".npy") else rng.choice(((8, 8), (3, 5), (32, 32)))
            return Case(f"decode:{name}", f"{mutation} [{color} {size}]", lambda: decode_image(path, color, size),
                        judge_image(color, size), len(blob), IMAGE_EXPANSION)

        return make

    def _size(self, name: str) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            from cnnkit.data.images import read_image_size
            from cnnkit.limits import LIMITS

            blob, mutation = self.mutate(name, rng)
            path = self.write("size." + name.rsplit(".", 1)[-1], blob)

            def judge(hw: Any) -> Verdict:
                ok = isinstance(hw, tuple) and len(hw) == 2 and all(isinstance(v, int) and v >= 1 for v in hw)
                if not ok or hw[0] * hw[1] > LIMITS.image_pixels:
                    return _fail(f"read_image_size returned {hw!r}")
                return Verdict(CORRECT, f"{hw}")

            return Case(f"size:{name}", mutation, lambda: read_image_size(path), judge, len(blob), IMAGE_EXPANSION)

        return make

    def _folder(self, name: str) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            from cnnkit.data.folder import ImageFolder

            root = self.work / "folder"
            shutil.rmtree(root, ignore_errors=True)
            ext = name.rsplit(".", 1)[-1]
            seed = self.corpus.images[name].read_bytes()
            blob, mutation = self.mutate(name, rng)
            for cls in CLASSES:
                (root / cls).mkdir(parents=True)
                for i in range(2):
                    (root / cls / f"{i}.{ext}").write_bytes(seed)
            victim = root / CLASSES[1] / f"1.{ext}" if rng is None or rng.random() < 0.5 else root / CLASSES[0] / f"0.{ext}"
            victim.write_bytes(blob)
            color = "rgb" if rng is None or rng.random() < 0.5 else "grayscale"
            size = None if rng is None or rng.random() < 0.5 else (8, 8)

            def call() -> Any:
                folder = ImageFolder(root, color=color, size=size, cache_bytes=0)
                return folder.decode_all(), folder.labels

            def judge(value: Any) -> Verdict:
                x, _y = value
                c = 1 if color == "grayscale" else 3
                if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and x.shape[0] == 4 and x.shape[3] == c):
                    return _fail(f"folder images {getattr(x, 'dtype', '?')} {getattr(x, 'shape', '?')}")
                return Verdict(CORRECT, f"{x.shape}", x.nbytes)

            return Case(f"folder:{name}", f"{mutation} [{color} {size}]", call, judge, len(blob) + 3 * len(seed), IMAGE_EXPANSION)

        return make


# -- network strings ----------------------------------------------------------------------------------

SPEC_BUILD_BYTES = 16 << 20
"""Networks of at most this many parameter bytes are built and run (bigger ones are only summarised; those
over ``LIMITS.param_bytes`` must be refused by ``build`` before it allocates anything)."""


def spec_case(spec: str, shape: tuple[int, int, int], seed: str, mutation: str) -> Case:
    from cnnkit.limits import LIMITS
    from cnnkit.models import build, infer_shapes, parse
    from cnnkit.summary import summarize

    def call() -> Any:
        tokens = parse(spec)
        shapes = infer_shapes(tokens, shape)
        s = summarize(tokens, shape)
        s.format()
        net = None
        pbytes = 4 * s.total_params
        if pbytes <= SPEC_BUILD_BYTES or pbytes > LIMITS.param_bytes:
            net = build(tokens, shape, np.random.default_rng(0))  # over the limit: must raise SpecError at once
        return tokens, shapes, s, net

    def judge(value: Any) -> Verdict:
        tokens, shapes, s, net = value
        if len(shapes) != len(tokens) or len(s.rows) != len(tokens):
            return _fail(f"{len(tokens)} tokens, {len(shapes)} shapes, {len(s.rows)} summary rows")
        if net is None:
            return Verdict(CORRECT, f"summarised only ({s.total_params:,} parameters)", work=len(tokens))
        if 4 * s.total_params > LIMITS.param_bytes:
            return _fail(f"build made a network of {s.total_params:,} parameters, over the limit")
        size = nbytes(dict(net.params))
        if s.all_activations <= 1 << 22:
            y = net.forward(np.zeros((1, *shape), np.float32), train=False)
            if tuple(y.shape[1:]) != tuple(shapes[-1]):
                return _fail(f"forward gave {y.shape}, infer_shapes said {shapes[-1]}")
        return Verdict(CORRECT, f"{len(tokens)} tokens", size, work=len(tokens))

    return Case(seed, mutation, call, judge, len(spec.encode("utf-8", "surrogatepass")))


class SpecFormat(Format):
    name = "spec"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        for i, (spec, shape) in enumerate(corpus.specs):
            self.seeds[f"spec{i}"] = self._maker(f"spec{i}", spec, shape)

    def _maker(self, seed: str, spec: str, shape: tuple[int, int, int]) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            s, mutation = (spec, "valid") if rng is None else mu.mutate_spec(spec, rng)
            return spec_case(s, shape, seed, mutation)

        return make


# -- the command line ---------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from cnnkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = 0 if exc.code is None else int(exc.code) if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def judge_cli(command: str, argument_mutated: bool) -> Callable[[Any], Verdict]:
    def judge(value: Any) -> Verdict:
        code, out, err = value
        lines = err.splitlines()
        prefix = f"cnnkit {command}: error: "
        if "Traceback" in err:
            return _fail(f"exit {code} with a traceback: {err.strip().splitlines()[-1][:300]}")
        if code == 0:
            if err.strip():
                return _fail(f"exit 0 but stderr: {err.strip()[:200]!r}")
            if not out.strip():
                return _fail("exit 0 and no output")
            return Verdict(CORRECT, out.strip().splitlines()[-1][:120])
        errors = [ln for ln in lines if ln.startswith(prefix)]
        if code == 1:
            if len(lines) != 1 or len(errors) != 1:
                return _fail(f"exit 1 with {len(lines)} lines on stderr: {err.strip()[:300]!r}")
            if len(lines[0]) > 1100:
                return _fail(f"exit 1 with a line of {len(lines[0]):,} characters")
            return Verdict(CLEAN, lines[0][len(prefix):][:200])
        if code == 2 and argument_mutated:
            # a usage error: argparse's usage lines, then exactly one error line, as for any bad argument
            if len(errors) != 1 or not lines[-1].startswith(prefix) or not err.startswith("usage:"):
                return _fail(f"exit 2 with stderr {err.strip()[-300:]!r}")
            return Verdict(CLEAN, lines[-1][len(prefix):][:200])
        return _fail(f"exit {code} (stderr {err.strip()[-300:]!r})")

    return judge


class CliFormat(Format):
    name = "cli"

    def __init__(self, corpus: Corpus, work: Path) -> None:
        super().__init__(corpus, work)
        self.models = ModelFormat(corpus, work)
        self.images = ImageFormat(corpus, work)
        self.checkpoints = CheckpointFormat(corpus, work)
        for seed in ("run", "graph"):
            self.seeds[f"eval:{seed}"] = self._model_command("eval", seed)
            self.seeds[f"predict:{seed}"] = self._model_command("predict", seed)
        for seed in ("run", "graph", "v1"):
            self.seeds[f"summary:{seed}"] = self._model_command("summary", seed)
        for name in ("gray.png", "rgb.jpg", "rgb.bmp", "gray.npy", "palette.png", "rgb.gif"):
            self.seeds[f"predict-image:{name}"] = self._predict_image(name)
        for part in ("checkpoint.npz", "config.json", "metrics.jsonl"):
            self.seeds[f"resume:{part}"] = self._resume(part)
        for i, (spec, shape) in enumerate(corpus.specs):
            self.seeds[f"summary-spec{i}"] = self._summary_spec(spec, shape)

    def _model_command(self, command: str, seed: str) -> Callable[[random.Random | None], Case]:
        data = self.corpus.models[seed].path.read_bytes()
        test = self.corpus.data / "test"

        def make(rng: random.Random | None) -> Case:
            if rng is None:
                blob, mutation = data, "valid"
            else:
                blob, mutation = mu.mutate_npz(data, rng) if rng.random() < 0.75 else mu.mutate_bytes(data, rng)
            path = self.write("model.npz", blob)
            if command == "eval":
                argv = ["eval", str(path), "--data", str(self.corpus.data), "--no-progress", "--batch-size", "3"]
            elif command == "predict":
                argv = ["predict", str(path), str(test / "dark" / "0.png"), str(test / "light" / "1.png"), "--top", "2"]
            else:
                argv = ["summary", str(path)]
            return Case(f"{command}:{seed}", mutation, lambda: run_cli(argv), judge_cli(command, False), len(blob), DEFLATE)

        return make

    def _predict_image(self, name: str) -> Callable[[random.Random | None], Case]:
        model = self.corpus.models["run"].path

        def make(rng: random.Random | None) -> Case:
            blob, mutation = self.images.mutate(name, rng)
            path = self.write("input." + name.rsplit(".", 1)[-1], blob)
            if name.endswith(".npy") and rng is None:
                np.save(path, np.zeros((8, 8, 1), np.uint8))  # .npy inputs are not resized: give the model's size
                blob = path.read_bytes()
            argv = ["predict", str(model), str(path), "--json"]
            return Case(f"predict-image:{name}", mutation, lambda: run_cli(argv), judge_cli("predict", False), len(blob),
                        IMAGE_EXPANSION)

        return make

    def _resume(self, part: str) -> Callable[[random.Random | None], Case]:
        data = (self.corpus.run / part).read_bytes()

        def make(rng: random.Random | None) -> Case:
            run = copy_tree(self.corpus.run, self.work / "run")
            (run / "model.npz").unlink()
            if rng is None:
                blob, mutation = data, "valid"
            elif part == "checkpoint.npz":
                blob, mutation = self.checkpoints._mutate_checkpoint(data, rng)
            elif part == "config.json":
                blob, mutation = mutate_json_file(data, rng)
            else:
                blob, mutation = mutate_jsonl(data, rng)
            (run / part).write_bytes(blob)
            argv = ["train", "--data", str(self.corpus.data), "--out", str(run), "--resume", *TRAIN_ARGS]
            return Case(f"resume:{part}", mutation, lambda: run_cli(argv), judge_cli("train", False), len(blob),
                        DEFLATE if part.endswith(".npz") else 1.0)

        return make

    def _summary_spec(self, spec: str, shape: tuple[int, int, int]) -> Callable[[random.Random | None], Case]:
        def make(rng: random.Random | None) -> Case:
            s, mutation = (spec, "valid") if rng is None else mu.mutate_spec(spec, rng)
            argv = ["summary", s, "--input-shape", "x".join(map(str, shape))]
            return Case(f"summary-spec:{spec[:20]}", mutation, lambda: run_cli(argv), judge_cli("summary", True),
                        len(s.encode("utf-8", "surrogatepass")))

        return make


FORMATS: dict[str, type[Format]] = {
    "model": ModelFormat, "checkpoint": CheckpointFormat, "idx": IdxFormat, "cifar": CifarFormat,
    "image": ImageFormat, "spec": SpecFormat, "cli": CliFormat,
}
"""Every fuzzed format, in the order they are run."""

