"""IDX reading: the real MNIST / Fashion-MNIST files, raw and gzip files, corrupt and truncated files."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import DatasetError, DatasetNotFoundError, load_fashion_mnist, load_idx_pair, load_mnist, read_idx, write_idx
from cnnkit.data.idx import decode_idx, encode_idx, read_maybe_gzip
from tests.data import call_within, real_data_dir

# Per-class counts of the canonical MNIST files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# md5 of the uncompressed files (SOURCES.md): the decoded arrays re-encoded must give these back.
UNCOMPRESSED_MD5 = {
    ("mnist", "train"): ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624"),
    ("mnist", "test"): ("2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
    ("fashion-mnist", "train"): ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9"),
    ("fashion-mnist", "test"): ("8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
}


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_files(dataset: str, split: str) -> None:
    root = real_data_dir()
    if not (root / dataset).is_dir():
        pytest.skip(f"{root / dataset} not present")
    ds = load_mnist(split, root, dataset=dataset)  # verify=True: sizes and md5s checked
    n = 60000 if split == "train" else 10000
    assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
    assert len(ds.classes) == 10 and ds.name == f"{dataset}/{split}"
    if dataset == "mnist":
        expected = MNIST_TRAIN_COUNTS if split == "train" else MNIST_TEST_COUNTS
    else:
        expected = [n // 10] * 10
    assert ds.class_counts().tolist() == expected
    # Re-encoding the decoded arrays reproduces the canonical uncompressed bytes exactly.
    img_md5, lab_md5 = UNCOMPRESSED_MD5[(dataset, split)]
    assert hashlib.md5(encode_idx(ds.images[..., 0])).hexdigest() == img_md5
    assert hashlib.md5(encode_idx(ds.labels.astype(np.uint8))).hexdigest() == lab_md5


def test_fashion_classes_and_first_label() -> None:
    root = real_data_dir()
    if not (root / "fashion-mnist").is_dir():
        pytest.skip("no fashion-mnist")
    ds = load_fashion_mnist("test", root)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.labels[:5].tolist() == [9, 2, 1, 1, 6]  # the first test labels of Fashion-MNIST


def test_raw_idx_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, size=7).astype(np.uint8)
    write_idx(tmp_path / "img-idx3-ubyte", images)
    write_idx(tmp_path / "lab-idx1-ubyte", labels)
    raw = (tmp_path / "img-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and len(raw) == 16 + images.size  # raw, not compressed
    ds = load_idx_pair(tmp_path / "img-idx3-ubyte", tmp_path / "lab-idx1-ubyte", classes=("a", "b", "c"))
    np.testing.assert_array_equal(ds.images[..., 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.images.shape == (7, 5, 4, 1) and ds.images.flags.writeable


def test_gzip_detected_by_magic_not_name(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.integers(0, 256, size=(3, 2, 2), dtype=np.uint8)
    # gzip content under a name without .gz, and raw content under a .gz name: both read.
    (tmp_path / "a").write_bytes(gzip.compress(encode_idx(x)))
    (tmp_path / "b.gz").write_bytes(encode_idx(x))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), x)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), x)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_dtypes_big_endian(tmp_path: Path, dtype: type, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((2, 3)) * 100).astype(dtype)
    path = write_idx(tmp_path / "x.gz", x)
    y = read_idx(path)
    assert y.dtype == np.dtype(dtype).newbyteorder("=") and y.dtype.isnative
    np.testing.assert_array_equal(y, x)
    if np.dtype(dtype).itemsize > 1:  # the payload is stored big-endian
        assert gzip.decompress(path.read_bytes())[12:] == x.astype(np.dtype(dtype).newbyteorder(">")).tobytes()


def test_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(b"\x01\x02\x08\x03" + bytes(20))
    with pytest.raises(DatasetError, match=r"bad-idx3-ubyte.*bad magic number 0x01020803"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01" + bytes(8))  # unknown type code 0x07
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(p)


def test_truncated_raw(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "t-idx3-ubyte"
    p.write_bytes(encode_idx(x)[:-5])
    with pytest.raises(DatasetError, match=r"t-idx3-ubyte: truncated: .*\(2, 3, 4\).*24 bytes after.*got 19 bytes"):
        read_idx(p)
    p.write_bytes(encode_idx(x)[:10])  # cut inside the header
    with pytest.raises(DatasetError, match="truncated: the IDX header of 3 dimensions needs 16 bytes, got 10"):
        read_idx(p)
    p.write_bytes(encode_idx(x) + b"xx")
    with pytest.raises(DatasetError, match="trailing bytes"):
        read_idx(p)


def test_truncated_gzip(tmp_path: Path, rng: np.random.Generator) -> None:
    data = gzip.compress(encode_idx(rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)))
    p = tmp_path / "cut-idx3-ubyte.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut-idx3-ubyte.gz: truncated gzip"):
        read_idx(p)
    corrupt = bytearray(data)
    corrupt[-6] ^= 0xFF  # break the CRC / length trailer
    p.write_bytes(bytes(corrupt))
    with pytest.raises(DatasetError, match=r"cut-idx3-ubyte.gz: corrupt gzip"):
        read_idx(p)


def test_mismatched_counts_and_bad_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / "i", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "l", np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match=r"holds 3 images but .* holds 4 labels"):
        load_idx_pair(tmp_path / "i", tmp_path / "l")
    write_idx(tmp_path / "l", np.array([0, 1, 5], np.uint8))
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 2\)"):
        load_idx_pair(tmp_path / "i", tmp_path / "l", classes=("a", "b"))
    with pytest.raises(DatasetError, match="file not found"):
        read_idx(tmp_path / "nope")


def test_decode_idx_bytes() -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(decode_idx(encode_idx(x)), x)
    with pytest.raises(ValueError, match="cannot write dtype uint16"):
        encode_idx(np.zeros(2, np.uint16))


# -- untrusted files: bounded memory and time, a clean error every time ------------------------------

MNIST_HEADER = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
DECLARED = 60000 * 28 * 28  # 47,040,000 bytes


def _gzip_bomb(path: Path, header: bytes, mebibytes: int) -> Path:
    """``header`` then ``mebibytes`` MiB of zeros, gzip-compressed: a few KB per decompressed MiB. Written as
    concatenated gzip members (one stream for gzip readers), each compressing the same 1 MiB of zeros."""
    zeros = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(header, mtime=0))
        for _ in range(mebibytes):
            f.write(zeros)
    return path


def test_gzip_bomb_with_a_matching_header_fails_fast(tmp_path: Path) -> None:
    p = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", MNIST_HEADER, 1024)  # 1 GiB behind a 47 MB header
    assert p.stat().st_size < 2 << 20
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: more data than the header declares"):
        read_idx(p)
    assert time.perf_counter() - t0 < 1.0  # decompresses the declared 47 MB and one byte, not the 1 GiB
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="more data than the header declares"):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < DECLARED + (8 << 20), f"peak allocation {peak:,} bytes"  # the declared array, and a few buffers


def test_header_over_the_limit_fails_before_decompressing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnkit.limits import LIMITS

    p = _gzip_bomb(tmp_path / "images.gz", MNIST_HEADER, 16)
    monkeypatch.setattr(LIMITS, "file_bytes", 1 << 20)  # the file (about 20 KB) is within it, its header is not
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        with pytest.raises(DatasetError, match=r"images.gz: the IDX header's shape \(60000, 28, 28\) of uint8 would take "
                                               r"47,040,000 bytes, over the limit of 1,048,576 \(CNNKIT_MAX_FILE_BYTES\)"):
            read_idx(p)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5 and peak < 4 << 20, (elapsed, peak)  # nothing decompressed past the header
    # the same header in a raw file: refused from the header, not by comparing with the file's size
    raw = tmp_path / "images-idx3-ubyte"
    raw.write_bytes(MNIST_HEADER + bytes(100))
    with pytest.raises(DatasetError, match="over the limit"):
        read_idx(raw)


def test_header_declaring_an_impossible_size(tmp_path: Path) -> None:
    # 255 dimensions of 2**32 - 1: about 2**8160 elements (a product that would wrap around in int64)
    head = bytes([0, 0, 0x0E, 255]) + b"\xff\xff\xff\xff" * 255
    p = tmp_path / "huge.gz"
    p.write_bytes(gzip.compress(head + bytes(64)))
    with pytest.raises(DatasetError, match=r"huge.gz: the IDX header's shape \(4294967295, .*over the limit of"):
        read_idx(p)
    raw = tmp_path / "huge-raw"
    raw.write_bytes(head + bytes(64))
    with pytest.raises(DatasetError, match="over the limit of"):
        read_idx(raw)
    # four dimensions of 2**16: 2**64 elements, which is 0 in int64 arithmetic, with an empty payload
    wrap = bytes([0, 0, 8, 4]) + (1 << 16).to_bytes(4, "big") * 4
    (tmp_path / "wrap").write_bytes(wrap)
    with pytest.raises(DatasetError, match="over the limit of"):
        read_idx(tmp_path / "wrap")
    with pytest.raises(DatasetError, match="over the limit of"):
        decode_idx(wrap, "wrap")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_symlink_to_dev_zero_fails_at_once(tmp_path: Path) -> None:
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.symlink_to("/dev/zero")
    exc = call_within(5, read_idx, p)
    assert isinstance(exc, DatasetError) and "is not a regular file" in str(exc), exc
    assert str(p) in str(exc)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_fails_at_once(tmp_path: Path) -> None:
    p = tmp_path / "labels-idx1-ubyte"
    os.mkfifo(p)
    exc = call_within(5, read_idx, p, fifo=p)
    assert isinstance(exc, DatasetError) and f"{p} is not a regular file" in str(exc), exc
    exc = call_within(5, load_idx_pair, p, p, fifo=p)
    assert isinstance(exc, DatasetError), exc


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a regular file"):
        read_idx(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope: file not found") as e:
        read_idx(tmp_path / "nope")
    assert isinstance(e.value, DatasetNotFoundError)


def test_gzip_payload_truncated_and_trailing(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "t-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(encode_idx(x)[:-5]))  # a complete gzip stream, short of the declared payload
    with pytest.raises(DatasetError, match=r"t-idx3-ubyte.gz: truncated: header announces shape \(2, 3, 4\).*got 19 bytes"):
        read_idx(p)
    p.write_bytes(gzip.compress(encode_idx(x) + b"x"))  # one byte too many
    with pytest.raises(DatasetError, match="more data than the header declares: shape \\(2, 3, 4\\) of uint8 is 24 bytes"):
        read_idx(p)
    p.write_bytes(gzip.compress(encode_idx(x)[:10]))  # cut inside the header
    with pytest.raises(DatasetError, match="truncated: the IDX header of 3 dimensions needs 16 bytes, got 10"):
        read_idx(p)
    p.write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(DatasetError, match="truncated: expected at least 4 bytes of IDX magic number, got 2 bytes"):
        read_idx(p)
    p.write_bytes(gzip.compress(encode_idx(x)) + b"garbage after the stream")
    with pytest.raises(DatasetError, match=r"t-idx3-ubyte.gz: corrupt gzip data"):
        read_idx(p)
    p.write_bytes(b"\x1f\x8b" + bytes(30))  # the gzip magic, then no gzip header
    with pytest.raises(DatasetError, match=r"t-idx3-ubyte.gz: (corrupt gzip data|truncated gzip file)"):
        read_idx(p)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "ok.gz", x)), x)  # and a good one still reads


def test_size_and_md5_checked_on_the_stored_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l.gz", np.array([7, 2, 1], np.uint8))
    data = path.read_bytes()
    np.testing.assert_array_equal(read_idx(path, len(data), hashlib.md5(data).hexdigest()), [7, 2, 1])
    with pytest.raises(DatasetError, match=f"l.gz: truncated: expected {len(data) + 1} bytes, got {len(data)} bytes"):
        read_idx(path, len(data) + 1)
    with pytest.raises(DatasetError, match=r"l.gz: md5 mismatch"):
        read_idx(path, None, "0" * 32)


def test_read_maybe_gzip_is_bounded(tmp_path: Path) -> None:
    p = _gzip_bomb(tmp_path / "bomb.gz", b"", 64)
    with pytest.raises(DatasetError, match=r"bomb.gz: decompresses to more than 1,000,000 bytes, the limit"):
        read_maybe_gzip(p, limit=1_000_000)
    assert read_maybe_gzip(p, limit=64 << 20) == bytes(64 << 20)
    raw = tmp_path / "raw"
    raw.write_bytes(b"abc")
    assert read_maybe_gzip(raw) == b"abc"
    with pytest.raises(DatasetError, match="over the limit of 2"):
        read_maybe_gzip(raw, limit=2)


def test_big_endian_payloads_read_in_place(tmp_path: Path, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((3, 5)) * 1000).astype(np.int32)
    for name in ("a", "a.gz"):
        y = read_idx(write_idx(tmp_path / name, x))
        assert y.dtype == np.int32 and y.dtype.isnative and y.flags.writeable and y.flags.c_contiguous
        np.testing.assert_array_equal(y, x)


def test_labels_too_large_for_default_classes(tmp_path: Path) -> None:
    write_idx(tmp_path / "i", np.zeros((2, 2, 2), np.uint8))
    write_idx(tmp_path / "l", np.array([0, 2**31 - 1], np.int32))
    with pytest.raises(DatasetError, match=r"l: the largest label is 2147483647; at most 100,000 classes"):
        load_idx_pair(tmp_path / "i", tmp_path / "l")
