"""Adversarial-training benchmark on UTD-MHAD cross-subject (issue: the adversarial-training defense).

For each model it takes the standard checkpoint of ``benchmarks/train_utd.py`` and fine-tunes it for
``--epochs`` epochs with each defense (``init_from``: on CPU a from-scratch adversarial run of 100 epochs
costs hours): ADMM adversarial training per batch and from a pool (``callbacks=adv_training``; the pool
regenerated every 2 epochs, its default, and every epoch: ``admm_at_pool_r1``), PGD-AT and
TRADES (``robust_training.name``, ``beta`` 6 and 1), and as a control the same fine-tuning on clean clips
(``clean_ft``). Every checkpoint (the standard one included) is then attacked on the same ``--limit`` test
clips with the same budgets: ADMM at its fixed c for 30 outer steps, and in each L-infinity ball of
``--linf-budgets`` (millimetres) the strong attacks of ``--linf-attacks``: AutoAttack (standard version,
the default strong attack) and PGD for 20 steps; the table gives clean accuracy and robust accuracy
(accuracy on the attacked clips over all evaluated clips), and AutoAttack's minus PGD's. ADMM is a minimum-distance attack that
fools nearly every clip given room, so its robust accuracy is given within the same L-infinity budgets as
PGD's (a clip whose ADMM adversary leaves the ball counts as robust) and within rms budgets
(``--budgets``), drawn against the budget for every defense. Finally
the cost of a full training epoch with the ADMM callback in ``batch`` and ``pool`` mode relative to a clean
epoch is measured in one process (two rounds, medians); a pool run's epochs are timed separately when it
regenerates its pool and when it reuses it, and the pool's cost per epoch is given for a refresh every
epoch, every ``pool_refresh_every`` epochs (the config's) and every 5.

Runs whose ``metrics.json`` exists are not repeated (a killed benchmark resumes); unfinished training runs
resume from their ``last.ckpt``.

    .venv/bin/python benchmarks/adv_training_utd.py [--models hcn agcn_joint] [--epochs 10] [--limit 128]
        [--subset first|spread]   (spread: the --limit clips spread over the class-ordered test split)
        [--linf-attacks autoattack pgd] [--tag _autoattack]   (the figure: adv_training_<model>[_<subset>]<tag>.png)
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import (
    ROOT,
    add_subset_argument,
    add_trainer_option,
    attacked,
    save_results,
    subset_suffix,
    trained,
    use_trainer,
)
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_skel.attacks.metrics import robust_accuracy_within

DEFENSES: dict[str, list[str]] = {
    "clean_ft": [],  # a control: the same fine-tuning without adversarial clips
    "admm_at": ["callbacks=adv_training", "callbacks.robust_validation=null"],
    "admm_at_pool": [
        "callbacks=adv_training",
        "callbacks.robust_validation=null",
        "callbacks.adv_training.mode=pool",
    ],
    "admm_at_pool_r1": [  # the pool regenerated every epoch (the default: every 2)
        "callbacks=adv_training",
        "callbacks.robust_validation=null",
        "callbacks.adv_training.mode=pool",
        "callbacks.adv_training.pool_refresh_every=1",
    ],
    "pgd_at": ["robust_training.name=pgd_at"],
    "trades": ["robust_training.name=trades"],
    "trades_beta1": ["robust_training.name=trades", "robust_training.beta=1.0"],  # beta 6 costs HCN 30 points
}
COST = ("wall_time_s", "grad_evals_all", "forward_evals_all")  # evaluations per attacked clip
# fixed c, no patience stop: the budget is the same 30 outer steps for every clip and checkpoint
ADMM = ["attack=admm", "attack.max_iter=30", "attack.c_growth=1.0", "attack.patience=null"]


def pgd(eps_mm: float) -> list[str]:
    return ["attack=pgd", f"attack.eps={eps_mm / 1000:g}", "attack.steps=20"]


def autoattack(eps_mm: float) -> list[str]:
    return ["attack=autoattack", f"attack.eps={eps_mm / 1000:g}"]


LINF_ATTACKS = {"autoattack": autoattack, "pgd": pgd}


def fine_tune(model: str, defense: str, init: str, epochs: int, runs: Path) -> str:
    overrides = [f"experiment=utd_{model}", *DEFENSES[defense], f"init_from={init}", f"trainer.max_epochs={epochs}",
                 "callbacks.early_stopping=null"]  # fmt: skip
    return trained(runs / f"{model}_{defense}", overrides)["last_checkpoint"]


def robust(ckpt: str, attack: list[str], out: Path, limit: int, subset: str) -> dict:
    return attacked(out, [f"ckpt={ckpt}", *attack, f"limit={limit}", f"subset={subset}"])


def strong_run(ckpt: str, attack: str, eps_mm: float, runs: Path, args: argparse.Namespace) -> dict:
    """The metrics of ``attack`` (of :data:`LINF_ATTACKS`) on ``ckpt`` in the L-infinity ball of ``eps_mm``."""
    out = attack_dir(runs, linf_dir(attack, eps_mm), args.subset)
    return robust(ckpt, LINF_ATTACKS[attack](eps_mm), out, args.limit, args.subset)


def attack_dir(runs: Path, name: str, subset: str) -> Path:
    return runs / f"{name}{subset_suffix(subset)}"


class EpochTimer(pl.Callback):
    """Seconds of each training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def epoch_cost(model: str, init: str) -> dict:
    """Seconds of a full clean training epoch, of one with the ADMM callback in batch mode, and of a pool
    run's epoch that regenerates the pool and of one that reuses it; two rounds in this process, medians."""
    from hydra.utils import instantiate

    from lightning_skel.run import build_datamodule, build_system, init_weights

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment=utd_{model}", "callbacks=adv_training"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    adv_cfg = OmegaConf.to_container(cfg.callbacks.adv_training, resolve=True)
    runs = {
        "clean": (None, 1),
        "batch": ({"mode": "batch"}, 1),
        "pool": ({"mode": "pool", "pool_refresh_every": 2}, 2),
    }
    times: dict[str, list[float]] = {"clean": [], "batch": [], "pool_refresh": [], "pool_reuse": []}
    for _ in range(2):
        for mode, (adv, epochs) in runs.items():
            system = build_system(cfg, dm)
            init_weights(system, init)
            timer = EpochTimer()
            callbacks = [timer] + (
                [] if adv is None else [instantiate(cfg.callbacks.adv_training, **adv, _convert_="all")]
            )
            trainer = pl.Trainer(
                accelerator="cpu", max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
            )  # fmt: skip
            trainer.fit(system, datamodule=dm)
            if mode == "pool":
                times["pool_refresh"].append(timer.seconds[0])
                times["pool_reuse"].append(timer.seconds[1])
            else:
                times[mode].append(timer.seconds[0])
    t = {mode: statistics.median(v) for mode, v in times.items()}
    periods = sorted({1, adv_cfg["pool_refresh_every"], 5})
    pool = {f"pool_refresh_every_{k}_vs_clean": (t["pool_refresh"] + (k - 1) * t["pool_reuse"]) / k / t["clean"] for k in periods}  # fmt: skip
    return {"epoch_seconds": t, "batch_vs_clean": t["batch"] / t["clean"], **pool, "pool_size": adv_cfg["pool_size"],
            "pool_refresh_every": adv_cfg["pool_refresh_every"],
            "train_batches_per_epoch": len(dm.train_dataloader())}  # fmt: skip


