"""``make demo``: train a small HCN on generated motion and report where everything went.

Runs on CPU in a few minutes and needs no download: the data are generated on first use.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from lightning_skel.run import run_train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    overrides = ["experiment=demo", *(sys.argv[1:] if argv is None else argv)]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    console.rule("[bold]lightning_skel demo: HCN on generated motion")
    metrics = run_train(cfg)
    table = Table(title="test metrics (held-out generated clips)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("test/acc", "test/acc_top5", "test/loss"):
        table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)
    out = Path(cfg.out_dir)
    console.print(f"run folder:   {out}")
    console.print(f"checkpoints:  {out / 'checkpoints'}")
    console.print(f"CSV logs:     {out / 'logs'}")
    console.print(f"figures:      {out / 'figures'}")
    console.print(f"W&B (offline): {out / 'wandb'}  (upload with `wandb sync {out}/wandb/offline-run-*`)")
    console.print(f"metrics:      {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
