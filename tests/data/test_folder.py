"""Image folders root/<class>/<image>, decoded with Pillow (skipped when Pillow is absent)."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import DatasetError, load_image_folder
from cnnkit.data.folder import require_pillow


def _write(path: Path, arr: np.ndarray, mode: str) -> None:
    Image = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)


@pytest.fixture
def folder(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """root/zebra/ (2 RGB PNGs), root/ant/ (1 greyscale PNG), plus files that are not images."""
    pytest.importorskip("PIL")
    root = tmp_path / "imgs"
    made: dict[str, list[np.ndarray]] = {"ant": [], "zebra": []}
    for i in range(2):
        rgb = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
        _write(root / "zebra" / f"z{i}.png", rgb, "RGB")
        made["zebra"].append(rgb)
    grey = rng.integers(0, 256, size=(5, 4), dtype=np.uint8)
    _write(root / "ant" / "a0.png", grey, "L")
    made["ant"].append(np.repeat(grey[..., None], 3, axis=2))
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "ant" / ".hidden.png").write_bytes(b"")
    (root / "README").write_text("a file at the top level is not a class")
    return root, made


def test_rgb(folder: tuple[Path, dict]) -> None:
    root, made = folder
    ds = load_image_folder(root)
    assert ds.classes == ("ant", "zebra")  # sorted by name
    assert ds.images.shape == (3, 5, 4, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 1, 1] and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images[0], made["ant"][0])
    np.testing.assert_array_equal(ds.images[1], made["zebra"][0])
    np.testing.assert_array_equal(ds.images[2], made["zebra"][1])


def test_grayscale_and_resize(folder: tuple[Path, dict]) -> None:
    root, made = folder
    ds = load_image_folder(root, color="grayscale")
    assert ds.images.shape == (3, 5, 4, 1)
    np.testing.assert_array_equal(ds.images[0, :, :, 0], made["ant"][0][..., 0])
    small = load_image_folder(root, size=(2, 3))
    assert small.images.shape == (3, 2, 3, 3)


def test_jpeg_and_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "r"
    _write(root / "b" / "x.JPG", rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8), "RGB")
    ds = load_image_folder(root)
    assert ds.images.shape == (1, 6, 6, 3)  # lossy: only the shape is checked
    _write(root / "a" / "y.png", rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8), "RGB")
    msg = r"x.JPG: image of shape \(6, 6, 3\) differs from .*y.png's \(3, 3, 3\); pass size"
    with pytest.raises(DatasetError, match=msg):
        load_image_folder(root)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match=r"broken.png: cannot decode image"):
        load_image_folder(root, size=(3, 3))
    with pytest.raises(ValueError, match="color must be one of"):
        load_image_folder(root, color="cmyk")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty" / "c").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no image files"):
        load_image_folder(tmp_path / "empty")


def test_missing_pillow_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match=r"pip install 'cnnkit\[images\]'"):
        require_pillow()
