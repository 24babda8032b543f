"""Train a classifier: ``python train.py [data=utd_mhad] [model=hcn] [experiment=...] [key=value ...]``.

Prints the final metrics as one JSON line; they are also in ``out_dir/metrics.json``.
"""

import hydra
from omegaconf import DictConfig

from lightning_skel.cli import print_metrics, require, user_errors


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    require(cfg, "train.py")  # before the heavy imports
    from pytorch_lightning.utilities import rank_zero_only

    from lightning_skel.run import run_train

    with user_errors("train.py"):
        metrics = run_train(cfg)
    if rank_zero_only.rank == 0:  # one line, from one process, under DDP too
        print_metrics(metrics)


if __name__ == "__main__":
    main()
