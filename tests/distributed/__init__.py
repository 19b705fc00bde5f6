"""Tests of cnnkit.train.distributed: K ranks as threads (always) and as real ``mpiexec`` processes (with mpi4py).

Helpers shared by them: small data, a network without batch norm, max pooling or dropout (whose K-rank
result must equal one process's to rounding), and how to start ``mpiexec``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit.models import create

SHAPE = (8, 8, 1)
#: average pooling and tanh: no argmax or kink that a rounding difference could flip (see docs/distributed.md)
SMOOTH = "conv3x3x1x4,avgpool2,tanh,conv3x3x4x10"
DROPOUT = "conv3x3x1x4,avgpool2,tanh,dropout0.3,conv3x3x4x10"
BN = "conv3x3x1x4nobias,bn,relu,avgpool2,conv3x3x4x10,dropout0.2"
SHIM = Path(__file__).resolve().parent / "cnnkit_mpi.py"

#: measured: after an epoch, K ranks' weights differ from one process's by this much relative to the largest weight
#: (float32 ~1e-7, float64 ~1e-16; the bounds leave room for longer runs)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-13}


def toy(n: int = 120, dtype: type = np.float64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 8x8 'images' whose label is the brightest of 10 bands of rows (noise elsewhere)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *SHAPE))
    y = rng.integers(0, 10, n)
    band = (np.arange(8) * 10 // 8)[None, :] == y[:, None]
    x += 2.0 * band[:, :, None, None]
    return x.astype(dtype), y


def net(spec: str = SMOOTH, dtype: type = np.float64, seed: int = 0):
    return create(spec, np.random.default_rng(seed), dtype, input_shape=SHAPE)


def relative_gap(a: dict, b: dict) -> float:
    """max |a - b| over every array, relative to the largest |b|."""
    gap = max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in b)
    scale = max(float(np.max(np.abs(np.asarray(b[k], np.float64)))) for k in b)
    return gap / scale


@functools.cache
def mpiexec() -> list[str] | None:
    """The command that starts ranks (with the flags oversubscribing this machine needs), or None without MPI."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if exe is None:
        return None
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    cmd = [exe]
    if "Open MPI" in version or "OpenRTE" in version:  # Open MPI refuses more ranks than cores, and root, unless told
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return cmd


def need_mpi() -> list[str]:
    cmd = mpiexec()
    if cmd is None:
        pytest.skip("needs mpi4py and mpiexec (pip install 'cnnkit[mpi]')")
    return cmd


def rank_env(**extra: str) -> dict[str, str]:
    """The environment of the ranks: one BLAS thread each, unbuffered output, cnnkit from this checkout."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children first."""
    out: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{p}/task") for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            continue
        out += kids
        stack += kids
    return out


def rank_pids(pid: int) -> dict[int, int]:
    """{rank: pid} of the MPI ranks below the launcher ``pid`` (from their PMI_RANK / OMPI_COMM_WORLD_RANK)."""
    ranks: dict[int, int] = {}
    for p in descendants(pid):
        try:
            env = Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
            if b"python" not in Path(f"/proc/{p}/cmdline").read_bytes():
                continue
        except OSError:
            continue
        for entry in env:
            key, _, value = entry.partition(b"=")
            if key in (b"PMI_RANK", b"OMPI_COMM_WORLD_RANK"):
                ranks[int(value)] = p
    return ranks
