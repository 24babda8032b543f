"""UTD-MHAD cross-subject top-1 of every classifier trained from scratch (issue: the classifier zoo).

Runs ``train.py experiment=utd_<model>`` for each model (skipping runs whose ``metrics.json`` exists and resuming
unfinished ones from their ``last.ckpt``, so a killed benchmark resumes), then fuses the 2s-AGCN joint and bone streams (sum of scores) on the test split.
Writes ``benchmarks/results/utd_train.json`` and prints a table.

    .venv/bin/python benchmarks/train_utd.py [--models hcn agcn_joint ...] [--runs runs/bench_utd]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from lightning_skel.utils import write_json

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("hcn", "agcn_joint", "agcn_bone", "sgn", "stgcn")
FLOOR = 0.837  # random forest on crude features (../shared/data/README.md)


def train(model: str, runs: Path, extra: list[str]) -> dict:
    out = runs / f"utd_{model}"
    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    cmd = [sys.executable, str(ROOT / "train.py"), f"experiment=utd_{model}", f"out_dir={out}",
           "trainer.enable_progress_bar=false", "ckpt_path=last", *extra]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    metrics = json.loads(done.read_text())
    metrics["benchmark_wall_s"] = round(time.perf_counter() - start, 1)
    return metrics


@torch.no_grad()
def fused_accuracy(joint_ckpt: str, bone_ckpt: str) -> float:
    """2s-AGCN: the sum of the joint and bone streams' scores on the cross-subject test split."""
    from lightning_skel.data.datamodule import SkeletonDataModule
    from lightning_skel.models import ScoreFusion
    from lightning_skel.systems.attack_run import load_classifier

    joint, hp = load_classifier(joint_ckpt)
    bone, _ = load_classifier(bone_ckpt)
    fusion = ScoreFusion([joint, bone]).eval()
    dm = SkeletonDataModule(**{**hp["data_config"], "batch_size": 64})
    dm.setup()
    correct = total = 0
    for x, y, lengths, _ in dm.test_dataloader():
        x, _ = dm.window_batch(x, lengths, train=False)
        correct += int((fusion(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_utd")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "utd_train.json")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run")
    args = parser.parse_args()
    results = {m: train(m, args.runs, args.overrides) for m in args.models}
    rows = {
        m: {"test_acc": r["test/acc"], "epochs": r["epochs"], "wall_time_s": r["wall_time_s"]}
        for m, r in results.items()
    }
    if {"agcn_joint", "agcn_bone"} <= set(results):
        rows["agcn_fused"] = {
            "test_acc": fused_accuracy(
                results["agcn_joint"]["best_checkpoint"], results["agcn_bone"]["best_checkpoint"]
            )
        }
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    write_json(args.out, {"benchmark": "UTD-MHAD cross-subject top-1", "floor": FLOOR, "results": rows, "machine": machine,
                          "command": " ".join(sys.argv)})  # fmt: skip
    print(f"\n{'model':<12} {'top-1':>7} {'> floor':>8}")
    for m, r in rows.items():
        print(f"{m:<12} {r['test_acc']:7.3f} {'yes' if r['test_acc'] > FLOOR else 'NO':>8}")
    print(f"machine: {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
