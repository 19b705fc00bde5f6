"""One classic kernel (Sobel, Gaussian, ...) applied to an image file, the response written as a PNG.

The response of :func:`cnnkit.kernels.apply` is a real number per pixel; it is written as 8-bit grey (or
colour) with one linear scaling that keeps zero meaningful: a response with no negative values maps
[0, max] to [0, 255] (zero stays black), one with negative values maps [-m, m] to [0, 255] with
m = max |value| (zero is mid grey, 127.5). The scaling is stored in the PNG's text metadata
(``cnnkit-scaling``) and returned.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.serialize import atomic_write_bytes


@dataclass
class Filtered:
    """A filtered image: the ``response`` (H, W) or (H, W, C) in float64, the 8-bit ``pixels`` written and the
    scaling ``pixel = round((value - lo) * 255 / (hi - lo))``.

    Examples
    --------
    >>> f = Filtered(np.array([[-1.0, 1.0]]), np.array([[0, 255]], np.uint8), -1.0, 1.0)
    >>> f.scaling
    'pixel = round((value - lo) * 255 / (hi - lo)) with lo = -1, hi = 1 (0 is mid grey 127.5)'
    """

    response: np.ndarray
    pixels: np.ndarray
    lo: float
    hi: float

    @property
    def scaling(self) -> str:
        zero = " (0 is black)" if self.lo == 0 else f" (0 is mid grey {255 * -self.lo / (self.hi - self.lo):.1f})"
        return f"pixel = round((value - lo) * 255 / (hi - lo)) with lo = {self.lo:.6g}, hi = {self.hi:.6g}{zero}"


def to_pixels(response: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The response as uint8 with the module docstring's scaling: (pixels, lo, hi).

    Examples
    --------
    >>> to_pixels(np.array([0.0, 2.0, 4.0]))
    (array([  0, 128, 255], dtype=uint8), 0.0, 4.0)
    >>> to_pixels(np.array([-2.0, 0.0, 1.0]))[0]
    array([  0, 128, 191], dtype=uint8)
    """
    r = np.asarray(response, dtype=np.float64)
    m = float(np.abs(r).max()) if r.size else 0.0
    if m == 0:
        return np.zeros(r.shape, dtype=np.uint8), 0.0, 1.0
    lo, hi = (0.0, float(r.max())) if r.min() >= 0 else (-m, m)
    pixels = np.clip(np.rint((r - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return pixels, lo, hi


def filter_image(
    kernel: str | np.ndarray,
    image: Any,
    out: str | Path | None = None,
    *,
    bias: float = 0.0,
    relu: bool = False,
    border: str = "replicate",
    color: str = "grayscale",
) -> Filtered:
    """Apply ``kernel`` (a name for :func:`cnnkit.kernels.get` such as ``"sobel-x"`` or ``"gaussian:7:1.5"``,
    or a 2-D array) to ``image`` (an image file, decoded in ``color``, or an array of pixels) with
    :func:`cnnkit.kernels.apply` (``bias``, ``relu``, ``border``); with ``out`` write the response as a PNG
    (Pillow, the ``images`` extra) with its scaling in the metadata.

    Examples
    --------
    A vertical step edge: Sobel-x fires on it; with a negative bias and ReLU only the strong part stays.

    >>> import numpy as np
    >>> step = np.zeros((4, 6), np.uint8); step[:, 3:] = 100
    >>> f = filter_image("sobel-x", step)
    >>> f.response[1].tolist(), f.lo, f.hi
    ([0.0, 0.0, 400.0, 400.0, 0.0, 0.0], 0.0, 400.0)
    >>> filter_image("sobel-x", 255 - step, bias=-100, relu=True).response[1].tolist()  # the other polarity: nothing
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    from cnnkit import kernels

    k = kernels.get(kernel) if isinstance(kernel, str) else np.asarray(kernel, dtype=np.float64)
    if isinstance(image, (str, Path)):
        from cnnkit.data.images import decode_image

        img = decode_image(image, color)
    else:
        img = np.asarray(image)
    pixels_in = img.astype(np.float64)
    if pixels_in.ndim == 3 and pixels_in.shape[2] == 1:
        pixels_in = pixels_in[:, :, 0]
    response = kernels.apply(k, pixels_in, bias=bias, relu=relu, border=border)
    pixels, lo, hi = to_pixels(response)
    result = Filtered(response, pixels, lo, hi)
    if out is not None:
        write_png(out, pixels, {"cnnkit-kernel": str(kernel) if isinstance(kernel, str) else "array",
                                "cnnkit-scaling": result.scaling})
    return result


def write_png(out: str | Path, pixels: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write uint8 pixels (H, W) or (H, W, 3) as a PNG atomically, with ``text`` as metadata (Pillow).

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_png(Path(d) / "a.png", np.zeros((2, 3), np.uint8), {"note": "hello"})
    ...     with Image.open(Path(d) / "a.png") as im:
    ...         print(im.size, im.text["note"])
    (3, 2) hello
    """
    from cnnkit.data.images import pillow

    image = pillow()
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(out, buf.getvalue())
