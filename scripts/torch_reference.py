#!/usr/bin/env python
"""Independent PyTorch reference for the exercise-15.6 MNIST runs (MatConvNet 1.0-beta20 ``cnn_mnist`` settings).

This is a comparison script, not part of cnnkit: it imports only torch and numpy, never cnnkit, so that its
numbers are an independent check of cnnkit's training runs. PyTorch is not a runtime dependency of cnnkit.

Networks (all convolutions stride 1, no padding; the 28x28 input shrinks to 1x1 before the last conv):

* ``base``: conv 5x5x1x20, maxpool 2x2/2, conv 5x5x20x50, maxpool 2x2/2, conv 4x4x50x500, ReLU,
  conv 1x1x500x10, softmax loss (no ReLU after the first two convolutions, as in cnn_mnist);
* ``bn``: ``base`` with batch normalisation after each of the first three convolutions (which then have
  no bias); BN scale 1, shift 0 at start, running = 0.95*running + 0.05*batch, eps ``--bn-eps`` (default
  1e-4, vl_nnbnorm's; cnnkit's zoo default for other networks and PyTorch's is 1e-5);
* ``sk-S`` (S a width factor, e.g. ``sk-1`` or ``sk-0.5``): conv 3x3x1x(20S)+BN+ReLU,
  conv 3x3x(20S)x(20S)+BN+ReLU, maxpool, conv 5x5x(20S)x(50S)+BN, maxpool, conv 4x4x(50S)x(500S)+BN+ReLU,
  conv 1x1x(500S)x10; each width is round(c*S), at least 1;
* any of these with ``-sigmoid`` (e.g. ``sk-0.2-sigmoid``, exercise 15.6(j)): every ReLU replaced by a sigmoid.

Training: every conv weight 0.01*N(0,1), biases 0; SGD with constant lr 0.001, momentum 0.9, weight decay
5e-4 on conv weights and biases (not on BN scale/shift); batch 100; mean cross-entropy over the batch.
MatConvNet's update ``m = 0.9 m - wd*w - g; w += lr*m`` equals PyTorch's SGD for a constant lr. The momentum
is zeroed at the start of every epoch, as MatConvNet 1.0-beta20's ``cnn_train`` does (``process_epoch``);
``--keep-momentum`` keeps it across epochs instead (cnnkit's behaviour with ``momentum_reset=False``).

Data: the canonical MNIST IDX ``.gz`` files; raw 0..255 pixels as float32 minus the 28x28 mean image of all
60,000 training images; the first ``--train-limit`` training images, reshuffled every epoch by a seeded
generator; every epoch ends with an evaluation on the (first ``--test-limit``) test images in eval mode.

Usage::

    python scripts/torch_reference.py --model base --train-limit 10000 --epochs 20 --seed 0 --out base.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
MNIST_FILES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "test-images": "t10k-images-idx3-ubyte.gz",
    "test-labels": "t10k-labels-idx1-ubyte.gz",
}
IDX_UBYTE = 0x08


# ----------------------------------------------------------------------------------------------- data


def default_data_dir() -> Path:
    """``$CNNKIT_DATA/mnist`` when the variable is set, else ``<repo>/../shared/datasets/mnist``."""
    env = os.environ.get("CNNKIT_DATA")
    if env:
        return Path(env) / "mnist"
    return REPO.parent / "shared" / "datasets" / "mnist"


def mnist_available(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether all four MNIST ``.gz`` files are present in ``data_dir`` (default :func:`default_data_dir`)."""
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    return all((d / name).is_file() for name in MNIST_FILES.values())


