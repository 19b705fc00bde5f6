"""IDX reading: the real MNIST / Fashion-MNIST files, raw and gzip files, corrupt and truncated files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import DatasetError, load_fashion_mnist, load_idx_pair, load_mnist, read_idx, write_idx
from cnnkit.data.idx import decode_idx, encode_idx
from tests.data import real_data_dir

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
