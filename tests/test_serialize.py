"""Pickle-free, atomic array storage: exact round trips, atomic writes, refusal of pickles and corrupt files."""

from __future__ import annotations

import io
import os
import pathlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnkit import serialize
from cnnkit.serialize import (
    META_KEY,
    atomic_write_bytes,
    atomic_write_text,
    load_arrays,
    load_state_arrays,
    save_arrays,
    state_arrays,
)

_UNPICKLED: list[str] = []


def _record(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Trap:
    """Unpickling this calls _record: evidence that a loader ran code from the file."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "param/0.weight": rng.standard_normal((5, 5, 1, 4)).astype(np.float32),
        "param/0.bias": rng.standard_normal(4),
        "buffer/x": np.arange(7, dtype=np.int64),
        "u8": rng.integers(0, 256, (3, 2, 2, 1), dtype=np.uint8),
        "flag": np.array([True, False]),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 3), np.float32),
        "special": np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(np.float64).tiny]),
        "text": np.array(["a", "βγ"]),
    }


def test_round_trip_is_exact(tmp_path: Path) -> None:
    arrays = _arrays()
    meta = {"format": "x", "epoch": 3, "nested": {"a": [1, 2.5, None, "ü"]}, "flag": True}
    path = tmp_path / "a.npz"
    save_arrays(path, arrays, meta)
    got, got_meta = load_arrays(path)
    assert got_meta == meta
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        assert np.array_equal(got[k], v, equal_nan=v.dtype.kind == "f"), k
    assert np.signbit(got["special"][3])  # -0.0 kept bit for bit
    assert _leftovers(tmp_path) == []


def test_no_meta_and_non_contiguous(tmp_path: Path) -> None:
    a = np.arange(24.0).reshape(4, 6)[:, ::2].T  # non-contiguous view
    save_arrays(tmp_path / "b.npz", {"a": a})
    got, meta = load_arrays(tmp_path / "b.npz")
    assert meta == {}
    assert np.array_equal(got["a"], a)


def test_file_is_a_plain_npz(tmp_path: Path) -> None:
    save_arrays(tmp_path / "c.npz", {"w": np.ones(3)}, {"k": 1})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(["w", META_KEY])
        assert z[META_KEY].dtype == np.uint8


def test_reserved_and_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "d.npz", {META_KEY: np.ones(1)})
    with pytest.raises(ValueError, match="dtype object"):
        save_arrays(tmp_path / "d.npz", {"o": np.array([{"a": 1}], dtype=object)})
    assert not (tmp_path / "d.npz").exists()
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    for i in range(3):
        save_arrays(path, {"i": np.array(i)}, {"i": i})
    got, meta = load_arrays(path)
    assert int(got["i"]) == 2 and meta == {"i": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz"]


def test_atomic_write_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "f.txt"
    atomic_write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"


def test_failing_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.npz"
    save_arrays(path, {"w": np.arange(5.0)}, {"version": 1})
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(serialize.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_arrays(path, {"w": np.zeros(5)}, {"version": 2})
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(tmp_path / "new.bin", b"data")
    monkeypatch.undo()
    assert path.read_bytes() == before
    got, meta = load_arrays(path)
    assert meta == {"version": 1} and np.array_equal(got["w"], np.arange(5.0))
    assert not (tmp_path / "new.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]  # the temporary files were removed


def test_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt during the write (not only an OSError) also leaves the old file and no debris."""
    path = tmp_path / "h.txt"
    atomic_write_text(path, "old")

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(serialize.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.txt"]


def _npz_with_pickle(path: Path) -> None:
    """An .npz holding one pickled object array (written with allow_pickle=True) and valid metadata."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in (("evil", np.array([_Trap()], dtype=object)), ("ok", np.ones(2))):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=True)
            zf.writestr(f"{name}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(b"{}", dtype=np.uint8))
        zf.writestr(f"{META_KEY}.npy", buf.getvalue())


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    _npz_with_pickle(path)
    _UNPICKLED.clear()
    with pytest.raises(ValueError) as info:
        load_arrays(path)
    assert str(path) in str(info.value)
    assert _UNPICKLED == []  # nothing was unpickled


def test_numpy_savez_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "savez.npz"
    np.savez(path, obj=np.array([{"a": 1}, None], dtype=object))  # savez pickles object arrays
    with pytest.raises(ValueError, match=re.escape("savez.npz")):
        load_arrays(path)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_file_is_refused_naming_it(tmp_path: Path, cut: float) -> None:
    good = tmp_path / "good.npz"
    save_arrays(good, {"w": np.arange(1000.0)}, {"a": 1})
    data = good.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match=re.escape("truncated.npz")):
        load_arrays(bad)


def test_garbage_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match=re.escape("garbage.npz")):
        load_arrays(garbage)
    # flip bytes inside a stored member: the zip's CRC check fails
    good = tmp_path / "flip.npz"
    save_arrays(good, {"w": np.arange(1000.0)})
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    good.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape("flip.npz")):
        load_arrays(good)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape("empty.npz")):
        load_arrays(empty)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "nope.npz")


class _Model:
    def __init__(self) -> None:
        self.params = {"0.weight": np.zeros((2, 3), np.float32), "0.bias": np.zeros(3, np.float32)}
        self.buffers = {"1.running_mean": np.zeros(3, np.float32)}


def test_state_arrays_round_trip() -> None:
    src = _Model()
    src.params["0.weight"][...] = np.arange(6).reshape(2, 3)
    src.buffers["1.running_mean"][...] = [1, 2, 3]
    arrays = state_arrays(src)
    assert set(arrays) == {"param/0.weight", "param/0.bias", "buffer/1.running_mean"}
    dst = _Model()
    w = dst.params["0.weight"]
    load_state_arrays(dst, {k: v.copy() for k, v in arrays.items()})
    assert dst.params["0.weight"] is w  # copied in place: optimisers holding the array see the new values
    assert np.array_equal(w, src.params["0.weight"])
    assert np.array_equal(dst.buffers["1.running_mean"], [1, 2, 3])


def test_state_arrays_mismatches() -> None:
    arrays = state_arrays(_Model())
    bad = dict(arrays, **{"param/0.weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match=r"param/0.weight.*\(3, 2\).*\(2, 3\)"):
        load_state_arrays(_Model(), bad)
    missing = {k: v for k, v in arrays.items() if k != "buffer/1.running_mean"}
    with pytest.raises(ValueError, match="missing"):
        load_state_arrays(_Model(), missing)
    load_state_arrays(_Model(), missing, strict=False)


def test_files_are_written_with_normal_permissions(tmp_path: Path) -> None:
    """The temporary file (mkstemp: mode 0600) must not make the final file private to its owner."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path = tmp_path / "perm.npz"
    save_arrays(path, {"w": np.ones(1)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_remove_stale_temporaries_only_touches_atomic_write_leftovers(tmp_path) -> None:
    from cnnkit.serialize import remove_stale_temporaries

    stale = tmp_path / ".checkpoint.npz.0123456789abcdef.tmp"
    stale.write_bytes(b"half a file")
    keep = [tmp_path / ".hidden.tmp", tmp_path / ".notes.txt.xyz.tmp", tmp_path / "checkpoint.npz"]
    for p in keep:
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)


def test_any_array_name_round_trips(tmp_path: pathlib.Path) -> None:
    """Names that np.savez would take as its own arguments are stored like any other."""
    import numpy as np

    from cnnkit.serialize import load_arrays, save_arrays

    arrays = {"allow_pickle": np.arange(3), "file": np.ones((2, 2), np.float32), "args": np.zeros(1)}
    save_arrays(tmp_path / "a.npz", arrays, {"k": 1})
    back, meta = load_arrays(tmp_path / "a.npz")
    assert meta == {"k": 1} and back.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
