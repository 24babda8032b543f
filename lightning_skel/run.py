"""Build the parts from a config, run them, return the metrics. Entry points and tests call these."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from lightning_skel.checkpoints import SafeCheckpointIO
from lightning_skel.data.datamodule import SkeletonDataModule, SkeletonDataset
from lightning_skel.progress import ClipProgress, every_s, interactive, training_progress
from lightning_skel.sweep import job_out_dir
from lightning_skel.systems import ClassificationSystem
from lightning_skel.utils import (
    check_number_types,
    check_params,
    file_sha256,
    log_once,
    torch_threads,
    versions,
    write_json,
)

log = logging.getLogger(__name__)


class LightningNoise(logging.Filter):
    """Quiets Lightning's per-Trainer chatter: drops its advertising tips, the stepping-batches note and
    the restore line that the "Loaded model weights" line repeats, and lets each device-availability and
    seed line through once per process (a demo builds eight Trainers)."""

    DROP = ("💡 Tip", "Loading `train_dataloader` to estimate", "Restoring states from the checkpoint path")
    ONCE = ("GPU available", "TPU available", "HPU available", "Seed set to")

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith(self.DROP):
            return False
        if msg.startswith(self.ONCE):
            if msg in self.seen:
                return False
            self.seen.add(msg)
        return True


for _name in (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
):
    if not any(isinstance(f, LightningNoise) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(LightningNoise())
# a deprecation inside Lightning's own code, printed once per process; nothing a user can change
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


# Where the configs hold numbers, as patterns of lightning_skel.utils.check_number_types: a string there
# (optim.optimizer.lr=abc on the command line) is refused before any work, naming the key, instead of
# failing deep inside the optimiser or the data loader.
ATTACK_KWARG_NUMBERS = {  # an attack's hyper-parameters (configs/attack/*.yaml), wherever a config gives them
    **dict.fromkeys(("max_iter", "delta_steps", "z_steps", "binary_search_steps", "steps", "emotion_every"), "int"),
    "patience": "int?",
    **dict.fromkeys(("c", "c_growth", "c_max", "kappa", "rho", "lr", "balance", "min_improvement", "eps", "clip",
                     "cw", "blw", "rw", "weights.*", "tau.*"), "float"),
    **dict.fromkeys(("lr_z", "alpha"), "float?"),
}  # fmt: skip
MODEL_SIZES = ("width", "feature_dim", "channels", "num_blocks", "temporal_kernel", "embed_ratio", "num_frames",
               "affective_dim", "window")  # fmt: skip
TRAIN_NUMBERS = {
    **dict.fromkeys(("seed", "data.window", "data.batch_size", "data.num_workers", "data.split_seed", "data.fold",
                     "data.synthetic.num_per_class", "data.synthetic.frames",
                     "data.synthetic.seed", "optim.scheduler.milestones.*", "trainer.log_every_n_steps",
                     "trainer.num_nodes", "robust_training.steps", "callbacks.checkpoint.save_top_k",
                     "callbacks.figures.num_clips", "callbacks.adv_training.start_epoch",
                     "callbacks.adv_training.pool_refresh_every", "callbacks.adv_training.pool_size",
                     "callbacks.adv_training.seed", "callbacks.robust_validation.every_n_epochs",
                     "callbacks.robust_validation.num_samples", *(f"model.kwargs.{k}" for k in MODEL_SIZES)), "int"),
    **dict.fromkeys(("data.num_folds", "trainer.max_epochs"), "int?"),
    **dict.fromkeys(("data.val_fraction", "data.test_fraction", "data.augment.rotate_deg", "data.augment.scale",
                     "data.augment.shear", "data.synthetic.noise_std", "model.kwargs.dropout", "optim.optimizer.lr",
                     "optim.optimizer.weight_decay", "optim.optimizer.momentum", "optim.scheduler.warmup_epochs",
                     "optim.scheduler.gamma", "optim.label_smoothing", "robust_training.eps", "robust_training.beta",
                     "callbacks.adv_training.ratio"), "float"),
    **dict.fromkeys(("trainer.gradient_clip_val", "robust_training.alpha"), "float?"),
    **dict.fromkeys(("callbacks.noise.sigma", "callbacks.noise.ratio"), "float"), "callbacks.noise.seed": "int",
    **{f"callbacks.adv_training.attack_kwargs.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
    **{f"callbacks.robust_validation.attacks.*.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
}  # fmt: skip
ATTACK_NUMBERS = {
    "seed": "int", "batch_size": "int", "limit": "int?", "fusion_weights.*": "float",
    **{f"attack.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
}  # fmt: skip


def check_config_numbers(cfg: DictConfig, kinds: dict[str, str], owner: str) -> list[str]:
    """The first check of a run: every number of ``cfg`` that ``kinds`` names is a number (returns the keys
    checked)."""
    return check_number_types(owner, OmegaConf.to_container(cfg, resolve=True), kinds)


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
        pipeline=model.get("pipeline"),
        pipeline_kwargs=model.get("pipeline_kwargs"),
        num_classes=len(desc["class_names"]),
        layout=desc["layout"],
        class_names=desc["class_names"],
        in_channels=desc["in_channels"],
        score_channel=desc.get("score_channel", False),
        num_persons=desc["num_persons"],
        window=desc["window"],
        optimizer=optim["optimizer"],
        scheduler=optim["scheduler"],
        label_smoothing=optim.get("label_smoothing", 0.0),
        robust_training=OmegaConf.to_container(cfg.robust_training, resolve=True)
        if cfg.get("robust_training")
        else None,
        data_name=desc["name"],
        # the data config travels with the checkpoint, so that attack.py can rebuild the data from it alone
        data_config=OmegaConf.to_container(cfg.data, resolve=True),
    )


def build_loggers(cfg: DictConfig, out_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=str(out_dir), name="logs")]
    wandb_cfg = cfg.logger.get("wandb")
    if wandb_cfg:
        from pytorch_lightning.loggers import WandbLogger

        # W&B writes to disk unless the user asks for online mode explicitly.
        os.environ.setdefault("WANDB_MODE", "offline")
        kwargs = OmegaConf.to_container(wandb_cfg, resolve=True)
        kwargs["name"] = kwargs.get("name") or out_dir.name
        if "settings" not in kwargs:
            import wandb

            # W&B's own console output (a banner, the run history and summary: 30 lines a run) says what
            # metrics.json and the progress lines say; the run's folder is logged when it finishes
            kwargs["settings"] = wandb.Settings(silent=True)
        lg = WandbLogger(save_dir=str(out_dir), **kwargs)
        # Lightning passes ``anonymous=None``, which this W&B version warns is a no-op
        lg._wandb_init.pop("anonymous", None)
        loggers.append(lg)
    return loggers


def build_callbacks(cfg: DictConfig, out_dir: Path, layout: str | None = None) -> list[Callback]:
    cb = cfg.callbacks
    ckpt_dir = str(out_dir / "checkpoints")
    robust = cb.get("robust_validation")
    monitor = cb.checkpoint.monitor
    on_robust = bool(monitor) and monitor.startswith("val/robust_")
    if on_robust and not robust:
        raise ValueError(
            f"callbacks.checkpoint.monitor={monitor} needs robust validation: set callbacks.robust_validation "
            "(e.g. callbacks=adv_training)"
        )
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best-{epoch:03d}",
            monitor=monitor,
            mode=cb.checkpoint.mode,
            save_top_k=cb.checkpoint.save_top_k,
            auto_insert_metric_name=False,
            # robust accuracy is measured every few epochs only: compare checkpoints on those epochs alone
            every_n_epochs=robust.every_n_epochs if on_robust else None,
        ),
        # last.ckpt after every epoch, whatever the monitored metric did (ModelCheckpoint's own save_last only
        # refreshes it when a top-k checkpoint is written), so that ckpt_path=last resumes the latest state
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
        ),
    ]
    if cb.get("early_stopping"):
        callbacks.append(EarlyStopping(**OmegaConf.to_container(cb.early_stopping, resolve=True)))
    if cb.get("lr_monitor"):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cb.get("adv_training"):
        from lightning_skel.callbacks.adversarial_training import AdversarialTraining

        callbacks.append(
            AdversarialTraining(**OmegaConf.to_container(cb.adv_training, resolve=True), layout=layout)
        )
    if robust:
        from lightning_skel.callbacks.robust_validation import RobustValidation

        callbacks.append(RobustValidation(**OmegaConf.to_container(robust, resolve=True)))
    if cb.get("noise"):  # Gaussian-noise augmentation, built by its _target_ (configs/callbacks/noise.yaml)
        from hydra.utils import instantiate

        callbacks.append(instantiate(cb.noise))
    if cb.get("figures"):
        from lightning_skel.callbacks.figures import ClassificationFigures

        callbacks.append(
            ClassificationFigures(out_dir / "figures", **OmegaConf.to_container(cb.figures, resolve=True))
        )
    return callbacks


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``last`` means ``out_dir/checkpoints/last.ckpt`` when it exists (resume), else a fresh start. The
    checkpoint must be one train.py wrote (a bare state_dict is refused, naming it)."""
    from lightning_skel.systems.attack_run import read_checkpoint

    if ckpt_path in (None, "", "none"):
        return None
    if ckpt_path == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.warning("ckpt_path=last but %s does not exist: starting a new run", last)
            return None
        ckpt_path = str(last)
    elif not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no such checkpoint {ckpt_path}")
    read_checkpoint(ckpt_path, "ckpt_path")
    return ckpt_path


