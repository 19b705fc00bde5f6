"""``cnnkit bench``: cnnkit and PyTorch (CPU) side by side, in one process, on the same work and threads.

What is timed (float32, random data, SGD with momentum and weight decay in both):

* the SGEMM ceiling: NumPy's float32 matrix product on this machine, measured in this run;
* BASE training step and inference (batch 100, 28x28x1); SK-2 training step (batch 100);
* a VGG-style stack of 3x3 convolutions on 32x32x3 (batch 64), training step;
* every convolution of BASE and of that stack alone: forward and backward GFLOP/s;
* (``--memory``) peak memory of one VGG-16 training step on 224x224x3 at batch 8, each framework in a
  fresh subprocess;
* (``--scaling``) throughput against batch size, channel multiplier and image size, as a table and a PNG.

PyTorch runs both in its default NCHW layout and with ``channels_last``; the faster one is the reference
for the ratios. Without PyTorch installed its columns are skipped. Thread counts are pinned for both
(NumPy's BLAS through threadpoolctl, PyTorch through ``torch.set_num_threads``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

VGG_STACK = (
    "conv3x3x3x64p1,relu,conv3x3x64x64p1,relu,pool2,"
    "conv3x3x64x128p1,relu,conv3x3x128x128p1,relu,pool2,"
    "conv3x3x128x256p1,relu,conv3x3x256x256p1,relu,pool2,fc10"
)


def timeit(fn: Callable[[], Any], min_time: float = 1.0, warmup: int = 2, min_repeats: int = 3) -> float:
    """Median seconds per call over at least ``min_repeats`` calls and ``min_time`` seconds, after warm-up."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) > 10000:
            break
    return statistics.median(times)


def sgemm_ceiling(n: int = 2048, min_time: float = 1.0) -> float:
    """GFLOP/s of NumPy's float32 (n x n) @ (n x n)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t = timeit(lambda: np.matmul(a, b, out=out), min_time)
    return 2 * n**3 / t / 1e9


# -- cnnkit side --------------------------------------------------------------------------------

def cnnkit_step(spec: str, input_shape: tuple[int, int, int], batch: int, train: bool) -> Callable[[], None]:
    """One training step (forward, loss, backward, SGD update) or one inference forward of a network string."""
    from cnnkit.models import BuildOptions, build
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    rng = np.random.default_rng(0)
    net = build(spec, input_shape, rng, BuildOptions(init="he"))
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)
    if not train:
        return lambda: net.forward(x, train=False)
    loss = SoftmaxCrossEntropy()
    opt = SGD(net, lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss.forward(net.forward(x, train=True), labels)
        net.backward(loss.backward())
        opt.step()

    return step


# -- PyTorch side -------------------------------------------------------------------------------

def torch_model(spec: str, input_shape: tuple[int, int, int]) -> Any:
    """The same network string as a torch.nn.Sequential (NCHW), from the token table's PyTorch entries."""
    import torch.nn as tnn

    from cnnkit.models import infer_shapes, parse
    from cnnkit.models.tokens import entry

    tokens = parse(spec)
    shapes = infer_shapes(tokens, input_shape)
    layers: list[Any] = []
    prev: tuple[int, ...] = tuple(input_shape)
    for t, shape in zip(tokens, shapes):
        layers += entry(t.kind).torch(t.args, prev)
        prev = shape
    layers.append(tnn.Flatten())
    return tnn.Sequential(*layers)


def torch_step(spec: str, input_shape: tuple[int, int, int], batch: int, train: bool, channels_last: bool) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch_model(spec, input_shape)
    h, w, c = input_shape
    x = torch.randn(batch, c, h, w)
    labels = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if not train:
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x)

        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        opt.step()

    return step


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- the report ---------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    unit: str
    cnnkit: float
    torch_nchw: Optional[float] = None
    torch_cl: Optional[float] = None

    @property
    def torch_best(self) -> Optional[float]:
        """PyTorch's better layout: the higher throughput, or the lower memory (unit MiB)."""
        vals = [v for v in (self.torch_nchw, self.torch_cl) if v is not None]
        if not vals:
            return None
        return min(vals) if self.unit == "MiB" else max(vals)

    @property
    def ratio(self) -> Optional[float]:
        best = self.torch_best
        return self.cnnkit / best if best else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "cnnkit": self.cnnkit, "torch_nchw": self.torch_nchw,
                "torch_channels_last": self.torch_cl, "ratio": self.ratio}


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")


