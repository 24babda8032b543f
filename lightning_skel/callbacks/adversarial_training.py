"""Adversarial training as a Lightning callback (docs/METHOD.md section 6; ART's ``AdversarialTrainer(ratio=...)``).

From ``start_epoch`` on, ``round(ratio * B)`` clips of every training batch of B are replaced, before
``training_step`` sees the batch, by adversarial versions made by a registered attack against the current
weights (``mode="batch"``), or by draws from a pool of adversarial clips regenerated every
``pool_refresh_every`` epochs (``mode="pool"``, cheaper; under DDP each rank attacks its share of the pool
and gathers the others'). Every chosen clip is attacked, whatever its clean label (``attack_all``). The
attack runs with the model in eval mode and takes gradients with respect to the input only, so the
optimiser and the parameters' ``.grad`` are left alone. Which clips are replaced is drawn from a generator
whose state is in :meth:`state_dict`, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lightning_skel.attacks import Attack
from lightning_skel.attacks.metrics import per_sample_metrics
from lightning_skel.attacks.spec import AttackSpec
from lightning_skel.skeleton.layouts import get_layout
from lightning_skel.utils import check_params

MODES = ("batch", "pool")


class AdversarialTraining(pl.Callback):
    """Replaces part of every training batch with adversarial clips against the current weights
    (docs/METHOD.md section 6, with the semantics of ART's ``AdversarialTrainer(ratio)``: an adversarial
    clip keeps its clean clip's label and length).

    Args:
        attack: the attack: an attack spec (an entry of configs/attack, a mapping with ``name`` and its
            settings, or a registered name; :class:`~lightning_skel.attacks.spec.AttackSpec`), built against
            the model in :meth:`setup`, or an :class:`~lightning_skel.attacks.Attack` instance. Untargeted
            only. Default ``"admm"`` at its class's defaults (configs/callbacks/adv_training.yaml gives
            ``admm_train``, a per-batch budget).
        ratio: fraction of each batch of B clips replaced (``round(ratio * B)`` clips), in (0, 1]; default
            0.5.
        start_epoch: the first epoch with adversarial clips, >= 0 (default 0).
        mode: ``"batch"`` (default): the chosen clips are attacked every batch; ``"pool"``: they are drawn,
            with replacement, from a pool of adversarial training clips.
        pool_refresh_every: pool mode: epochs between regenerations of the pool, >= 1 (default 1).
        pool_size: pool mode: clips in the pool, >= 1 (default 256).
        layout: the data's layout, to check an ``Attack`` instance's against before training (default none:
            checked against the model's in :meth:`setup`).
        seed: seed of the generator that picks the replaced clips and the pool (default 0); its state is
            saved in checkpoints.

    Batches are ``(x (B, C, T, V, M), y (B,), lengths (B,), index (B,))`` in metres, rewritten in place; it
    logs ``train/adv_fraction``, ``train/adv_time_s`` and, in batch mode, ``train/adv_success`` and the mean
    sizes of the replaced clips' perturbations, in pool mode ``train/adv_pool_*``.

    Example:

    >>> cb = AdversarialTraining({"name": "pgd", "eps": 0.02, "steps": 5}, ratio=0.5, start_epoch=1)
    >>> cb.attack_spec.name, cb.num_replaced(8), cb.active(0), cb.active(1)
    ('pgd', 4, False, True)
    """

    def __init__(
        self,
        attack: str | Mapping[str, Any] | Attack = "admm",
        ratio: float = 0.5,
        start_epoch: int = 0,
        mode: str = "batch",
        pool_refresh_every: int = 1,
        pool_size: int = 256,
        layout: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_params("AdversarialTraining", {
            "ratio": (ratio, 0 < ratio <= 1, "in (0, 1]"),
            "start_epoch": (start_epoch, start_epoch >= 0, ">= 0"),
            "mode": (mode, mode in MODES, f"one of {MODES}"),
            "pool_refresh_every": (pool_refresh_every, pool_refresh_every >= 1, ">= 1"),
            "pool_size": (pool_size, pool_size >= 1, ">= 1"),
        })  # fmt: skip
        if isinstance(attack, Attack):
            _check_layout(attack, layout, "data's")
            targeted = attack.targeted
        else:  # a spec: the attack is built against the model in setup
            attack = AttackSpec.parse(attack, "attack", "AdversarialTraining")
            targeted = attack.targeted
        check_params(
            "AdversarialTraining",
            {"attack.targeted": (targeted, not targeted, "false (training clips have no target labels)")},
            "setting(s)",
        )
        self.attack_spec = attack
        self.ratio, self.start_epoch, self.mode = float(ratio), int(start_epoch), mode
        self.pool_refresh_every, self.pool_size = int(pool_refresh_every), int(pool_size)
        self.layout = layout
        self.generator = torch.Generator().manual_seed(seed)
        self.pool: dict[str, Tensor] | None = None
        self._attack: Attack | None = None

    # ---- setup -------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build the attack against ``pl_module.classifier`` on the model's layout (a given ``Attack``: check
        that its layout is the model's)."""
        data_layout = pl_module.hparams.get("layout")
        if (
            self.layout is not None
            and data_layout is not None
            and get_layout(self.layout).name != data_layout
        ):
            raise ValueError(
                f"AdversarialTraining layout {self.layout!r} differs from the model's {data_layout!r}"
            )
        layout = data_layout or self.layout
        if isinstance(self.attack_spec, Attack):
            _check_layout(self.attack_spec, layout, "model's")
            self._attack = self.attack_spec
        else:
            self._attack = self.attack_spec.build(pl_module.classifier, layout)

    def active(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) replaces clips: from ``start_epoch`` on."""
        return epoch >= self.start_epoch

    def num_replaced(self, batch_size: int) -> int:
        """Clips replaced in a batch of ``batch_size``: ``round(ratio * batch_size)``."""
        return round(self.ratio * batch_size)

    # ---- pool mode ---------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Pool mode, on the epochs that regenerate it: attack ``pool_size`` training clips (windowed without
        augmentation), a training batch at a time; under DDP each rank its share, gathered by all."""
        epoch = trainer.current_epoch
        if (
            self.mode != "pool"
            or not self.active(epoch)
            or (epoch - self.start_epoch) % self.pool_refresh_every
        ):
            return
        ds = trainer.datamodule.datasets["train"]
        rows = torch.randperm(len(ds), generator=self.generator)[: self.pool_size]
        x, y, lengths = (t.to(pl_module.device) for t in ds.batch(rows.numpy()))
        x, lengths = trainer.datamodule.window_batch(x, lengths, train=False)
        start = time.perf_counter()
        # under DDP each rank attacks its share of the pool (consecutive rows) and the shares are gathered, so
        # that every rank holds the whole pool, as one process would
        world, rank = trainer.world_size, trainer.global_rank
        per = -(-len(y) // world)
        lo, hi = min(rank * per, len(y)), min((rank + 1) * per, len(y))
        # attacked a training batch at a time: one call on the whole pool would hold every clip's activations
        # at once, which costs more per clip than batch mode's calls
        chunk = max(1, int(getattr(trainer.datamodule, "batch_size", len(y))))
        bounds = [(i, min(i + chunk, hi)) for i in range(lo, hi, chunk)]
        parts = [self._attack(x[i:j], y[i:j], lengths[i:j], attack_all=True) for i, j in bounds]
        x_adv = torch.cat([x[lo:lo], *(r.x_adv.detach() for r in parts)])  # x[lo:lo]: an empty share
        success = torch.cat([torch.zeros(0, device=y.device), *(r.success.float() for r in parts)])
        if world > 1:  # the last shares may be short or empty: padded to `per` rows, cut after the gather
            pad = per - (hi - lo)
            shares = pl_module.all_gather(
                {"x": torch.cat([x_adv, x_adv.new_zeros((pad, *x.shape[1:]))]),
                 "success": torch.cat([success, success.new_zeros(pad)])}
            )  # fmt: skip
            x_adv = shares["x"].reshape(world * per, *x.shape[1:])[: len(y)]
            success = shares["success"].reshape(-1)[: len(y)]
        self.pool = {"x": x_adv, "y": y, "lengths": lengths}
        pl_module.log_dict(
            {"train/adv_pool_success": success.mean(), "train/adv_pool_time_s": time.perf_counter() - start},
            on_step=False, on_epoch=True, batch_size=len(y),
        )  # fmt: skip
        # the clips this rank attacked, summed over the ranks: the pool size when no clip is attacked twice
        pl_module.log(
            "train/adv_pool_attacked", float(hi - lo), on_step=False, on_epoch=True, sync_dist=True,
            reduce_fx="sum", batch_size=1,
        )  # fmt: skip

    # ---- every batch -------------------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        """Replace :meth:`num_replaced` clips of ``batch``, chosen by the callback's generator, in place:
        by their attacked versions (batch mode) or by draws from the pool."""
        if not self.active(trainer.current_epoch):
            return
        x, y, lengths, _ = batch
        k = self.num_replaced(len(y))
        if k == 0:
            return
        idx = torch.randperm(len(y), generator=self.generator)[:k].to(x.device)
        logs = {"train/adv_fraction": k / len(y)}
        start = time.perf_counter()
        if self.mode == "batch":
            res = self._attack(x[idx], y[idx], lengths[idx], attack_all=True)
            x_new, y_new, len_new = res.x_adv.detach(), y[idx], lengths[idx]
            logs["train/adv_time_s"] = time.perf_counter() - start
            logs["train/adv_success"] = res.success.float().mean()
            coords, coords_new = self._attack.coordinates(x[idx]), self._attack.coordinates(x_new)
            dist = per_sample_metrics(coords, coords_new, lengths[idx], pl_module.hparams.layout)
            logs.update(
                {f"train/adv_{key}": dist[key].mean() for key in ("rms_mm", "delta_bone", "delta_angle_deg", "delta_speed")}
            )  # fmt: skip
        else:
            if self.pool is None:
                raise RuntimeError("AdversarialTraining(mode='pool'): no pool was generated for this epoch")
            draw = torch.randint(0, len(self.pool["y"]), (k,), generator=self.generator).to(x.device)
            x_new, y_new, len_new = self.pool["x"][draw], self.pool["y"][draw], self.pool["lengths"][draw]
            logs["train/adv_time_s"] = time.perf_counter() - start
        # the batch is rewritten in place, before training_step reads it
        x[idx] = x_new.to(x.dtype)
        y[idx] = y_new
        lengths[idx] = len_new
        pl_module.log_dict(logs, on_step=False, on_epoch=True, batch_size=len(y))

    # ---- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The generator's state and the pool (or None), saved in checkpoints: a resumed run goes on exactly."""
        return {"generator": self.generator.get_state(), "pool": self.pool}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.generator.set_state(state_dict["generator"])
        self.pool = state_dict["pool"]


def _check_layout(attack: Attack, layout: str | None, whose: str) -> None:
    """An attack instance must work on the layout of the clips it will be given."""
    if layout is not None and attack.layout.name != get_layout(layout).name:
        raise ValueError(f"the attack's layout {attack.layout.name!r} differs from the {whose} {layout!r}")
