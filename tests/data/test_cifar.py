"""CIFAR-10 in both of its formats, written by the test in the files' own layouts; restricted unpickling."""

from __future__ import annotations

import codecs
import io
import os
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import (
    DatasetError,
    RestrictedUnpickler,
    UnsafePickleError,
    extract_archive,
    load_cifar10,
    read_binary_batch,
    read_python_batch,
    restricted_unpickle,
)
from cnnkit.data.cifar import batch_names

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _rows(images: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) -> (n, 3072) rows of R, G, B planes, as CIFAR stores them."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)


def python_batch_bytes(images: np.ndarray, labels: np.ndarray, batch_label: str = "batch") -> bytes:
    d = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": _rows(images),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(d, protocol=2)


def binary_batch_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    records = np.concatenate([labels.astype(np.uint8)[:, None], _rows(images)], axis=1)  # (n, 3073)
    return records.tobytes()


def make_batches(fmt: str, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, bytes]]:
    """File name -> (images, labels, file bytes) for a tiny CIFAR-10 with 2 or 3 images per batch."""
    out = {}
    for split in ("train", "test"):
        for i, name in enumerate(batch_names(split, fmt)):
            n = 2 + i % 2
            images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n)
            data = binary_batch_bytes(images, labels) if fmt == "binary" else python_batch_bytes(images, labels, name)
            out[name] = (images, labels, data)
    return out


def meta_bytes(fmt: str) -> tuple[str, bytes]:
    if fmt == "binary":
        return "batches.meta.txt", ("\n".join(CLASSES) + "\n\n").encode()
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    return "batches.meta", pickle.dumps(meta, protocol=2)


def dirname(fmt: str) -> str:
    return "cifar-10-batches-bin" if fmt == "binary" else "cifar-10-batches-py"


def write_dir(root: Path, fmt: str, batches: dict) -> Path:
    d = root / dirname(fmt)
    d.mkdir(parents=True)
    for name, (_, _, data) in batches.items():
        (d / name).write_bytes(data)
    meta_name, meta = meta_bytes(fmt)
    (d / meta_name).write_bytes(meta)
    return d


