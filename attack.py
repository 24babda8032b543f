"""Attack a trained classifier: ``python attack.py ckpt=PATH [attack=admm] [data.split=test] [emotion_ckpt=PATH]
[attack.targeted=true] [limit=N] [out_dir=DIR]``.

Writes adversarial.npz, per_sample.csv, metrics.json and report.md into out_dir; rerun the same command to
resume. Prints the aggregate metrics as one JSON line.
"""

import hydra
from omegaconf import DictConfig

from lightning_skel.cli import print_metrics, require, user_errors


@hydra.main(version_base="1.3", config_path="configs", config_name="attack")
def main(cfg: DictConfig) -> None:
    require(cfg, "attack.py")  # before the heavy imports
    from lightning_skel.attack_run import run_attack

    with user_errors("attack.py"):
        metrics = run_attack(cfg)
    if metrics:
        print_metrics(metrics)


if __name__ == "__main__":
    main()
