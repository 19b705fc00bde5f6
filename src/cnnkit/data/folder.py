"""An image-folder dataset: ``root/<class>/<image>``, decoded with Pillow (the optional ``images`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np

from cnnkit.data.dataset import Dataset
from cnnkit.data.errors import DatasetError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File name endings (case-insensitive) taken as images; other files are ignored."""

COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}
"""``color`` argument -> (Pillow mode, channels)."""


def require_pillow() -> ModuleType:
    """``PIL.Image``, imported on first use; a clear ImportError when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            "reading image folders needs Pillow, which is not installed: pip install 'cnnkit[images]' "
            "(or pip install Pillow)"
        ) from e
    return Image


def find_images(root: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (sub-directory names, sorted) and the (path, class index) of every image, sorted by path.

    Hidden entries (starting with ``.``) are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: image folder not found (expected root/<class>/<image>)")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DatasetError(f"{root}: no class sub-directories (expected root/<class>/<image>)")
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        items.extend((p, label) for p in files)
    if not items:
        raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {len(classes)} class folders")
    return classes, items


def load_image_folder(
    root: str | os.PathLike,
    *,
    color: str = "rgb",
    size: tuple[int, int] | None = None,
) -> Dataset:
    """All images under ``root/<class>/`` as uint8 (N, H, W, C) and int64 labels (N,).

    Args:
        root: a directory with one sub-directory per class; classes are numbered in sorted name order.
        color: ``"rgb"`` (C = 3) or ``"grayscale"`` (C = 1); images are converted as needed.
        size: ``(H, W)`` to resize every image to (bilinear); without it all images must share one size.

    Needs Pillow (``pip install 'cnnkit[images]'``). A file Pillow cannot decode raises DatasetError
    naming it; so do images of differing sizes when ``size`` is not given.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {tuple(COLOR_MODES)}, got {color!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (H, W) with positive entries, got {size!r}")
    image_mod = require_pillow()
    mode, channels = COLOR_MODES[color]
    classes, items = find_images(root)
    out: np.ndarray | None = None
    first: Path | None = None
    for i, (path, _) in enumerate(items):  # one file per step: decoding is per file
        try:
            with image_mod.open(path) as im:
                im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), image_mod.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], channels)
        except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
            raise DatasetError(f"{path}: cannot decode image: {e}") from None
        if out is None:
            out = np.empty((len(items), *arr.shape), dtype=np.uint8)
            first = path
        elif arr.shape != out.shape[1:]:
            raise DatasetError(
                f"{path}: image of shape {arr.shape} differs from {first}'s {out.shape[1:]}; pass size=(H, W)"
            )
        out[i] = arr
    if out is None:  # unreachable: find_images raises when there are no images
        raise DatasetError(f"{root}: no images")
    labels = np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))
    return Dataset(images=out, labels=labels, classes=classes, name=f"folder:{Path(root).name}")