def format_table(rows: list[Row]) -> str:
    head = f"{'workload':<44} {'unit':<8} {'cnnkit':>10} {'torch':>10} {'torch CL':>10} {'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"{r.name:<44} {r.unit:<8} {_fmt(r.cnnkit):>10} {_fmt(r.torch_nchw):>10} {_fmt(r.torch_cl):>10} {ratio:>7}")
    return "\n".join(lines)


def network_rows(min_time: float, use_torch: bool, log: Callable[[str], None]) -> list[Row]:
    from cnnkit.models.zoo import base_spec, sk_spec

    cases = [
        ("BASE training step, batch 100", base_spec(), (28, 28, 1), 100, True),
        ("BASE inference, batch 100", base_spec(), (28, 28, 1), 100, False),
        ("SK-2 training step, batch 100", sk_spec(2.0), (28, 28, 1), 100, True),
        ("VGG-style 3x3 stack 32x32x3 training, batch 64", VGG_STACK, (32, 32, 3), 64, True),
    ]
    rows = []
    for name, spec, shape, batch, train in cases:
        t = timeit(cnnkit_step(spec, shape, batch, train), min_time)
        row = Row(name, "img/s", batch / t)
        if use_torch:
            row.torch_nchw = batch / timeit(torch_step(spec, shape, batch, train, False), min_time)
            row.torch_cl = batch / timeit(torch_step(spec, shape, batch, train, True), min_time)
        log(format_table([row]).splitlines()[-1])
        rows.append(row)
    return rows


def conv_layers(spec: str, input_shape: tuple[int, int, int]) -> list[tuple[str, dict, tuple[int, ...]]]:
    """(token text, conv args, input shape) of every convolution of a network string."""
    from cnnkit.models import infer_shapes, parse

    tokens = parse(spec)
    shapes = [tuple(input_shape)] + infer_shapes(tokens, input_shape)[:-1]
    return [(t.text, t.args, s) for t, s in zip(tokens, shapes) if t.kind == "conv"]


def conv_rows(min_time: float, use_torch: bool, log: Callable[[str], None]) -> list[Row]:
    """Each convolution alone: forward and backward (dW, db and dX) in GFLOP/s."""
    from cnnkit.models.zoo import base_spec
    from cnnkit.ops.conv import conv2d_backward, conv2d_forward

    rows = []
    for net, spec, shape, batch in (("BASE", base_spec(), (28, 28, 1), 100), ("stack", VGG_STACK, (32, 32, 3), 64)):
        for i, (text, a, (h, w, c)) in enumerate(conv_layers(spec, shape)):
            first = i == 0  # the first layer never needs dX
            rng = np.random.default_rng(0)
            x = rng.standard_normal((batch, h, w, c), dtype=np.float32)
            wgt = rng.standard_normal((*a["kernel"], c, a["out"]), dtype=np.float32) * 0.01
            b = np.zeros(a["out"], dtype=np.float32)
            y, cache = conv2d_forward(x, wgt, b, a["stride"], a["padding"], a["dilation"])
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            flops = 2.0 * y.shape[0] * y.shape[1] * y.shape[2] * a["kernel"][0] * a["kernel"][1] * c * a["out"]
            t_f = timeit(lambda: conv2d_forward(x, wgt, b, a["stride"], a["padding"], a["dilation"]), min_time / 2)
            t_b = timeit(lambda: conv2d_backward(dy, conv2d_forward(x, wgt, b, a["stride"], a["padding"], a["dilation"])[1], need_dx=not first), min_time / 2) - t_f
            bflops = flops * (1 if first else 2)
            fwd = Row(f"{net} {text} forward", "GFLOP/s", flops / t_f / 1e9)
            bwd = Row(f"{net} {text} backward{' (no dX)' if first else ''}", "GFLOP/s", bflops / max(t_b, 1e-9) / 1e9)
            if use_torch:
                for cl in (False, True):
                    tf, tb = _torch_conv_times(x, wgt, b, a, cl, first, min_time / 2)
                    setattr(fwd, "torch_cl" if cl else "torch_nchw", flops / tf / 1e9)
                    setattr(bwd, "torch_cl" if cl else "torch_nchw", bflops / max(tb, 1e-9) / 1e9)
            for r in (fwd, bwd):
                log(format_table([r]).splitlines()[-1])
            rows += [fwd, bwd]
    return rows