def read_idx_gz(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """A gzip-compressed unsigned-byte IDX file as a uint8 array of ``ndim`` dimensions.

    Layout: magic ``00 00 08 ndim``, then ``ndim`` big-endian uint32 sizes, then the bytes row-major.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header of {ndim} dimensions")
    zero, dtype_code, nd = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != IDX_UBYTE or nd != ndim:
        raise ValueError(
            f"{path}: IDX magic {raw[:4].hex()} is not unsigned-byte with {ndim} dims (expected 000008{ndim:02x})"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), body has {body.size}")
    return body.reshape(shape)


def load_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The four MNIST arrays: images uint8 (N, 28, 28), labels uint8 (N,)."""
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    missing = [name for name in MNIST_FILES.values() if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(f"MNIST files missing from {d}: {', '.join(missing)}")
    return {
        key: read_idx_gz(d / name, 3 if key.endswith("images") else 1) for key, name in MNIST_FILES.items()
    }


def prepare_data(
    raw: dict[str, np.ndarray], train_limit: int, test_limit: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean-subtracted float32 tensors (N, 1, 28, 28) and int64 labels, cnn_mnist style.

    The mean image is taken over all 60,000 training images (before the subset is cut), as MatConvNet does.
    """
    train_x = raw["train-images"].astype(np.float32)  # (60000, 28, 28), values 0..255
    mean = train_x.mean(axis=0, dtype=np.float64).astype(np.float32)  # (28, 28)
    test_x = raw["test-images"].astype(np.float32)
    n_test = len(test_x) if test_limit is None else test_limit
    xtr = torch.from_numpy(np.ascontiguousarray((train_x[:train_limit] - mean)[:, None]))  # (N, 1, 28, 28)
    xte = torch.from_numpy(np.ascontiguousarray((test_x[:n_test] - mean)[:, None]))
    ytr = torch.from_numpy(raw["train-labels"][:train_limit].astype(np.int64))
    yte = torch.from_numpy(raw["test-labels"][:n_test].astype(np.int64))
    return xtr, ytr, xte, yte


# --------------------------------------------------------------------------------------------- models


MATCONVNET_BN_EPS = 1e-4  # vl_nnbnorm's default epsilon


def _bn(c: int, eps: float = MATCONVNET_BN_EPS) -> nn.BatchNorm2d:
    # PyTorch's momentum is the weight of the new batch statistic: running = 0.95*running + 0.05*batch.
    return nn.BatchNorm2d(c, eps=eps, momentum=0.05)


def _width(c: int, s: float) -> int:
    return max(1, round(c * s))


def build_model(name: str, bn_eps: float = MATCONVNET_BN_EPS) -> nn.Sequential:
    """The network called ``name`` (``base``, ``bn`` or ``sk-S``, each optionally ``-sigmoid``), weights
    initialised as in cnn_mnist; its BN layers use epsilon ``bn_eps``."""
    base_name = name[: -len("-sigmoid")] if name.endswith("-sigmoid") else name
    act: type[nn.Module] = nn.Sigmoid if base_name != name else nn.ReLU
    if base_name == "base":
        layers: list[nn.Module] = [
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2),  # 28 -> 24 -> 12
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),  # 12 -> 8 -> 4
            nn.Conv2d(50, 500, 4), act(),  # 4 -> 1
            nn.Conv2d(500, 10, 1),
        ]
    elif base_name == "bn":
        layers = [
            nn.Conv2d(1, 20, 5, bias=False), _bn(20, bn_eps), nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, 5, bias=False), _bn(50, bn_eps), nn.MaxPool2d(2, 2),
            nn.Conv2d(50, 500, 4, bias=False), _bn(500, bn_eps), act(),
            nn.Conv2d(500, 10, 1),
        ]
    elif base_name.startswith("sk-"):
        try:
            s = float(base_name[3:])
        except ValueError:
            raise ValueError(f"model {name!r}: expected 'sk-S' with a number S, e.g. 'sk-1' or 'sk-0.5'") from None
        if not s > 0:
            raise ValueError(f"model {name!r}: the width factor must be positive, got {s}")
        c1, c2, c3 = _width(20, s), _width(50, s), _width(500, s)
        layers = [
            nn.Conv2d(1, c1, 3, bias=False), _bn(c1, bn_eps), act(),  # 28 -> 26
            nn.Conv2d(c1, c1, 3, bias=False), _bn(c1, bn_eps), act(), nn.MaxPool2d(2, 2),  # 26 -> 24 -> 12
            nn.Conv2d(c1, c2, 5, bias=False), _bn(c2, bn_eps), nn.MaxPool2d(2, 2),  # 12 -> 8 -> 4
            nn.Conv2d(c2, c3, 4, bias=False), _bn(c3, bn_eps), act(),  # 4 -> 1
            nn.Conv2d(c3, 10, 1),
        ]
    else:
        raise ValueError(f"unknown model {name!r}: expected 'base', 'bn' or 'sk-S' (e.g. 'sk-1'), optionally with '-sigmoid'")
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 1.0).mul_(0.01)  # 0.01 * N(0, 1)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
    return model


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with weight decay on conv weights and biases only (BN scale/shift get none)."""
    decay, no_decay = [], []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            decay.extend(m.parameters(recurse=False))
        elif isinstance(m, nn.BatchNorm2d):
            no_decay.extend(m.parameters(recurse=False))
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def reset_momentum(opt: torch.optim.Optimizer) -> None:
    """Zero every SGD momentum buffer, as MatConvNet's ``process_epoch`` does at the start of a training epoch
    (the next step is then ``buf = 0.9 * 0 + d``, a plain gradient step)."""
    for state in opt.state.values():
        buf = state.get("momentum_buffer")
        if buf is not None:
            buf.zero_()


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 10) class scores: the last conv's (N, 10, 1, 1) output flattened."""
    return model(x).flatten(1)


# ------------------------------------------------------------------------------------------- training


def pick_memory_format(
    model: nn.Module, batch_size: int, lr: float, steps: int = 4, log=print
) -> tuple[torch.memory_format, dict[str, float]]:
    """Time a few training steps on throwaway copies in each format; return the faster one and the timings.

    Runs on deep copies with synthetic data from its own generator, so the real model, optimiser and the
    global RNG are untouched.
    """
    gen = torch.Generator().manual_seed(12345)
    x = torch.randn(batch_size, 1, 28, 28, generator=gen) * 80.0
    y = torch.randint(0, 10, (batch_size,), generator=gen)
    timings: dict[str, float] = {}
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    for label, fmt in formats.items():
        m = copy.deepcopy(model).to(memory_format=fmt)
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9)
        xb = x.contiguous(memory_format=fmt)
        best = float("inf")
        for i in range(steps + 1):  # the first step is a warm-up
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(logits_of(m, xb), y).backward()
            opt.step()
            if i > 0:
                best = min(best, time.perf_counter() - t0)
        timings[label] = best
    choice = min(timings, key=timings.get)
    log(
        "memory format: "
        + ", ".join(f"{k} {v * 1e3:.1f} ms/step" for k, v in timings.items())
        + f" -> using {choice}"
    )
    return formats[choice], timings


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, fmt: torch.memory_format
) -> tuple[float, float]:
    """Mean cross-entropy and error rate over (x, y), BN in eval mode."""
    model.eval()
    loss_sum, wrong = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].contiguous(memory_format=fmt)
        yb = y[i : i + batch_size]
        logits = logits_of(model, xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        wrong += int((logits.argmax(1) != yb).sum())
    return loss_sum / len(x), wrong / len(x)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    gen: torch.Generator,
    fmt: torch.memory_format,
) -> tuple[float, float]:
    """One pass over a fresh permutation of (x, y); returns the running mean loss and error (train mode)."""
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    loss_sum, wrong = 0.0, 0
    for i in range(0, len(x), batch_size):  # a last partial batch is kept, as MatConvNet does
        idx = perm[i : i + batch_size]
        xb = x[idx].contiguous(memory_format=fmt)
        yb = y[idx]
        logits = logits_of(model, xb)
        loss = F.cross_entropy(logits, yb)  # mean over the batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        wrong += int((logits.detach().argmax(1) != yb).sum())
    return loss_sum / len(x), wrong / len(x)


