"""Gaussian-noise augmentation as a Lightning callback: the training of Cohen, Rosenfeld & Kolter (ICML 2019)
for a classifier to be certified by randomized smoothing at the same ``sigma`` (docs/METHOD.md section 8).

On with ``callbacks=noise`` (configs/callbacks/noise.yaml), or built by its ``_target_``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lightning_skel.skeleton.features import split_score, valid_mask
from lightning_skel.utils import check_params


class GaussianNoiseAugmentation(pl.Callback):
    """Adds Gaussian noise of standard deviation ``sigma`` to ``round(ratio * B)`` clips of every training
    batch of B, before ``training_step`` sees the batch (after the window and the data module's own
    augmentation): on the coordinates of valid entries only (``skeleton.features.valid_mask``), so padding
    frames, absent persons and a keypoint-score channel stay as they are, as under smoothing
    (:class:`~lightning_skel.certify.SmoothedClassifier`). Which clips, and the noise, are drawn from the
    callback's own generator on the CPU, whose state is in :meth:`state_dict`, so a resumed run continues as
    an uninterrupted one. Validation and test batches are left clean.

    Arguments:
        sigma: the noise's standard deviation, metres (default 0.01); certify at the same sigma.
        ratio: the fraction of each batch's clips given noise, in (0, 1] (default 1: all, as Cohen et al.).
        seed: the generator's seed (default 0).

    Example:

    >>> noise = GaussianNoiseAugmentation(sigma=0.01, ratio=0.5)  # then pl.Trainer(callbacks=[noise])
    >>> noise.sigma, noise.num_noised(8)
    (0.01, 4)
    """

    def __init__(self, sigma: float = 0.01, ratio: float = 1.0, seed: int = 0) -> None:
        super().__init__()

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        check_params("GaussianNoiseAugmentation", {
            "sigma": (sigma, number(sigma) and sigma > 0, "> 0 (the noise's standard deviation, metres)"),
            "ratio": (ratio, number(ratio) and 0 < ratio <= 1, "in (0, 1] (the fraction of each batch noised)"),
            "seed": (seed, isinstance(seed, int) and not isinstance(seed, bool), "an integer"),
        })  # fmt: skip
        self.sigma, self.ratio = float(sigma), float(ratio)
        self.generator = torch.Generator().manual_seed(seed)

    def num_noised(self, batch_size: int) -> int:
        return round(self.ratio * batch_size)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        x, _, lengths, _ = batch
        k = self.num_noised(len(x))
        if k == 0:
            return
        score_channel = bool(getattr(pl_module.hparams, "score_channel", False))
        idx = torch.randperm(len(x), generator=self.generator)[:k].to(x.device)
        coords = split_score(x, score_channel)[0]  # a view: the score channel is not touched
        chosen = coords[idx]
        eps = torch.randn(chosen.shape, generator=self.generator, dtype=chosen.dtype).to(x.device)
        noisy = torch.where(valid_mask(chosen, lengths[idx]), chosen + self.sigma * eps, chosen)
        coords[idx] = noisy  # the batch is rewritten in place, before training_step reads it
        pl_module.log("train/noise_fraction", k / len(x), on_step=False, on_epoch=True, batch_size=len(x))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])