def _torch_conv_times(x: np.ndarray, w: np.ndarray, b: np.ndarray, a: dict, channels_last: bool, first: bool, min_time: float) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    xt = torch.tensor(x.transpose(0, 3, 1, 2)).contiguous(memory_format=fmt).requires_grad_(not first)
    wt = torch.tensor(w.transpose(3, 2, 0, 1)).contiguous(memory_format=fmt).requires_grad_(True)
    bt = torch.tensor(b).requires_grad_(True)
    pad = a["padding"]

    def fwd() -> Any:
        with torch.no_grad():
            return F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])

    y = F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])
    dy = torch.randn_like(y)
    inputs = [wt, bt] + ([] if first else [xt])

    def both() -> None:
        out = F.conv2d(xt, wt, bt, a["stride"], pad, a["dilation"])
        torch.autograd.grad(out, inputs, dy)

    t_f = timeit(fwd, min_time)
    return t_f, timeit(both, min_time) - t_f


# -- memory ---------------------------------------------------------------------------------------

def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(framework: str, batch: int = 8) -> dict[str, float]:
    """Run in a fresh process: one VGG-16 training step at 224x224x3; returns peak RSS figures (MiB)."""
    from cnnkit.models.zoo import VGG16_SPEC

    base = _peak_rss_mib()
    if framework == "cnnkit":
        step = cnnkit_step(VGG16_SPEC, (224, 224, 3), batch, True)
    else:
        import torch

        base = _peak_rss_mib()
        step = torch_step(VGG16_SPEC, (224, 224, 3), batch, True, framework == "torch_cl")
    after_build = _peak_rss_mib()
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    return {"baseline_mib": base, "model_mib": after_build - base, "peak_mib": _peak_rss_mib(), "step_seconds": seconds}


