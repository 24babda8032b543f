"""A training run from a config (train.py): build the parts, train, test, return the metrics; and what an
attack run (:mod:`lightning_skel.attack_run`) shares with it: torch's threads, the loggers, the check of a
config's numbers. Entry points and tests call these."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from lightning_skel.attacks.spec import ATTACK_KWARG_NUMBERS
from lightning_skel.checkpoints import (
    CheckpointError,
    SafeCheckpointIO,
    load_classifier,
    load_classifiers,
    read_checkpoint,
)
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.progress import every_s, interactive, training_progress
from lightning_skel.sweep import job_out_dir
from lightning_skel.systems import ClassificationSystem
from lightning_skel.utils import (
    check_number_types,
    check_params,
    log_once,
    torch_threads,
    versions,
    write_json,
)

log = logging.getLogger(__name__)


class LightningNoise(logging.Filter):
    """Quiets Lightning's per-Trainer chatter: drops its advertising tips, the stepping-batches note and
    the restore line that the "Loaded model weights" line repeats, and lets each device-availability and
    seed line through once per process (a demo builds eight Trainers). It takes no arguments; this module
    adds one to each of Lightning's rank-zero and seed loggers.

    Example:

    >>> import logging
    >>> noise = LightningNoise()
    >>> def record(msg):
    ...     return logging.LogRecord("lightning", logging.INFO, __file__, 0, msg, None, None)
    >>> [noise.filter(record(m)) for m in ("Seed set to 0", "Seed set to 0", "💡 Tip: try this", "Epoch 1")]
    [True, False, False, True]
    """

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
    **{f"callbacks.adv_training.attack.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
    **{f"callbacks.robust_validation.attacks.*.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
}  # fmt: skip


def check_config_numbers(cfg: DictConfig, kinds: dict[str, str], owner: str) -> list[str]:
    """The first check of a run: every number of ``cfg`` that ``kinds`` names is a number (returns the keys
    checked).

    Example:
        >>> cfg = OmegaConf.create({"seed": 0, "data": {"batch_size": "32"}})  # "32": a string
        >>> check_config_numbers(cfg, {"seed": "int"}, "train config")
        ['seed']
        >>> check_config_numbers(cfg, TRAIN_NUMBERS, "train config")
        Traceback (most recent call last):
        ValueError: train config: invalid setting(s): data.batch_size must be an integer, got '32'
    """
    return check_number_types(owner, OmegaConf.to_container(cfg, resolve=True), kinds)


def build_datamodule(cfg: DictConfig) -> SkeletonDataModule:
    """The data module of ``cfg.data`` (not yet prepared or set up).

    Example:
        >>> data = {"name": "synthetic", "synthetic": {"num_per_class": 1, "seed": 0}, "window": 8}
        >>> dm = build_datamodule(OmegaConf.create({"data": data}))
        >>> type(dm).__name__, dm.window
        ('SkeletonDataModule', 8)
    """
    return SkeletonDataModule(**OmegaConf.to_container(cfg.data, resolve=True))


def build_system(cfg: DictConfig, dm: SkeletonDataModule) -> ClassificationSystem:
    """The ``ClassificationSystem`` of ``cfg.model``, ``cfg.optim`` and ``cfg.robust_training`` for the data
    of ``dm`` (set up: its layout, classes and shapes), recording the data config in its hyper-parameters.

    Example:
        >>> data = {"name": "synthetic", "synthetic": {"num_per_class": 1, "seed": 0}, "window": 8}
        >>> optim = {"optimizer": {"name": "adam"}, "scheduler": {}}  # optim.scheduler: the defaults
        >>> cfg = OmegaConf.create({"data": data, "model": {"name": "sgn"}, "optim": optim})
        >>> dm = build_datamodule(cfg)
        >>> dm.prepare_data()  # generates the clips into data.cache_dir
        >>> dm.setup()
        >>> system = build_system(cfg, dm)
        >>> system.hparams.model, system.hparams.layout, system.hparams.num_classes, system.hparams.window
        ('sgn', 'ntu25', 12, 8)
    """
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
    """A CSV logger into ``out_dir/logs``, and a W&B logger when ``cfg.logger.wandb`` is set (offline unless
    ``WANDB_MODE`` says otherwise).

    Example:
        >>> loggers = build_loggers(OmegaConf.create({"logger": {"wandb": None}}), Path("run"))  # logger=csv
        >>> [type(lg).__name__ for lg in loggers], loggers[0].log_dir
        (['CSVLogger'], 'run/logs/version_0')
    """
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


def build_callbacks(cfg: DictConfig, out_dir: Path) -> list[Callback]:
    """The callbacks of a training run from ``cfg.callbacks`` (configs/callbacks/*.yaml).

    ``checkpoint`` gives the run's two checkpoints in ``out_dir/checkpoints``: the best on its ``monitor``
    (``best-<epoch>.ckpt``; on ``val/robust_*`` only robust validation's epochs are compared) and
    ``last.ckpt`` after every epoch. Every other non-null entry is built from its ``_target_``
    (``hydra.utils.instantiate``); a callback's own argument error is raised as it is.

    Raises:
        ValueError: an entry without ``_target_``, a checkpoint monitor on robust accuracy without robust
            validation, or a callback's argument.

    The list goes to ``pl.Trainer(callbacks=...)``; ``callbacks=adv_training`` adds an ``AdversarialTraining``
    entry as the ``early`` one below.

    Example:
        >>> cb = {"checkpoint": {"monitor": "val/acc", "mode": "max", "save_top_k": 1},
        ...       "early": {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val/acc"}}
        >>> [type(c).__name__ for c in build_callbacks(OmegaConf.create({"callbacks": cb}), Path("run"))]
        ['ModelCheckpoint', 'ModelCheckpoint', 'EarlyStopping']
    """
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
    for key, node in cb.items():
        if key == "checkpoint" or node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            got = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
            raise ValueError(
                f"callbacks.{key}: a callback is a config with the _target_ class to build and its arguments, "
                "e.g. callbacks.early_stopping={_target_: pytorch_lightning.callbacks.EarlyStopping, monitor: "
                f"val/acc, mode: max, patience: 20}}, or null for none; got {got!r}"
            )
        try:
            callbacks.append(instantiate(node, _convert_="all"))
        except InstantiationException as e:
            # Hydra wraps what the constructor raised: a callback's own argument check is the user's to read
            if isinstance(e.__cause__, (ValueError, KeyError)):
                raise e.__cause__ from None
            raise
    return callbacks


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``last`` means ``out_dir/checkpoints/last.ckpt`` when it exists (resume), else a fresh start. The
    checkpoint must be one train.py wrote (a bare state_dict is refused, naming it).

    Example:
        >>> resolve_ckpt_path("last", Path("run")) is None  # no run/checkpoints/last.ckpt: a fresh start
        True
        >>> resolve_ckpt_path("missing.ckpt", Path("run"))
        Traceback (most recent call last):
        FileNotFoundError: ckpt_path: no such checkpoint missing.ckpt
    """
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
    the same classes.

    Example:
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # untrained, saved as train.py does
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> fresh = ClassificationSystem("sgn", 2, "kinect20", window=16)
        >>> init_weights(fresh, "sgn.ckpt")
        >>> mine, theirs = fresh.classifier.state_dict(), sgn.classifier.state_dict()
        >>> all(torch.equal(mine[k], theirs[k]) for k in theirs)
        True
    """
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
    2s-AGCN fuses its joint and bone streams), on the data the first checkpoint was trained with.

    Example:
        >>> synthetic = {"num_per_class": 1, "frames": 16, "seed": 0, "layout": "kinect20"}
        >>> data = {"name": "synthetic", "synthetic": synthetic, "window": 16}  # as a checkpoint records it
        >>> sgn = ClassificationSystem("sgn", 12, "kinect20", window=16, data_config=data)  # untrained
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> 0.0 <= checkpoint_accuracy("sgn.ckpt", split="train") <= 1.0
        True
    """
    model, hp = load_classifiers(ckpts)
    dm = SkeletonDataModule(**{**hp["data_config"], "batch_size": 64})
    dm.setup()
    correct = total = 0
    for x, y, lengths, _ in getattr(dm, f"{split}_dataloader")():
        x, _ = dm.window_batch(x, lengths, train=False)
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    if total == 0:
        raise ValueError(f"checkpoint_accuracy: the {split} split of {ckpts[0]}'s data has no clips")
    return correct / total


def is_distributed(cfg: DictConfig) -> bool:
    """Whether the run takes several processes: several devices or nodes, or a DDP strategy.

    Example:
        >>> is_distributed(OmegaConf.create({"trainer": {"devices": 1}}))
        False
        >>> is_distributed(OmegaConf.create({"trainer": {"strategy": "ddp", "devices": 2}}))
        True
    """
    t = cfg.trainer
    devices = t.get("devices", 1)
    many = (isinstance(devices, int) and devices > 1) or int(t.get("num_nodes", 1)) > 1
    return many or str(t.get("strategy", "auto")).startswith("ddp")


def processes_per_node(cfg: DictConfig) -> int:
    """How many processes of the run share this node's cores: a DDP run's devices, else 1.

    Example:
        >>> processes_per_node(OmegaConf.create({"trainer": {"devices": 1}}))
        1
        >>> processes_per_node(OmegaConf.create({"trainer": {"strategy": "ddp", "devices": 2}}))
        2
    """
    devices = cfg.trainer.get("devices", 1)
    return devices if is_distributed(cfg) and isinstance(devices, int) and devices > 1 else 1


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test a classifier as ``cfg`` says; write ``out_dir/metrics.json``; return the metrics.
    Torch's threads are ``cfg.threads`` for the run (:func:`utils.torch_threads`).

    Example:
        >>> run_train(OmegaConf.create({"trainer": {"max_epochs": 0}}))  # checked before any work
        Traceback (most recent call last):
        ValueError: train.py: invalid setting(s): trainer.max_epochs must be an integer >= 1, got 0
    """
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
    out_dir = job_out_dir(cfg, is_distributed(cfg))
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    callbacks = build_callbacks(cfg, out_dir)  # their arguments checked before any work
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
    """Close W&B runs, so that the next run in the same process starts its own.

    Example:
        >>> loggers = build_loggers(OmegaConf.create({"logger": {"wandb": None}}), Path("run"))
        >>> loggers[0].log_metrics({"test/acc": 0.5})
        >>> loggers[0].save()
        >>> finish_loggers(loggers)  # W&B runs are closed; a CSV logger has written its file already
        >>> sorted(p.name for p in Path(loggers[0].log_dir).iterdir())
        ['metrics.csv']
    """
    from pytorch_lightning.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            run_dir = Path(lg.experiment.dir).parent
            lg.experiment.finish()
            if os.environ.get("WANDB_MODE") == "offline":
                log.info("W&B run written to %s; upload it with `wandb sync %s`", run_dir, run_dir)