# -------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="base, bn or sk-S (S a width factor, e.g. sk-1), optionally -sigmoid")
    p.add_argument("--train-limit", type=int, default=10000, help="train on the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images (all)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--bn-eps", type=float, default=MATCONVNET_BN_EPS,
                   help="batch normalisation epsilon (default 1e-4, MatConvNet's vl_nnbnorm; 1e-5 is PyTorch's)")
    p.add_argument("--keep-momentum", action="store_true",
                   help="keep the SGD momentum across epochs (default: zero it at every epoch's start, as MatConvNet's cnn_train)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    p.add_argument(
        "--memory-format", choices=("auto", "contiguous", "channels_last"), default="auto",
        help="auto: time a few steps in each and use the faster",
    )
    p.add_argument("--data-dir", default=None, help="directory of the MNIST .gz files "
                   "(default: $CNNKIT_DATA/mnist, else <repo>/../shared/datasets/mnist)")
    p.add_argument("--out", default=None, help="write per-epoch metrics here as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(argv)
    if not 1 <= args.train_limit <= 60000:
        p.error(f"--train-limit must be in 1..60000, got {args.train_limit}")
    if args.test_limit is not None and not 1 <= args.test_limit <= 10000:
        p.error(f"--test-limit must be in 1..10000, got {args.test_limit}")
    for name in ("epochs", "batch_size", "eval_batch_size", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.bn_eps > 0:
        p.error(f"--bn-eps must be positive, got {args.bn_eps}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the reference training; return (and optionally write) the results dictionary."""
    args = parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, **k, flush=True))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t_load = time.perf_counter()
    xtr, ytr, xte, yte = prepare_data(load_mnist(args.data_dir), args.train_limit, args.test_limit)
    log(f"data: train {tuple(xtr.shape)}, test {tuple(xte.shape)} ({time.perf_counter() - t_load:.1f} s)")

    model = build_model(args.model, args.bn_eps)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {args.model}: {n_params} parameters, BN eps {args.bn_eps:g}, momentum "
        f"{'kept across epochs' if args.keep_momentum else 'zeroed every epoch'}, {args.threads} thread(s), torch {torch.__version__}")
    if args.memory_format == "auto":
        fmt, fmt_timings = pick_memory_format(model, args.batch_size, args.lr, log=log)
    else:
        fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
        fmt_timings = {}
    fmt_name = "channels_last" if fmt == torch.channels_last else "contiguous"
    model = model.to(memory_format=fmt)
    opt = make_optimizer(model, args.lr, args.momentum, args.weight_decay)
    shuffle_gen = torch.Generator().manual_seed(args.seed)

    history = []
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        if not args.keep_momentum:
            reset_momentum(opt)
        train_loss, train_err = train_epoch(model, opt, xtr, ytr, args.batch_size, shuffle_gen, fmt)
        test_loss, test_err = evaluate(model, xte, yte, args.eval_batch_size, fmt)
        secs = time.perf_counter() - t0
        history.append({
            "epoch": epoch, "train_loss": train_loss, "train_error": train_err,
            "test_loss": test_loss, "test_error": test_err, "seconds": secs,
        })
        log(
            f"epoch {epoch:3d}  train loss {train_loss:.4f} err {train_err:.4f}  "
            f"test loss {test_loss:.4f} err {test_err:.4f}  {secs:.1f} s"
        )
    total = time.perf_counter() - t_start
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")},
        "memory_format": fmt_name,
        "memory_format_timings_s": fmt_timings,
        "n_params": n_params,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "epochs": history,
        "final_test_error": history[-1]["test_error"],
        "final_test_loss": history[-1]["test_loss"],
        "total_seconds": total,
    }
    log(f"final test error {result['final_test_error']:.4f}  ({total:.1f} s for {args.epochs} epochs)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