def init_weights(system: ClassificationSystem, path: str) -> None:
    """Start ``system`` from the classifier weights of checkpoint ``path`` (fine-tuning: the optimiser,
    schedule and epoch count start afresh). The checkpoint must hold the same model on the same layout with
    the same classes."""
    from lightning_skel.systems.attack_run import CheckpointError, load_classifier

    source, hp = load_classifier(path, "init_from")
    mine = system.hparams
    for key in ("model", "layout", "num_classes"):
        if hp[key] != mine[key]:
            raise CheckpointError(f"init_from {path}: {key} is {hp[key]!r}, this run's is {mine[key]!r}")
    theirs, ours = source.state_dict(), system.classifier.state_dict()
    shapes = {k: tuple(v.shape) for k, v in theirs.items()}, {k: tuple(v.shape) for k, v in ours.items()}
    if shapes[0] != shapes[1]:
        name = next(k for k in {**shapes[0], **shapes[1]} if shapes[0].get(k) != shapes[1].get(k))
        raise CheckpointError(
            f"init_from {path}: the checkpoint's {hp['model']} (kwargs {hp.get('model_kwargs')}) does not fit "
            f"this run's {mine['model']} (kwargs {mine['model_kwargs']}): parameter {name} is "
            f"{shapes[0].get(name)} there and {shapes[1].get(name)} here; configure the model the checkpoint "
            "was trained with (e.g. the experiment that trained it)"
        )
    system.classifier.load_state_dict(theirs)
    log.info("initialised the classifier from %s", path)


