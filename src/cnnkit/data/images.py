"""Decoding one image file into a uint8 (H, W, C) array: the one place training and prediction both read images.

PNG/JPEG (and the other formats of :data:`IMAGE_FORMATS`) need the ``images`` extra; ``.npy`` arrays need
nothing. Images are converted to the requested colour (``"grayscale"``: C = 1, ``"rgb"``: C = 3) and, when a
size is given, resized with :data:`RESAMPLE` (bilinear), so that a folder read for training and a file given
to ``predict`` are turned into the same numbers.

Image files come from strangers, so nothing in them is trusted: a file is opened only if it is a regular file
within ``LIMITS.file_bytes`` (a FIFO or ``/dev/zero`` is refused at once); its header's size is checked against
``LIMITS.image_pixels`` before any pixel is decoded (Pillow's decompression-bomb check is set to that limit
while cnnkit decodes); every exception a malformed file makes Pillow raise becomes a DatasetError naming the file;
and an ``.npy`` array's header (shape and dtype: numbers only, never pickle) is checked against the file's
size and the limits before its data is read.

Examples
--------
>>> import numpy as np, os, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     path = os.path.join(d, "x.npy")
...     np.save(path, np.full((4, 4), 7, np.uint8))
...     decode_image(path, "grayscale").shape
(4, 4, 1)
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np

from cnnkit.data.errors import DatasetError, DatasetNotFoundError
from cnnkit.errors import MissingDependencyError, quote
from cnnkit.limits import LIMITS
from cnnkit.limits import check_size as check_limit
from cnnkit.serialize import open_regular

COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}
"""``color`` argument -> (Pillow mode, channels)."""


def pillow() -> ModuleType:
    """``PIL.Image``; :class:`~cnnkit.errors.MissingDependencyError` (one line, naming the extra) without Pillow.

    Examples
    --------
    >>> from cnnkit.data.images import pillow
    >>> pillow().__name__
    'PIL.Image'
    """
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("Pillow", "images", "reading PNG/JPEG images") from None
    return Image


def resample_filter() -> Any:
    """The resampling filter used whenever an image is resized (bilinear).

    Examples
    --------
    >>> from cnnkit.data.images import RESAMPLE, resample_filter
    >>> resample_filter().name, RESAMPLE
    ('BILINEAR', 'bilinear')
    """
    return pillow().Resampling.BILINEAR


RESAMPLE = "bilinear"
"""Name of the filter of :func:`resample_filter`, for messages and documentation."""


def color_for(channels: int) -> str:
    """The colour mode giving ``channels`` channels (1 -> grayscale, 3 -> rgb).

    Examples
    --------
    >>> from cnnkit.data.images import color_for
    >>> color_for(1), color_for(3)
    ('grayscale', 'rgb')
    >>> color_for(2)
    Traceback (most recent call last):
    ...
    ValueError: images have 1 (grayscale) or 3 (rgb) channels; a network taking 2 channels cannot read image files
    """
    for name, (_, c) in COLOR_MODES.items():
        if c == channels:
            return name
    raise ValueError(f"images have 1 (grayscale) or 3 (rgb) channels; a network taking {channels} channels cannot read image files")


IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""The Pillow formats cnnkit decodes (a file is recognised by its content, whatever its name). Pillow's other
formats are refused: some run external programs (EPS runs Ghostscript) or are rarely exercised parsers."""

_PILLOW_LOCK = threading.Lock()


def _open(path: Path, what: str) -> BinaryIO:
    """``path`` opened if it is a regular file within ``LIMITS.file_bytes``; DatasetNotFoundError if missing."""
    try:
        return open_regular(path, DatasetError, LIMITS.file_bytes)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: cannot read the {what}: {exc}") from None


