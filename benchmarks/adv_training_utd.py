"""Adversarial-training benchmark on UTD-MHAD cross-subject (issue: the adversarial-training defense).

For each model it takes the standard checkpoint of ``benchmarks/train_utd.py`` and fine-tunes it for
``--epochs`` epochs with each defense (``init_from``: on CPU a from-scratch adversarial run of 100 epochs
costs hours): ADMM adversarial training per batch and from a pool (``callbacks=adv_training``), PGD-AT and
TRADES (``robust_training.name``). Every checkpoint (the standard one included) is then attacked on the same
``--limit`` test clips with the same budgets: ADMM at its fixed c for 30 outer steps, and PGD in a 2 cm
L-infinity ball for 20 steps; the table gives clean accuracy and robust accuracy (accuracy on the attacked
clips over all evaluated clips). Finally the cost of one training epoch with the ADMM callback in ``batch``
and ``pool`` mode relative to a clean epoch is measured in one process, the three alternating.

Runs whose ``metrics.json`` exists are not repeated (a killed benchmark resumes); unfinished training runs
resume from their ``last.ckpt``.

    .venv/bin/python benchmarks/adv_training_utd.py [--models hcn agcn_joint] [--epochs 10] [--limit 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import ROOT, attacked, trained
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_skel.utils import machine_info, write_json

DEFENSES: dict[str, list[str]] = {
    "admm_at": ["callbacks=adv_training", "callbacks.robust_validation=null"],
    "admm_at_pool": [
        "callbacks=adv_training",
        "callbacks.robust_validation=null",
        "callbacks.adv_training.mode=pool",
    ],
    "pgd_at": ["robust_training.name=pgd_at"],
    "trades": ["robust_training.name=trades"],
}
ATTACKS: dict[str, list[str]] = {
    # fixed c, no patience stop: the budget is the same 30 outer steps for every clip and checkpoint
    "admm": ["attack=admm", "attack.max_iter=30", "attack.c_growth=1.0", "attack.patience=null"],
    "pgd": ["attack=pgd", "attack.eps=0.02", "attack.steps=20"],
}


def fine_tune(model: str, defense: str, init: str, epochs: int, runs: Path) -> str:
    overrides = [f"experiment=utd_{model}", *DEFENSES[defense], f"init_from={init}", f"trainer.max_epochs={epochs}",
                 "callbacks.early_stopping=null"]  # fmt: skip
    return trained(runs / f"{model}_{defense}", overrides)["last_checkpoint"]


def robust(ckpt: str, attack: str, out: Path, limit: int) -> dict:
    return attacked(out, [f"ckpt={ckpt}", *ATTACKS[attack], f"limit={limit}"])


def epoch_cost(model: str, init: str, batches: int) -> dict:
    """Seconds per training batch of a clean epoch and of epochs with the ADMM callback in batch and pool
    mode, measured in this process with the three alternating (two rounds; the median of each)."""
    import pytorch_lightning as pl

    from lightning_skel.callbacks.adversarial_training import AdversarialTraining
    from lightning_skel.run import build_datamodule, build_system, init_weights

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment=utd_{model}", "callbacks=adv_training"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    adv_cfg = OmegaConf.to_container(cfg.callbacks.adv_training, resolve=True)
    times: dict[str, list[float]] = {"clean": [], "batch": [], "pool": []}
    for _ in range(2):
        for mode in times:
            system = build_system(cfg, dm)
            init_weights(system, init)
            callbacks = (
                []
                if mode == "clean"
                else [AdversarialTraining(**{**adv_cfg, "mode": mode}, layout=dm.layout)]
            )
            trainer = pl.Trainer(
                accelerator="cpu", max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
            )  # fmt: skip
            start = time.perf_counter()
            trainer.fit(system, datamodule=dm)
            times[mode].append((time.perf_counter() - start) / batches)
    per_batch = {mode: sorted(t)[len(t) // 2] for mode, t in times.items()}
    return {
        "seconds_per_batch": per_batch,
        "batch_vs_clean": per_batch["batch"] / per_batch["clean"],
        "pool_vs_clean": per_batch["pool"] / per_batch["clean"],
        "batches": batches,
        "pool_size": adv_cfg["pool_size"],
        "note": "a pool epoch includes regenerating the pool once",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hcn", "agcn_joint"])
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per defense")
    parser.add_argument("--limit", type=int, default=128, help="test clips attacked per checkpoint")
    parser.add_argument("--cost-batches", type=int, default=10, help="training batches per timed epoch")
    parser.add_argument(
        "--standard", type=Path, default=ROOT / "runs" / "bench_utd", help="train_utd.py's runs"
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_adv")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adv_training_utd.json")
    args = parser.parse_args()
    results: dict = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    machine = machine_info()
    for model in args.models:
        standard = args.standard / f"utd_{model}" / "checkpoints" / "last.ckpt"
        if not standard.is_file():
            parser.error(f"{standard} does not exist: run benchmarks/train_utd.py --models {model} first")
        ckpts = {"standard": str(standard)}
        ckpts.update({d: fine_tune(model, d, str(standard), args.epochs, args.runs) for d in DEFENSES})
        rows = results.setdefault(model, {})
        for name, ckpt in ckpts.items():
            res = {
                a: robust(ckpt, a, args.runs / f"{model}_{name}" / f"attack_{a}", args.limit) for a in ATTACKS
            }
            rows[name] = {
                "clean_acc": res["admm"]["clean_accuracy"],
                "robust_acc_admm": res["admm"]["robust_accuracy"],
                "robust_acc_pgd": res["pgd"]["robust_accuracy"],
            }
            write_json(args.out, {"results": results, "machine": machine, "command": " ".join(sys.argv)})
        if "epoch_cost" not in rows:
            rows["epoch_cost"] = epoch_cost(model, str(standard), args.cost_batches)
            write_json(args.out, {"results": results, "machine": machine, "command": " ".join(sys.argv)})
        print(f"\n{model}: {'defense':<14}{'clean':>8}{'ADMM':>8}{'PGD':>8}")
        for name in ckpts:
            r = rows[name]
            print(
                f"{'':<{len(model) + 2}}{name:<14}{r['clean_acc']:8.3f}{r['robust_acc_admm']:8.3f}{r['robust_acc_pgd']:8.3f}"
            )
        cost = rows["epoch_cost"]
        print(f"epoch cost vs clean: batch {cost['batch_vs_clean']:.1f}x, pool {cost['pool_vs_clean']:.1f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
