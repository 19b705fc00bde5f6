"""Peak memory of one VGG-16 training step (224x224x3, batch 8, float32) in this fresh process.

    python scripts/vgg16_memory.py [--batch 8] [--trace] [--algo auto|im2row|...]

Prints VmHWM (peak RSS, /proc/self/status) after building the network and after one training step
(forward, softmax loss, backward, SGD with momentum and weight decay, as ``cnnkit bench --memory``).
``--trace`` also prints VmRSS after every layer's forward and backward (where the memory goes).
``--algo`` sets CNNKIT_CONV_ALGO for the run (the planner's choice when unset).
"""

from __future__ import annotations

import argparse
import os
import time


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--algo", default=None)
    a = ap.parse_args()
    if a.algo:
        os.environ["CNNKIT_CONV_ALGO"] = a.algo
    import numpy as np

    from cnnkit.models import BuildOptions, build
    from cnnkit.models.zoo import VGG16_SPEC
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    base = _status("VmHWM")
    rng = np.random.default_rng(0)
    shape = (a.size, a.size, 3)
    net = build(VGG16_SPEC, shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((a.batch, *shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=a.batch)
    loss, opt = SoftmaxCrossEntropy(), SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)
    built = _status("VmHWM")
    layers = list(net)
    t0 = time.perf_counter()
    if a.trace:
        h = x
        for i, layer in enumerate(layers):
            h = layer.forward(h, train=True)
            print(f"fwd {i:2d} {type(layer).__name__:20s} rss {_status('VmRSS'):8.0f} hwm {_status('VmHWM'):8.0f} MiB")
        loss.forward(h, labels)
        g = loss.backward()
        for i in range(len(layers) - 1, -1, -1):
            g = layers[i].backward(g)
            print(f"bwd {i:2d} {type(layers[i]).__name__:20s} rss {_status('VmRSS'):8.0f} hwm {_status('VmHWM'):8.0f} MiB")
    else:
        loss.forward(net.forward(x, train=True), labels)
        net.backward(loss.backward())
    opt.step()
    t1 = time.perf_counter()
    print(f"imports {base:.0f} MiB; after build {built:.0f} MiB; peak after one step {_status('VmHWM'):.0f} MiB "
          f"(step {t1 - t0:.1f} s, batch {a.batch}, CNNKIT_CONV_ALGO={os.environ.get('CNNKIT_CONV_ALGO', '')})")


if __name__ == "__main__":
    main()
