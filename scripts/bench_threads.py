"""Serial against parallel compiled kernels, and the thread arrangement of a whole training step.

    python scripts/bench_threads.py kernels [--reps 30] [--hot]
    python scripts/bench_threads.py step [--model base] [--batch 100] [--steps 40]
    python scripts/bench_threads.py infer [--model base] [--batch 1]

``kernels``: each compiled kernel at a few sizes, serial and on 2 threads (median wall-clock ms of --reps
calls, and the ratio). ``--hot`` runs a small matrix product before every call, so that OpenBLAS's threads
are still spinning when the kernel starts, as they are inside a training step.

``step``: median ms of a BASE training step (forward, loss, backward, SGD with momentum) in three thread
arrangements, each in a fresh process: ``1`` (BLAS and kernels on one thread), ``2/1`` (BLAS on two
threads, kernels serial) and ``2`` (both on two threads). The arrangements run interleaved, round after
round, so that a change of the machine's load hits them alike; the script prints every round's medians and
the load average. ``infer``: the same for an evaluation forward (default batch 1).

Set NUMBA_THREADING_LAYER (omp, workqueue) to compare numba's threading layers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ARRANGEMENTS = {"1": (1, 1), "2/1": (2, 1), "2": (2, 2)}  # name: (BLAS threads, kernel threads)


def _median_ms(fn, reps: int, before=None) -> float:
    fn()
    ts = []
    for _ in range(reps):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def kernels(reps: int, hot: bool) -> None:
    from cnnkit import jit
    from cnnkit.jit import activation as ja
    from cnnkit.jit import optim as jo
    from cnnkit.jit import pool as jp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256), dtype=np.float32)
    before = (lambda: a @ a) if hot else None
    rows = []

    def run(name: str, serial, par, *args) -> None:
        s = _median_ms(lambda: serial(*args), reps, before)
        p = _median_ms(lambda: par(*args), reps, before)
        rows.append((name, s, p))
        print(f"{name:44s} serial {s:8.3f} ms   2 threads {p:8.3f} ms   x{s / p:5.2f}", flush=True)

    for shape in [(1, 24, 24, 20), (8, 24, 24, 20), (32, 24, 24, 20), (100, 24, 24, 20), (100, 8, 8, 50), (64, 32, 32, 64)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        ho, wo = shape[1] // 2, shape[2] // 2
        s, p = jp._FORWARD[(0, True)]
        run(f"pool fwd train {shape}", s, p, x, 2, 2, 2, 2, 1, 1, ho, wo)
        s, p = jp._FORWARD[(0, False)]
        run(f"pool fwd eval {shape}", s, p, x, 2, 2, 2, 2, 1, 1, ho, wo)
        y, tap = jp._FORWARD[(0, True)][0](x, 2, 2, 2, 2, 1, 1, ho, wo)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        out = np.empty_like(x)
        s, p = jp._BACKWARD_DISJOINT[False]
        run(f"pool bwd {shape}", s, p, dy, tap, tap, out, 2, 2, 2, 2, 1, 1)
    for n in [1 << 12, 1 << 14, 1 << 16, 1 << 18, 431080, 1 << 21]:
        pp, g, b = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
        t = np.float32
        s, p = jo._SGD
        run(f"sgd momentum n={n}", s, p, pp, g, b, t(1e-4), t(0.9), t(5e-4), True)
        m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
        s, p = jo._ADAM
        run(f"adam n={n}", s, p, pp, g, m, v, v, t(0), t(0.1), t(0.999), t(0.001), t(1e-3), t(0.03), t(1e-8), False, True, False)
        out = np.empty(n, np.float32)
        s, p = ja._BWD
        run(f"relu bwd n={n}", s, p, g, b, out)
        s, p = ja._FWD
        run(f"relu fwd n={n}", s, p, g, out)
    print(json.dumps({"numba_threading_layer": jit.numba.threading_layer() if jit.numba else None}))


def _child(kind: str, model: str, batch: int, steps: int, blas: int, kern: int) -> list[float]:
    """One arrangement's step (or inference) times, in this process."""
    from threadpoolctl import threadpool_limits

    from cnnkit import jit
    from cnnkit.models import BuildOptions, build
    from cnnkit.models.zoo import resolve
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    limiter = threadpool_limits(blas, user_api="blas")
    if hasattr(jit, "set_threads"):  # absent before the parallel kernels (then every kernel is serial)
        jit.set_threads(kern)
    spec = resolve(model).spec
    rng = np.random.default_rng(0)
    net = build(spec, (28, 28, 1), rng, BuildOptions(init="he"))
    x = rng.standard_normal((batch, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)
    loss, opt = SoftmaxCrossEntropy(), SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss.forward(net.forward(x, train=True), labels)
        net.backward(loss.backward())
        opt.step()

    def infer() -> None:
        net.forward(x, train=False)

    fn = step if kind == "step" else infer
    for _ in range(5):
        fn()
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    del limiter
    return ts


def arrangements(kind: str, model: str, batch: int, steps: int, rounds: int) -> None:
    results: dict[str, list[float]] = {k: [] for k in ARRANGEMENTS}
    for r in range(rounds):
        line = []
        for name, (blas, kern) in ARRANGEMENTS.items():
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(blas))
            cmd = [sys.executable, __file__, "_child", kind, model, str(batch), str(steps), str(blas), str(kern)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            ts = json.loads(out.strip().splitlines()[-1])
            med = statistics.median(ts) * 1e3
            results[name].append(med)
            line.append(f"{name}: {med:7.3f} ms")
        print(f"round {r}: " + "   ".join(line) + f"   load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{model} {kind} batch {batch}, median of round medians: "
          + "   ".join(f"{k}: {statistics.median(v):.3f} ms" for k, v in results.items()))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, model, batch, steps, blas, kern = sys.argv[2:8]
        print(json.dumps(_child(kind, model, int(batch), int(steps), int(blas), int(kern))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["kernels", "step", "infer"])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--hot", action="store_true")
    ap.add_argument("--model", default="base")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if a.what == "kernels":
        kernels(a.reps, a.hot)
    else:
        batch = a.batch if a.batch is not None else (100 if a.what == "step" else 1)
        steps = a.steps if a.what == "step" else max(a.steps, 500)
        arrangements(a.what, a.model, batch, steps, a.rounds)


if __name__ == "__main__":
    main()