def write_archive(path: Path, fmt: str, batches: dict, reverse: bool = False) -> Path:
    """A .tar.gz holding <dirname>/<batch files> and the meta file (in reverse name order if asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        entries = [(name, data) for name, (_, _, data) in batches.items()] + [meta_bytes(fmt)]
        if reverse:
            entries.reverse()
        info = tarfile.TarInfo(dirname(fmt))
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tf.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(f"{dirname(fmt)}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def archive_name(fmt: str) -> str:
    return "cifar-10-binary.tar.gz" if fmt == "binary" else "cifar-10-python.tar.gz"


def expected(batches: dict, fmt: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = batch_names(split, fmt)
    return (np.concatenate([batches[n][0] for n in names]), np.concatenate([batches[n][1] for n in names]))


@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_extracted_directory(tmp_path: Path, fmt: str, split: str, rng: np.random.Generator) -> None:
    batches = make_batches(fmt, rng)
    write_dir(tmp_path / "cifar10", fmt, batches)
    ds = load_cifar10(split, tmp_path, format=fmt)
    images, labels = expected(batches, fmt, split)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(labels), 32, 32, 3)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64 and list(ds.classes) == CLASSES


def test_channel_layout_is_planes(tmp_path: Path) -> None:
    """Pixel bytes are R plane, G plane, B plane, each row-major: check one known position."""
    rec = np.zeros(3073, np.uint8)
    rec[0] = 7
    rec[1 + 0 * 1024 + 2 * 32 + 5] = 11  # R at (h=2, w=5)
    rec[1 + 1 * 1024 + 2 * 32 + 5] = 22  # G
    rec[1 + 2 * 1024 + 31 * 32 + 0] = 33  # B at (h=31, w=0)
    p = tmp_path / "one.bin"
    p.write_bytes(rec.tobytes())
    images, labels = read_binary_batch(p)
    assert labels.tolist() == [7]
    assert images[0, 2, 5].tolist() == [11, 22, 0] and images[0, 31, 0, 2] == 33 and images.sum() == 66


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_archive_extracted_atomically(tmp_path: Path, fmt: str, rng: np.random.Generator) -> None:
    batches = make_batches(fmt, rng)
    archive = write_archive(tmp_path / "cifar10" / archive_name(fmt), fmt, batches)
    ds = load_cifar10("train", tmp_path, format=fmt, verify=False)
    images, labels = expected(batches, fmt, "train")
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    # Extracted next to the archive, no temporary directory left behind.
    assert sorted(p.name for p in archive.parent.iterdir()) == sorted([archive.name, dirname(fmt)])
    assert (archive.parent / dirname(fmt) / batch_names("test", fmt)[0]).is_file()


def test_read_from_archive_without_extracting(tmp_path: Path, rng: np.random.Generator) -> None:
    batches = make_batches("python", rng)
    write_archive(tmp_path / "cifar-10-python.tar.gz", "python", batches, reverse=True)  # flat layout
    ds = load_cifar10("test", tmp_path, verify=False, extract=False)
    np.testing.assert_array_equal(ds.images, batches["test_batch"][0])
    ds = load_cifar10("train", tmp_path, verify=False, extract=False)  # batches 1..5 in order, whatever the
    images, labels = expected(batches, "python", "train")  # order inside the archive
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert list(ds.classes) == CLASSES
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


def test_read_only_location_falls_back_to_archive(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnkit.data.cifar as cifar

    def refuse(archive: Path, dest: Path | None = None) -> list[Path]:
        raise PermissionError(13, "Permission denied", str(archive.parent))

    monkeypatch.setattr(cifar, "extract_archive", refuse)  # as in a read-only shared directory (even as root)
    batches = make_batches("binary", rng)
    write_archive(tmp_path / "ro" / "cifar-10-binary.tar.gz", "binary", batches)
    ds = load_cifar10("test", tmp_path / "ro", format="binary", verify=False)
    np.testing.assert_array_equal(ds.labels, batches["test_batch.bin"][1])
    assert not (tmp_path / "ro" / "cifar-10-batches-bin").exists()


def test_archive_checksum_verified(tmp_path: Path, rng: np.random.Generator) -> None:
    write_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", "python", make_batches("python", rng))
    msg = r"cifar-10-python.tar.gz: md5 mismatch: expected c58f30108f718f92721af3b95e74349a, got"
    with pytest.raises(DatasetError, match=msg):
        load_cifar10("train", tmp_path)
    assert not (tmp_path / "cifar10" / "cifar-10-batches-py").exists()


def test_truncated_and_unsafe_archives(tmp_path: Path, rng: np.random.Generator) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", "python", make_batches("python", rng))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"a.tar.gz: .*(truncated|corrupt|not a readable)"):
        extract_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-extracted left
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DatasetError, match=r"refusing unsafe archive member '../escape.txt'"):
        extract_archive(evil, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_missing_batch_in_directory(tmp_path: Path, rng: np.random.Generator) -> None:
    batches = make_batches("binary", rng)
    d = write_dir(tmp_path, "binary", batches)
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match=re.escape("missing CIFAR-10 batches data_batch_3.bin")):
        load_cifar10("train", tmp_path, format="binary")
    with pytest.raises(ValueError, match="format must be one of"):
        load_cifar10("train", tmp_path, format="matlab")


def test_truncated_batches(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 4])
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(binary_batch_bytes(images, labels)[:-10])
    msg = r"data_batch_1.bin: truncated or corrupt: 6136 bytes is not a whole number of 3073-byte records"
    with pytest.raises(DatasetError, match=msg):
        read_binary_batch(p)
    p = tmp_path / "data_batch_1"
    p.write_bytes(python_batch_bytes(images, labels)[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_1: not a readable CIFAR-10 python batch"):
        read_python_batch(p)
    p.write_bytes(pickle.dumps({b"data": _rows(images)[:, :100], b"labels": [3, 4]}, protocol=2))
    with pytest.raises(DatasetError, match=r"b'data' must be a uint8 array of shape \(n, 3072\), got uint8 \(2, 100\)"):
        read_python_batch(p)
    p.write_bytes(pickle.dumps({b"data": _rows(images)}, protocol=2))
    with pytest.raises(DatasetError, match="lacks the key 'labels'"):
        read_python_batch(p)


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo owned > owned.txt",))


class _Rot13:
    def __reduce__(self) -> tuple:
        return (codecs.encode, ("abc", "rot13"))


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    msg = r"data_batch_1: refusing to unpickle global (posix|os|nt)\.system"
    with pytest.raises(UnsafePickleError, match=msg) as e:
        read_python_batch(p)
    assert isinstance(e.value, DatasetError) and "may be malicious" in str(e.value)
    assert not (tmp_path / "owned.txt").exists()
    for proto in (0, 2, 4, 5):
        with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
            restricted_unpickle(pickle.dumps(eval, protocol=proto))  # a bare global is refused too
    with pytest.raises(UnsafePickleError, match="only latin-1 allowed"):
        restricted_unpickle(pickle.dumps(_Rot13(), protocol=2))


def test_restricted_unpickler_allows_arrays() -> None:
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    payload = {b"data": x, b"name": b"\x00\xff bytes", "text": "str"}
    got = RestrictedUnpickler(io.BytesIO(pickle.dumps(payload, protocol=2))).load()
    np.testing.assert_array_equal(got[b"data"], x)
    assert got[b"name"] == b"\x00\xff bytes" and got["text"] == "str"


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` opcode (SHORT_BINSTRING / BINSTRING): what the real CIFAR-10 files contain."""
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b


def _py2_batch_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as Python 2's cPickle with numpy 1.x wrote the originals (hand-assembled opcodes):
    str instead of bytes, and the ndarray rebuilt via numpy.core.multiarray._reconstruct."""
    n = len(labels)
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
        + b"(K\x03" + _py2_str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + b"K\x00tb"  # __setstate__
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _py2_str(b"b") + b"\x87R"
        + b"(K\x01" + b"(M" + struct.pack("<H", n) + b"M" + struct.pack("<H", 3072) + b"t"  # version, shape
        + dtype + b"\x89" + _py2_str(_rows(images).tobytes()) + b"tb"  # dtype, fortran=False, raw bytes
    )
    return (
        b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"training batch 1 of 5")
        + _py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
        + _py2_str(b"data") + array
        + _py2_str(b"filenames") + b"](" + b"".join(_py2_str(b"f%d.png" % i) for i in range(n)) + b"e"
        + b"u."
    )


def test_python2_style_pickle(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    p = tmp_path / "data_batch_1"
    p.write_bytes(_py2_batch_pickle(images, [4, 0, 9]))
    got, labels = read_python_batch(p)
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [4, 0, 9]


def test_load_dataset_by_name(tmp_path: Path, rng: np.random.Generator) -> None:
    from cnnkit.data import load_dataset

    batches = make_batches("binary", rng)
    write_dir(tmp_path / "cifar10", "binary", batches)
    ds = load_dataset("CIFAR-10", "test", tmp_path, format="binary")
    assert ds.name == "cifar10/test" and ds.images.shape == (2, 32, 32, 3)
