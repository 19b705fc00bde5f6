"""Run independent training jobs in parallel (local worker processes or a Ray cluster), resumably.

Each job trains into ``<exp>/runs/<key>/`` and, when it finishes, writes ``result.json`` there (atomically).
A rerun skips every job whose ``result.json`` exists for the same configuration, and a job interrupted
mid-training resumes from its last epoch checkpoint, so an interrupted experiment gives the same final
report. The executors only distribute :func:`run_job` calls; scheduling is theirs (a process pool, Ray).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from cnnkit.serialize import atomic_write_text


def result_path(exp_dir: str | Path, key: str) -> Path:
    """Where a job's result is recorded when it has finished.

    Examples
    --------
    >>> result_path("runs/ex15.6", "base_n10000_seed0_ep20").as_posix()
    'runs/ex15.6/runs/base_n10000_seed0_ep20/result.json'
    """
    return Path(exp_dir) / "runs" / key / "result.json"


def load_result(exp_dir: str | Path, key: str, config: dict) -> dict | None:
    """The stored result of a finished job with this configuration, else None.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     load_result(d, "base_n10000_seed0_ep20", {"model": "base"}) is None
    True
    """
    path = result_path(exp_dir, key)
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("config") == config else None


def _checkpoint_epoch(path: Path) -> int:
    """The epoch an existing checkpoint was written after (0 when there is none or it is unreadable)."""
    if not path.exists():
        return 0
    from cnnkit.serialize import load_arrays

    try:
        return int(load_arrays(path)[1].get("epoch", 0))
    except (OSError, ValueError, KeyError):
        return 0


def set_aside_stale(run_dir: Path, config: Any) -> Path | None:
    """Move a run directory aside (to ``<key>.superseded``, ``.superseded2`` ...) when it holds a checkpoint of
    another configuration than ``config`` (a :class:`~cnnkit.train.TrainConfig`), which could not be resumed:
    e.g. a run of an earlier cnnkit whose settings for the same key have since changed. Returns the new path,
    or None when there was nothing to move. Nothing is deleted.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from cnnkit.train import TrainConfig
    >>> cfg = TrainConfig(model="base", epochs=1).resolved()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     run = Path(d) / "runs" / "base_all_seed0_ep1"; run.mkdir(parents=True)
    ...     _ = (run / "checkpoint.npz").write_bytes(b"")
    ...     _ = (run / "config.json").write_text(json.dumps({**cfg.to_dict(), "bn_eps": 1e-5}))
    ...     print(set_aside_stale(run, cfg).name, run.exists())
    base_all_seed0_ep1.superseded False
    """
    from cnnkit.train.config import LEGACY_DEFAULTS, TrainConfig

    if not (run_dir / "checkpoint.npz").exists():
        return None
    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        if TrainConfig.from_dict({**LEGACY_DEFAULTS, "init": config.init, **saved}).differences(config) == {}:
            return None
    except (OSError, ValueError, TypeError):
        pass  # no readable configuration: the checkpoint cannot be resumed either
    n = 1
    while (dest := run_dir.with_name(f"{run_dir.name}.superseded{n if n > 1 else ''}")).exists():
        n += 1
    run_dir.rename(dest)
    return dest


def _per_epoch(records: list[dict], key: str) -> list | None:
    values = [r.get(key) for r in records]
    return values if any(v is not None for v in values) else None


def run_job(key: str, config: dict, exp_dir: str, data_dir: str | None, threads: int | None = None) -> dict:
    """Train one job (resuming its checkpoint if any) and record its result. Runs in a worker.

    The result holds the last epoch's figures, the per-epoch curves (test and training error and loss, and
    validation ones when there is a validation split), the recorded gradient norms (``grad_norms``: layers,
    the steps recorded, each epoch's means) when the configuration asks for them, and the parameter count.

    Examples
    --------
    A run needs its dataset; the experiment tests run real ones. The result file's place:

    >>> result_path("exp", "key").parts[-3:]
    ('runs', 'key', 'result.json')
    """
    from cnnkit.models import resolve
    from cnnkit.summary import summarize
    from cnnkit.train import TrainConfig
    from cnnkit.train.run import train

    limiter = None
    if threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    cfg = TrainConfig.from_dict(config)
    out = Path(exp_dir) / "runs" / key
    superseded = set_aside_stale(out, cfg)
    resumed_after = _checkpoint_epoch(out / "checkpoint.npz")
    start = time.perf_counter()
    try:
        last = train(cfg, out, data_dir=data_dir, resume=True, progress=False, log=lambda s: None)
    finally:
        if limiter is not None:  # run in process (workers=1): give the caller its BLAS threads back
            limiter.restore_original_limits()
    wall = time.perf_counter() - start
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines() if s.strip()]
    result = {
        "key": key,
        "config": config,
        "test_error": last.get("test_top1_error"),
        "test_top5_error": last.get("test_top5_error"),
        "train_error": last.get("train_top1_error"),
        "train_loss": last.get("train_loss"),
        "test_loss": last.get("test_loss"),
        "epochs": last.get("epoch"),
        "train_seconds": sum(r["seconds"] for r in records),
        "wall_seconds": wall,
        "test_error_per_epoch": [r.get("test_top1_error") for r in records],
        "train_error_per_epoch": [r.get("train_top1_error") for r in records],
        "threads": threads,
        "pid": os.getpid(),
    }
    for name, field in (("train_loss_per_epoch", "train_loss"), ("test_loss_per_epoch", "test_loss"),
                        ("val_error_per_epoch", "val_top1_error"), ("val_loss_per_epoch", "val_loss")):
        values = _per_epoch(records, field)
        if values is not None:
            result[name] = values
    if any("grad_norm_layers" in r for r in records):
        result["grad_norms"] = {"layers": next(r["grad_norm_layers"] for r in records if "grad_norm_layers" in r),
                                "steps": [s for r in records for s in r.get("grad_norm_steps", [])],
                                "epoch_mean": [r.get("grad_norm_mean") for r in records]}
    try:
        d = resolve(cfg.model)
        result["params"] = summarize(d.spec, d.input_shape).total_params
    except (ValueError, KeyError):  # an image-folder run with another input size: no count
        pass
    if resumed_after:
        result["resumed_after_epoch"] = resumed_after
    if superseded is not None:
        result["superseded"] = superseded.name
    atomic_write_text(result_path(exp_dir, key), json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker once the experiment process is gone (``kill -9``, a crash).

    Otherwise an orphaned worker would finish its run, writing into the experiment directory alongside a
    rerun that resumes the same run, and then wait for work forever.
    """
    import signal
    import threading

    # Ctrl-C reaches the whole process group: the experiment process handles it (and ends its workers), so
    # a worker must not die of it half-way with a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="cnnkit-exit-with-parent", daemon=True).start()


class Progress:
    """One line per run started/finished, with an overall count and ETA.

    The ETA comes from the runs finished so far (their own ``wall_seconds``, not the time since they were
    queued), divided among the workers that the runs left can use. Without ``costs`` it is their mean wall
    time times the runs left; with ``costs`` (an estimated relative cost per run key) it is the seconds per
    unit of cost seen so far times the cost left, which stays right when the long runs go first.

    Examples
    --------
    Four runs on two workers; the first took 10 s and cost 1 unit, 3 units are left: 3 x 10 s / 2 workers.

    >>> lines = []
    >>> progress = Progress(4, 2, lines.append, costs={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    >>> progress.started("a")
    >>> progress.finished("a", {"test_error": 0.0215, "wall_seconds": 10.0}, 12.0)
    >>> lines[-1].split(";")[0], progress.eta()
    ('[1/4] done   a: test error 2.15% in 10s', 15.0)
    """

    def __init__(self, total: int, workers: int, log: Callable[[str], None],
                 costs: dict[str, float] | None = None) -> None:
        self.total, self.workers, self.log = total, workers, log
        self.costs = costs
        self.done = 0
        self.durations: list[float] = []
        self.finished_keys: list[str] = []
        self.t0 = time.perf_counter()

    def started(self, key: str) -> None:
        self.log(f"[{self.done}/{self.total}] start  {key}")

    def eta(self) -> float:
        """Seconds until every run is finished, estimated from the finished runs' wall times."""
        left = self.total - self.done
        if left <= 0 or not self.durations:
            return 0.0
        share = max(1, min(self.workers, left))
        if self.costs:
            done_cost = sum(self.costs.get(k, 0.0) for k in self.finished_keys)
            if done_cost > 0:
                left_cost = sum(c for k, c in self.costs.items() if k not in set(self.finished_keys))
                return left_cost * sum(self.durations) / done_cost / share
        mean = sum(self.durations) / len(self.durations)
        return left * mean / share

    def finished(self, key: str, result: dict, seconds: float) -> None:
        """``seconds``: the time since the run was handed out; the run's own ``wall_seconds`` is preferred."""
        self.done += 1
        wall = result.get("wall_seconds")
        seconds = float(wall) if isinstance(wall, (int, float)) else seconds
        self.durations.append(seconds)
        self.finished_keys.append(key)
        eta = self.eta()
        err = result.get("test_error")
        err_s = "n/a" if err is None else f"{100 * err:.2f}%"
        self.log(f"[{self.done}/{self.total}] done   {key}: test error {err_s} in {seconds:.0f}s; "
                 f"elapsed {time.perf_counter() - self.t0:.0f}s, ETA {eta:.0f}s")


def run_local(
    jobs: Iterable[tuple[str, dict]], exp_dir: str, data_dir: str | None, workers: int, threads: int,
    log: Callable[[str], None] = print, costs: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Run jobs in ``workers`` local processes with ``threads`` BLAS threads each (workers=1: in process).

    Returns each job's result by key; the experiment tests run real jobs.

    Examples
    --------
    >>> run_local([], "exp", None, workers=1, threads=1, log=print)
    {}
    """
    import multiprocessing as mp

    todo = list(jobs)
    progress = Progress(len(todo), workers, log, costs)
    results: dict[str, dict] = {}
    if workers <= 1:
        for key, cfg in todo:
            progress.started(key)
            t = time.perf_counter()
            results[key] = run_job(key, cfg, exp_dir, data_dir, threads)
            progress.finished(key, results[key], time.perf_counter() - t)
        return results
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: BLAS thread limits apply from the start
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        pending: dict[Future, tuple[str, float]] = {}
        queue = list(todo)

        def submit() -> None:
            key, cfg = queue.pop(0)
            progress.started(key)
            pending[pool.submit(run_job, key, cfg, exp_dir, data_dir, threads)] = (key, time.perf_counter())

        while queue and len(pending) < workers:
            submit()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                key, t = pending.pop(fut)
                results[key] = fut.result()
                progress.finished(key, results[key], time.perf_counter() - t)
                if queue:
                    submit()
    except BaseException:  # Ctrl-C or a failed run: stop the other runs now instead of waiting for them
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """RuntimeError at once, naming ``address`` (HOST:PORT), when nothing answers there (Ray would retry for minutes).

    Examples
    --------
    >>> check_reachable("not an address")
    Traceback (most recent call last):
    ...
    RuntimeError: Ray address 'not an address' is not HOST:PORT
    """
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuntimeError(f"Ray address {address!r} is not HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RuntimeError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
                           f"or give the address it printed") from None


def run_ray(
    jobs: Iterable[tuple[str, dict]], exp_dir: str, data_dir: str | None, address: str | None, threads: int,
    log: Callable[[str], None] = print, costs: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Run jobs as Ray tasks on an existing cluster (``address``); Ray is an optional dependency.

    The experiment and data directories must be visible at the same paths on every node (a shared file system).

    Examples
    --------
    An address that names no cluster is refused before anything starts:

    >>> run_ray([], "exp", None, "nowhere", threads=1)
    Traceback (most recent call last):
    ...
    RuntimeError: Ray address 'nowhere' is not HOST:PORT
    """
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        check_reachable(address)
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray executor needs Ray: pip install 'cnnkit[ray]'") from None
    todo = list(jobs)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=threads)(run_job)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(threads, 1))
        progress = Progress(len(todo), workers, log, costs)
        pending: dict[Any, tuple[str, float]] = {}
        for key, cfg in todo:
            progress.started(key)
            pending[remote.remote(key, cfg, exp_dir, data_dir, threads)] = (key, time.perf_counter())
        results: dict[str, dict] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key, t = pending.pop(ref)
                results[key] = ray.get(ref)
                progress.finished(key, results[key], time.perf_counter() - t)
        return results
    finally:
        if started_here:
            ray.shutdown()
