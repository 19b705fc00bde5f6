"""Where dataset files live: the data directory and the file lookup inside it."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CNNKIT_DATA"
"""Environment variable naming the data directory when no ``data_dir`` argument is given."""


def default_data_dir() -> Path:
    """The cache directory used when neither an argument nor ``$CNNKIT_DATA`` names one: ``~/.cache/cnnkit``.

    Examples
    --------
    >>> from pathlib import Path
    >>> from cnnkit.data import default_data_dir
    >>> default_data_dir() == Path.home() / ".cache" / "cnnkit"
    True
    """
    return Path.home() / ".cache" / "cnnkit"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the explicit ``data_dir`` argument, else ``$CNNKIT_DATA``, else ``~/.cache/cnnkit``.

    ``~`` is expanded in the first two. The directory is not created here (``download`` creates it).

    Examples
    --------
    >>> from pathlib import Path
    >>> from cnnkit.data import resolve_data_dir
    >>> resolve_data_dir("~/datasets") == Path.home() / "datasets"  # the argument wins over $CNNKIT_DATA
    True
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def candidate_paths(dataset: str, filename: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where ``filename`` of ``dataset`` may be, most specific first: ``<dir>/<dataset>/<file>``, ``<dir>/<file>``.

    Examples
    --------
    >>> from cnnkit.data.paths import candidate_paths
    >>> [p.as_posix() for p in candidate_paths("mnist", "t10k-labels-idx1-ubyte.gz", "/data")]
    ['/data/mnist/t10k-labels-idx1-ubyte.gz', '/data/t10k-labels-idx1-ubyte.gz']
    """
    root = resolve_data_dir(data_dir)
    return [root / dataset / filename, root / filename]


def locate_file(
    dataset: str, filename: str, data_dir: str | os.PathLike | None = None, size: int | None = None
) -> Path | None:
    """The path of ``filename`` of ``dataset`` in the data directory, or None when it is in neither place.

    When both places hold a file of that name and ``size`` is known, the one of the right size wins (MNIST and
    Fashion-MNIST share file names, so a flat directory may hold the other dataset's file); otherwise the
    most specific one is returned and checksum verification reports any problem.

    Examples
    --------
    MNIST and Fashion-MNIST share file names; the size tells them apart in a flat directory.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data.paths import locate_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "mnist").mkdir()
    ...     _ = (Path(d) / "mnist" / "labels.gz").write_bytes(b"12345")
    ...     _ = (Path(d) / "labels.gz").write_bytes(b"123")
    ...     print(locate_file("mnist", "labels.gz", d).relative_to(d).as_posix(), locate_file("mnist", "labels.gz", d, size=3).name)
    ...     print(locate_file("mnist", "images.gz", d))
    mnist/labels.gz labels.gz
    None
    """
    found = [p for p in candidate_paths(dataset, filename, data_dir) if p.is_file()]
    if not found:
        return None
    if size is not None:
        for p in found:
            if p.stat().st_size == size:
                return p
    return found[0]


def locate_dir(dataset: str, dirname: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`locate_file` for a directory (e.g. an extracted ``cifar-10-batches-py``).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data.paths import locate_dir
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "cifar-10-batches-py").mkdir()
    ...     print(locate_dir("cifar10", "cifar-10-batches-py", d).name, locate_dir("cifar10", "cifar-10-batches-bin", d))
    cifar-10-batches-py None
    """
    for p in candidate_paths(dataset, dirname, data_dir):
        if p.is_dir():
            return p
    return None
