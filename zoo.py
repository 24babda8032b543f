"""Every attack on every model, white-box and transferred: ``python zoo.py models='{a: A.ckpt, b: B.ckpt}'
[attacks=[admm,smart,ifgsm,mifgsm]] [limit=64] [out_dir=DIR]``.

Writes whitebox.md/csv, transfer.md, transfer_<attack>.csv/png and zoo.json into out_dir; rerun to resume.
"""

import hydra
from omegaconf import DictConfig

from lightning_skel.cli import require, user_errors


@hydra.main(version_base="1.3", config_path="configs", config_name="zoo")
def main(cfg: DictConfig) -> None:
    require(cfg, "zoo.py")  # before the heavy imports
    from lightning_skel.zoo import run_zoo

    with user_errors("zoo.py"):
        run_zoo(cfg)


if __name__ == "__main__":
    main()
