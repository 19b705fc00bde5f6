"""A scaling model for synchronous data parallelism (docs/distributed.md): compute per step against bytes
exchanged per step, for K nodes on a 10 Gbit/s and a 100 Gbit/s network.

One training step of a global batch of B images costs ``3 F B`` floating-point operations (forward F per
image, the backward about twice that) spread over K nodes, followed by one ring Allreduce of the float32
gradients: each node sends and receives ``2 (K - 1) / K * 4 P`` bytes in ``2 (K - 1)`` messages. cnnkit does
not overlap the Allreduce with the backward pass, so the step time is the sum

    t(K) = 3 F B / (K S) + 2 (K - 1) / K * 4 P / bandwidth + 2 (K - 1) * latency

and the speed-up over one node is t(1) / t(K). S is a node's sustained training rate in FLOP/s.

    python scripts/scaling_model.py                      # the table in docs/distributed.md
    python scripts/scaling_model.py --node-gflops 74     # nodes like the 2-core machine the figures come from
"""

from __future__ import annotations

import argparse

import numpy as np

NETWORKS = {"10 Gbit/s Ethernet": (10e9 / 8, 20e-6), "100 Gbit/s InfiniBand": (100e9 / 8, 2e-6)}
"""name: (bytes per second, seconds per message)."""

MODELS = (("base", (28, 28, 1), 100), ("resnet20", (32, 32, 3), 128), ("vgg16", (224, 224, 3), 256))
"""(model, input shape, global batch): the batches the models are usually trained with."""


def step_time(flops: float, params: int, batch: int, k: int, node_flops: float, bandwidth: float, latency: float) -> tuple[float, float]:
    """(compute seconds, communication seconds) of one step on k nodes."""
    compute = 3 * flops * batch / (k * node_flops)
    comm = 0.0 if k == 1 else 2 * (k - 1) / k * 4 * params / bandwidth + 2 * (k - 1) * latency
    return compute, comm


def main() -> None:
    from cnnkit.models import create
    from cnnkit.nn.init import shapes_only
    from cnnkit.summary import summary

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node-gflops", type=float, default=1000.0,
                   help="a node's sustained training rate, GFLOP/s (default: 1000, a 32-core AVX-512 server)")
    p.add_argument("--nodes", default="1,2,4,8,16,32,64")
    args = p.parse_args()
    ks = [int(v) for v in args.nodes.split(",")]
    s = args.node_gflops * 1e9
    print(f"node: {args.node_gflops:g} GFLOP/s sustained; step = compute + one ring Allreduce (no overlap)\n")
    for name, shape, batch in MODELS:
        with shapes_only():
            net = create(name, np.random.default_rng(0), np.float32, input_shape=shape)
        info = summary(net, shape)
        flops, params = float(info.total_flops), int(info.total_params)
        one = step_time(flops, params, batch, 1, s, 1.0, 0.0)[0]
        print(f"{name}: {params:,} parameters ({4 * params / 1e6:.1f} MB of gradients), {flops / 1e9:.3f} GFLOP forward per image, "
              f"global batch {batch}: {3 * flops * batch / 1e9:.1f} GFLOP per step, {1e3 * one:.2f} ms on one node")
        print(f"| network | {' | '.join(f'K={k}' for k in ks)} |")
        print(f"| --- | {' | '.join('---:' for _ in ks)} |")
        for net_name, (bw, lat) in NETWORKS.items():
            cells = []
            for k in ks:
                compute, comm = step_time(flops, params, batch, k, s, bw, lat)
                cells.append(f"{one / (compute + comm):.1f}x ({100 * comm / (compute + comm):.0f}% comm)")
            print(f"| {net_name} | {' | '.join(cells)} |")
        print()


if __name__ == "__main__":
    main()
