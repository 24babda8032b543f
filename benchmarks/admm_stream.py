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

import torch
from attack_utd import _admm_defaults

from lightning_skel.attacks import build_attack
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.systems.attack_run import load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 256, 64, 32])
    args = parser.parse_args()
    dev = torch.device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    model, hp = load_classifier(args.ckpt)
    model.to(dev)
    dm = SkeletonDataModule(**{**hp["data_config"], "batch_size": 512})
    dm.setup()
    x, y, lengths, _ = next(iter(dm.test_dataloader()))
    x, y, lengths = x.to(dev), y.to(dev), lengths.to(dev)
    x, lengths = dm.window_batch(x, lengths, train=False)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    x, y, lengths = x[keep], y[keep], lengths[keep]
    print(f"{len(y)} clips on {dev}")
    results = {}
    for rows in args.rows:
        attack = build_attack("admm", model, hp["layout"], **{**_admm_defaults(), "max_rows": rows or None})
        sync()
        start = time.perf_counter()
        res = attack(x, y, lengths)
        sync()
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
