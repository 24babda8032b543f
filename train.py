"""Train a classifier: ``python train.py [data=utd_mhad] [model=hcn] [experiment=...] [key=value ...]``.

Prints the final metrics as one JSON line; they are also in ``out_dir/metrics.json``.
"""

import json

import hydra
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from lightning_skel.run import run_train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    metrics = run_train(cfg)
    if rank_zero_only.rank == 0:  # one line, from one process, under DDP too
        print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    main()
