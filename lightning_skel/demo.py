"""``make demo``: the whole framework on generated motion, on CPU, in a few minutes, with no download.

1. train a small HCN action classifier on generated motion;
2. train the emotion recognizer on generated emotional motion (gait16);
3. attack the classifier's test clips with ADMM, the emotion term on, and print the metrics of
   docs/METHOD.md section 5;
4. fine-tune the classifier with ADMM adversarial training (docs/METHOD.md section 6) and print its clean and
   robust accuracy (ADMM and PGD, the same clips and budgets) before and after.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from lightning_skel.attack_run import run_attack
from lightning_skel.run import run_train

log = logging.getLogger(__name__)
PROGRESS = "progress_every_s=60"

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ATTACK_METRICS = (
    "clean_accuracy", "success_rate", "robust_accuracy", "rms_mm", "linf_mm", "delta_bone", "delta_angle_deg",
    "delta_speed", "delta_acc_mm", "emotion_distance", "emotion_kept", "grad_evals",
)  # fmt: skip


def _compose(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=overrides)


def _table(title: str, metrics: dict, keys) -> Table:
    """``metrics[keys]`` as a compact table, two metric-value pairs a row (the demo's whole output fits
    one screen)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, min_width=len(title))
    rows = [(k, "-" if metrics[k] is None else f"{metrics[k]:.4g}") for k in keys if k in metrics]
    pairs = 2 if len(rows) > 3 else 1
    for _ in range(pairs):
        table.add_column("metric")
        table.add_column("value", justify="right")
    half = -(-len(rows) // pairs)
    for i in range(half):
        cells = [c for j in range(pairs) if i + j * half < len(rows) for c in rows[i + j * half]]
        table.add_row(*cells)
    return table


def _train(cfg: DictConfig) -> dict:
    """``run_train(cfg)`` from scratch: a previous demo's checkpoints in its ``out_dir`` are removed first
    (otherwise ModelCheckpoint writes ``best-008-v1.ckpt`` beside the old ``best-008.ckpt``, and
    ``last.ckpt`` would be a stale run's until overwritten)."""
    old = Path(cfg.out_dir) / "checkpoints"
    if old.is_dir():
        log.debug("removing the previous demo run's checkpoints in %s", old)
        shutil.rmtree(old)
    return run_train(cfg)


def _without_wandb_lines(record: logging.LogRecord) -> bool:
    """Drop the runs' "W&B run written to" lines: the demo's closing lines say where all eight runs are."""
    return not record.getMessage().startswith("W&B run written to")


def main(argv: list[str] | None = None) -> int:
    """``make demo``: train, attack, fine-tune adversarially and attack again, on generated motion.

    ``argv`` (default ``sys.argv[1:]``) are Hydra overrides added to every training run (``threads=N`` to
    the attack runs too); the tables go to the console, the runs under ``runs/``. Returns 0.

    Example:
        >>> main(["seed=abc"])  # overrides of every run, checked before the first one trains
        Traceback (most recent call last):
        ValueError: train config: invalid setting(s): seed must be an integer, got 'abc'
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # once per process
    logging.getLogger("lightning_skel.run").addFilter(_without_wandb_lines)  # added once, however many calls
    console = Console()
    extra = list(sys.argv[1:] if argv is None else argv)
    threads = [o for o in extra if o.startswith("threads=")]  # the attack runs' thread count too
    # off a terminal, a progress line a minute: the demo's whole output stays on one screen at any speed
    extra = [PROGRESS, *extra]

    console.rule("[bold]1/4 HCN action classifier on generated motion")
    cls_cfg = _compose("train", ["experiment=demo", *extra])
    cls = _train(cls_cfg)
    console.print(_table("action classifier, test clips", cls, ("test/acc", "test/acc_top5")))

    console.rule("[bold]2/4 emotion recognizer on generated emotional motion")
    emo_cfg = _compose("train", ["experiment=demo_emotion", *extra])
    emo = _train(emo_cfg)
    console.print(_table("emotion recognizer, test clips", emo, ("test/acc",)))

    console.rule("[bold]3/4 ADMM attack on the classifier, emotion term on")
    emotion_ckpt = emo["best_checkpoint"] or emo["last_checkpoint"]
    root = Path(cls_cfg.out_dir).parent
    presets = {
        # the showcase: ADMM with the emotion term, c growing until every clip is fooled
        "admm_emotion": ["attack=admm", f"emotion_ckpt={emotion_ckpt}", "attack.weights.emotion=1.0",
                         "attack.max_iter=30", "attack.c_growth=1.5"],
        # robust accuracy needs a fixed budget: ADMM at a fixed c = 1, 30 outer steps, no patience stop (as
        # benchmarks/adv_training_utd.py), and also counted within PGD's 2 cm L-infinity ball
        "admm": ["attack=admm", "attack.max_iter=30", "attack.c_growth=1.0", "attack.patience=null",
                 "budgets={linf_mm: [20]}"],
        "pgd": ["attack=pgd"],  # configs/attack/pgd.yaml: 2 cm L-infinity ball, 20 steps
    }  # fmt: skip

    def attack(ckpt: str, preset: str, out: Path, limit: int | None) -> dict:
        if out.exists():  # the demo retrains its classifiers: earlier attack shards are stale
            shutil.rmtree(out)
        overrides = [
            f"ckpt={ckpt}",
            *presets[preset],
            PROGRESS,
            *threads,
            f"limit={'null' if limit is None else limit}",
            f"out_dir={out}",
            "logger=wandb",
        ]
        return run_attack(_compose("attack", overrides))

    cls_ckpt = cls["best_checkpoint"] or cls["last_checkpoint"]
    att = attack(cls_ckpt, "admm_emotion", root / "demo_attack", 16)
    console.print(_table("ADMM on 16 test clips", att, ATTACK_METRICS))

    console.rule("[bold]4/4 ADMM adversarial fine-tune of the classifier")
    adv_cfg = _compose("train", ["experiment=demo_adv", f"init_from={cls_ckpt}", *extra])
    adv = _train(adv_cfg)
    adv_ckpt = adv["last_checkpoint"]  # see configs/experiment/demo_adv.yaml
    limit = None  # the whole test split: its clips are ordered by class, so the first few cover few classes
    table = Table(
        title="accuracy on the test clips, before and after adversarial fine-tuning",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for col in ("classifier", "clean", "robust: ADMM-30", "ADMM-30 in 2 cm", "PGD-20, 2 cm"):
        table.add_column(col, justify="right")
    for when, ckpt in (("before", cls_ckpt), ("after", adv_ckpt)):
        res = {b: attack(ckpt, b, root / f"demo_robust_{when}_{b}", limit) for b in ("admm", "pgd")}
        values = (
            res["admm"]["clean_accuracy"],
            res["admm"]["robust_accuracy"],
            res["admm"]["robust_accuracy_linf_mm_le_20"],
            res["pgd"]["robust_accuracy"],
        )
        table.add_row(when, *(f"{v:.1%}" for v in values))
    console.print(table)
    console.print(f"classifier: {cls_cfg.out_dir}  (checkpoints/, figures/, metrics.json)")
    console.print(f"emotion:    {emo_cfg.out_dir}")
    console.print(f"attack:     {root / 'demo_attack'}  (report.md, adversarial.npz, per_sample.csv)")
    console.print(f"fine-tuned: {adv_cfg.out_dir}; its attacks: {root}/demo_robust_*")
    console.print("W&B (offline): each run's wandb/ folder; `wandb sync <run>/wandb/offline-run-*`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
