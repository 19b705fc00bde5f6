"""CIFAR-10 in both of its formats, written by the test in the files' own layouts; pickles read as data, never run."""

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


# -- the data-only pickle reader: real-format batches read, nothing ever executed ---------------------


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every entry point of the pickle module fail: the reader must not need any of them."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pickle module was asked to unpickle")

    for name in ("load", "loads", "Unpickler", "_Unpickler", "_load", "_loads"):
        if hasattr(pickle, name):
            monkeypatch.setattr(pickle, name, refuse)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_format_batches(tmp_path: Path, rng: np.random.Generator, protocol: int, no_unpickling: None) -> None:
    """Python 2's CIFAR files have bytes keys (protocol 2); a Python 3 re-save may have str keys (protocol 4/5)."""
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    keys = (lambda k: k.encode()) if protocol == 2 else str
    batch = {
        keys("batch_label"): b"training batch 1 of 5",
        keys("labels"): [4, 0, 9],
        keys("data"): _rows(images),
        keys("filenames"): [b"a.png", b"b.png", b""],
    }
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps(batch, protocol=protocol))
    got, labels = read_python_batch(p)
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [4, 0, 9] and labels.dtype == np.int64 and got.flags.writeable
    back = restricted_unpickle(p.read_bytes())
    assert isinstance(back, dict) and back[keys("filenames")] == [b"a.png", b"b.png", b""]
    assert back[keys("batch_label")] == b"training batch 1 of 5"


def test_python2_file_read_without_unpickling(tmp_path: Path, rng: np.random.Generator, no_unpickling: None) -> None:
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "test_batch").write_bytes(_py2_batch_pickle(images, [1, 2]))
    got, labels = read_python_batch(tmp_path / "test_batch")
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [1, 2]
    batches = make_batches("python", rng)
    write_dir(tmp_path / "c", "python", batches)
    ds = load_cifar10("test", tmp_path / "c")
    np.testing.assert_array_equal(ds.images, batches["test_batch"][0])
    assert list(ds.classes) == CLASSES


def test_arrays_of_plain_numbers() -> None:
    for x in (np.arange(6, dtype=">f8").reshape(2, 3), np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
              np.array([True, False]), np.array(3.5, np.float32), np.zeros((0, 3072), np.uint8)):
        for protocol in (2, 4, 5):
            got = restricted_unpickle(pickle.dumps({"x": x}, protocol=protocol))
            assert isinstance(got, dict)
            np.testing.assert_array_equal(got["x"], x)
            assert got["x"].dtype == x.dtype and got["x"].shape == x.shape


def _refused(data: bytes, pattern: str, error: type[DatasetError] = DatasetError) -> DatasetError:
    with pytest.raises(error, match=pattern) as e:
        restricted_unpickle(data, "data_batch_1")
    assert str(e.value).startswith("data_batch_1: ")
    return e.value