def memory_rows(threads: int, log: Callable[[str], None], use_torch: bool) -> tuple[list[Row], dict]:
    frameworks = ["cnnkit"] + (["torch", "torch_cl"] if use_torch else [])
    results = {}
    for fw in frameworks:
        cmd = [sys.executable, "-m", "cnnkit.bench", "--memory-child", fw, "--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            log(f"memory run for {fw} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        results[fw] = json.loads(out.stdout.strip().splitlines()[-1])
    def peak(fw: str) -> Optional[float]:
        return results[fw]["peak_mib"] if fw in results else None
    row = Row("VGG-16 224x224x3 batch 8 training step peak RSS", "MiB", peak("cnnkit") or float("nan"), peak("torch"), peak("torch_cl"))
    log(f"{row.name}: cnnkit {_fmt(row.cnnkit)} MiB, torch {_fmt(row.torch_nchw)} MiB, torch channels_last {_fmt(row.torch_cl)} MiB")
    return [row], results


# -- scaling curves -----------------------------------------------------------------------------

def scaling(min_time: float, use_torch: bool, log: Callable[[str], None]) -> dict[str, list[dict]]:
    from cnnkit.models.zoo import base_spec, sk_spec

    curves: dict[str, list[dict]] = {"batch": [], "multiplier": [], "image_size": []}

    def measure(kind: str, x: float, spec: str, shape: tuple[int, int, int], batch: int) -> None:
        rec: dict[str, Any] = {"x": x, "batch": batch, "cnnkit": batch / timeit(cnnkit_step(spec, shape, batch, True), min_time, warmup=1)}
        if use_torch:
            rec["torch"] = max(batch / timeit(torch_step(spec, shape, batch, True, cl), min_time, warmup=1) for cl in (False, True))
        curves[kind].append(rec)
        log(f"{kind} {x}: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in rec.items() if k in ("cnnkit", "torch")))

    for b in (1, 4, 16, 64, 128, 256, 512):
        measure("batch", b, base_spec(), (28, 28, 1), b)
    for s in (0.2, 0.5, 1.0, 1.5, 2.0):
        measure("multiplier", s, sk_spec(s), (28, 28, 1), 100)
    for size in (32, 64, 128, 224):
        measure("image_size", size, VGG_STACK, (size, size, 3), 64 if size <= 64 else 16)
    return curves


def format_scaling_table(curves: dict[str, list[dict]]) -> str:
    """The scaling curves as a Markdown table (training images/s; PyTorch = its faster layout)."""
    what = {"batch": "BASE, batch size", "multiplier": "SK-s (batch 100), s", "image_size": "VGG-style stack, image side"}
    lines = ["| curve | x | batch | cnnkit img/s | PyTorch img/s | ratio |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, pts in curves.items():
        for p in pts:
            t = p.get("torch")
            ratio = f"{p['cnnkit'] / t:.2f}x" if t else "-"
            lines.append(f"| {what.get(kind, kind)} | {p['x']:g} | {p.get('batch', '')} | {_fmt(p['cnnkit'])} | "
                         f"{_fmt(t)} | {ratio} |")
    return "\n".join(lines)


def plot_scaling(curves: dict[str, list[dict]], path: str) -> bool:
    from cnnkit.train.plots import have_matplotlib
    from cnnkit.serialize import atomic_write_bytes

    if not have_matplotlib():
        return False
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"batch": ("BASE training vs batch size", "batch size", True),
              "multiplier": ("SK-s training vs channel multiplier s (batch 100)", "s", False),
              "image_size": ("VGG-style stack training vs image size", "image side (px)", True)}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (kind, (title, xlabel, logx)) in zip(axes, titles.items()):
        pts = curves.get(kind, [])
        xs = [p["x"] for p in pts]
        for key, style in (("cnnkit", "-o"), ("torch", "-s")):
            if pts and key in pts[0]:
                ax.plot(xs, [p[key] for p in pts], style, label=key if key == "cnnkit" else "PyTorch (best layout)")
        ax.set(title=title, xlabel=xlabel, ylabel="images/s")
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True


def set_threads(threads: int) -> Any:
    """Pin NumPy's BLAS and PyTorch to ``threads``; returns the threadpoolctl limiter (keep it alive)."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    if have_torch():
        import torch

        torch.set_num_threads(threads)
    return limiter


def run(args: Any, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The benchmark behind ``cnnkit bench``; returns the JSON-able results."""
    threads = args.threads or os.cpu_count() or 1
    limiter = set_threads(threads)  # noqa: F841 - must stay alive for the run
    use_torch = have_torch() and not args.no_torch
    info: dict[str, Any] = {"threads": threads, "numpy": np.__version__, "cpu_count": os.cpu_count()}
    if use_torch:
        import torch

        info["torch"] = torch.__version__
    else:
        log("PyTorch not installed (or --no-torch): its columns are skipped")
    min_time = args.min_time
    log(f"cnnkit bench: {threads} thread(s), min {min_time}s per measurement")
    ceiling = sgemm_ceiling(min_time=min_time)
    log(f"SGEMM ceiling (NumPy float32 2048^3 matmul): {ceiling:.1f} GFLOP/s")
    rows = network_rows(min_time, use_torch, log)
    if not args.no_layers:
        rows += conv_rows(min_time, use_torch, log)
    results: dict[str, Any] = {"info": info, "sgemm_gflops": ceiling}
    if args.memory:
        mem_rows, mem = memory_rows(threads, log, use_torch)
        rows += mem_rows
        results["memory"] = mem
    results["rows"] = [r.as_dict() for r in rows]
    log("")
    log(format_table(rows))
    log(f"SGEMM ceiling: {ceiling:.1f} GFLOP/s; conv forward rows as a fraction of it: " + ", ".join(
        f"{r.name.split(' forward')[0]} {100 * r.cnnkit / ceiling:.0f}%" for r in rows if r.unit == "GFLOP/s" and r.name.endswith("forward")))
    if args.scaling:
        curves = scaling(min_time / 2, use_torch, log)
        results["scaling"] = curves
        log("")
        log(format_scaling_table(curves))
        if args.plot and plot_scaling(curves, args.plot):
            log(f"scaling plot written to {args.plot}")
    if args.json:
        from cnnkit.serialize import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        log(f"results written to {args.json}")
    return results


def _threads_arg(value: str) -> int:
    import argparse

    try:
        v = int(value)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def add_arguments(p: Any) -> None:
    p.add_argument("--threads", type=_threads_arg, default=None, help="threads for both frameworks (default: all cores)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (default 1.0)")
    p.add_argument("--no-torch", action="store_true", help="time cnnkit only")
    p.add_argument("--no-layers", action="store_true", help="skip the per-convolution GFLOP/s rows")
    p.add_argument("--memory", action="store_true", help="also measure VGG-16 224x224 batch-8 training peak memory (slow)")
    p.add_argument("--scaling", action="store_true", help="also measure the scaling curves (slow)")
    p.add_argument("--plot", default="bench_scaling.png", help="PNG for the scaling curves (with --scaling)")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")


if __name__ == "__main__":  # the memory child: python -m cnnkit.bench --memory-child FRAMEWORK --threads N
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--memory-child", required=True, choices=["cnnkit", "torch", "torch_cl"])
    ap.add_argument("--threads", type=int, default=1)
    ns = ap.parse_args()
    _lim = set_threads(ns.threads)
    print(json.dumps(memory_child(ns.memory_child)))
