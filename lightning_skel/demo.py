"""``make demo``: the whole framework on generated motion, on CPU, in a few minutes, with no download.

1. train a small HCN action classifier on generated motion;
2. train the emotion recognizer on generated emotional motion (gait16);
3. attack the classifier's test clips with ADMM, the emotion term on, and print the metrics of
   METHOD.md section 5.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lightning_skel.run import run_attack, run_train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ATTACK_METRICS = (
    "clean_accuracy", "success_rate", "robust_accuracy", "rms_mm", "linf_mm", "delta_bone", "delta_angle_deg",
    "delta_speed", "delta_acc_mm", "emotion_distance", "emotion_kept", "grad_evals",
)  # fmt: skip


def _compose(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=overrides)


def _table(title: str, metrics: dict, keys) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.4g}")
    return table


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    extra = list(sys.argv[1:] if argv is None else argv)

    console.rule("[bold]1/3 HCN action classifier on generated motion")
    cls_cfg = _compose("train", ["experiment=demo", *extra])
    cls = run_train(cls_cfg)
    console.print(_table("action classifier, held-out generated clips", cls, ("test/acc", "test/acc_top5")))

    console.rule("[bold]2/3 emotion recognizer on generated emotional motion")
    emo_cfg = _compose("train", ["experiment=demo_emotion", *extra])
    emo = run_train(emo_cfg)
    console.print(_table("emotion recognizer, held-out generated clips", emo, ("test/acc",)))

    console.rule("[bold]3/3 ADMM attack on the classifier, emotion term on")
    out = Path(cls_cfg.out_dir).parent / "demo_attack"
    att_cfg = _compose(
        "attack",
        [
            f"ckpt={cls['best_checkpoint'] or cls['last_checkpoint']}",
            f"emotion_ckpt={emo['best_checkpoint'] or emo['last_checkpoint']}",
            "attack.weights.emotion=1.0",
            "attack.max_iter=30",
            "attack.c_growth=1.5",
            "limit=16",
            f"out_dir={out}",
            "logger=wandb",
        ],
    )
    att = run_attack(att_cfg)
    console.print(_table("ADMM on 16 test clips", att, ATTACK_METRICS))
    console.print(
        f"classifier run:  {cls_cfg.out_dir}  (checkpoints/, logs/, figures/, wandb/, metrics.json)"
    )
    console.print(f"emotion run:     {emo_cfg.out_dir}")
    console.print(f"attack run:      {out}  (report.md, adversarial.npz, per_sample.csv, metrics.json)")
    console.print("W&B runs are offline under each wandb/ folder: `wandb sync <run>/wandb/offline-run-*`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