def test_code_is_refused_and_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_unpickling: None) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    for protocol in (0, 1, 2, 3, 4, 5):
        data = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=protocol)
        if protocol == 0:  # refused at its first opcode, DICT, which a CIFAR-10 batch never has
            _refused(data, "unsupported pickle opcode DICT")
        else:
            _refused(data, r"refusing to unpickle global (posix|os|nt)\.system", UnsafePickleError)
    assert not (tmp_path / "owned.txt").exists()
    # hand-made: GLOBAL os.system, REDUCE with a command (protocol 2 opcodes)
    _refused(b"\x80\x02cos\nsystem\nX\x13\x00\x00\x00echo owned>owned.txt\x85R.", r"global os\.system", UnsafePickleError)
    # a module that is not imported stays unimported: nothing is looked up by name
    assert "antigravity" not in sys.modules
    _refused(b"\x80\x02cantigravity\nfly\n.", r"global antigravity\.fly", UnsafePickleError)
    assert "antigravity" not in sys.modules and not (tmp_path / "owned.txt").exists()
    # opcodes that call code without a global on the allow-list, named in the message
    cases = {
        "INST": b"(U\x04echoios\nsystem\n.",
        "OBJ": b"\x80\x02(cnumpy\nndarray\no.",
        "NEWOBJ": b"\x80\x02cnumpy\nndarray\n)\x81.",
        "BINPERSID": b"\x80\x02U\x01xQ.",
        "EXT1": b"\x80\x02\x82\x01.",
        "BUILD": b"\x80\x02}}b.",
    }
    for opcode, data in cases.items():
        _refused(data, rf"refusing to unpickle .*{opcode}", UnsafePickleError)
    # the allowed globals only in their own patterns
    _refused(b"\x80\x02cnumpy\nndarray\n)R.", "a call of numpy.ndarray", UnsafePickleError)
    _refused(b"\x80\x02cnumpy\ndtype\n.", r"numpy\.dtype as data", UnsafePickleError)
    _refused(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.", "only latin-1 allowed", UnsafePickleError)
    _refused(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "only bool, integers and floats")
    _refused(pickle.dumps(np.zeros(2, dtype=[("a", "i4")]), protocol=2), "only bool, integers and floats")
    _refused(pickle.dumps(np.float32(1.0), protocol=2), r"global numpy\._?core\.multiarray\.scalar", UnsafePickleError)
    assert not (tmp_path / "owned.txt").exists()


def test_declared_lengths_bounded_by_the_file() -> None:
    for opcode in (b"B", b"X"):  # BINBYTES, BINUNICODE: 4-byte lengths
        _refused(b"\x80\x03" + opcode + struct.pack("<I", 0xFFFFFFF0) + b"abc.", r"expected 4294967280 bytes .* only 4 remain")
    _refused(b"\x80\x02T" + struct.pack("<I", 0x7FFFFFF0) + b"abc.", r"expected 2147483632 bytes .* only 4 remain")
    for opcode in (b"\x8e", b"\x8d", b"\x96"):  # BINBYTES8, BINUNICODE8, BYTEARRAY8: 8-byte lengths
        _refused(b"\x80\x05" + opcode + struct.pack("<Q", 1 << 62) + b"abc.", r"expected 4611686018427387904 bytes")
    # an array whose shape declares more than its bytes hold
    dtype = b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    state = b"(K\x01(J\x00\x00\x00\x10J\x00\x00\x00\x10t" + dtype + b"\x89U\x01\x00tb"
    data = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R" + state + b"."
    _refused(data, r"an array of shape \(268435456, 268435456\) and dtype uint8 needs 72,057,594,037,927,936 bytes, got 1")


def test_nesting_and_structure_bounded() -> None:
    from cnnkit.data.cifar import MAX_PICKLE_DEPTH

    _refused(b"\x80\x02" + b"(" * 100_000 + b".", f"MARKs nested deeper than {MAX_PICKLE_DEPTH}")
    _refused(b"\x80\x02)" + b"\x85" * 100_000 + b".", f"containers nested deeper than {MAX_PICKLE_DEPTH}")
    _refused(b"\x80\x02]" + b"]" * 100 + b"a" * 100 + b".", f"containers nested deeper than {MAX_PICKLE_DEPTH}")
    _refused(b"\x80\x02]q\x00h\x00a.", "a container that holds itself")
    _refused(b"\x80\x02]q\x00]h\x00ah\x00]a.", "changes a list after it was put inside another container")
    _refused(b"\x80\x02}(]Nu.", "a dict key of type list")
    _refused(b"\x80\x02h\x05.", "memo entry 5 used before it is set")
    _refused(b"\x80\x02a.", "stack underflow")
    _refused(b"\x80\x02e.", "needs a MARK")
    _refused(b"\x80\x02N.junk", r"4 bytes after the end of the pickle")
    _refused(b"", "pickle exhausted before seeing STOP")
    _refused(b"\x80\x02\xff.", r"opcode b'\\xff' unknown")
    _refused(pickle.dumps({1, 2}, protocol=4), "unsupported pickle opcode EMPTY_SET")
    _refused(b"\x80\x07N.", "unsupported pickle protocol 7")


def test_opcode_count_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnkit.data.cifar as cifar

    monkeypatch.setattr(cifar, "MAX_PICKLE_OPCODES", 1000)
    _refused(b"\x80\x02" + b"N" * 1000 + b".", "more than 1,000 opcodes")  # PROTO and 1000 NONEs


def test_malformed_batches_give_clean_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    p = tmp_path / "data_batch_1"
    rows = _rows(rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8))
    for payload, pattern in (
        ([rows], "a CIFAR-10 batch is a dict, got list"),
        ({b"data": rows, b"labels": [1, 2**70]}, "b'labels' must be a list of integers"),
        ({b"data": rows, b"labels": {1: 2}}, "b'labels' must be a list of integers, got dict"),
        ({b"data": rows, b"labels": [[1], [2, 3]]}, "b'labels' must be a list of integers"),
        ({b"data": rows.astype(np.float32), b"labels": [1, 2]}, r"b'data' must be a uint8 array .* got float32"),
        ({b"data": b"x" * 3072, b"labels": [1]}, r"b'data' must be a uint8 array .* got bytes"),
        ({("k" * 1000).encode(): 1}, r"lacks the key 'data'.*\(\d+ characters\)"),
    ):
        p.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(DatasetError, match=pattern) as e:
            read_python_batch(p)
        assert len(str(e.value)) < 600


