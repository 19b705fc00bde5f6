"""The child-process protocol: one job as one JSON argument, one JSON line back.

The parent runs ``python -m cnnkit.bench.child '<job>'`` where the job is a JSON object::

    {"measure": "peak_memory", "engine": "torch", "layout": "channels_last", "threads": 2,
     "workload": {"name": ..., "spec": ..., "input_shape": [224, 224, 3], "batch": 8, "train": true}}

The child pins its threads, runs the measurement and prints its result as one JSON object on the last line
of stdout; on failure it exits non-zero with a one-line reason as the last line of stderr. The measures are
listed in :data:`cnnkit.bench.child.MEASURES`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from cnnkit.bench.engines import get_engine
from cnnkit.bench.workloads import Network

_KEYS = ("measure", "engine", "layout", "threads", "workload")


class ChildError(RuntimeError):
    """A child process that failed or answered with something other than one JSON object."""


@dataclass(frozen=True)
class Job:
    """One measurement for a child process: ``measure`` of ``workload`` on ``engine`` in ``layout``, with ``threads``."""

    measure: str
    engine: str
    layout: str
    threads: int
    workload: Network

    def to_json(self) -> str:
        return json.dumps({"measure": self.measure, "engine": self.engine, "layout": self.layout,
                           "threads": self.threads, "workload": self.workload.to_json()})

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Parse and check a job (the engine and its layout must exist); raises ValueError with the reason."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"job is not JSON: {exc}") from None
        if not isinstance(data, dict) or set(data) != set(_KEYS):
            raise ValueError(f"a job is an object with exactly: {', '.join(_KEYS)}")
        for key in ("measure", "engine", "layout"):
            if not isinstance(data[key], str):
                raise ValueError(f"job {key}: expected a string, got {data[key]!r}")
        threads = data["threads"]
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"job threads: expected a positive integer, got {threads!r}")
        get_engine(data["engine"]).check_layout(data["layout"])
        return cls(data["measure"], data["engine"], data["layout"], threads, Network.from_json(data["workload"]))


def run_in_child(job: Job) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process and return its JSON result; raises ChildError on failure."""
    cmd = [sys.executable, "-m", "cnnkit.bench.child", job.to_json()]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        err = out.stderr.strip()
        raise ChildError(err.splitlines()[-1] if err else str(out.returncode))
    lines = out.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise ChildError(f"no JSON object on the child's last line of output: {lines[-1] if lines else '(none)'!r}")
    return result