def budget_curve(per_sample: Path, budgets: list[float], size: str = "rms_mm") -> dict[str, float]:
    """Robust accuracy under ADMM within each budget (mm) of ``size`` (a column of the attack run's
    per-sample table: ``rms_mm`` or ``linf_mm``)."""
    with per_sample.open() as f:
        rows = list(csv.DictReader(f))

    def col(name: str) -> torch.Tensor:
        return torch.tensor([float(r[name]) if r[name] != "" else float("inf") for r in rows])

    y, pred_clean, pred_adv, sizes = col("y"), col("pred_clean"), col("pred_adv"), col(size)
    return {f"{b:g}": robust_accuracy_within(y, pred_clean, pred_adv, sizes, b) for b in budgets}


def by_budget(curve: dict[str, float]) -> tuple[list[float], list[float]]:
    """A curve's budgets and values in increasing budget (a results file's keys are sorted as strings)."""
    points = sorted((float(b), v) for b, v in curve.items())
    return [b for b, _ in points], [v for _, v in points]


def figure(model: str, rows: dict, path: Path) -> None:
    """Robust accuracy against the size budget, under ADMM by rms and by L-infinity size, and under PGD
    (its L-infinity balls, drawn on the second panel as squares of each defense's colour)."""
    from matplotlib.figure import Figure

    from lightning_skel.viz import save_figure

    fig = Figure(figsize=(10, 3.8))
    rms_ax, linf_ax = fig.subplots(1, 2, sharey=True)
    for i, (name, row) in enumerate(rows.items()):
        colour = f"C{i}"
        for ax, key in ((rms_ax, "robust_acc_admm_within_mm"), (linf_ax, "robust_acc_admm_within_linf_mm")):
            ax.plot(*by_budget(row[key]), "o-", color=colour, label=name)
        for key, style in (("robust_acc_pgd", "s--"), ("robust_acc_autoattack", "^:")):
            if key in row:
                linf_ax.plot(*by_budget(row[key]), style, color=colour, alpha=0.6)
    rms_ax.set_xlabel("rms budget of the ADMM perturbation (mm)")
    linf_ax.set_xlabel("L-infinity budget (mm): ADMM o-, PGD s--, AutoAttack ^:")
    rms_ax.set_ylabel("robust accuracy")
    fig.suptitle(f"{model}: robust accuracy within a size budget")
    for ax in (rms_ax, linf_ax):
        ax.grid(True, alpha=0.3)
    rms_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def linf_dir(attack: str, eps_mm: float) -> str:
    # the first PGD runs of this benchmark, at 20 mm only, were written to attack_pgd
    return "attack_pgd" if (attack, eps_mm) == ("pgd", 20.0) else f"attack_{attack}_{eps_mm:g}mm"


