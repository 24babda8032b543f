"""ClassificationSystem: the LightningModule that trains an action classifier or the emotion recognizer.

It holds a plain :class:`~lightning_skel.models.Classifier` built from the registry, the loss, one
torchmetrics collection per stage, and the optimiser and schedule from config. ``save_hyperparameters``
makes a checkpoint self-describing: model name and kwargs, layout, class names, input preprocessing, and
``score_channel`` (the input ends with the keypoint score of 2D data, as the data module gave it).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lightning_skel.models import Classifier, build_model

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("cosine", "step", "constant")
ROBUST_TRAINING = ("none", "pgd_at", "trades")


class ClassificationSystem(pl.LightningModule):
    """Trains and evaluates a skeleton classifier (an action classifier, or the emotion recognizer of
    docs/METHOD.md section 7), optionally with a reference defense (PGD-AT, Madry et al. 2018; TRADES, Zhang
    et al. 2019; docs/METHOD.md section 6).

    Args:
        model: a registered model (``lightning_skel.models.list_models()``).
        num_classes: K, the classes.
        layout: the clips' layout name (``ntu25``, ``kinect20``, ...).
        class_names: the K class names (default: ``"0"``, ``"1"``, ...).
        in_channels: input channels C (default 3; 2D data with ``score_channel``: 3, coordinates and score).
        num_persons: persons M per clip (default 2).
        window: frames T of a training clip (default 64), recorded for attack.py and ``load_classifier``.
        model_kwargs: the model's own arguments (default none).
        normalize: the input normalisation, ``"center_rotate"`` (default), ``"full"`` or ``"none"``
            (:class:`~lightning_skel.models.Classifier`).
        modality: ``"joint"`` (default), ``"bone"``, ``"bone_agcn"`` or ``"motion"``.
        pipeline: an official input pipeline in place of ``normalize`` (default none), and
            ``pipeline_kwargs`` its options.
        optimizer: ``name`` (``sgd``, ``adam``, ``adamw``) and its arguments; default SGD, lr 0.1, momentum
            0.9, Nesterov, weight decay 5e-4.
        scheduler: ``name`` (``cosine``, ``step``, ``constant``), ``warmup_epochs`` (linear), ``milestones``
            (epochs) and ``gamma`` of ``step``; default cosine without warm-up, stepped per batch.
        label_smoothing: of the cross-entropy, in [0, 1) (default 0).
        robust_training: ``name`` (``none``, ``pgd_at``, ``trades``), ``eps`` (m, default 0.02), ``steps``
            (default 5), ``alpha`` (m, default ``2.5 eps / steps``), ``beta`` (TRADES, default 6).
        data_name: the data set's name, and ``data_config`` its whole data config (recorded: attack.py
            rebuilds the data from the checkpoint alone).
        score_channel: the input's last channel is the keypoint score (default false).

    ``forward(x (N, C, T, V, M)) -> (N, K)`` logits, ``x`` in metres. It logs ``{train,val,test}/loss``,
    ``/acc``, ``/acc_top5`` per epoch and ``val/select`` (``val/acc``, ties broken by the lower loss).

    Example:

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> system = ClassificationSystem("hcn", 5, "kinect20", class_names=list("abcde"), num_persons=1,
    ...                               window=16, model_kwargs={"variant": "compact", "width": 8, "feature_dim": 16})
    >>> x = torch.randn(2, 3, 16, 20, 1)  # (N, C, T, V, M) in metres; then pl.Trainer().fit(system, dm)
    >>> system.eval()(x).shape, system.class_names
    (torch.Size([2, 5]), ['a', 'b', 'c', 'd', 'e'])
    """

    def __init__(
        self,
        model: str,
        num_classes: int,
        layout: str,
        class_names: list[str] | None = None,
        in_channels: int = 3,
        num_persons: int = 2,
        window: int = 64,
        model_kwargs: dict[str, Any] | None = None,
        normalize: str = "center_rotate",
        modality: str = "joint",
        pipeline: str | None = None,
        pipeline_kwargs: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        robust_training: dict[str, Any] | None = None,
        data_name: str | None = None,
        data_config: dict[str, Any] | None = None,
        score_channel: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if score_channel and model == "emotion":
            raise ValueError(
                "score_channel: the emotion recognizer reads geometry (angles, distances, speeds) from every "
                "input channel, so it cannot take the keypoint score; train it on coordinates"
            )
        self.optimizer_cfg = {
            "name": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            **(optimizer or {}),
        }
        self.scheduler_cfg = {
            "name": "cosine",
            "warmup_epochs": 0,
            "milestones": [],
            "gamma": 0.1,
            **(scheduler or {}),
        }
        if self.optimizer_cfg["name"] not in OPTIMIZERS:
            raise KeyError(
                f"unknown optimizer {self.optimizer_cfg['name']!r}; known: {', '.join(OPTIMIZERS)}"
            )
        if self.scheduler_cfg["name"] not in SCHEDULES:
            raise KeyError(f"unknown scheduler {self.scheduler_cfg['name']!r}; known: {', '.join(SCHEDULES)}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.robust_cfg = {
            "name": "none",
            "eps": 0.02,
            "steps": 5,
            "alpha": None,
            "beta": 6.0,
            **(robust_training or {}),
        }
        if self.robust_cfg["name"] not in ROBUST_TRAINING:
            raise KeyError(
                f"unknown robust_training {self.robust_cfg['name']!r}; known: {', '.join(ROBUST_TRAINING)}"
            )
        if self.robust_cfg["name"] != "none" and (
            self.robust_cfg["eps"] <= 0 or self.robust_cfg["steps"] < 1
        ):
            raise ValueError(f"robust_training needs eps > 0 and steps >= 1, got {self.robust_cfg}")
        self._inner = None  # the inner maximisation's attack, built on first use
        self.restored: dict[str, Any] | None = None  # epoch and val metrics of the last checkpoint loaded
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        net = build_model(
            model,
            num_classes,
            layout,
            in_channels=in_channels,
            num_persons=num_persons,
            **(model_kwargs or {}),
        )
        self.classifier = Classifier(
            net, layout, normalize=normalize, modality=modality, pipeline=pipeline,
            pipeline_kwargs=pipeline_kwargs, score_channel=score_channel,
        )  # fmt: skip
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            }
        )
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``: hence the ``_metrics`` suffix
        self.metrics = nn.ModuleDict(
            {f"{s}_metrics": metrics.clone(prefix=f"{s}/") for s in ("train", "val", "test")}
        )
        self.mean_loss = nn.ModuleDict({f"{s}_loss": MeanMetric() for s in ("train", "val", "test")})
        self.confmat = MulticlassConfusionMatrix(num_classes)
        # the epoch's training loss sum, correct clips and clips on this rank, for the progress display
        # (:meth:`running_metrics`); not part of checkpoints
        self.register_buffer("running", torch.zeros(3), persistent=False)

    @property
    def class_names(self) -> list[str]:
        """The K class names (``"0"``, ``"1"``, ... when none were given)."""
        return list(self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)])

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M)`` clips in metres to ``(N, K)`` logits: the classifier's."""
        return self.classifier(x)

    def _step(self, batch, stage: str) -> tuple[Tensor, Tensor]:
        x, y, _, _ = batch
        logits = self(x)
        loss = self.loss(logits, y)
        # accumulated here and logged once per epoch (:meth:`_log_epoch`): ``self.log`` on every step would
        # add its cost to every step of a small model
        self.metrics[f"{stage}_metrics"].update(logits, y)
        # a NaN loss counts as infinite (MeanMetric would drop it with a warning): a diverged epoch's mean
        # is then not finite, and :meth:`_check_finite` stops the run
        self.mean_loss[f"{stage}_loss"].update(
            torch.nan_to_num(loss.detach(), nan=math.inf, posinf=math.inf), weight=len(y)
        )
        if stage == "train":
            n, correct = loss.new_tensor(len(y)), (logits.detach().argmax(1) == y).sum().to(loss.dtype)
            self.running += torch.stack([loss.detach() * n, correct, n]).to(self.running.dtype)
        return loss, logits

    def running_metrics(self) -> dict[str, float]:
        """The training loss and accuracy of the epoch so far on this rank (for progress displays; the
        logged epoch values are :meth:`_log_epoch`'s), or nothing before the epoch's first step."""
        loss, correct, clips = self.running.tolist()
        return {"loss": loss / clips, "acc": correct / clips} if clips else {}

    def on_train_epoch_start(self) -> None:
        """Reset the running training loss and accuracy."""
        self.running.zero_()

    def _mean_loss(self, stage: str) -> tuple[Tensor, Tensor]:
        """The epoch's mean ``stage`` loss and its number of clips, over all ranks."""
        mean = self.mean_loss[f"{stage}_loss"]
        with mean.sync_context():  # gathers every rank's sums (nothing to do on one process)
            return mean.mean_value / mean.weight, mean.weight.clone()

    def _check_finite(self, stage: str, loss: Tensor) -> None:
        """Stop a diverged run before any checkpoint of it is saved (every rank sees the same loss)."""
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: {stage}/loss is not finite (NaN or inf) in epoch {self.current_epoch}; "
                f"lower optim.optimizer.lr (now {self.optimizer_cfg['lr']:g}) or clip gradients "
                "(trainer.gradient_clip_val). No checkpoint of this epoch was saved."
            )

    def _log_epoch(self, stage: str) -> None:
        """Log the epoch's ``{stage}/loss`` (mean over clips) and metrics; torchmetrics has reduced them
        over all ranks, so every rank logs the same values. Validation also logs ``val/select``, the default
        checkpoint selection key: ``val/acc`` with ties broken by the lower ``val/loss``, as
        ``val/acc + 1 / (2 N (1 + val/loss))`` for N validation clips. Accuracy moves in steps of 1/N and
        the loss term stays under half a step, so a higher accuracy always wins; among equal accuracies
        (a small split saturates early) the lower loss does."""
        meters = self.metrics[f"{stage}_metrics"]
        if self.mean_loss[f"{stage}_loss"].update_count == 0:
            return
        loss, clips = self._mean_loss(stage)
        if stage in ("train", "val"):
            self._check_finite(stage, loss)
        values = {f"{stage}/loss": loss, **meters.compute()}
        if stage == "val":
            values["val/select"] = values["val/acc"] + 1 / (2 * clips * (1 + loss))
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=False)
        meters.reset()
        self.mean_loss[f"{stage}_loss"].reset()

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss and metrics."""
        self._log_epoch("train")

    def on_validation_epoch_start(self) -> None:
        """Stop a run whose training epoch diverged (its loss not finite), before a checkpoint is saved."""
        # validation ends an epoch before train/loss is logged, and checkpoints are saved when it ends:
        # a diverged training epoch stops here
        if not self.trainer.sanity_checking and self.mean_loss["train_loss"].update_count:
            self._check_finite("train", self._mean_loss("train")[0])

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation loss, metrics and ``val/select``."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log the test loss and metrics."""
        self._log_epoch("test")

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """The loss of a batch ``(x, y, lengths, index)``: cross-entropy on the clean clips, on their PGD
        adversaries (``pgd_at``), or TRADES' clean cross-entropy plus ``beta`` times the KL term."""
        name = self.robust_cfg["name"]
        if name == "none":
            return self._step(batch, "train")[0]
        x, y, lengths, _ = batch
        if name == "pgd_at":  # Madry et al. 2018: train on the PGD adversary of the current weights
            return self._step((self._inner_max(x, y, lengths), y, lengths, None), "train")[0]
        # TRADES (Zhang et al. 2019): CE on clean clips + beta * KL(f(x) || f(x')), x' maximising that KL
        clean_loss, logits = self._step(batch, "train")
        x_adv = self._inner_max(x, y, lengths)
        # log-probabilities on both sides: with probabilities as the target, the gradient through the clean
        # side is log(p) + 1, -inf (then NaN) wherever a confident model's softmax underflows to 0
        kl = nn.functional.kl_div(
            self(x_adv).log_softmax(1), logits.log_softmax(1), reduction="batchmean", log_target=True
        )
        self.log("train/trades_kl", kl, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        return clean_loss + self.robust_cfg["beta"] * kl

    def _inner_max(self, x: Tensor, y: Tensor, lengths: Tensor) -> Tensor:
        """The inner maximisation of PGD-AT (cross-entropy) and TRADES (KL to the clean prediction): the
        registered ``pgd`` attack in the L-infinity ball of ``eps`` metres, Madry's step ``2.5 eps / steps``
        unless ``alpha`` is set, a fresh random start per batch (torch's generator, seeded by the run)."""
        if self._inner is None:
            from lightning_skel.attacks import build_attack

            cfg = self.robust_cfg
            self._inner = build_attack(
                "pgd", self.classifier, self.hparams.layout, eps=cfg["eps"], steps=cfg["steps"],
                alpha=cfg["alpha"] or 2.5 * cfg["eps"] / cfg["steps"], seed=None,
                loss="ce" if cfg["name"] == "pgd_at" else "kl",
            )  # fmt: skip
        return self._inner(x, y, lengths, attack_all=True).x_adv  # Madry and TRADES attack every clip

    def validation_step(self, batch, batch_idx: int) -> None:
        """Accumulate the batch's validation loss and metrics."""
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        """Accumulate the batch's test loss, metrics and confusion matrix."""
        _, logits = self._step(batch, "test")
        self.confmat.update(logits, batch[1])

    def on_test_epoch_start(self) -> None:
        """Reset the confusion matrix."""
        self.confmat.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        """``logits (B, K)``, ``y (B,)`` and ``index (B,)`` of a batch."""
        x, y, _, index = batch
        return {"logits": self(x), "y": y, "index": index}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add torch's global random state and the epoch's validation metrics to ``checkpoint``."""
        # Lightning does not save torch's global random state: dropout would diverge after a resume. The
        # project draws nothing from numpy's or Python's global generators during training.
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        # the validation metrics of the epoch saved, so that the run can say what a tested checkpoint scored
        checkpoint["val_metrics"] = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the random state when resuming a fit; record the checkpoint's epoch and validation
        metrics in :attr:`restored`."""
        # the random state only when a trainer resumes fitting: a checkpoint loaded for its weights
        # (init_from, attack.py, load_from_checkpoint) leaves the process's seeded generator alone
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if resuming and "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        self.restored = {"epoch": checkpoint.get("epoch"), "val_metrics": checkpoint.get("val_metrics", {})}

    def configure_optimizers(self):
        """The optimiser of ``optimizer`` and a per-step ``LambdaLR`` of ``scheduler`` (linear warm-up, then
        cosine to 0, steps of ``gamma`` at the milestones, or constant)."""
        cfg = dict(self.optimizer_cfg)
        opt_cls = OPTIMIZERS[cfg.pop("name")]
        if opt_cls is not torch.optim.SGD:
            cfg.pop("momentum", None)
            cfg.pop("nesterov", None)
        optimizer = opt_cls(self.parameters(), **cfg)
        sched = self.scheduler_cfg
        if sched["name"] == "constant" and not sched["warmup_epochs"]:
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        warmup = int(sched["warmup_epochs"] * per_epoch)
        milestones = [int(m * per_epoch) for m in sched["milestones"]]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if sched["name"] == "cosine":
                progress = (step - warmup) / max(total - warmup, 1)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            if sched["name"] == "step":
                return sched["gamma"] ** sum(step >= m for m in milestones)
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