@torch.no_grad()
def checkpoint_accuracy(*ckpts: str, split: str = "test") -> float:
    """Top-1 on ``split`` of one classifier checkpoint, or of the sum of several checkpoints' scores (as
    2s-AGCN fuses its joint and bone streams), on the data the first checkpoint was trained with."""
    from lightning_skel.systems.attack_run import load_classifiers

    model, hp = load_classifiers(ckpts)
    dm = SkeletonDataModule(**{**hp["data_config"], "batch_size": 64})
    dm.setup()
    correct = total = 0
    for x, y, lengths, _ in getattr(dm, f"{split}_dataloader")():
        x, _ = dm.window_batch(x, lengths, train=False)
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


def processes_per_node(cfg: DictConfig) -> int:
    """How many processes of the run share this node's cores: a DDP run's devices, else 1."""
    devices = cfg.trainer.get("devices", 1)
    return devices if _is_distributed(cfg) and isinstance(devices, int) and devices > 1 else 1


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test a classifier as ``cfg`` says; write ``out_dir/metrics.json``; return the metrics.
    Torch's threads are ``cfg.threads`` for the run (:func:`utils.torch_threads`)."""
    with torch_threads(cfg.get("threads", "auto"), processes_per_node(cfg)) as n:
        log_once(log, "torch threads: %d (threads=%s)", n, cfg.get("threads", "auto"))
        return _run_train(cfg)


