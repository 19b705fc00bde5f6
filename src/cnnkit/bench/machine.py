"""What the results say about the machine: CPU model, cores, load, the versions of every package timed, BLAS."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PACKAGES = ("cnnkit", "numpy", "torch", "onnxruntime", "onnx", "numba", "threadpoolctl")
"""Packages whose versions go into the results (read from their metadata: none is imported for it)."""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` where there is none).

    >>> cpu_model("processor\\t: 0\\nmodel name\\t: AMD EPYC 7763 64-Core Processor\\n")
    'AMD EPYC 7763 64-Core Processor'
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (those missing are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def blas_info() -> dict[str, Any]:
    """NumPy's BLAS as threadpoolctl sees it (library, version, architecture, threading layer), with the build
    configuration from ``numpy.show_config``."""
    import numpy as np

    info: dict[str, Any] = {}
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info.update({k: blas[0].get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "filepath")})
    except Exception:  # threadpoolctl's introspection is best effort
        pass
    try:
        config = np.show_config(mode="dicts")
        deps = (config or {}).get("Build Dependencies", {})
        info["numpy_build"] = {k: deps[k] for k in ("blas", "lapack") if k in deps}
    except (TypeError, AttributeError):  # NumPy before 1.25 has no mode="dicts"
        pass
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """The ``info`` of the results."""
    from cnnkit.bench.harness import cores

    return {"cpu_model": cpu_model(), "cores": cores(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "versions": versions(), "blas": blas_info(), "loadavg_start": loadavg(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
