"""Where dataset files live: the data directory and the file lookup inside it."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "CNNKIT_DATA"
"""Environment variable naming the data directory when no ``data_dir`` argument is given."""


def default_data_dir() -> Path:
    """The cache directory used when neither an argument nor ``$CNNKIT_DATA`` names one: ``~/.cache/cnnkit``."""
    return Path.home() / ".cache" / "cnnkit"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the explicit ``data_dir`` argument, else ``$CNNKIT_DATA``, else ``~/.cache/cnnkit``.

    ``~`` is expanded in the first two. The directory is not created here (``download`` creates it).
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def candidate_paths(dataset: str, filename: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where ``filename`` of ``dataset`` may be, most specific first: ``<dir>/<dataset>/<file>``, ``<dir>/<file>``."""
    root = resolve_data_dir(data_dir)
    return [root / dataset / filename, root / filename]


def locate_file(
    dataset: str, filename: str, data_dir: str | os.PathLike | None = None, size: int | None = None
) -> Path | None:
    """The path of ``filename`` of ``dataset`` in the data directory, or None when it is in neither place.

    When both places hold a file of that name and ``size`` is known, the one of the right size wins (MNIST and
    Fashion-MNIST share file names, so a flat directory may hold the other dataset's file); otherwise the
    most specific one is returned and checksum verification reports any problem.
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
    """Like :func:`locate_file` for a directory (e.g. an extracted ``cifar-10-batches-py``)."""
    for p in candidate_paths(dataset, dirname, data_dir):
        if p.is_dir():
            return p
    return None
