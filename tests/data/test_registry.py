"""Registry, checksums, file lookup and the data-directory precedence."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    FileSpec,
    check_file,
    file_digest,
    get_spec,
    list_datasets,
    load_mnist,
    resolve_data_dir,
    verify,
    write_idx,
)
from cnnkit.data.paths import locate_file
from tests.data import real_data_dir


def test_registry_contents() -> None:
    mnist = get_spec("MNIST")
    assert [f.name for f in mnist.files] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    ]
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert mnist.mirrors[1] == "http://yann.lecun.com/exdb/mnist/"
    assert mnist.file("train-images").md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist.file("train-images").size == 9912422
    assert mnist.url(mnist.mirrors[0], mnist.files[0]) == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    )
    assert get_spec("fashion_mnist") is DATASETS["fashion-mnist"] is get_spec("Fashion-MNIST")
    cifar = get_spec("cifar-10")
    assert cifar.file("python").md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.file("cifar-10-binary.tar.gz").md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    url = cifar.url(cifar.mirrors[0], cifar.file("python"))
    assert url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    for spec in DATASETS.values():
        for f in spec.files:
            assert len(f.md5) == 32 and (f.sha256 is None or len(f.sha256) == 64)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; known datasets: mnist, fashion-mnist, cifar10"):
        get_spec("svhn")
    with pytest.raises(KeyError, match="has no file 'valid-images'"):
        mnist.file("valid-images")


def test_real_checksums_match_registry() -> None:
    root = real_data_dir()
    statuses = verify("mnist", root)
    assert [s.status for s in statuses] == ["ok"] * 4
    assert statuses[0].path is not None and statuses[0].path.name == "train-images-idx3-ubyte.gz"
    f = get_spec("mnist").file("test-labels")  # small file: check the recorded sha256 too
    assert file_digest(statuses[3].path, "sha256") == f.sha256


def _fake_spec(content: bytes = b"hello dataset") -> DatasetSpec:
    f = FileSpec("blob.bin", hashlib.md5(content).hexdigest(), len(content), role="blob")
    return DatasetSpec("fake", (f,), mirrors=())


def test_check_file_ok_and_wrong(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    md5 = hashlib.md5(b"abc" * 1000).hexdigest()
    check_file(p, 3000, md5)
    check_file(p, None, None)
    with pytest.raises(DatasetError, match=rf"f.bin: md5 mismatch: expected {'0' * 32}, got {md5}"):
        check_file(p, 3000, "0" * 32)
    with pytest.raises(DatasetError, match=r"f.bin: truncated: expected 3001 bytes, got 3000 bytes"):
        check_file(p, 3001, md5)
    with pytest.raises(DatasetError, match="too long: expected 2999 bytes, got 3000"):
        check_file(p, 2999, md5)
    with pytest.raises(DatasetError, match="not found"):
        check_file(tmp_path / "missing", None, None)


def test_verify_statuses(tmp_path: Path) -> None:
    spec = _fake_spec()
    (s,) = verify(spec, tmp_path)
    assert s.status == "missing" and s.path is None and not s.ok
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "blob.bin").write_bytes(b"hello dataset")
    (s,) = verify(spec, tmp_path)
    assert s.status == "ok" and s.ok and s.path == tmp_path / "fake" / "blob.bin"
    (tmp_path / "fake" / "blob.bin").write_bytes(b"hello dataset!")
    (s,) = verify(spec, tmp_path)
    assert s.status == "bad-size" and "expected 13 bytes, got 14 bytes" in s.detail
    (tmp_path / "fake" / "blob.bin").write_bytes(b"jello dataset")
    (s,) = verify(spec, tmp_path)
    assert s.status == "bad-md5" and spec.files[0].md5 in s.detail


def test_list_datasets(tmp_path: Path) -> None:
    listing = {spec.name: st for spec, st in list_datasets(tmp_path)}
    assert set(listing) == {"mnist", "fashion-mnist", "cifar10"}
    assert all(s.status == "missing" for s in listing["mnist"])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x" * 4542)  # flat layout, right size
    listing = {spec.name: st for spec, st in list_datasets(tmp_path)}
    assert [s.status for s in listing["mnist"]] == ["missing", "missing", "missing", "present"]


def test_wrong_checksum_on_load(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    for f in get_spec("mnist").files:
        write_idx(d / f.name, np.zeros((2, 28, 28) if "images" in f.role else 2, np.uint8))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: truncated: expected 9912422 bytes"):
        load_mnist("train", tmp_path)
    ds = load_mnist("train", tmp_path, verify=False)  # a user's own (here tiny) files load without checks
    assert ds.images.shape == (2, 28, 28, 1)


def test_missing_files_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"mnist: missing t10k-images-idx3-ubyte.gz, t10k-labels") as e:
        load_mnist("test", tmp_path)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)
    assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in str(e.value)
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("valid", tmp_path)


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    assert resolve_data_dir() == home / ".cache" / "cnnkit"
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("~/data") == home / "data"
    monkeypatch.setenv("CNNKIT_DATA", "")
    assert resolve_data_dir(None) == home / ".cache" / "cnnkit"


def test_env_var_finds_real_files(monkeypatch: pytest.MonkeyPatch) -> None:
    root = real_data_dir()
    monkeypatch.setenv("CNNKIT_DATA", str(root))
    ds = load_mnist("test")
    assert ds.images.shape == (10000, 28, 28, 1)


def test_locate_prefers_dataset_subdir_and_right_size(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "x.gz").write_bytes(b"12345")
    assert locate_file("mnist", "x.gz", tmp_path) == tmp_path / "x.gz"  # flat layout
    (tmp_path / "mnist" / "x.gz").write_bytes(b"123")
    assert locate_file("mnist", "x.gz", tmp_path) == tmp_path / "mnist" / "x.gz"  # specific first
    assert locate_file("mnist", "x.gz", tmp_path, size=5) == tmp_path / "x.gz"  # size picks the right one
    assert locate_file("mnist", "y.gz", tmp_path) is None


def test_load_dataset_by_name() -> None:
    from cnnkit.data import load_dataset

    root = real_data_dir()
    ds = load_dataset("fashion_mnist", "test", root)
    assert ds.name == "fashion-mnist/test" and ds.classes[1] == "Trouser"
