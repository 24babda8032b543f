"""UTD-MHAD cross-subject top-1 of every classifier trained from scratch (issue: the classifier zoo).

Runs ``train.py experiment=utd_<model>`` for each model (skipping runs whose ``metrics.json`` exists and resuming
unfinished ones from their ``last.ckpt``, so a killed benchmark resumes), then fuses the 2s-AGCN joint and bone streams (sum of scores) on the test split.
Writes ``benchmarks/results/utd_train.json`` and prints a table.

    .venv/bin/python benchmarks/train_utd.py [--models hcn agcn_joint ...] [--runs runs/bench_utd]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import ROOT, add_trainer_option, save_results, trained, use_trainer

from lightning_skel.run import checkpoint_accuracy

MODELS = ("hcn", "agcn_joint", "agcn_bone", "sgn", "stgcn", "ctrgcn", "msg3d")
FLOOR = 0.837  # random forest on crude features (the recordings' own README)


def train(model: str, runs: Path, extra: list[str]) -> dict:
    return trained(runs / f"utd_{model}", [f"experiment=utd_{model}", *extra])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_utd")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "utd_train.json")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run")
    add_trainer_option(parser)
    args = parser.parse_args()
    use_trainer(args.trainer)
    results = {m: train(m, args.runs, args.overrides) for m in args.models}
    # Two figures per model: the checkpoint of best validation accuracy (what train.py tests) and the last
    # one. UTD-MHAD has no official validation set; the 10 % drawn from the training subjects reaches 100 %
    # within the first third of training, so "best" is the first epoch that gets there, not the best model.
    rows = {
        m: {
            "test_acc_best_val": r["test/acc"],
            "test_acc_last": checkpoint_accuracy(r["last_checkpoint"]),
            "epochs": r["epochs"],
            "wall_time_s": r["wall_time_s"],
        }
        for m, r in results.items()
    }
    if {"agcn_joint", "agcn_bone"} <= set(results):
        joint, bone = results["agcn_joint"], results["agcn_bone"]
        rows["agcn_fused"] = {
            "test_acc_best_val": checkpoint_accuracy(joint["best_checkpoint"], bone["best_checkpoint"]),
            "test_acc_last": checkpoint_accuracy(joint["last_checkpoint"], bone["last_checkpoint"]),
        }
    save_results(args.out, {"benchmark": "UTD-MHAD cross-subject top-1", "floor": FLOOR, "results": rows})
    print(f"\n{'model':<12} {'best val':>9} {'last':>7} {'> floor':>8}")
    for m, r in rows.items():
        top1 = r["test_acc_last"]
        print(
            f"{m:<12} {r['test_acc_best_val']:9.3f} {r['test_acc_last']:7.3f} {'yes' if top1 > FLOOR else 'NO':>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
