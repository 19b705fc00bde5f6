#!/usr/bin/env python
"""Training throughput of cnnkit on a backend (NumPy on the CPU, CuPy on a GPU) beside PyTorch on the same device.

Workloads (float32, SGD with momentum, softmax cross-entropy, random data made once on the host; each cnnkit
step copies its batch to the device as the training loop does):

* ``base``: the book's MNIST network (28x28x1), batch 100;
* ``vgg-stack``: three VGG blocks (2 x conv3x3+ReLU, maxpool) of 64/128/256 channels on 32x32x3, then a
  linear layer to 10 classes, batch 64;
* ``vgg16``: VGG-16 (224x224x3, 1000 classes), batch 32: the time of one training step.

Prints one line per (framework, workload) and, with ``--json PATH``, writes the numbers. ``--tiny`` shrinks
every workload (a smoke test that runs in seconds on a CPU: ``python scripts/gpu_bench.py --device cpu --tiny``).

Usage (on a GPU machine, from the working tree)::

    PYTHONPATH=src python scripts/gpu_bench.py --device gpu --json gpu_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

WORKLOADS = ("base", "vgg-stack", "vgg16")


def shapes(name: str, tiny: bool, vgg16_batch: int) -> tuple[tuple[int, int, int], int, int]:
    """(input shape, classes, batch) of a workload."""
    if name == "base":
        return (28, 28, 1), 10, 8 if tiny else 100
    if name == "vgg-stack":
        return (16, 16, 3) if tiny else (32, 32, 3), 10, 4 if tiny else 64
    return (32, 32, 3) if tiny else (224, 224, 3), 10 if tiny else 1000, 2 if tiny else vgg16_batch


def vgg_stack_widths(tiny: bool) -> list[int]:
    return [8, 16, 32] if tiny else [64, 128, 256]


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


# --------------------------------------------------------------------------------------------------
# cnnkit
# --------------------------------------------------------------------------------------------------
def cnnkit_model(name: str, tiny: bool, shape: tuple[int, int, int], classes: int) -> Any:
    from cnnkit import nn
    from cnnkit.models import create

    rng = np.random.default_rng(0)
    f32 = np.float32
    if name == "base":
        return create("base", rng, f32, input_shape=shape)
    if name == "vgg16" and not tiny:
        return create("vgg16", rng, f32, input_shape=shape)
    layers: list[Any] = []
    c, side = shape[2], shape[0]
    widths: list[Any] = VGG16_CFG if name == "vgg16" else [w for k in vgg_stack_widths(tiny) for w in (k, k, "M")]
    if name == "vgg16":  # tiny: VGG-16's layers at 1/16 of the width, on 32x32
        widths = [w if w == "M" else max(4, w // 16) for w in widths]
    for w in widths:
        if w == "M":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        else:
            layers += [nn.Conv2d(c, w, 3, padding=1, rng=rng, dtype=f32), nn.ReLU()]
            c = w
    layers += [nn.Flatten(), nn.Linear(c * side * side, classes, rng=rng, dtype=f32)]
    return nn.Sequential(*layers)


def cnnkit_runner(name: str, tiny: bool, vgg16_batch: int) -> tuple[Callable[[], float], Callable[[], None], int]:
    from cnnkit import backend
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    shape, classes, batch = shapes(name, tiny, vgg16_batch)
    net = cnnkit_model(name, tiny, shape, classes)
    loss, opt = SoftmaxCrossEntropy(), SGD(net, lr=0.001, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)  # on the host, as a dataset is
    y = rng.integers(0, classes, batch)

    def step() -> float:
        xb, yb = backend.to_device(x), backend.to_device(y)
        value = loss.forward(net.forward(xb, train=True), yb)
        net.backward(loss.backward())
        opt.step()
        return value

    def sync() -> None:
        if backend.is_gpu():
            backend.module().cuda.Device().synchronize()

    return step, sync, batch


# --------------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------------
def torch_runner(name: str, tiny: bool, vgg16_batch: int, gpu: bool) -> tuple[Callable[[], float], Callable[[], None], int]:
    import torch
    from torch import nn

    dev = torch.device("cuda" if gpu else "cpu")
    shape, classes, batch = shapes(name, tiny, vgg16_batch)
    torch.manual_seed(0)
    if name == "base":
        layers: list[nn.Module] = [nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
                                   nn.Conv2d(50, 500, 4), nn.ReLU(), nn.Conv2d(500, 10, 1), nn.Flatten()]
    else:
        cfg: list[Any] = VGG16_CFG if name == "vgg16" else [w for k in vgg_stack_widths(tiny) for w in (k, k, "M")]
        if name == "vgg16" and tiny:
            cfg = [w if w == "M" else max(4, w // 16) for w in cfg]
        layers, c, side = [], shape[2], shape[0]
        for w in cfg:
            if w == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
                c = w
        if name == "vgg16" and not tiny:  # VGG-16's classifier, dropout included as in cnnkit's zoo spec
            layers += [nn.Flatten(), nn.Linear(c * side * side, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
                       nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes)]
        else:
            layers += [nn.Flatten(), nn.Linear(c * side * side, classes)]
    net = nn.Sequential(*layers).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    x = torch.randn((batch, shape[2], shape[0], shape[1]), generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), generator=g)

    def step() -> float:
        xb, yb = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        out = crit(net(xb), yb)
        out.backward()
        opt.step()
        return float(out.detach())  # one scalar back per step, as cnnkit's loss does

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize()

    return step, sync, batch


# --------------------------------------------------------------------------------------------------
def measure(step: Callable[[], float], sync: Callable[[], None], warmup: int, steps: int, budget_s: float) -> tuple[float, int]:
    """Median seconds per step over up to ``steps`` timed steps (fewer when ``budget_s`` runs out)."""
    for _ in range(warmup):
        step()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                    help="cpu: NumPy and torch on the CPU; gpu: CuPy and torch CUDA (default: cpu)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--frameworks", default="cnnkit,torch", help="cnnkit, torch or both (default: cnnkit,torch)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per workload at most (default: 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of timed steps per workload at most (default: 30.0)")
    ap.add_argument("--vgg16-batch", type=int, default=32, help="VGG-16 batch size (default: 32)")
    ap.add_argument("--tiny", action="store_true", help="shrink every workload (smoke test)")
    ap.add_argument("--json", default=None, help="write the results here as JSON (default: none)")
    args = ap.parse_args(argv)
    gpu = args.device == "gpu"
    from cnnkit import backend

    if gpu:
        backend.use("cupy")
    results: list[dict[str, Any]] = []
    for fw in [f.strip() for f in args.frameworks.split(",") if f.strip()]:
        for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
            if name not in WORKLOADS:
                ap.error(f"unknown workload {name!r}")
            try:
                if fw == "cnnkit":
                    step, sync, batch = cnnkit_runner(name, args.tiny, args.vgg16_batch)
                elif fw == "torch":
                    step, sync, batch = torch_runner(name, args.tiny, args.vgg16_batch, gpu)
                else:
                    ap.error(f"unknown framework {fw!r}")
                sec, n = measure(step, sync, args.warmup, args.steps, args.budget)
            except Exception as e:  # report and go on: one failing workload must not hide the others
                print(f"{fw:7s} {name:10s} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                results.append({"framework": fw, "workload": name, "error": f"{type(e).__name__}: {e}"})
                continue
            row = {"framework": fw, "workload": name, "device": args.device, "backend": backend.name() if fw == "cnnkit" else "torch",
                   "batch": batch, "step_ms": 1000 * sec, "img_per_s": batch / sec, "timed_steps": n, "tiny": args.tiny}
            results.append(row)
            print(f"{fw:7s} {name:10s} batch {batch:4d}  {1000 * sec:9.2f} ms/step  {batch / sec:10.1f} img/s  ({n} steps)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
