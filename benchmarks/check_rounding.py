"""How far the compiled classifier's logits are from the eager ones: the measure behind ADMM's
``CHECK_TOLERANCE`` (``attack.compile=true`` labels the candidates with the compiled classifier and asks the
eager one wherever the two top logits are closer than the tolerance, relative to 1 + |top logit|).

Per checkpoint: its correctly classified test clips (the first ``--limit``), through the classifier compiled
as ADMM compiles it (inductor, automatic dynamic shapes) in batches of ``--rows`` and then in the drain's
smaller sizes, against the eager classifier on the same batches: the largest absolute difference of any
logit, the largest relative to 1 + |top logit| (what the tolerance is compared with), how many times the
tolerance exceeds that, and whether any label differs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/check_rounding.py \\
        --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt sgn=... agcn=... \\
        --out benchmarks/results/check_rounding.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import correct_test_clips, named_ckpts, save_results

from lightning_skel.attacks.admm import CHECK_TOLERANCE


def rounding(ckpt: str, limit: int, rows: int) -> dict:
    model, _, x, _, _ = correct_test_clips(ckpt, "cpu", limit)
    model.eval()
    # the graphs of every checkpoint's classifier share Classifier.forward's limit of 8, which four sizes
    # (the full width, 16 and more, 2-15, one) reach by the third checkpoint: each starts afresh
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=None)  # as ADMMAttack compiles its check
    sizes = [rows] * (x.shape[0] // rows) + [rows - 1, rows // 2 + 1, 3, 1]
    worst_abs = worst_rel = 0.0
    flips = start = 0
    began = time.perf_counter()
    with torch.no_grad():
        for n in sizes:
            idx = torch.arange(start, start + n) % x.shape[0]
            start += n
            eager, fast = model(x[idx]), compiled(x[idx])
            diff = (fast - eager).abs().amax(1)
            scale = 1 + eager.abs().amax(1)
            worst_abs = max(worst_abs, float(diff.max()))
            worst_rel = max(worst_rel, float((diff / scale).max()))
            flips += int((fast.argmax(1) != eager.argmax(1)).sum())
    return {"clips": int(x.shape[0]), "batches": sizes, "max_abs_diff": worst_abs, "max_rel_diff": worst_rel,
            "tolerance": CHECK_TOLERANCE, "margin": CHECK_TOLERANCE / worst_rel if worst_rel else None,
            "labels_differing": flips, "seconds": time.perf_counter() - began}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="NAME=PATH ...")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = {}
    for name, path in named_ckpts(parser, args.ckpt).items():
        results[name] = rounding(path, args.limit, args.rows)
        print(name, results[name], flush=True)
        save_results(args.out, {"threads": torch.get_num_threads(), "results": results})


if __name__ == "__main__":
    main()
