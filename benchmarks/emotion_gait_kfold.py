"""Emotion-Gait stratified k-fold accuracy of the emotion recognizer (issue: the classifier zoo).

For each fold k runs ``train.py experiment=emotion_gait data.num_folds=K data.fold=k`` (test = fold k, the
validation clips drawn from the other folds), skipping folds whose ``metrics.json`` exists and resuming
unfinished ones from their ``last.ckpt``. With ``--pretrain`` the recognizer is first trained on generated
emotional motion (``data=synthetic_emotion``, the same network) and every fold starts from those weights
(``init_from``). ``--epochs`` shortens the recipe, scaling its lr milestones (1/2, 3/4, 7/8 of training).
Writes ``benchmarks/results/emotion_gait_kfold[_pretrain].json`` and prints a table.

    .venv/bin/python benchmarks/emotion_gait_kfold.py [--folds 5] [--epochs 60] [--pretrain] [--out JSON] \
        [overrides ...]   # e.g. model=emotion_slim
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import ROOT, save_results, trained

from lightning_skel.run import checkpoint_accuracy

FLOOR = 0.62  # random forest (the recordings' own README)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="shorter training (default: the recipe's)")
    parser.add_argument(
        "--pretrain", action="store_true", help="start from weights trained on generated motion"
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_emotion")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default benchmarks/results/emotion_gait_kfold[_pretrain].json)",
    )
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every fold")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    tag = "_pretrain" if args.pretrain else ""
    schedule = []
    if args.epochs is not None:
        e = args.epochs
        schedule = [
            f"trainer.max_epochs={e}",
            f"optim.scheduler.milestones=[{e // 2},{3 * e // 4},{7 * e // 8}]",
        ]
    overrides = [*schedule, *args.overrides]
    runs = args.runs / f"e{args.epochs or 'recipe'}{tag}"
    init = []
    if args.pretrain:
        # the recipe's network, on generated happy / angry / sad / neutral styles of every generated action
        pre = trained(runs / "pretrain", ["experiment=emotion_gait", "data=synthetic_emotion", "data.window=75",
                                        "data.synthetic.frames=90", *overrides])  # fmt: skip
        init = [f"init_from={pre['best_checkpoint'] or pre['last_checkpoint']}"]
    folds = []
    for k in range(args.folds):
        fold = [
            "experiment=emotion_gait",
            f"data.num_folds={args.folds}",
            f"data.fold={k}",
            *init,
            *overrides,
        ]
        folds.append(trained(runs / f"fold{k}", fold))
    accs = [f["test/acc"] for f in folds]
    last = [checkpoint_accuracy(f["last_checkpoint"]) for f in folds]
    result = {
        "benchmark": f"Emotion-Gait {args.folds}-fold accuracy of the emotion recognizer",
        "floor": FLOOR,
        "pretrain_on_generated": args.pretrain,
        "fold_acc": accs,
        "mean_acc": statistics.mean(accs),
        "std_acc": statistics.stdev(accs),
        "fold_acc_last_checkpoint": last,
        "mean_acc_last_checkpoint": statistics.mean(last),
        "epochs": [f["epochs"] for f in folds],
        "wall_time_s": [f["wall_time_s"] for f in folds],
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"emotion_gait_kfold{tag}.json"
    save_results(out, result)
    print(f"{args.folds}-fold accuracy (best-val checkpoints): {result['mean_acc']:.3f} +- {result['std_acc']:.3f} "
          f"(folds {', '.join(f'{a:.3f}' for a in accs)}; floor {FLOOR}); last checkpoints "
          f"{result['mean_acc_last_checkpoint']:.3f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
