"""ADMM's delta step on a classifier's input gradient as autograd returns it against a contiguous copy: the
layout of the gradient (HCN's is joint-major) and what it costs the proximal term and Adam, which pass over
it several times. Times, on the first correctly classified UTD-MHAD test clips of a checkpoint and one CPU
thread, the delta step's arithmetic written both ways (the proximal term added into the strided gradient,
and the gradient added into the contiguous proximal term, as ``ADMMAttack`` does since commit
``89b017e``), then ``BatchAdam.step`` on each, interleaved, median of ``--repeats`` rounds.

    .venv/bin/python benchmarks/adam_layout.py --ckpt runs/bench_utd/utd_hcn/checkpoints/last.ckpt \\
        --out benchmarks/results/adam_layout_hcn.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from common import correct_test_clips, save_results, seconds_per_call

from lightning_skel.attacks.base import BatchAdam


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _, x, _, _ = correct_test_clips(args.ckpt, "cpu", args.clips)
    model.eval()
    d = torch.zeros_like(x).requires_grad_(True)
    (g,) = torch.autograd.grad(model(x + d).sum(), d)
    delta, centre = torch.randn_like(x) * 1e-3, torch.randn_like(x) * 1e-3
    r5 = torch.ones(len(x), 1, 1, 1, 1)
    mask = torch.ones_like(x[:, :1, :, :1])
    strided, contiguous = g.clone(), g.contiguous()  # clone keeps the layout
    work = g.clone()  # written in place as the old delta step wrote the fresh gradient (values immaterial)
    opt = BatchAdam(torch.zeros_like(x), 1e-3)
    cases = {
        "proximal_into_strided_gradient": lambda: work.addcmul_(r5, delta - centre),
        "gradient_into_contiguous_proximal": lambda: (delta - centre).mul_(r5).add_(g),
        "adam_step_strided": lambda: opt.step(slice(None), strided, mask),
        "adam_step_contiguous": lambda: opt.step(slice(None), contiguous, mask),
    }
    rounds: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            rounds[name].append(seconds_per_call(fn, args.calls) * 1e3)
    ms = {k: statistics.median(v) for k, v in rounds.items()}
    results = {
        "gradient_stride": list(g.stride()),
        "gradient_contiguous": g.is_contiguous(),
        "shape": list(x.shape),
        "median_ms": ms,
        "rounds_ms": rounds,
        "delta_step_strided_ms": ms["proximal_into_strided_gradient"] + ms["adam_step_strided"],
        "delta_step_contiguous_ms": ms["gradient_into_contiguous_proximal"] + ms["adam_step_contiguous"],
    }
    print(results["gradient_stride"], {k: round(v, 3) for k, v in ms.items()})
    print(
        f"delta step arithmetic: strided {results['delta_step_strided_ms']:.3f} ms, "
        f"contiguous {results['delta_step_contiguous_ms']:.3f} ms"
    )
    if args.out:
        save_results(args.out, {"results": results, "clips": len(x)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
