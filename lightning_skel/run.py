"""Build the parts from a config, run them, return the metrics. Entry points and tests call these."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.systems import ClassificationSystem
from lightning_skel.utils import versions, write_json

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> SkeletonDataModule:
    return SkeletonDataModule(**OmegaConf.to_container(cfg.data, resolve=True))


def build_system(cfg: DictConfig, dm: SkeletonDataModule) -> ClassificationSystem:
    desc = dm.describe()
    model = OmegaConf.to_container(cfg.model, resolve=True)
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    return ClassificationSystem(
        model=model["name"],
        model_kwargs=model.get("kwargs") or {},
        normalize=model.get("normalize", "center_rotate"),
        modality=model.get("modality", "joint"),
        num_classes=len(desc["class_names"]),
        layout=desc["layout"],
        class_names=desc["class_names"],
        in_channels=desc["in_channels"],
        num_persons=desc["num_persons"],
        window=desc["window"],
        optimizer=optim["optimizer"],
        scheduler=optim["scheduler"],
        label_smoothing=optim.get("label_smoothing", 0.0),
        data_name=desc["name"],
    )


def build_loggers(cfg: DictConfig, out_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(out_dir), name="logs")]
    wandb_cfg = cfg.logger.get("wandb")
    if wandb_cfg:
        from pytorch_lightning.loggers import WandbLogger

        # W&B writes to disk unless the user asks for online mode explicitly.
        os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(WandbLogger(save_dir=str(out_dir), **OmegaConf.to_container(wandb_cfg, resolve=True)))
    return loggers


def build_callbacks(cfg: DictConfig, out_dir: Path) -> list[Callback]:
    cb = cfg.callbacks
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(out_dir / "checkpoints"),
            filename="best-{epoch:03d}",
            monitor=cb.checkpoint.monitor,
            mode=cb.checkpoint.mode,
            save_top_k=cb.checkpoint.save_top_k,
            save_last=True,
            auto_insert_metric_name=False,
        )
    ]
    if cb.get("early_stopping"):
        callbacks.append(EarlyStopping(**OmegaConf.to_container(cb.early_stopping, resolve=True)))
    if cb.get("lr_monitor"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cb.get("figures"):
        from lightning_skel.callbacks.figures import ClassificationFigures

        callbacks.append(
            ClassificationFigures(out_dir / "figures", **OmegaConf.to_container(cb.figures, resolve=True))
        )
    return callbacks


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``last`` means ``out_dir/checkpoints/last.ckpt`` when it exists (resume), else a fresh start."""
    if ckpt_path in (None, "", "none"):
        return None
    if ckpt_path == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return str(last)
        log.warning("ckpt_path=last but %s does not exist: starting a new run", last)
        return None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no such checkpoint {ckpt_path}")
    return ckpt_path


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test a classifier as ``cfg`` says; write ``out_dir/metrics.json``; return the metrics."""
    start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    pl.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    system = build_system(cfg, dm)
    loggers = build_loggers(cfg, out_dir)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    callbacks = build_callbacks(cfg, out_dir)
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=str(out_dir),
        logger=loggers,
        callbacks=callbacks,
    )
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt_path)
    ckpt_cb = next(c for c in callbacks if isinstance(c, ModelCheckpoint))
    best = ckpt_cb.best_model_path or None
    val_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.test(system, datamodule=dm, ckpt_path=best, verbose=False)
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
    }
    metrics.update({f"last_{k}": v for k, v in val_metrics.items()})
    if ckpt_cb.best_model_score is not None:
        metrics[f"best_{ckpt_cb.monitor}"] = float(ckpt_cb.best_model_score)
    metrics.update(
        {
            "epochs": trainer.current_epoch,
            "best_checkpoint": best,
            "last_checkpoint": ckpt_cb.last_model_path or None,
            "wall_time_s": round(time.perf_counter() - start, 2),
        }
    )
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", {**metrics, "versions": versions()})
    return metrics
