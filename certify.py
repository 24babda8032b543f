"""Certify a trained classifier by randomized smoothing: ``python certify.py ckpt=PATH sigma=0.01 [n0=100]
[n=1000] [alpha=0.001] [data.split=test] [limit=N] [out_dir=DIR]``.

Writes per_sample.csv, certificates.npz, metrics.json (certified accuracy at radii in mm),
certified_accuracy.csv and figures/certified_accuracy.png into out_dir; rerun the same command to resume.
Prints the aggregate metrics as one JSON line.
"""

import hydra
from omegaconf import DictConfig

from lightning_skel.cli import print_metrics, require, user_errors


@hydra.main(version_base="1.3", config_path="configs", config_name="certify")
def main(cfg: DictConfig) -> None:
    require(cfg, "certify.py")  # before the heavy imports
    from lightning_skel.certify.run import run_certify

    with user_errors("certify.py"):
        metrics = run_certify(cfg)
    if metrics:
        print_metrics(metrics)


if __name__ == "__main__":
    main()
