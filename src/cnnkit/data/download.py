"""Fetching dataset files from their mirrors: streamed, checksummed, renamed into place atomically."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cnnkit.data.checksum import CHUNK, check_digest, check_file, check_size
from cnnkit.data.errors import DatasetError, DatasetNotFoundError
from cnnkit.data.paths import candidate_paths, locate_file, resolve_data_dir
from cnnkit.data.registry import DatasetSpec, FileSpec, get_spec
from cnnkit.limits import LIMITS

Progress = Callable[[str, int, "int | None"], None]
"""``progress(url, bytes_so_far, total_or_None)``, called after every chunk received."""


def fetch_file(
    f: FileSpec,
    urls: Sequence[str],
    dest: str | os.PathLike,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``f`` to ``dest`` from the first of ``urls`` that delivers a file with the right size and md5.

    Each attempt streams into a temporary file in ``dest``'s directory, hashing as it goes; only a file that
    passes the checks is renamed onto ``dest`` (``os.replace``, atomic), so ``dest`` never holds a partial or
    wrong file and a failed attempt leaves nothing behind. Raises DatasetError listing every URL tried and
    why it failed.

    Examples
    --------
    A ``file://`` URL stands in for a mirror; a file whose size or md5 is wrong is never put in place.

    >>> import hashlib, tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import FileSpec, fetch_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     src = Path(d) / "a.bin"
    ...     _ = src.write_bytes(b"abc")
    ...     f = FileSpec("a.bin", hashlib.md5(b"abc").hexdigest(), size=3)
    ...     print(fetch_file(f, [src.as_uri()], Path(d) / "data" / "a.bin").read_bytes())
    b'abc'
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        try:
            _fetch_one(url, f, dest, timeout, progress)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError/HTTPError are OSErrors
            failures.append(f"  {url}: {type(e).__name__}: {e}")
    tried = "\n".join(failures) if failures else "  (no mirrors given)"
    raise DatasetError(f"could not download {f.name} to {dest}; tried:\n{tried}")


def _fetch_one(url: str, f: FileSpec, dest: Path, timeout: float, progress: Progress | None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=dest.parent)
    try:
        md5 = hashlib.md5()
        sha256 = hashlib.sha256() if f.sha256 else None
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            total = int(length) if length and length.isdigit() else f.size
            most = f.size if f.size is not None else LIMITS.file_bytes  # a mirror may send without end
            while chunk := resp.read(CHUNK):
                if received + len(chunk) > most:
                    raise DatasetError(f"{url}: too long: it sends more than the {most:,} bytes expected of {f.name}")
                out.write(chunk)
                md5.update(chunk)
                if sha256 is not None:
                    sha256.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(url, received, total)
        check_size(url, received, f.size)
        check_digest(url, md5.hexdigest(), f.md5, "md5")
        if sha256 is not None:
            check_digest(url, sha256.hexdigest(), f.sha256, "sha256")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def download(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Make sure the files of ``dataset`` are in the data directory, fetching the missing ones.

    Args:
        dataset: a registered name (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``) or a DatasetSpec.
        data_dir: the data directory (default: ``$CNNKIT_DATA``, else ``~/.cache/cnnkit``); new files go to
            ``<data_dir>/<dataset>/<file>``.
        files: roles or names of the files wanted (default: all), e.g. ``["python"]`` for CIFAR-10.
        timeout: seconds per network operation.
        progress: optional callback ``(url, bytes_so_far, total_or_None)``.

    Returns:
        The path of each wanted file, in order. A file already present with the right md5 is not fetched
        again; one present with a wrong size or md5 is fetched again and replaced. Mirrors are tried in
        order; DatasetError lists what was tried when all fail.

    Examples
    --------
    >>> from cnnkit.data import download
    >>> paths = download("mnist")  # doctest: +SKIP

    Offline, with a ``file://`` mirror standing in for the web:

    >>> import hashlib, tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import DatasetSpec, FileSpec
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "a.bin").write_bytes(b"abc")
    ...     spec = DatasetSpec("toy", (FileSpec("a.bin", hashlib.md5(b"abc").hexdigest(), 3),), (Path(d).as_uri() + "/",))
    ...     paths = download(spec, Path(d) / "data")
    ...     print([p.relative_to(d).as_posix() for p in paths])
    ['data/toy/a.bin']
    """
    spec = get_spec(dataset)
    wanted = spec.files if files is None else tuple(spec.file(x) for x in files)
    root = resolve_data_dir(data_dir)
    paths: list[Path] = []
    for f in wanted:
        existing = locate_file(spec.name, f.name, root, f.size)
        if existing is not None:
            try:
                check_file(existing, f.size, f.md5)
            except DatasetError:
                pass  # present but wrong: fetch a good copy (it lands in <root>/<dataset>/, found first)
            else:
                paths.append(existing)
                continue
        urls = [spec.url(m, f) for m in spec.mirrors]
        paths.append(fetch_file(f, urls, root / spec.name / f.name, timeout, progress))
    return paths


def require_files(
    spec: DatasetSpec, files: Sequence[FileSpec], data_dir: str | os.PathLike | None, fetch: bool
) -> list[Path]:
    """Paths of ``files`` of ``spec`` in the data directory, downloading the missing ones when ``fetch``.

    Raises DatasetNotFoundError naming every place looked in when a file is missing and ``fetch`` is off.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.data import get_spec
    >>> from cnnkit.data.download import require_files
    >>> spec = get_spec("mnist")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     require_files(spec, [spec.file("test-labels")], d, fetch=False)
    Traceback (most recent call last):
    ...
    cnnkit.data.errors.DatasetNotFoundError: mnist: missing t10k-labels-idx1-ubyte.gz (looked for ...
    """
    paths = [locate_file(spec.name, f.name, data_dir, f.size) for f in files]
    missing = [f for f, p in zip(files, paths) if p is None]
    if missing and fetch:
        download(spec, data_dir, files=[f.name for f in missing])
        paths = [locate_file(spec.name, f.name, data_dir, f.size) for f in files]
        missing = [f for f, p in zip(files, paths) if p is None]
    if missing:
        looked = "; ".join(
            " or ".join(str(p) for p in candidate_paths(spec.name, f.name, data_dir)) for f in missing
        )
        raise DatasetNotFoundError(
            f"{spec.name}: missing {', '.join(f.name for f in missing)} (looked for {looked}); pass "
            f"download=True, set $CNNKIT_DATA, or give data_dir"
        )
    return [p for p in paths if p is not None]
