"""Turning uint8 NHWC images into the float inputs of a network, with statistics fitted on training data.

Modes (``x`` is a raw pixel value 0..255):

* ``"none"``: ``x`` as float.
* ``"scale"``: ``x / 255``, in [0, 1].
* ``"mean_image"``: ``x - M[h, w, c]`` with ``M`` the per-pixel mean image of the training images in raw
  0..255 units (what MatConvNet's MNIST example, the BASE network of exercise 15.6, does), float32 (H, W, C).
* ``"per_channel"``: ``(x / 255 - m_c) / s_c`` with ``m_c``, ``s_c`` the mean and (population) standard
  deviation of channel ``c`` of the scaled training images, float32 (C,).

Statistics come from the training set only (``fit``); the same ones are applied to validation and test
data. ``to_dict``/``from_dict`` round-trip them as plain arrays and strings, so they can be saved next to
a model's weights (e.g. with ``numpy.savez``) without pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from cnnkit.backend import Array
from cnnkit.errors import ShapeError, StateError

MODES = ("none", "scale", "mean_image", "per_channel")
_FIT_CHUNK = 4096
"""Images per chunk when accumulating squared deviations, bounding the float64 temporary."""


def _check_images(images: object, what: str) -> None:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise ShapeError(f"{what}: expected images of shape (N, H, W, C), got shape {shape}")


class Preprocessor:
    """Normalises images (N, H, W, C) -> float (N, H, W, C); see the module docstring for the modes.

    Usage: ``pre = Preprocessor("mean_image").fit(train.images)``; ``x = pre.transform(batch)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import Preprocessor
    >>> train = np.array([0, 255, 0, 255], np.uint8).reshape(4, 1, 1, 1)
    >>> pre = Preprocessor("per_channel").fit(train)  # mean 0.5, std 0.5 after scaling to [0, 1]
    >>> pre.mean, pre.std, pre.transform(train)[:, 0, 0, 0]
    (array([0.5], dtype=float32), array([0.5], dtype=float32), array([-1.,  1., -1.,  1.], dtype=float32))
    >>> Preprocessor("mean_image").fit(train).transform(train)[:, 0, 0, 0]
    array([-127.5,  127.5, -127.5,  127.5], dtype=float32)
    """

    def __init__(self, mode: str = "scale") -> None:
        if mode not in MODES:
            raise ValueError(f"preprocessing mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.mean: np.ndarray | None = None
        """mean_image: float32 (H, W, C) in 0..255 units; per_channel: float32 (C,) in 0..1 units."""
        self.std: np.ndarray | None = None
        """per_channel: float32 (C,), in 0..1 units; zeros are replaced by 1 (a constant channel)."""

    @property
    def needs_fit(self) -> bool:
        return self.mode in ("mean_image", "per_channel")

    @property
    def fitted(self) -> bool:
        return not self.needs_fit or self.mean is not None

    def fit(self, images: np.ndarray) -> Preprocessor:
        """Compute the statistics of ``images`` (N, H, W, C), the training images only; returns self.

        Sums run in float64 (a 60000-image mean in float32 would lose digits) without a float64 copy of
        the whole set. ``"none"`` and ``"scale"`` have nothing to fit.
        """
        _check_images(images, "Preprocessor.fit")
        images = np.asarray(images)
        if images.shape[0] == 0:
            raise ShapeError(f"Preprocessor.fit: need at least one image, got shape {images.shape}")
        if self.mode == "mean_image":
            self.mean = images.mean(axis=0, dtype=np.float64).astype(np.float32)  # (H, W, C)
        elif self.mode == "per_channel":
            mean = images.mean(axis=(0, 1, 2), dtype=np.float64)  # (C,), 0..255 units
            sq = np.zeros_like(mean)
            for start in range(0, images.shape[0], _FIT_CHUNK):
                d = images[start : start + _FIT_CHUNK].astype(np.float64) - mean
                sq += np.einsum("nhwc,nhwc->c", d, d)
            std = np.sqrt(sq / (images.size // images.shape[3]))
            std[std == 0] = 255.0  # a constant channel: divide by 1 after scaling
            self.mean = (mean / 255.0).astype(np.float32)
            self.std = (std / 255.0).astype(np.float32)
        return self

    def fit_batches(self, batches: Callable[[], Iterable[np.ndarray]]) -> Preprocessor:
        """Fit on images that arrive in batches (a folder larger than memory); ``batches()`` starts a pass.

        The same statistics as :meth:`fit` on all the images at once, up to float64 summation order; per_channel
        makes two passes (mean, then squared deviations).

        Examples
        --------
        >>> import numpy as np
        >>> imgs = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2, 1)
        >>> a = Preprocessor("per_channel").fit(imgs)
        >>> b = Preprocessor("per_channel").fit_batches(lambda: (imgs[i : i + 4] for i in range(0, 6, 4)))
        >>> bool(np.allclose(a.mean, b.mean) and np.allclose(a.std, b.std))
        True
        """
        if self.mode not in ("mean_image", "per_channel"):
            return self
        total: np.ndarray | None = None
        count = 0
        for batch in batches():
            _check_images(batch, "Preprocessor.fit_batches")
            axes = (0,) if self.mode == "mean_image" else (0, 1, 2)
            part = np.asarray(batch).sum(axis=axes, dtype=np.float64)
            total = part if total is None else total + part
            count += batch.shape[0] if self.mode == "mean_image" else batch.shape[0] * batch.shape[1] * batch.shape[2]
        if total is None or count == 0:
            raise ShapeError("Preprocessor.fit_batches: need at least one image")
        mean = total / count
        if self.mode == "mean_image":
            self.mean = mean.astype(np.float32)
            return self
        sq = np.zeros_like(mean)
        for batch in batches():
            d = np.asarray(batch, dtype=np.float64) - mean
            sq += np.einsum("nhwc,nhwc->c", d, d)
        std = np.sqrt(sq / count)
        std[std == 0] = 255.0
        self.mean = (mean / 255.0).astype(np.float32)
        self.std = (std / 255.0).astype(np.float32)
        return self

    def fit_transform(self, images: np.ndarray, dtype: type | np.dtype = np.float32) -> Array:
        return self.fit(images).transform(images, dtype)

    def transform(self, images: np.ndarray, dtype: type | np.dtype = np.float32) -> Array:
        """uint8 (or any real) images (N, H, W, C) -> a new ``dtype`` NumPy array (N, H, W, C).

        The result stays on the host under every backend: the training loop and :func:`cnnkit.train.fit.predict`
        copy each mini-batch to the device (:func:`cnnkit.backend.to_device`), so a data set is never held in
        GPU memory whole.

        Raises StateError when a mode that needs statistics was not fitted, ShapeError when the image
        shape (mean_image) or channel count (per_channel) differs from the fitted one.
        """
        _check_images(images, "Preprocessor.transform")
        if not self.fitted:
            raise StateError(f"Preprocessor({self.mode!r}).transform called before fit (or from_dict)")
        dtype = np.dtype(dtype)
        mean, shape = self.mean, tuple(images.shape)
        if self.mode == "mean_image" and mean is not None and shape[1:] != mean.shape:
            raise ShapeError(
                f"Preprocessor('mean_image') was fitted on images of shape (N, {', '.join(map(str, mean.shape))}), "
                f"got {shape}"
            )
        if self.mode == "per_channel" and mean is not None and shape[3] != mean.shape[0]:
            raise ShapeError(
                f"Preprocessor('per_channel') was fitted on {mean.shape[0]} channels, got images of shape {shape}"
            )
        out = np.asarray(images).astype(dtype)  # always a fresh array, safe to update in place
        if self.mode == "scale":
            out /= dtype.type(255)
        elif self.mode == "mean_image":
            out -= np.asarray(self.mean, dtype=dtype)
        elif self.mode == "per_channel":
            out /= dtype.type(255)
            out -= np.asarray(self.mean, dtype=dtype)
            out /= np.asarray(self.std, dtype=dtype)
        return out

    __call__ = transform

    def to_dict(self) -> dict[str, object]:
        """``{"mode": str}`` plus ``"mean"``/``"std"`` float32 arrays when fitted: plain data, no pickle needed."""
        d: dict[str, object] = {"mode": self.mode}
        if self.mean is not None:
            d["mean"] = self.mean.copy()
        if self.std is not None:
            d["std"] = self.std.copy()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output (also from ``numpy.load`` of a saved ``.npz``: 0-d str arrays work)."""
        if "mode" not in d:
            raise ValueError(f"Preprocessor.from_dict: missing 'mode'; got keys {sorted(d)}")
        pre = cls(str(np.asarray(d["mode"])[()]))
        if "mean" in d:
            pre.mean = np.asarray(d["mean"], dtype=np.float32).copy()
        if "std" in d:
            pre.std = np.asarray(d["std"], dtype=np.float32).copy()
        if pre.mode == "mean_image" and pre.mean is not None and pre.mean.ndim != 3:
            raise ShapeError(f"Preprocessor.from_dict: mean_image 'mean' must be (H, W, C), got {pre.mean.shape}")
        if pre.mode == "per_channel" and pre.mean is not None and (
            pre.std is None or pre.mean.ndim != 1 or pre.std.shape != pre.mean.shape
        ):
            got = None if pre.std is None else pre.std.shape
            raise ShapeError(
                f"Preprocessor.from_dict: per_channel needs 'mean' and 'std' of shape (C,), got "
                f"{pre.mean.shape} and {got}"
            )
        return pre

    def __repr__(self) -> str:
        shape = None if self.mean is None else self.mean.shape
        return f"Preprocessor(mode={self.mode!r}, fitted={self.fitted}, stats_shape={shape})"
