"""The child-process protocol: one job as one JSON argument, one JSON line back.

The parent runs ``python -m cnnkit.bench.child '<job>'`` where the job is a JSON object::

    {"measure": "time", "engine": "torch", "layout": "channels_last", "threads": 2,
     "workload": {"name": ..., "spec": ..., "input_shape": [28, 28, 1], "batch": 100, "train": true},
     "options": {"min_time": 1.0}}

``options`` may be left out (every measure has defaults), and ``workload`` is null for a measure that needs
none (``sgemm``). The child pins its threads, runs the measurement and prints its result as one JSON object
on the last line of stdout; on failure it exits non-zero with a one-line reason as the last line of stderr.
The measures and their options are listed in :data:`cnnkit.bench.child.MEASURES`. :func:`run_in_child`
starts the child with the thread-count variables of :func:`cnnkit.bench.harness.child_env` set, so every
pool in it is sized for the job's threads from the moment its library loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from cnnkit.bench.engines import get_engine
from cnnkit.bench.workloads import Network

_KEYS = ("measure", "engine", "layout", "threads", "workload")
_OPTIONAL = ("options",)


class ChildError(RuntimeError):
    """A child process that failed or answered with something other than one JSON object."""


@dataclass(frozen=True)
class Job:
    """One measurement for a child process: ``measure`` of ``workload`` on ``engine`` in ``layout``, with
    ``threads``; ``options`` tune the measure (e.g. ``min_time``: seconds of timed calls)."""

    measure: str
    engine: str
    layout: str
    threads: int
    workload: Network | None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"measure": self.measure, "engine": self.engine, "layout": self.layout, "threads": self.threads,
                           "workload": None if self.workload is None else self.workload.to_json(), "options": self.options})

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Parse and check a job (the engine and its layout must exist); raises ValueError with the reason."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"job is not JSON: {exc}") from None
        if not isinstance(data, dict) or not set(_KEYS) <= set(data) <= set(_KEYS + _OPTIONAL):
            raise ValueError(f"a job is an object with exactly: {', '.join(_KEYS)} (and optionally {', '.join(_OPTIONAL)})")
        for key in ("measure", "engine", "layout"):
            if not isinstance(data[key], str):
                raise ValueError(f"job {key}: expected a string, got {data[key]!r}")
        threads = data["threads"]
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"job threads: expected a positive integer, got {threads!r}")
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise ValueError(f"job options: expected an object, got {options!r}")
        get_engine(data["engine"]).check_layout(data["layout"])
        workload = None if data["workload"] is None else Network.from_json(data["workload"])
        return cls(data["measure"], data["engine"], data["layout"], threads, workload, options)


def run_in_child(job: Job, timeout: float | None = None) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process (pinned to its threads) and return its JSON result; raises
    ChildError on failure or after ``timeout`` seconds."""
    from cnnkit.bench.harness import child_env

    cmd = [sys.executable, "-m", "cnnkit.bench.child", job.to_json()]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env(job.threads), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ChildError(f"no answer within {timeout:g} s") from None
    if out.returncode != 0:
        err = out.stderr.strip()
        raise ChildError(err.splitlines()[-1] if err else f"exit status {out.returncode}")
    lines = out.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise ChildError(f"no JSON object on the child's last line of output: {lines[-1] if lines else '(none)'!r}")
    return result
