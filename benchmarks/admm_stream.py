"""ADMM with its clips streamed through ``max_rows`` rows against all at once (docs/RESULTS.md, "On a GPU").

Attacks every correctly classified test clip of a UTD checkpoint in one call with ``configs/attack/admm.yaml``
at each ``--rows`` (``0``: all at once), prints the wall time, success and gradient evaluations, and how
many clips got the same evaluations as all at once.

    python3 benchmarks/admm_stream.py --ckpt runs/bench_utd/utd_hcn/checkpoints/last.ckpt --device cuda \\
        --rows 0 256 64 32 0 256 64
"""

from __future__ import annotations

import argparse
import time

from common import admm_kwargs, correct_test_clips, synchronize

from lightning_skel.attacks import build_attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 256, 64, 32])
    args = parser.parse_args()
    model, layout, x, y, lengths = correct_test_clips(args.ckpt, args.device)
    print(f"{len(y)} clips on {args.device}")
    results = {}
    for rows in args.rows:
        attack = build_attack("admm", model, layout, **{**admm_kwargs(), "max_rows": rows or None})
        synchronize(args.device)
        start = time.perf_counter()
        res = attack(x, y, lengths)
        synchronize(args.device)
        wall = time.perf_counter() - start
        results[rows] = res
        print(f"max_rows={rows or 'all'}: wall {wall:.2f} s, success {res.success.float().mean():.3f}, "
              f"grad_evals {res.grad_evals.float().mean():.1f}", flush=True)  # fmt: skip
    if 0 in results:
        for rows, res in results.items():
            if rows:
                same = (res.grad_evals == results[0].grad_evals).float().mean()
                print(f"max_rows={rows}: grad_evals equal to all at once on {same:.3f} of the clips")


if __name__ == "__main__":
    main()
