"""Figures of a classification run, written beside the CSV logs and sent to W&B when it is a logger:
a few clean clips at the start, the test confusion matrix and per-class accuracy at the end."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import WandbLogger

from lightning_skel.skeleton.features import split_score
from lightning_skel.viz import clip_grid, save_figure

log = logging.getLogger(__name__)


def confusion_figure(cm: np.ndarray, class_names: list[str]) -> Figure:
    """The row-normalised confusion matrix as a figure: true class per row, predicted per column, each cell
    coloured by the fraction of its row (counts written in the cells for up to 30 classes).

    Args:
        cm: ``(K, K)`` counts, ``cm[i, j]`` the clips of class ``i`` predicted ``j``.
        class_names: the ``K`` names, for the axes.

    Example:

    >>> import numpy as np
    >>> fig = confusion_figure(np.array([[5, 1], [0, 6]]), ["wave", "clap"])
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['wave', 'clap']
    """
    k = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(2.5 + 0.35 * k, 18)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=6,
                color="k" if norm[i, j] < 0.6 else "w",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


class ClassificationFigures(pl.Callback):
    """Figures of a classification run: ``clips.png`` (a few validation clips, drawn as skeletons) at the
    start of training, ``confusion_matrix.png`` and ``per_class_accuracy.csv`` after testing, written into
    ``out_dir`` by rank 0 and logged to W&B loggers (images, tables).

    Args:
        out_dir: the folder of the figures (configs/callbacks/default.yaml: ``${out_dir}/figures``).
        num_clips: clips drawn in ``clips.png``, spread over the validation set (default 4; 0: none).

    It reads the system's ``confmat`` (a ``MulticlassConfusionMatrix``) and ``class_names``.

    Example:

    >>> cb = ClassificationFigures("figures", num_clips=2)  # then pl.Trainer(callbacks=[cb])
    >>> cb.out_dir.name, cb.num_clips
    ('figures', 2)
    """

    def __init__(self, out_dir: str | os.PathLike, num_clips: int = 4) -> None:
        if num_clips < 0:
            raise ValueError(f"num_clips must be >= 0, got {num_clips}")
        self.out_dir = Path(out_dir)
        self.num_clips = num_clips

    def _wandb(self, trainer: pl.Trainer) -> list[WandbLogger]:
        return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Draw ``num_clips`` validation clips (training clips without a validation set), windowed."""
        if not self.num_clips or not trainer.is_global_zero or trainer.datamodule is None:
            return
        ds = trainer.datamodule.datasets.get("val") or trainer.datamodule.datasets["train"]
        rows = np.linspace(0, len(ds) - 1, min(self.num_clips, len(ds))).round().astype(int)
        items = [ds[int(i)] for i in rows]
        x = torch.stack([it[0] for it in items])
        lengths = torch.tensor([it[2] for it in items])
        x, lengths = trainer.datamodule.window_batch(x, lengths, train=False)
        x = split_score(x, bool(pl_module.hparams.get("score_channel", False)))[0]  # the skeletons drawn
        names = pl_module.class_names
        titles = [names[it[1]] for it in items]
        path = save_figure(
            clip_grid(x.numpy(), pl_module.hparams.layout, lengths.numpy(), titles),
            self.out_dir / "clips.png",
        )
        for lg in self._wandb(trainer):
            lg.log_image("data/clips", images=[str(path)])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the test confusion matrix and per-class accuracy (``nan`` for a class without test clips)."""
        cm = pl_module.confmat.compute().cpu().numpy()  # synchronised across ranks by torchmetrics
        if not trainer.is_global_zero:
            return
        names = pl_module.class_names
        support = cm.sum(1)
        acc = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / ".per_class_accuracy.csv.tmp"
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["class", "support", "accuracy"])
            w.writerows([n, int(s), f"{a:.4f}"] for n, s, a in zip(names, support, acc, strict=True))
        os.replace(tmp, self.out_dir / "per_class_accuracy.csv")
        path = save_figure(confusion_figure(cm, names), self.out_dir / "confusion_matrix.png")
        log.info("confusion matrix and per-class accuracy written to %s", self.out_dir)
        for lg in self._wandb(trainer):
            lg.log_image("test/confusion_matrix", images=[str(path)])
            lg.log_table(
                "test/per_class_accuracy",
                columns=["class", "support", "accuracy"],
                data=[[n, int(s), float(a)] for n, s, a in zip(names, support, acc, strict=True)],
            )
            lg.log_table(
                "test/confusion_matrix_counts",
                columns=["true", *names],
                data=[[n, *map(int, row)] for n, row in zip(names, cm, strict=True)],
            )