@contextlib.contextmanager
def _bounded_pillow(image: Any) -> Iterator[None]:
    """Pillow's decompression-bomb check set to ``LIMITS.image_pixels``, its warning raised as an error, its
    remarks on malformed files silenced.

    ``Image.MAX_IMAGE_PIXELS`` is global to Pillow, so decoding holds a lock while it is changed."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        # Pillow's remarks on a malformed file ("Truncated File Read", "Corrupt EXIF data") are not repeated:
        # the file decodes, or the DatasetError says why not, in one line
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", image.DecompressionBombWarning)
        saved = image.MAX_IMAGE_PIXELS
        image.MAX_IMAGE_PIXELS = LIMITS.image_pixels
        try:
            yield
        finally:
            image.MAX_IMAGE_PIXELS = saved


def _check_pixels(path: Path, height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise DatasetError(f"{path}: an empty image ({height} x {width} pixels)")
    if height * width > LIMITS.image_pixels:
        raise DatasetError(
            f"{path}: the image declares {height} x {width} = {height * width:,} pixels, over the limit of "
            f"{LIMITS.image_pixels:,} (CNNKIT_MAX_IMAGE_PIXELS)"
        )


def _npy_header(f: BinaryIO, path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and payload bytes of the ``.npy`` file ``f``, checked against its size."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except Exception as exc:  # a malformed header makes numpy's parser raise ValueError, SyntaxError, TokenError...
        raise DatasetError(f"{path}: cannot read the array: {quote(str(exc) or type(exc).__name__)}") from None
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise DatasetError(f"{path}: values must be numbers in 0..255 like image pixels, got dtype {quote(str(dtype), 60)}")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DatasetError(f"{path}: cannot read the array: invalid shape {quote(shape, 80)}")
    nbytes = math.prod(shape) * dtype.itemsize
    check_limit(nbytes, LIMITS.file_bytes, f"{path}: the array's shape {quote(shape, 80)} of {dtype}", error=DatasetError)
    held = os.fstat(f.fileno()).st_size - f.tell()
    if held != nbytes:
        what = "truncated" if held < nbytes else "trailing bytes"
        raise DatasetError(f"{path}: cannot read the array: {what}: its header declares {quote(shape, 80)} of {dtype} "
                           f"({nbytes:,} bytes) but the file holds {held:,} bytes of data")
    return tuple(shape), dtype, bool(fortran), nbytes


def _npy_shape(shape: tuple[int, ...], path: Path, color: str, channels: int) -> tuple[int, int, int]:
    hwc = (*shape, 1) if len(shape) == 2 else shape
    if len(hwc) != 3 or hwc[2] != channels:
        raise DatasetError(f"{path}: array of shape {hwc}; expected (H, W) or (H, W, {channels}) for {color} images")
    _check_pixels(path, hwc[0], hwc[1])
    return hwc[0], hwc[1], hwc[2]


def _read_npy(f: BinaryIO, path: Path, color: str, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    shape, dtype, fortran, nbytes = _npy_header(f, path)
    hwc = _npy_shape(shape, path, color, channels)
    if size is not None and hwc[:2] != tuple(size):
        raise DatasetError(f"{path}: array of shape {hwc}; expected {(size[0], size[1], channels)} (.npy inputs are not resized)")
    arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = arr.reshape(-1, order="A").view(np.uint8).data  # the array's own memory, byte by byte
    got = 0
    while got < nbytes:
        n = f.readinto(view[got : got + (1 << 20)])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    if got != nbytes or f.read(1):
        raise DatasetError(f"{path}: cannot read the array: the file changed while being read")
    arr = arr.reshape(hwc)
    if dtype.kind == "f" and not np.isfinite(arr).all():
        raise DatasetError(f"{path}: values must be numbers in 0..255 like image pixels (it holds NaN or infinity)")
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise DatasetError(f"{path}: values must be numbers in 0..255 like image pixels")
    return arr.astype(np.uint8)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image or ``.npy`` file, from its header only (no pixel is decoded).

    Raises DatasetError naming a file that is not a readable image, and one whose header declares more
    than ``LIMITS.image_pixels`` pixels.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from cnnkit.data.images import read_image_size
    >>> with tempfile.TemporaryDirectory() as d:
    ...     Image.new("RGB", (5, 3)).save(Path(d) / "a.png")  # Pillow sizes are (W, H)
    ...     print(read_image_size(Path(d) / "a.png"))
    (3, 5)
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        with _open(path, "array") as f:
            shape = _npy_header(f, path)[0]
        if len(shape) not in (2, 3):
            raise DatasetError(f"{path}: array of shape {shape}; expected (H, W) or (H, W, C)")
        _check_pixels(path, shape[0], shape[1])
        return shape[0], shape[1]
    image = pillow()
    with _open(path, "image") as f, _bounded_pillow(image):
        try:
            with image.open(f, formats=IMAGE_FORMATS) as im:
                w, h = im.size
        except Exception as exc:  # see decode_image
            raise _decode_error(path, exc, image) from None
        _check_pixels(path, h, w)
        _check_png(f, path)
    return h, w


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
DEFLATE_RATIO = 1032
"""The most one byte of deflate data decompresses to."""


def _check_png(f: BinaryIO, path: Path) -> None:
    """DatasetError for a PNG whose image data cannot decompress to the pixels its header declares.

    Pillow decodes the rows a PNG's data holds and leaves the rest blank, in the declared size: a file of a few
    hundred bytes would become an image of tens of millions of pixels. The chunks' headers are read (not their
    data), their IDAT bytes added up, and compared with what the declared size needs, before anything is decoded.
    Other files, and PNGs too malformed to tell, are left to Pillow."""
    start = f.tell()
    try:
        f.seek(0)
        if f.read(8) != PNG_MAGIC:
            return
        size = os.fstat(f.fileno()).st_size
        ihdr, idat = b"", 0
        while f.tell() + 8 <= size:
            head = f.read(8)
            n, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind == b"IHDR" and not ihdr:
                ihdr = f.read(min(n, 13))
                f.seek(n - len(ihdr) + 4, os.SEEK_CUR)
                continue
            if kind == b"IDAT":
                idat += n
            elif kind == b"IEND":
                break
            f.seek(n + 4, os.SEEK_CUR)
    finally:
        f.seek(start)
    channels = _PNG_CHANNELS.get(ihdr[9]) if len(ihdr) == 13 else None
    if channels is None:
        return
    width, height, depth = int.from_bytes(ihdr[:4], "big"), int.from_bytes(ihdr[4:8], "big"), ihdr[8]
    need = height * ((width * depth * channels + 7) // 8)  # the pixels' bytes, without each row's filter byte
    if need > DEFLATE_RATIO * idat + 1024:
        raise DatasetError(f"{path}: truncated image data: the PNG declares {width} x {height} pixels ({need:,} bytes) but holds "
                           f"{idat:,} bytes of compressed image data, which decompress to at most {DEFLATE_RATIO * idat:,}")


def _decode_error(path: Path, exc: BaseException, image: ModuleType) -> DatasetError:
    if isinstance(exc, (image.DecompressionBombError, image.DecompressionBombWarning)):
        return DatasetError(f"{path}: image too large: {quote(str(exc))} (CNNKIT_MAX_IMAGE_PIXELS)")
    return DatasetError(f"{path}: cannot decode image: {quote(str(exc) or type(exc).__name__)}")


def decode_image(path: str | os.PathLike, color: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 (H, W, C): converted to ``color``, resized (bilinear) to ``size`` = (H, W) if given.

    ``.npy`` files are read without pickle and must hold (H, W) or (H, W, C) numbers in 0..255; they are not
    resized or converted. Other files are decoded by Pillow if they are in one of :data:`IMAGE_FORMATS`.
    Raises DatasetError naming a file that cannot be decoded, that is not a regular file (a FIFO, a
    device), or whose header declares more than ``LIMITS.image_pixels`` pixels (checked before decoding);
    DatasetNotFoundError (a FileNotFoundError) for a missing one.

    Examples
    --------
    A 4 x 3 grey PNG read as RGB and resized to 2 x 2:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from cnnkit.data.images import decode_image
    >>> with tempfile.TemporaryDirectory() as d:
    ...     Image.new("L", (3, 4), 200).save(Path(d) / "a.png")  # Pillow sizes are (W, H)
    ...     x = decode_image(Path(d) / "a.png", "rgb", size=(2, 2))
    >>> x.shape, x.dtype, x[0, 0]
    ((2, 2, 3), dtype('uint8'), array([200, 200, 200], dtype=uint8))
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {tuple(COLOR_MODES)}, got {color!r}")
    if size is not None and (len(size) != 2 or min(size) < 1 or size[0] * size[1] > LIMITS.image_pixels):
        raise ValueError(f"size must be (H, W) with positive entries and at most {LIMITS.image_pixels:,} pixels "
                         f"(CNNKIT_MAX_IMAGE_PIXELS), got {quote(size, 80)}")
    path = Path(path)
    mode, channels = COLOR_MODES[color]
    if path.suffix.lower() == ".npy":
        with _open(path, "array") as f:
            return _read_npy(f, path, color, channels, size)
    image = pillow()
    with _open(path, "image") as f, _bounded_pillow(image):
        try:
            with image.open(f, formats=IMAGE_FORMATS) as src:
                _check_pixels(path, src.size[1], src.size[0])  # from the header: nothing decoded yet
                _check_png(f, path)
                im = src.convert(mode)
                if im is not src:
                    src.close()  # the decoded pixels (3x the result for a colour image read as grey) go at once
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), resample_filter())
                return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels)
        except DatasetError:
            raise
        except Exception as exc:
            # Whatever a malformed file makes Pillow raise: OSError (UnidentifiedImageError), ValueError,
            # SyntaxError, struct.error, zlib.error, EOFError, IndexError, KeyError, TypeError, MemoryError,
            # ZeroDivisionError, a bare Exception (TIFF metadata), DecompressionBombError (an Exception, not an
            # OSError) and the DecompressionBombWarning raised as an error above
            raise _decode_error(path, exc, image) from None


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (or one number for a square) -> (H, W); ValueError naming the form otherwise.

    Examples
    --------
    >>> parse_size("28x32"), parse_size("64")
    ((28, 32), (64, 64))
    """
    parts = text.lower().replace(" ", "").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1 or max(values) > 65536:
        raise ValueError(f"expected a size HxW such as 28x28 (1 to 65536 each), got {text!r}")
    return values[0], values[1]
