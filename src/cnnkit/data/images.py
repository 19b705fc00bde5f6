"""Decoding one image file into a uint8 (H, W, C) array: the one place training and prediction both read images.

PNG/JPEG (and the other formats Pillow reads) need the ``images`` extra; ``.npy`` arrays need nothing.
Images are converted to the requested colour (``"grayscale"``: C = 1, ``"rgb"``: C = 3) and, when a size
is given, resized with :data:`RESAMPLE` (bilinear), so that a folder read for training and a file given to
``predict`` are turned into the same numbers.

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

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cnnkit.data.errors import DatasetError
from cnnkit.errors import MissingDependencyError

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


def decode_image(path: str | os.PathLike, color: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 (H, W, C): converted to ``color``, resized (bilinear) to ``size`` = (H, W) if given.

    ``.npy`` files are read without pickle and must hold (H, W) or (H, W, C) values in 0..255; they are not
    resized or converted. Raises DatasetError naming a file that cannot be decoded.

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
    path = Path(path)
    mode, channels = COLOR_MODES[color]
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read the array: {exc}") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] != channels:
            raise DatasetError(f"{path}: array of shape {arr.shape}; expected (H, W) or (H, W, {channels}) for {color} images")
        if size is not None and arr.shape[:2] != tuple(size):
            raise DatasetError(f"{path}: array of shape {arr.shape}; expected {(size[0], size[1], channels)} (.npy inputs are not resized)")
        if not np.issubdtype(arr.dtype, np.number) or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise DatasetError(f"{path}: values must be numbers in 0..255 like image pixels")
        return arr.astype(np.uint8)
    image = pillow()
    try:
        with image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), resample_filter())
            return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels)
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise DatasetError(f"{path}: cannot decode image: {exc}") from None


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