def _run_train(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    check_config_numbers(cfg, TRAIN_NUMBERS, "train config")
    epochs = cfg.trainer.get("max_epochs")
    # 0 epochs would test untrained weights; Lightning's -1 (no limit) and null (1000) are not this project's
    check_params(
        "train.py",
        {"trainer.max_epochs": (epochs, type(epochs) is int and epochs >= 1, "an integer >= 1")},
        "setting(s)",
    )
    progress_every_s = every_s(cfg, "train.py")
    out_dir = job_out_dir(cfg, _is_distributed(cfg))
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    pl.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    dm.check_sets("train", "test")
    system = build_system(cfg, dm)
    if cfg.get("init_from"):
        init_weights(system, cfg.init_from)
    loggers = build_loggers(cfg, out_dir)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    callbacks = build_callbacks(cfg, out_dir, dm.layout)
    trainer_kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    show = trainer_kw.get("enable_progress_bar", True)
    callbacks += training_progress(show, progress_every_s)
    # without a terminal Lightning's bar prints nothing: log lines take its place
    trainer_kw["enable_progress_bar"] = bool(show) and interactive()
    trainer = pl.Trainer(
        **trainer_kw,
        default_root_dir=str(out_dir),
        logger=loggers,
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
    )
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt_path)
    ckpt_cb, last_cb = (c for c in callbacks if isinstance(c, ModelCheckpoint))
    # read before testing: restoring the best checkpoint also restores these callbacks' older state
    best = ckpt_cb.best_model_path or None
    last = last_cb.best_model_path or None
    best_score = None if ckpt_cb.best_model_score is None else float(ckpt_cb.best_model_score)
    val_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    system.restored = None
    # the selected checkpoint; without one (no validation) the weights in memory, those of last.ckpt
    trainer.test(system, datamodule=dm, ckpt_path=best, verbose=False)
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
    }
    # which weights the test metrics are of: the checkpoint, its epoch (as in its file name and the logs)
    # and, as best_val/*, its validation metrics
    tested = system.restored if best else None
    metrics["tested_checkpoint"] = best or last
    metrics["tested_epoch"] = tested["epoch"] if tested else trainer.current_epoch - 1
    metrics.update({f"last_{k}": v for k, v in val_metrics.items()})
    if tested:
        metrics.update({f"best_{k}": v for k, v in tested["val_metrics"].items()})
    if best_score is not None:
        metrics[f"best_{ckpt_cb.monitor}"] = best_score
    metrics.update(
        {
            "epochs": trainer.current_epoch,
            "best_checkpoint": best,
            "last_checkpoint": last,
            "wall_time_s": round(time.perf_counter() - start, 2),
            "threads": torch.get_num_threads(),
        }
    )
    if trainer.is_global_zero:
        write_json(out_dir / "metrics.json", {**metrics, "versions": versions()})
    finish_loggers(loggers)
    return metrics


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs, so that the next run in the same process starts its own."""
    from pytorch_lightning.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            run_dir = Path(lg.experiment.dir).parent
            lg.experiment.finish()
            if os.environ.get("WANDB_MODE") == "offline":
                log.info("W&B run written to %s; upload it with `wandb sync %s`", run_dir, run_dir)


# ---- attack runs ------------------------------------------------------------------------------------
def _is_distributed(cfg: DictConfig) -> bool:
    t = cfg.trainer
    devices = t.get("devices", 1)
    many = (isinstance(devices, int) and devices > 1) or int(t.get("num_nodes", 1)) > 1
    return many or str(t.get("strategy", "auto")).startswith("ddp")


def run_attack(cfg: DictConfig) -> dict[str, Any]:
    """Attack a trained classifier on a data split as ``cfg`` (configs/attack.yaml) says; write the outputs
    of docs/ARCHITECTURE.md into ``out_dir`` and return the aggregate metrics. Every input is checked before any
    attack work starts. Under ``trainer.strategy=ddp`` (Lightning Fabric) the batches are split across ranks.
    Torch's threads are ``cfg.threads`` for the run (:func:`utils.torch_threads`)."""
    with torch_threads(cfg.get("threads", "auto"), processes_per_node(cfg)) as n:
        log_once(log, "torch threads: %d (threads=%s)", n, cfg.get("threads", "auto"))
        return _run_attack(cfg)


def _run_attack(cfg: DictConfig) -> dict[str, Any]:
    check_config_numbers(cfg, ATTACK_NUMBERS, "attack config")
    job_out_dir(cfg, _is_distributed(cfg))
    return launch(cfg, _attack_main)


