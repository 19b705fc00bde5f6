"""Downloads from a local HTTP server (never the real internet): success, bad checksum, mirror fallback."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import DatasetError, DatasetSpec, FileSpec, download, fetch_file, load_mnist, write_idx
from cnnkit.data.registry import MNIST

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(base URL, served directory) of an HTTP server on 127.0.0.1 in a thread."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _spec(mirrors: tuple[str, ...], content: bytes = PAYLOAD) -> DatasetSpec:
    f = FileSpec("blob.bin", hashlib.md5(content).hexdigest(), len(content),
                 hashlib.sha256(content).hexdigest(), role="blob")
    return DatasetSpec("fake", (f,), mirrors)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_download_success_and_skip_when_present(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "m1").mkdir()
    (root / "m1" / "blob.bin").write_bytes(PAYLOAD)
    seen: list[int] = []
    data = tmp_path / "data"
    (path,) = download(_spec((url + "m1/",)), data, progress=lambda u, n, total: seen.append(n))
    assert path == data / "fake" / "blob.bin" and path.read_bytes() == PAYLOAD
    assert seen[-1] == len(PAYLOAD)
    assert _leftovers(data / "fake") == ["blob.bin"]  # no temporary file left
    (root / "m1" / "blob.bin").unlink()  # a second call must not need the server
    assert download(_spec((url + "m1/",)), data) == [path]


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "blob.bin").write_bytes(PAYLOAD[::-1])  # same size, different bytes
    data = tmp_path / "data"
    msg = r"could not download blob.bin.*tried:\n.*blob.bin: DatasetError: .*md5 mismatch"
    with pytest.raises(DatasetError, match=msg):
        download(_spec((url,)), data)
    assert _leftovers(data / "fake") == []


def test_fallback_to_second_mirror(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "good").mkdir()
    (root / "good" / "blob.bin").write_bytes(PAYLOAD)
    (root / "short").mkdir()
    (root / "short" / "blob.bin").write_bytes(PAYLOAD[:100])
    spec = _spec((url + "missing/", url + "short/", url + "good/"))
    (path,) = download(spec, tmp_path)
    assert path.read_bytes() == PAYLOAD and _leftovers(path.parent) == ["blob.bin"]


def test_all_mirrors_fail_lists_them(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    spec = _spec((url + "a/", url + "b/"))
    with pytest.raises(DatasetError) as e:
        download(spec, tmp_path)
    msg = str(e.value)
    assert f"{url}a/blob.bin: HTTPError: HTTP Error 404" in msg and f"{url}b/blob.bin" in msg
    assert _leftovers(tmp_path / "fake") == []


def test_bad_existing_file_is_replaced(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "blob.bin").write_bytes(PAYLOAD)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "blob.bin").write_bytes(b"corrupt")
    (path,) = download(_spec((url,)), tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    f = _spec(()).files[0]
    dest = fetch_file(f, [src.as_uri()], tmp_path / "out" / "blob.bin")
    assert dest.read_bytes() == PAYLOAD


def test_load_with_download(server: tuple[str, Path], tmp_path: Path) -> None:
    """load_mnist(download=True) fetches just the missing files of the split, through the registry's logic."""
    url, root = server
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    files = {
        "t10k-images-idx3-ubyte.gz": write_idx(root / "t10k-images-idx3-ubyte.gz", images).read_bytes(),
        "t10k-labels-idx1-ubyte.gz": write_idx(
            root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3], np.uint8)
        ).read_bytes(),
    }
    fake = [
        FileSpec(f.name, hashlib.md5(files[f.name]).hexdigest(), len(files[f.name]), role=f.role)
        if f.name in files else f
        for f in MNIST.files
    ]
    spec = DatasetSpec("mnist", tuple(fake), (url + "nowhere/", url), MNIST.classes)
    ds = load_mnist("test", tmp_path, dataset=spec, download=True)
    np.testing.assert_array_equal(ds.images[..., 0], images)
    assert ds.labels.tolist() == [1, 2, 3]
    assert _leftovers(tmp_path / "mnist") == sorted(files)
