"""The ST-GCN block's graph convolution in its two orders, side by side: ST-GCN's (the 1x1 convolution to
K * C_out channels, then the partition over joints, as an einsum) against the graph first
(``STGCNBlock.graph_conv``), timed as the forward+backward with respect to the input of a trained emotion
recognizer on UTD-MHAD-sized clips (what ADMM's emotion term runs once per outer step), interleaved.

    .venv/bin/python benchmarks/graph_conv_order.py --emotion-ckpt runs/bench_emotion_slim/fold0_gpu/last.ckpt
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from common import save_results, seconds_per_call

from lightning_skel.checkpoints import load_emotion
from lightning_skel.models import stgcn
from lightning_skel.skeleton.layouts import get_layout


def einsum_order(self: stgcn.STGCNBlock, x: torch.Tensor) -> torch.Tensor:
    """``STGCNBlock.graph_conv`` in ST-GCN's order: the 1x1 convolution to K * C_out channels, then each
    subset over joints (the reference timed against)."""
    n, _, t, v = x.shape
    h = self.gcn(x).view(n, self.num_subsets, -1, t, v)
    return torch.einsum("nkctj,kij->ncti", h, self.adjacency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emotion-ckpt", required=True)
    parser.add_argument("--layout", default="kinect20", help="the layout of the clips fed to the recognizer")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_emotion(args.emotion_ckpt, args.layout).eval()
    joints = get_layout(args.layout).num_joints
    x = 0.3 * torch.randn(args.batch, 3, args.frames, joints, 1, generator=torch.Generator().manual_seed(0))

    def fwd_bwd() -> torch.Tensor:
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(model.forward_features(xx).sum(), xx)[0]

    variants = {"einsum_order": einsum_order, "graph_first": stgcn.STGCNBlock.graph_conv}
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs = {}
    for _ in range(args.repeats):
        for name, graph_conv in variants.items():
            stgcn.STGCNBlock.graph_conv = graph_conv
            outputs[name] = fwd_bwd()  # the gradient compared below
            times[name].append(seconds_per_call(fwd_bwd, args.calls))
    stgcn.STGCNBlock.graph_conv = variants["graph_first"]
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "fwd_bwd_s": med,
        "repeats_s": times,
        "ratio_graph_first": med["graph_first"] / med["einsum_order"],
        "max_grad_difference": float((outputs["graph_first"] - outputs["einsum_order"]).abs().max()),
        "batch": args.batch,
        "frames": args.frames,
        "threads": 1,
    }
    print(result)
    if args.out:
        save_results(args.out, {"results": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