def print_table(model: str, rows: dict, cost: dict | None) -> None:
    first = next(iter(rows.values()))
    strong = [a for a in LINF_ATTACKS if f"robust_acc_{a}" in first]
    heads = [f"{a[:4].upper()}<={b}" for a in strong for b in first[f"robust_acc_{a}"]]
    heads += [f"ADMM<={b}inf" for b in first["robust_acc_admm_within_linf_mm"]]
    heads += [f"ADMM<={b}rms" for b in first["robust_acc_admm_within_mm"]]
    lead = f"{model} (budgets in mm): "
    print(f"\n{lead}{'defense':<16}{'clean':>7}{'ADMM':>7}" + "".join(f"{h:>13}" for h in heads))
    for name, r in rows.items():
        cells = [v for a in strong for v in r[f"robust_acc_{a}"].values()]
        cells += [*r["robust_acc_admm_within_linf_mm"].values(),
                 *r["robust_acc_admm_within_mm"].values()]  # fmt: skip
        print(f"{'':<{len(lead)}}{name:<16}{r['clean_acc']:7.3f}{r['robust_acc_admm']:7.3f}"
              + "".join(f"{v:13.3f}" for v in cells))  # fmt: skip
    if cost is None or "pool_refresh_every_1_vs_clean" not in cost:
        return
    pool = ", ".join(
        f"every {k.split('_')[3]} epochs {v:.1f}x"
        for k, v in cost.items()
        if k.startswith("pool_refresh_every_")
    )
    print(
        f"epoch cost vs clean: batch {cost['batch_vs_clean']:.1f}x; pool of {cost['pool_size']} refreshed {pool}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hcn", "agcn_joint"])
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per defense")
    parser.add_argument("--limit", type=int, default=128, help="test clips attacked per checkpoint")
    add_subset_argument(parser)
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    parser.add_argument("--no-epoch-cost", dest="epoch_cost", action="store_false",
                        help="skip timing the adversarial-training epochs")  # fmt: skip
    parser.add_argument("--budgets", type=float, nargs="+", default=[5.0, 10.0, 15.0, 20.0, 30.0],
                        help="rms budgets (mm) of the robust accuracy under ADMM")  # fmt: skip
    parser.add_argument("--linf-budgets", type=float, nargs="+", default=[10.0, 20.0, 30.0],
                        help="L-infinity budgets (mm): the strong attacks' balls, and ADMM's robust accuracy "
                        "within each")  # fmt: skip
    parser.add_argument("--linf-attacks", nargs="+", default=list(LINF_ATTACKS), choices=list(LINF_ATTACKS),
                        help="the attacks run in each L-infinity ball (PGD: 20 steps)")  # fmt: skip
    parser.add_argument(
        "--standard", type=Path, default=ROOT / "runs" / "bench_utd", help="train_utd.py's runs"
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_adv")
    parser.add_argument("--tag", default="", help="appended to the figures' names, e.g. _autoattack")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adv_training_utd.json")
    add_trainer_option(parser)
    args = parser.parse_args()
    use_trainer(args.trainer)
    results: dict = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    for model in args.models:
        standard = args.standard / f"utd_{model}" / "checkpoints" / "last.ckpt"
        if not standard.is_file():
            parser.error(f"{standard} does not exist: run benchmarks/train_utd.py --models {model} first")
        ckpts = {"standard": str(standard)}
        ckpts.update({d: fine_tune(model, d, str(standard), args.epochs, args.runs) for d in args.defenses})
        rows = results.setdefault(model, {})
        for name, ckpt in ckpts.items():
            runs = args.runs / f"{model}_{name}"
            admm_dir = attack_dir(runs, "attack_admm", args.subset)
            admm = robust(ckpt, ADMM, admm_dir, args.limit, args.subset)
            strong = {
                a: {f"{e:g}": strong_run(ckpt, a, e, runs, args) for e in args.linf_budgets}
                for a in args.linf_attacks
            }
            per_sample = admm_dir / "per_sample.csv"
            rows[name] = {
                "clean_acc": admm["clean_accuracy"],
                "robust_acc_admm": admm["robust_accuracy"],
                **{
                    f"robust_acc_{a}": {e: m["robust_accuracy"] for e, m in r.items()}
                    for a, r in strong.items()
                },
                **{
                    f"{a}_cost": {e: {k: m[k] for k in COST} for e, m in r.items()} for a, r in strong.items()
                },
                "robust_acc_admm_within_mm": budget_curve(per_sample, args.budgets),
                # PGD's budgets: ADMM's fooling clips count only within each L-infinity ball
                "robust_acc_admm_within_linf_mm": budget_curve(per_sample, args.linf_budgets, "linf_mm"),
            }
            if {"autoattack", "pgd"} <= set(strong):  # negative: AutoAttack leaves fewer clips robust
                rows[name]["autoattack_minus_pgd"] = {
                    e: rows[name]["robust_acc_autoattack"][e] - rows[name]["robust_acc_pgd"][e]
                    for e in strong["pgd"]
                }
            save_results(args.out, {"results": results})
        order = ["standard", *DEFENSES]  # every defense measured, in a fixed order
        curves = {n: rows[n] for n in order if "robust_acc_admm_within_mm" in rows.get(n, {})}
        suffix = subset_suffix(args.subset)
        figure(model, curves, args.out.with_name(f"adv_training_{model}{suffix}{args.tag}.png"))
        if args.epoch_cost and "pool_refresh_every_1_vs_clean" not in rows.get("epoch_cost", {}):
            rows["epoch_cost"] = epoch_cost(model, str(standard))
            save_results(args.out, {"results": results})
        print_table(model, curves, rows.get("epoch_cost"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
