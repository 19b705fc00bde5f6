"""Known datasets: canonical file names, mirrors, sizes and checksums; listing and verification.

The md5 digests are the ones the dataset authors publish (and torchvision uses); sizes and sha256 digests
of the MNIST and Fashion-MNIST files were measured on byte-identical copies of the canonical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from cnnkit.data.checksum import file_digest
from cnnkit.data.paths import locate_file, resolve_data_dir


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset as published.

    Attributes:
        name: file name on the mirrors and on disk, e.g. ``"train-images-idx3-ubyte.gz"``.
        md5: published md5 (hex), the checksum every file is verified against.
        size: byte count, or None when not recorded (then only the md5 is checked).
        sha256: sha256 (hex) when known; informative (``verify`` reports md5 only).
        role: what the file holds, e.g. ``"train-images"``.

    Examples
    --------
    >>> from cnnkit.data import get_spec
    >>> f = get_spec("mnist").file("test-labels")
    >>> f.name, f.size, f.md5
    ('t10k-labels-idx1-ubyte.gz', 4542, 'ec29112dd5afa0611ce80d1b7f02629c')
    """

    name: str
    md5: str
    size: int | None = None
    sha256: str | None = None
    role: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files, the base URLs they are fetched from (tried in order) and its class names.

    Examples
    --------
    >>> from cnnkit.data import get_spec
    >>> spec = get_spec("mnist")
    >>> spec.url(spec.mirrors[0], spec.file("test-labels"))
    'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz'
    >>> len(spec.classes), [f.role for f in spec.files]
    (10, ['train-images', 'train-labels', 'test-images', 'test-labels'])
    """

    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...] = ()
    description: str = ""

    def file(self, role_or_name: str) -> FileSpec:
        """The file with this role (``"train-images"``) or file name."""
        for f in self.files:
            if role_or_name in (f.role, f.name):
                return f
        known = ", ".join(f.role or f.name for f in self.files)
        raise KeyError(f"dataset {self.name!r} has no file {role_or_name!r}; it has: {known}")

    def url(self, mirror: str, f: FileSpec) -> str:
        """The URL of file ``f`` on ``mirror`` (a base URL, with or without a trailing slash)."""
        return mirror if mirror.endswith(f.name) else mirror.rstrip("/") + "/" + f.name


MNIST = DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits, 28x28 greyscale, 60000 train / 10000 test (IDX format)",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    classes=tuple(str(d) for d in range(10)),
    files=(
        FileSpec("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422,
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", "train-images"),
        FileSpec("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881,
                 "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", "train-labels"),
        FileSpec("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877,
                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", "test-images"),
        FileSpec("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542,
                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", "test-labels"),
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST (Zalando) clothing images, 28x28 greyscale, 60000 train / 10000 test (IDX format)",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    files=(
        FileSpec("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880,
                 "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", "train-images"),
        FileSpec("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515,
                 "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", "train-labels"),
        FileSpec("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102,
                 "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", "test-images"),
        FileSpec("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148,
                 "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", "test-labels"),
    ),
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10 tiny colour images, 32x32x3, 50000 train / 10000 test (python or binary archive)",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    files=(
        # Sizes not recorded here: only the published md5s are checked.
        FileSpec("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", role="python"),
        FileSpec("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", role="binary"),
    ),
)

DATASETS: MappingProxyType[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (MNIST, FASHION_MNIST, CIFAR10)}
)
"""The registry, read-only: dataset name -> DatasetSpec."""

_ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


def get_spec(dataset: str | DatasetSpec) -> DatasetSpec:
    """The DatasetSpec of a registered name (case-insensitive; ``_`` and ``-`` alike), or ``dataset`` itself.

    Examples
    --------
    >>> from cnnkit.data import get_spec
    >>> get_spec("Fashion_MNIST").name, get_spec("CIFAR-10").name
    ('fashion-mnist', 'cifar10')
    >>> get_spec("imagenet")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset 'imagenet'; known datasets: mnist, fashion-mnist, cifar10
    """
    if isinstance(dataset, DatasetSpec):
        return dataset
    key = str(dataset).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


@dataclass(frozen=True)
class FileStatus:
    """The state of one dataset file in a data directory.

    ``status`` is one of ``"ok"``, ``"missing"``, ``"present"`` (found, not hashed), ``"bad-size"``,
    ``"bad-md5"``; ``detail`` says expected vs got for the bad ones.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.data import verify
    >>> with tempfile.TemporaryDirectory() as d:
    ...     status = verify("mnist", d)[0]
    >>> status.file.name, status.status, status.ok, status.path
    ('train-images-idx3-ubyte.gz', 'missing', False, None)
    """

    dataset: str
    file: FileSpec
    path: Path | None
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "present")


def file_status(
    dataset: str | DatasetSpec, f: FileSpec, data_dir: str | os.PathLike | None = None, hash_files: bool = True
) -> FileStatus:
    """Locate ``f`` and check its size (cheap) and, when ``hash_files``, its md5.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cnnkit.data import get_spec
    >>> from cnnkit.data.registry import file_status
    >>> f = get_spec("mnist").file("test-labels")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / f.name).write_bytes(b"not the real file")
    ...     s = file_status("mnist", f, d)
    >>> s.status, s.detail
    ('bad-size', 'expected 4542 bytes, got 17 bytes')
    """
    spec = get_spec(dataset)
    path = locate_file(spec.name, f.name, data_dir, f.size)
    if path is None:
        return FileStatus(spec.name, f, None, "missing", f"not found in {resolve_data_dir(data_dir)}")
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        return FileStatus(spec.name, f, path, "bad-size", f"expected {f.size} bytes, got {size} bytes")
    if not hash_files:
        return FileStatus(spec.name, f, path, "present")
    md5 = file_digest(path, "md5")
    if md5 != f.md5:
        return FileStatus(spec.name, f, path, "bad-md5", f"expected md5 {f.md5}, got {md5}")
    return FileStatus(spec.name, f, path, "ok")


def verify(dataset: str | DatasetSpec, data_dir: str | os.PathLike | None = None) -> list[FileStatus]:
    """Per-file status (found? right size? right md5?) of every file of ``dataset`` in the data directory.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.data import verify
    >>> with tempfile.TemporaryDirectory() as d:
    ...     print([(s.file.role, s.status) for s in verify("mnist", d)])
    [('train-images', 'missing'), ('train-labels', 'missing'), ('test-images', 'missing'), ('test-labels', 'missing')]
    """
    spec = get_spec(dataset)
    return [file_status(spec, f, data_dir, hash_files=True) for f in spec.files]


def list_datasets(data_dir: str | os.PathLike | None = None) -> list[tuple[DatasetSpec, list[FileStatus]]]:
    """Every registered dataset with its files and whether each is present in the data directory.

    Presence is by name and size only (no hashing; use :func:`verify` for that), so listing is instant.

    Examples
    --------
    >>> import tempfile
    >>> from cnnkit.data import list_datasets
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for spec, files in list_datasets(d):
    ...         print(spec.name, [s.status for s in files])
    mnist ['missing', 'missing', 'missing', 'missing']
    fashion-mnist ['missing', 'missing', 'missing', 'missing']
    cifar10 ['missing', 'missing']
    """
    return [
        (spec, [file_status(spec, f, data_dir, hash_files=False) for f in spec.files])
        for spec in DATASETS.values()
    ]
