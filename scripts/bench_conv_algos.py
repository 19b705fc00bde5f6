"""Per-layer times of every convolution algorithm, and the planner's choice, for the benchmark networks.

    python scripts/bench_conv_algos.py [--threads 1] [--nets base,stack,sk2] [--modes eval,train] [--rounds 7]

For each convolution of BASE (batch 100), the VGG-style 3x3 stack (batch 64) and SK-2 (batch 100): the
minimum time (ms) of each algorithm that supports it, forward only (``eval``: what inference runs) and
forward + backward (``train``; no dX for a network's first layer), the algorithms run in turn round after
round so that a shared machine's load falls on all of them alike. ``pick`` is the planner's rule
(:func:`cnnkit.ops.conv_algos.planner.pick`) applied to these times; ``x`` its speed-up over im2row.
The machine's load average is printed before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cnnkit.models import infer_shapes, parse
from cnnkit.models.zoo import base_spec, sk_spec
from cnnkit.ops import conv_algos
from cnnkit.ops.conv import conv2d_backward, conv2d_forward
from cnnkit.ops.conv_algos import planner
from cnnkit.ops.workspace import Workspace

VGG_STACK = (
    "conv3x3x3x64p1,relu,conv3x3x64x64p1,relu,pool2,"
    "conv3x3x64x128p1,relu,conv3x3x128x128p1,relu,pool2,"
    "conv3x3x128x256p1,relu,conv3x3x256x256p1,relu,pool2,fc10"
)
NETS = {
    "base": (base_spec(), (28, 28, 1), 100),
    "stack": (VGG_STACK, (32, 32, 3), 64),
    "sk2": (sk_spec(2.0), (28, 28, 1), 100),
}


def conv_layers(spec: str, shape: tuple[int, int, int]) -> list[tuple[str, dict, tuple[int, ...], bool]]:
    tokens = parse(spec)
    outs = infer_shapes(tokens, shape)
    ins = [tuple(shape), *outs[:-1]]
    convs = [(t.text, t.args, tuple(i)) for t, i in zip(tokens, ins) if t.kind == "conv"]
    return [(text, args, i, n == 0) for n, (text, args, i) in enumerate(convs)]


def calls(args: dict, in_shape: tuple[int, ...], batch: int, first: bool, mode: str, name: str):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *in_shape), dtype=np.float32)
    w = (rng.standard_normal((*args["kernel"], in_shape[2] // args.get("groups", 1), args["out"])) * 0.05).astype(np.float32)
    b = np.zeros(args["out"], np.float32)
    conv = (x, w, b, args["stride"], args["padding"], args["dilation"], args.get("groups", 1))
    ws = Workspace()
    if mode == "eval":
        return lambda: conv2d_forward(*conv, 16 * 2**20, algo=name, keep_rows=False)
    y, _ = conv2d_forward(*conv)
    dy = rng.standard_normal(y.shape, dtype=np.float32)

    def step():
        _, cache = conv2d_forward(*conv, workspace=ws, algo=name)
        return conv2d_backward(dy, cache, need_dx=not first)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", default="base,stack")
    ap.add_argument("--modes", default="eval,train")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--algos", default="", help="comma-separated subset (default: all that apply)")
    a = ap.parse_args()
    threadpool_limits(a.threads)
    print(f"threads {a.threads}; load average before {os.getloadavg()[0]:.2f}")
    only = [s for s in a.algos.split(",") if s]
    totals: dict[tuple[str, str], list[float]] = {}
    for net in a.nets.split(","):
        spec, shape, batch = NETS[net]
        for mode in a.modes.split(","):
            for text, args, in_shape, first in conv_layers(spec, shape):
                g = conv_algos.geometry((batch, *in_shape), (*args["kernel"], in_shape[2], args["out"]), args["stride"],
                                        args["padding"], args["dilation"])
                names = [n for n in conv_algos.supported(g) if not only or n in only or n == "im2row"]
                fns = {n: calls(args, in_shape, batch, first, mode, n) for n in names}
                for f in fns.values():
                    f()
                best = dict.fromkeys(names, float("inf"))
                for _ in range(a.rounds):
                    for n, f in fns.items():
                        t = time.perf_counter()
                        f()
                        best[n] = min(best[n], time.perf_counter() - t)
                ms = {n: v * 1e3 for n, v in best.items()}
                pick = planner.pick(ms, names)
                tot = totals.setdefault((net, mode), [0.0, 0.0])
                tot[0] += ms["im2row"]
                tot[1] += ms[pick]
                cells = "  ".join(f"{n} {v:8.2f}" for n, v in ms.items())
                print(f"{net:5s} {mode:5s} {text:22s} {cells}  -> {pick} {ms['im2row'] / ms[pick]:.2f}x", flush=True)
    for (net, mode), (ref, chosen) in totals.items():
        print(f"{net:5s} {mode:5s} all convolutions: im2row {ref:8.2f} ms, chosen {chosen:8.2f} ms ({ref / chosen:.2f}x)")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