def launch(cfg: DictConfig, main: Callable[[Any, DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """``main(fabric, cfg)`` in every process of a Lightning Fabric as ``cfg.trainer`` configures it when the
    run is distributed (``trainer.strategy=ddp``, several devices or nodes), else ``main(None, cfg)`` here;
    returns what it returns in this process (``{}`` where it returns nothing)."""
    if _is_distributed(cfg):
        from lightning_fabric import Fabric

        t = cfg.trainer
        fabric = Fabric(
            accelerator=t.get("accelerator", "auto"),
            devices=t.get("devices", 1),
            num_nodes=t.get("num_nodes", 1),
            strategy=t.get("strategy", "ddp"),
        )
        return fabric.launch(main, cfg) or {}
    return main(None, cfg)


def attack_checkpoints(cfg: DictConfig) -> list[str]:
    """attack.yaml's ``ckpt``: one checkpoint, or a list of them whose scores are added (``ckpt=[a,b]``)."""
    ckpt = cfg.ckpt
    paths = [ckpt] if isinstance(ckpt, (str, Path)) else list(OmegaConf.to_container(ckpt, resolve=True))
    if not paths or not all(isinstance(p, (str, Path)) and str(p) for p in paths):
        raise ValueError(f"ckpt must be a checkpoint path or a list of them, got {ckpt!r}")
    return [str(p) for p in paths]


def _attack_data(cfg: DictConfig, hp: dict[str, Any]) -> tuple[SkeletonDataModule, str]:
    """The data module to attack (the checkpoint's own data unless ``data.path`` names an npz) and the split."""
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    split = data_cfg.pop("split")
    path = data_cfg.pop("path", None)
    if path:
        dm_cfg = {"name": Path(path).stem, "path": path, "window": hp.get("window", 64),
                  "score_channel": bool(hp.get("score_channel", False))}  # fmt: skip
        # the checkpoint's window, reached as its own data reached it (an imported model pads to 300 frames)
        temporal = (hp.get("data_config") or {}).get("temporal")
        if temporal is not None:
            dm_cfg["temporal"] = temporal
    elif hp.get("data_config"):
        dm_cfg = dict(hp["data_config"])
    else:
        raise ValueError(
            f"ckpt {attack_checkpoints(cfg)[0]}: the checkpoint records no data config; pass data.path=FILE.npz"
        )
    dm_cfg.update({k: v for k, v in data_cfg.items() if v is not None})
    dm_cfg.update(batch_size=int(cfg.batch_size), num_workers=0)
    return SkeletonDataModule(**dm_cfg), split


def checked_data(
    cfg: DictConfig, hp: dict[str, Any], shown: str, fabric=None
) -> tuple[SkeletonDataModule, str]:
    """The data module of a run on a checkpoint (:func:`_attack_data`), prepared (by rank 0 under
    ``fabric``) and set up, and the split; refused unless it fits the checkpoint ``hp`` (named ``shown``):
    its layout, class count and names, and its score channel."""
    layout = hp["layout"]
    dm, split = _attack_data(cfg, hp)
    if fabric is None or fabric.global_rank == 0:
        dm.prepare_data()
    if fabric is not None:
        fabric.barrier()
    dm.setup()
    if dm.layout != layout:
        raise ValueError(
            f"data layout {dm.layout!r} does not match the checkpoint's layout {layout!r} ({shown})"
        )
    if dm.num_classes != hp["num_classes"]:
        raise ValueError(
            f"data has {dm.num_classes} classes but the checkpoint {shown} has {hp['num_classes']}"
        )
    if dm.score_channel != bool(hp.get("score_channel", False)):
        raise ValueError(
            f"data.score_channel is {dm.score_channel} but the checkpoint {shown} was trained with "
            f"score_channel={bool(hp.get('score_channel', False))}: its classifier takes "
            f"{'coordinates and the keypoint score' if hp.get('score_channel') else 'coordinates only'}"
        )
    names = hp.get("class_names")
    if names is not None and list(dm.class_names) != list(names):
        i = next(i for i, (a, b) in enumerate(zip(dm.class_names, names, strict=True)) if a != b)
        source = f"data.path {cfg.data.path}" if cfg.data.get("path") else f"data {dm.name!r}"
        raise ValueError(
            f"{source}: class {i} is {dm.class_names[i]!r} there and {names[i]!r} in the checkpoint {shown}: "
            "the classifier's labels would be read as other classes"
        )
    return dm, split


def windowed_clips(
    dm: SkeletonDataModule, ds: SkeletonDataset, rows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clips ``rows`` of the dataset ``ds`` of ``dm`` as the classifier saw them in evaluation
    (windowed, no augmentation): ``x, y, lengths, index``."""
    items = [ds[int(i)] for i in rows]
    x = torch.stack([it[0] for it in items]) if items else torch.zeros(0)
    y = torch.tensor([it[1] for it in items], dtype=torch.long)
    lengths = torch.tensor([it[2] for it in items], dtype=torch.long)
    index = torch.tensor([it[3] for it in items], dtype=torch.long)
    x, lengths = dm.window_batch(x, lengths, train=False)
    return x, y, lengths, index


def _attack_main(fabric, cfg: DictConfig) -> dict[str, Any]:
    from lightning_skel.attacks.metrics import attack_metrics, check_budgets
    from lightning_skel.report import nothing_attacked, write_outputs, write_report
    from lightning_skel.systems import attack_run
    from lightning_skel.systems.attack_run import AttackRun, check_batch_size, load_classifiers, load_emotion

    start = time.perf_counter()
    budgets = OmegaConf.to_container(cfg.budgets, resolve=True) if cfg.get("budgets") else None
    check_budgets(budgets)
    progress_every_s = every_s(cfg, "attack.py")
    check_batch_size(int(cfg.batch_size))  # before any data is read; AttackRun checks it again
    subset, limit, targeted = cfg.get("subset", "spread"), cfg.get("limit"), cfg.attack.get("targeted", False)
    check_rows(limit, subset)
    # the attack checks its own switches too, but this one the run reads itself (which clips get targets)
    check_params("attack.py", {"attack.targeted": (targeted, isinstance(targeted, bool), "true or false")},
                 "setting(s)")  # fmt: skip
    rank = fabric.global_rank if fabric is not None else 0
    world = fabric.world_size if fabric is not None else 1
    device = fabric.device if fabric is not None else torch_device(cfg)
    out_dir = Path(cfg.out_dir)
    # -- every input checked before any work --
    ckpts = attack_checkpoints(cfg)
    fusion = cfg.get("fusion_weights")
    fusion = None if fusion is None else [float(w) for w in fusion]
    classifier, hp = load_classifiers(ckpts, fusion)
    shown = " + ".join(ckpts)
    for path, model in zip(ckpts, hp["model"].split("+"), strict=True):
        if model == "emotion":
            raise attack_run.CheckpointError(
                f"ckpt {path}: an emotion recognizer (model 'emotion'), not an action classifier; pass it as "
                "emotion_ckpt= for the emotion term, and an action classifier as ckpt"
            )
    layout = hp["layout"]
    dm, split = checked_data(cfg, hp, shown, fabric)
    emotion = load_emotion(cfg.emotion_ckpt, layout) if cfg.get("emotion_ckpt") else None
    dm.check_sets(split)
    ds = dm.datasets[split]
    rows = attack_rows(len(ds), limit, subset)
    attack_cfg = OmegaConf.to_container(cfg.attack, resolve=True)
    name = attack_cfg.pop("name")
    attack_cfg.pop("targeted", None)
    spec = {
        # one checkpoint is recorded as a path, several as a list with their fusion weights
        **_checkpoint_spec(ckpts, fusion),
        "emotion_ckpt": str(Path(cfg.emotion_ckpt).resolve()) if cfg.get("emotion_ckpt") else None,
        "emotion_ckpt_sha256": file_sha256(cfg.emotion_ckpt) if cfg.get("emotion_ckpt") else None,
        "attack": name,
        # compile=false (ADMM's default, the eager steps) is left out: it is the run without the option
        "attack_kwargs": {k: v for k, v in attack_cfg.items() if not (k == "compile" and v is False)},
        "targeted": targeted,
        "split": split,
        "num_samples": int(rows.size),
        # which clips: recorded only when a limit picks other than the first ones (the whole split is the
        # same run whatever the subset rule)
        **({"subset": subset} if subset != "first" and rows.size < len(ds) else {}),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "data": dm.describe(),
    }
    run = AttackRun(
        classifier=classifier, layout=layout, attack_name=name, attack_kwargs=attack_cfg, out_dir=out_dir,
        spec=spec, batch_size=int(cfg.batch_size), targeted=targeted, seed=int(cfg.seed), emotion=emotion,
        num_classes=int(hp["num_classes"]),
    )  # fmt: skip
    run.build()  # bad attack settings fail here, before any work
    # -- the clips, windowed as the classifier saw them in evaluation --
    x, y, lengths, index = windowed_clips(dm, ds, rows)
    if rank == 0:
        run.check_out_dir(index)  # the shards already there: this run's, of these samples, readable
    if fabric is not None:
        fabric.barrier()
    mine = sum(sl.stop - sl.start for sl in run.batches(len(y), rank, world).values())  # clips of this rank
    visible = rank == 0 and bool(cfg.trainer.get("enable_progress_bar", True))
    # the run's folder names it: a sequence of runs in one log (the demo, a sweep) stays apart
    what = f"{name} on {split} ({out_dir.name})"
    with ClipProgress(what, mine, progress_every_s, enabled=visible) as progress:
        run.run(x, y, lengths, index, rank, world, device, progress=progress)
    if fabric is not None:
        fabric.barrier()
    if rank != 0:
        return {}
    merged = run.merge(index)
    per_sample = {k[2:]: torch.as_tensor(v) for k, v in merged.items() if k.startswith("m_")}
    t = torch.as_tensor
    target = t(merged["target"]) if targeted else None
    metrics = attack_metrics(
        t(merged["x"]), t(merged["x_adv"]), t(merged["lengths"]), layout, t(merged["y"]), t(merged["pred_clean"]),
        t(merged["pred_adv"]), target=target, grad_evals=t(merged["grad_evals"]), per_sample=per_sample,
        budgets=budgets,
    )  # fmt: skip
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    metrics["threads"] = torch.get_num_threads()
    if not metrics["num_attacked"]:
        log.warning("nothing was attacked: %s", nothing_attacked(metrics))
    extra = {"config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(), "spec": spec}
    write_outputs(out_dir, merged, metrics, extra, ds.data)
    figures = write_report(
        out_dir, merged, metrics, layout, dm.class_names, f"{name} attack on {hp['model']} ({split})"
    )
    _log_attack(cfg, out_dir, metrics, figures)
    log.info("attack outputs written to %s", out_dir)
    return metrics


def _checkpoint_spec(ckpts: list[str], fusion: list[float] | None) -> dict[str, Any]:
    """What identifies the attacked model in a run's spec: its checkpoint files (path, and the sha256 of the
    bytes, so that other weights saved under the same path are another run) and, for a fusion of several,
    each one's weight."""
    files = [Path(c) for c in ckpts]
    if len(files) == 1:
        return {"ckpt": str(files[0].resolve()), "ckpt_sha256": file_sha256(files[0])}
    return {
        "ckpt": [str(f.resolve()) for f in files],
        "ckpt_sha256": [file_sha256(f) for f in files],
        "fusion_weights": fusion or [1.0] * len(files),
    }


SUBSETS = ("spread", "first")  # attack.yaml's `subset`: which `limit` clips of a split an attack run takes


def check_rows(limit: int | None, subset: str) -> None:
    """attack.yaml's ``limit`` (a whole number of clips, or null) and ``subset``, or a clear error."""
    check_params("attack.py", {
        "limit": (limit, limit is None or (type(limit) is int and limit >= 1), "an integer >= 1 or null"),
        "subset": (subset, subset in SUBSETS, f"one of {SUBSETS}"),
    }, "setting(s)")  # fmt: skip


def attack_rows(n: int, limit: int | None, subset: str = "spread") -> np.ndarray:
    """The positions in a split of ``n`` clips that an attack run takes: all of them, or ``limit`` of them,
    spread evenly over the split (``subset="spread"``: datasets are stored ordered by class, so the first
    clips cover few classes) or the first ones (``"first"``)."""
    check_rows(limit, subset)
    if limit is None or limit >= n:
        return np.arange(n)
    if subset == "first":
        return np.arange(limit)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def torch_device(cfg: DictConfig) -> torch.device:
    acc = cfg.trainer.get("accelerator", "cpu")
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _log_attack(cfg: DictConfig, out_dir: Path, metrics: dict[str, Any], figures: dict[str, Path]) -> None:
    """Metrics and figures to W&B when it is configured (through Lightning's logger, offline by default)."""
    loggers = build_loggers(cfg, out_dir)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_metrics({f"attack/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        if hasattr(lg, "log_image"):
            for key, path in figures.items():
                if path.suffix == ".png":
                    lg.log_image(f"attack/{key}", images=[str(path)])
        lg.save()
    finish_loggers(loggers)
