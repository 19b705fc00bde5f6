"""Image files from strangers: decompression bombs, FIFOs, devices and malformed files give a clean DatasetError."""

from __future__ import annotations

import io
import os
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import DatasetError, DatasetNotFoundError, load_image_folder
from cnnkit.data.folder import ImageFolder
from cnnkit.data.images import decode_image, read_image_size
from cnnkit.limits import LIMITS
from tests.data import call_within

Image = pytest.importorskip("PIL.Image")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of about 100 bytes whose header declares ``width`` x ``height`` grey pixels (at most a row of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(min(width, 4096) + 1))) + _chunk(b"IEND", b"")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def test_png_bomb_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bomb(20000, 20000))  # 400 million pixels declared, ~100 bytes stored
    assert p.stat().st_size < 200
    saved = Image.MAX_IMAGE_PIXELS
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for call in (lambda: decode_image(p, "grayscale"), lambda: decode_image(p, "rgb", (28, 28)), lambda: read_image_size(p)):
            with pytest.raises(DatasetError, match=r"bomb.png: (image too large|the image declares 20000 x 20000)"):
                call()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 8 << 20, (elapsed, peak)
    assert saved == Image.MAX_IMAGE_PIXELS  # Pillow's own setting is left as it was


@pytest.mark.parametrize("pixels", [101, 150, 199, 250, 10_000])  # Pillow warns above the limit, raises above twice it
def test_pixel_limit_from_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pixels: int) -> None:
    monkeypatch.setattr(LIMITS, "image_pixels", 100)
    p = tmp_path / "a.png"
    p.write_bytes(_png(np.zeros((1, pixels), np.uint8)))
    with pytest.raises(DatasetError, match=r"a.png: (image too large|the image declares 1 x \d+ = [\d,]+ pixels, over the limit of 100)"):
        decode_image(p, "grayscale")
    with pytest.raises(DatasetError, match=r"a.png"):
        read_image_size(p)
    p.write_bytes(_png(np.full((10, 10), 7, np.uint8)))  # exactly at the limit: read
    assert decode_image(p, "grayscale").shape == (10, 10, 1)


