"""The compiled kernels (numba, optional) give the NumPy reference results; cnnkit.jit finds a usable cache."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cnnkit import jit
from cnnkit.ops.geometry import window
from cnnkit.ops.im2row import im2row, row2im
from cnnkit.ops.pool import max_pool2d_backward, max_pool2d_forward, max_pool2d_indices

needs_numba = pytest.mark.skipif(not jit.HAVE_NUMBA, reason="numba not installed (extra 'fast')")

GRID = list(itertools.product([(2, 2), (3, 3), (2, 3)], [1, 2, 3], [0, 1], [1, 2]))


@needs_numba
@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row2im_kernel_matches_numpy(rng: np.random.Generator, kernel, stride, padding, dilation, dtype) -> None:
    shape = (2, 9, 8, 3)
    rows, win = im2row(rng.standard_normal(shape).astype(dtype), kernel, stride, padding, dilation)
    r = rng.standard_normal(rows.shape).astype(dtype)
    fast, ref = row2im(r, shape, win), row2im(r, shape, win, use_jit=False)
    assert fast.dtype == ref.dtype == dtype
    np.testing.assert_allclose(fast, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


@needs_numba
@pytest.mark.parametrize("kernel,stride,padding,dilation", GRID)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_maxpool_kernel_matches_numpy(rng: np.random.Generator, kernel, stride, padding, dilation, ceil_mode) -> None:
    if padding > min(kernel) // 2:
        pytest.skip("padding must be at most half the kernel")
    x = rng.integers(0, 4, size=(2, 9, 8, 3)).astype(np.float64)  # many ties: first maximum must win
    try:
        y_ref, c_ref = max_pool2d_forward(x, kernel, stride, padding, ceil_mode, dilation, use_jit=False)
    except ValueError:
        pytest.skip("window does not fit")
    y, c = max_pool2d_forward(x, kernel, stride, padding, ceil_mode, dilation)
    assert c.tap is not None and c_ref.tap is None
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(max_pool2d_backward(dy, c), max_pool2d_backward(dy, c_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(max_pool2d_indices(c), max_pool2d_indices(c_ref))


@needs_numba
def test_tiling_pool_backward_writes_every_pixel(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 8, 8, 4)).astype(np.float32)
    y, c = max_pool2d_forward(x, 2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = max_pool2d_backward(dy, c)
    _, c_ref = max_pool2d_forward(x, 2, use_jit=False)
    np.testing.assert_array_equal(dx, max_pool2d_backward(dy, c_ref, accumulate=True))
    assert np.count_nonzero(dx) == dy.size


def test_window_geometry_unchanged_by_kernels() -> None:
    win = window((9, 8), 3, 2, 1)
    assert win.out == (5, 4)


# ---------------------------------------------------------------------------------------------
# numba's on-disk cache location
# ---------------------------------------------------------------------------------------------
def _unusable_dir(tmp_path: Path) -> str:
    """A path no one can create a directory at, root included: it lies under a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return str(blocker / "cache")


def test_choose_cache_dir_takes_the_first_writable(tmp_path: Path) -> None:
    blocked = _unusable_dir(tmp_path)
    missing = tmp_path / "new" / "cache"  # created on demand
    assert jit._choose_cache_dir([None, "", blocked, str(missing), str(tmp_path)]) == str(missing)
    assert missing.is_dir()
    assert jit._choose_cache_dir([blocked]) is None
    assert jit._choose_cache_dir([]) is None


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership check")
def test_private_tmp_dir_is_closed_to_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = jit._private_tmp_dir()
    assert path == str(tmp_path / f"cnnkit-numba-{os.getuid()}")
    assert os.stat(path).st_mode & 0o077 == 0
    os.chmod(path, 0o777)  # e.g. made by someone else: numba would unpickle what others put there
    assert jit._private_tmp_dir() is None


@needs_numba
def test_setup_cache_falls_back_to_tmp_then_to_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core import config

    blocked = _unusable_dir(tmp_path)
    monkeypatch.setattr(jit, "_numba_default_cache_dirs", lambda: [None, blocked])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    try:
        assert jit._setup_cache() is True
        assert os.environ["NUMBA_CACHE_DIR"] == jit._private_tmp_dir()
        monkeypatch.setattr(tempfile, "tempdir", blocked)
        assert jit._setup_cache() is False
    finally:
        monkeypatch.undo()
        config.reload_config()  # numba read NUMBA_CACHE_DIR from the patched environment


KERNEL_RUN = """
import numpy as np
from cnnkit import jit
out = np.zeros((1, 3, 3, 1))
jit.row2im_add(np.ones((1, 2, 2, 2, 2, 1)), out, 1, 1, 1, 1)
print(out.sum())
"""


@needs_numba
@pytest.mark.parametrize("kind", ["read_only", "under_a_file"])
def test_kernel_runs_with_an_unusable_cache_dir(tmp_path: Path, kind: str) -> None:
    if kind == "read_only":
        bad = tmp_path / "read-only"
        bad.mkdir()
        bad.chmod(0o500)
        if os.access(bad, os.W_OK):
            bad.chmod(0o700)
            pytest.skip("a 0o500 directory is still writable (running as root)")
    else:
        bad = Path(_unusable_dir(tmp_path))
    env = {**os.environ, "CNNKIT_JIT": "1", "NUMBA_CACHE_DIR": str(bad), "HOME": str(bad), "XDG_CACHE_HOME": str(bad)}
    try:
        proc = subprocess.run([sys.executable, "-c", KERNEL_RUN], env=env, capture_output=True, text=True, timeout=600)
    finally:
        if kind == "read_only":
            bad.chmod(0o700)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["16.0"], proc.stdout + proc.stderr
