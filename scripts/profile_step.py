"""Where the time of one cnnkit training step goes, layer by layer (forward, backward) plus loss and SGD.

    python scripts/profile_step.py [--model base | --spec NETWORK] [--batch 100] [--shape 28x28x1] [--steps 50]
                                   [--threads N]

``--spec`` takes a network string (e.g. the VGG-style stack of ``cnnkit bench``); ``--threads`` pins NumPy's
BLAS (and so the compiled kernels) to N threads. The convolution algorithms are the planner's (set
``CNNKIT_CONV_ALGO=im2row`` for the reference); the planning happens in the warm-up steps.

Medians over ``--steps`` steps, after warm-up; the layers are timed one by one inside a real step, so the
sum is the step's time up to the timer's overhead.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cnnkit.models import BuildOptions, build
from cnnkit.models.zoo import resolve
from cnnkit.nn import SoftmaxCrossEntropy
from cnnkit.optim import SGD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--shape", default="28x28x1")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--spec", default=None, help="a network string instead of --model")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(a.threads)
    shape = tuple(int(v) for v in a.shape.split("x"))
    spec = a.spec or resolve(a.model).spec
    rng = np.random.default_rng(0)
    net = build(spec, shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((a.batch, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=a.batch)
    loss, opt = SoftmaxCrossEntropy(), SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)
    layers = list(net)
    names = [f"{i}:{type(layer).__name__}" for i, layer in enumerate(layers)]
    keys = [f"{n} fwd" for n in names] + ["loss", *[f"{n} bwd" for n in reversed(names)], "sgd", "step"]
    t: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(a.steps + 5):
        t0 = time.perf_counter()
        h = x
        for n, layer in zip(names, layers):
            s = time.perf_counter()
            h = layer.forward(h, train=True)
            t[f"{n} fwd"].append(time.perf_counter() - s)
        s = time.perf_counter()
        loss.forward(h, labels)
        g = loss.backward()
        t["loss"].append(time.perf_counter() - s)
        for i in range(len(layers) - 1, -1, -1):
            s = time.perf_counter()
            g = layers[i].backward(g)
            t[f"{names[i]} bwd"].append(time.perf_counter() - s)
        s = time.perf_counter()
        opt.step()
        t["sgd"].append(time.perf_counter() - s)
        t["step"].append(time.perf_counter() - t0)
    total = statistics.median(t["step"][5:])
    print(f"{a.spec or a.model} batch {a.batch}: {total * 1e3:.2f} ms/step, {a.batch / total:,.0f} images/s")
    for k, v in t.items():
        if k != "step":
            m = statistics.median(v[5:])
            algo = ""
            layer = layers[int(k.split(":")[0])] if ":" in k else None
            if layer is not None and getattr(layer, "_cache", None) is not None and hasattr(layer._cache, "algo"):
                algo = f"  [{layer._cache.algo}]"
            print(f"  {k:28s} {m * 1e3:7.3f} ms  {100 * m / total:5.1f}%{algo}")


if __name__ == "__main__":
    main()