def test_pixel_limit_above_pillows_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit raised above Pillow's default (89 million) is the one applied: Pillow's check follows LIMITS."""
    monkeypatch.setattr(LIMITS, "image_pixels", 1 << 40)
    saved = Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # a process that set Pillow's limit very low
    p = tmp_path / "a.png"
    p.write_bytes(_png(np.zeros((8, 8), np.uint8)))
    assert decode_image(p, "grayscale").shape == (8, 8, 1) and read_image_size(p) == (8, 8)
    assert Image.MAX_IMAGE_PIXELS == 10
    del saved


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_corrupt_images(tmp_path: Path, rng: np.random.Generator, kind: str) -> None:
    good = (_png if kind == "png" else _jpeg)(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8))
    p = tmp_path / f"x.{kind}"
    corrupt = {
        "truncated": good[: len(good) // 2],
        "header only": good[:40],
        "random bytes": rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes(),
        "magic then random": good[:8] + rng.integers(0, 256, size=500, dtype=np.uint8).tobytes(),
        "empty": b"",
        "flipped bytes": bytes(b ^ 0x55 if 30 < i < 200 else b for i, b in enumerate(good)),
    }
    for name, data in corrupt.items():
        p.write_bytes(data)
        for call in (lambda: decode_image(p, "rgb"), lambda: decode_image(p, "grayscale", (8, 8))):
            try:
                call()
            except DatasetError as e:
                assert str(e).startswith(f"{p}: "), (name, e)
                assert len(str(e)) < 400, (name, e)
            # a flipped byte may still decode (a JPEG has no checksum): then it is an image of the right shape


def test_png_with_bad_crc_and_huge_dimensions(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    data = bytearray(png_bomb(4, 4))
    data[29] ^= 0xFF  # the IHDR CRC
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"x.png: cannot decode image"):
        decode_image(p, "grayscale")
    p.write_bytes(png_bomb(0x7FFFFFFF, 1))
    with pytest.raises(DatasetError, match=r"x.png"):
        decode_image(p, "grayscale")


def test_formats_outside_the_list_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "looks-like.png"
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")  # EPS: Pillow would run Ghostscript
    with pytest.raises(DatasetError, match=r"looks-like.png: cannot decode image"):
        decode_image(p, "rgb")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="TGA")
    p.write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match="cannot decode image"):
        decode_image(p, "rgb")
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"):
        buf = io.BytesIO()
        Image.new("RGB", (5, 3), (10, 20, 30)).save(buf, format=fmt)
        p.write_bytes(buf.getvalue())
        assert decode_image(p, "rgb").shape == (3, 5, 3), fmt


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_fifo_and_dev_zero_fail_at_once(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"fifo{suffix}"
    os.mkfifo(p)
    for fn in (decode_image, read_image_size):
        args = (p, "rgb") if fn is decode_image else (p,)
        exc = call_within(5, fn, *args, fifo=p)
        assert isinstance(exc, DatasetError) and f"{p} is not a regular file" in str(exc), exc
    z = tmp_path / f"zero{suffix}"
    z.symlink_to("/dev/zero")
    exc = call_within(5, decode_image, z, "grayscale")
    assert isinstance(exc, DatasetError) and "is not a regular file" in str(exc), exc


def test_folder_with_a_fifo_or_a_bomb(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    (root / "a" / "0.png").write_bytes(_png(np.zeros((4, 4), np.uint8)))
    (root / "a" / "1.png").write_bytes(png_bomb(20000, 20000))
    with pytest.raises(DatasetError, match=r"1.png: (image too large|the image declares)"):
        load_image_folder(root, color="grayscale")  # the size check reads headers only
    with pytest.raises(DatasetError, match=r"1.png: (image too large|the image declares)"):
        load_image_folder(root, color="grayscale", size=(4, 4))
    if hasattr(os, "mkfifo"):
        (root / "a" / "1.png").unlink()
        os.mkfifo(root / "a" / "1.png")  # a FIFO is not is_file(): not taken as an image at all
        folder: list[ImageFolder] = []
        assert call_within(5, lambda: folder.append(ImageFolder(root, color="grayscale"))) is None
        assert len(folder[0]) == 1  # only 0.png


def test_missing_image_is_file_not_found(tmp_path: Path) -> None:
    for name in ("missing.png", "missing.npy"):
        with pytest.raises(FileNotFoundError, match=f"No such file or directory: '.*{name}'") as e:
            decode_image(tmp_path / name, "rgb")
        assert isinstance(e.value, DatasetNotFoundError)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_npy_inputs_checked_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "x.npy"
    p.write_bytes(_npy_bytes(np.full((4, 5), 9, np.uint8)))
    assert decode_image(p, "grayscale").shape == (4, 5, 1) and read_image_size(p) == (4, 5)
    p.write_bytes(_npy_bytes(np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))))
    np.testing.assert_array_equal(decode_image(p, "grayscale")[..., 0], np.arange(12).reshape(3, 4))
    cases = {
        "object": (_npy_bytes(np.array([[None]], dtype=object)), "values must be numbers"),
        "complex": (_npy_bytes(np.ones((2, 2), np.complex64)), "values must be numbers"),
        "structured": (_npy_bytes(np.zeros((2, 2), [("a", "u1")])), "values must be numbers"),
        "nan": (_npy_bytes(np.full((2, 2), np.nan, np.float32)), "NaN or infinity"),
        "out of range": (_npy_bytes(np.full((2, 2), 300, np.int32)), "numbers in 0..255"),
        "truncated": (_npy_bytes(np.zeros((8, 8), np.uint8))[:-10], "truncated: its header declares"),
        "trailing": (_npy_bytes(np.zeros((8, 8), np.uint8)) + b"xx", "trailing bytes"),
        "bad header": (b"\x93NUMPY\x01\x00\x10\x00{'descr': '|u1',", "cannot read the array"),
        "not npy": (b"PK\x03\x04 a zip", "cannot read the array"),
        "empty": (_npy_bytes(np.zeros((0, 3), np.uint8)), "an empty image"),
        "4-d": (_npy_bytes(np.zeros((2, 2, 1, 1), np.uint8)), "expected \\(H, W\\) or \\(H, W, 1\\)"),
    }
    for data, pattern in cases.values():
        p.write_bytes(data)
        with pytest.raises(DatasetError, match=pattern):
            decode_image(p, "grayscale")
    # a header declaring far more than the file holds: refused before anything is allocated
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += " " * (63 - len(header) % 64) + "\n"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(16))
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"x.npy: the array's shape \(100000, 100000\) of uint8 would take "
                                               r"10,000,000,000 bytes, over the limit of [\d,]+ \(CNNKIT_MAX_FILE_BYTES\)"):
            decode_image(p, "grayscale")
        monkeypatch.setattr(LIMITS, "file_bytes", 1 << 40)
        with pytest.raises(DatasetError, match=r"truncated: its header declares \(100000, 100000\) of uint8 "
                                               r"\(10,000,000,000 bytes\) but the file holds 16 bytes"):
            decode_image(p, "grayscale")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    p.write_bytes(_npy_bytes(np.zeros((10, 11), np.uint8)))
    monkeypatch.setattr(LIMITS, "image_pixels", 100)
    with pytest.raises(DatasetError, match=r"the image declares 10 x 11 = 110 pixels, over the limit of 100 \(CNNKIT_MAX_IMAGE_PIXELS\)"):
        decode_image(p, "grayscale")
    with pytest.raises(DatasetError, match="over the limit of 100"):
        read_image_size(p)


def test_target_size_bounded() -> None:
    with pytest.raises(ValueError, match="at most"):
        decode_image("x.png", "rgb", (1 << 20, 1 << 20))