def test_bad_meta_files(tmp_path: Path, rng: np.random.Generator) -> None:
    for fmt, meta in (("binary", b"\xff\xfe not utf-8"), ("python", pickle.dumps({b"label_names": [b"\xff"]}, protocol=2)),
                      ("python", pickle.dumps({b"label_names": 7}, protocol=2))):
        root = tmp_path / fmt / str(len(meta))
        d = write_dir(root, fmt, make_batches(fmt, rng))
        (d / ("batches.meta.txt" if fmt == "binary" else "batches.meta")).write_bytes(meta)
        with pytest.raises(DatasetError, match=r"(not UTF-8|must be a list of strings)"):
            load_cifar10("test", root, format=fmt)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_device_batches_fail_at_once(tmp_path: Path, rng: np.random.Generator) -> None:
    from tests.data import call_within

    d = write_dir(tmp_path, "binary", make_batches("binary", rng))
    (d / "test_batch.bin").unlink()
    os.mkfifo(d / "test_batch.bin")
    exc = call_within(5, read_binary_batch, d / "test_batch.bin", fifo=d / "test_batch.bin")
    assert isinstance(exc, DatasetError) and "is not a regular file" in str(exc), exc
    exc = call_within(5, read_python_batch, d / "test_batch.bin", fifo=d / "test_batch.bin")
    assert isinstance(exc, DatasetError), exc
    (d / "test_batch.bin").unlink()
    (d / "test_batch.bin").symlink_to("/dev/zero")
    exc = call_within(5, read_binary_batch, d / "test_batch.bin")
    assert isinstance(exc, DatasetError) and "is not a regular file" in str(exc), exc
    with pytest.raises(FileNotFoundError, match="file not found"):
        read_binary_batch(d / "nope.bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    os.mkfifo(archive)
    exc = call_within(5, extract_archive, archive, tmp_path / "out", fifo=archive)
    assert isinstance(exc, DatasetError) and "is not a regular file" in str(exc), exc


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def test_unsafe_archive_members(tmp_path: Path) -> None:
    link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("cifar-10-batches-bin/x")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../x"
    dev = tarfile.TarInfo("cifar-10-batches-bin/zero")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 5
    absolute = tarfile.TarInfo("/tmp/evil")
    absolute.size = 1
    for i, info in enumerate((link, hard, dev, absolute)):
        root = tmp_path / str(i)
        archive = _tar(root / "cifar-10-binary.tar.gz", [info], b"x")
        with pytest.raises(DatasetError, match="refusing unsafe archive member"):
            extract_archive(archive, tmp_path / "out")
        with pytest.raises(DatasetError, match="refusing unsafe archive member"):  # read without extracting
            load_cifar10("test", root, format="binary", verify=False, extract=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_archive_sizes_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnkit.limits import LIMITS

    big = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    big.size = 3073 * 400  # 1.2 MB of zeros: a few KB compressed
    archive = _tar(tmp_path / "cifar-10-binary.tar.gz", [big], bytes(big.size))
    monkeypatch.setattr(LIMITS, "file_bytes", 1 << 20)
    with pytest.raises(DatasetError, match=r"its members up to 'cifar-10-batches-bin/test_batch.bin' would take "
                                           r"1,229,200 bytes, over the limit of 1,048,576"):
        extract_archive(archive, tmp_path / "out")
    with pytest.raises(DatasetError, match="over the limit"):
        load_cifar10("test", tmp_path, format="binary", verify=False, extract=False)
    monkeypatch.setattr(LIMITS, "file_bytes", 4 << 20)
    ds = load_cifar10("test", tmp_path, format="binary", verify=False, extract=False)
    assert ds.images.shape == (400, 32, 32, 3)
    monkeypatch.setattr(LIMITS, "members", 3)
    many = [tarfile.TarInfo(f"d/{i}") for i in range(5)]
    with pytest.raises(DatasetError, match="more than 3 members"):
        extract_archive(_tar(tmp_path / "many.tar.gz", many), tmp_path / "out2")
