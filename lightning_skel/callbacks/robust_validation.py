"""Robust validation: accuracy under attack on a fixed validation subset, logged beside the clean metrics.

On the validation epochs where ``(epoch + 1) % every_n_epochs == 0`` (the rule of ``ModelCheckpoint``'s
``every_n_epochs``, so that a checkpoint selected on robust accuracy is only ever compared on fresh values),
the first ``num_samples`` validation clips (the validation loader is not shuffled, so the subset is the same
every time; under DDP each rank takes its share of its own shard) are attacked by each configured attack
against the current weights, and ``val/robust_acc_<name>`` is the fraction of the subset still classified
correctly: clips the model already gets wrong count as broken. ``val/clean_acc_subset`` is the clean accuracy
of the same clips, the ceiling of every robust accuracy, and ``val/robust_clips`` their number. Counts are
summed over ranks before the division.

A minimum-distance attack such as ADMM fools nearly every clip given room, so its robust accuracy without a
budget is about 0 for any model and selects nothing. ``budgets`` gives an attack a size budget, e.g.
``{"admm": {"linf_mm": 20}}`` (PGD's 2 cm ball): a clip it fools counts as broken only if its adversarial
clip is within the budget (``attacks.metrics.robust_within``, sizes from ``per_sample_metrics``).

Validation runs under ``torch.inference_mode``; the attacks need input gradients, so they run with inference
mode off on copies of the batch (the model's parameters are ordinary tensors).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_skel.attacks import Attack
from lightning_skel.attacks.metrics import check_budgets, per_sample_metrics, robust_within
from lightning_skel.attacks.spec import AttackSpec
from lightning_skel.utils import check_params

log = logging.getLogger(__name__)


class RobustValidation(pl.Callback):
    """Accuracy under attack on a fixed validation subset, logged beside the clean metrics (see the module).

    Args:
        attacks: the attacks, each an attack spec (an entry of configs/attack, a mapping with ``name`` and its
            settings, or a registered name; :class:`~lightning_skel.attacks.spec.AttackSpec`), untargeted: a
            mapping from the name its metric takes (``val/robust_acc_<name>``) to its spec, a null entry being
            off, or a list named by each spec's attack. Default: ADMM and AutoAttack at their classes' defaults (AutoAttack: 2 cm L-infinity ball).
        every_n_epochs: validation epochs between measurements, >= 1 (default 1): those where
            ``(epoch + 1) % every_n_epochs == 0``.
        num_samples: validation clips attacked, the first ones, >= 1 (default 64); each rank its share.
        budgets: per attack name, one distance metric of
            :data:`~lightning_skel.attacks.metrics.DISTANCE_METRICS` and its size in that metric's unit, e.g.
            ``{"admm": {"linf_mm": 20}}``: a fooled clip counts as broken only within it (default none).

    Validation batches are ``(x (B, C, T, V, M), y (B,), lengths (B,), index (B,))`` in metres; it logs
    ``val/robust_acc_<name>``, ``val/clean_acc_subset``, ``val/robust_clips`` and ``val/robust_time_s``.

    Example:

    >>> cb = RobustValidation({"pgd": {"name": "pgd", "eps": 0.02, "steps": 20}}, every_n_epochs=5)
    >>> list(cb.specs), cb.specs["pgd"].kwargs, cb.every_n_epochs, cb.num_samples
    (['pgd'], {'eps': 0.02, 'steps': 20}, 5, 64)
    """

    def __init__(
        self,
        attacks: Mapping[str, str | Mapping[str, Any] | None]
        | Sequence[str | Mapping[str, Any]]
        | None = None,
        every_n_epochs: int = 1,
        num_samples: int = 64,
        budgets: Mapping[str, Mapping[str, float] | None] | None = None,
    ) -> None:
        super().__init__()
        check_params("RobustValidation", {
            "every_n_epochs": (every_n_epochs, every_n_epochs >= 1, ">= 1"),
            "num_samples": (num_samples, num_samples >= 1, ">= 1"),
        })  # fmt: skip
        self.specs = _specs(("admm", "autoattack") if attacks is None else attacks)
        self.budgets: dict[str, tuple[str, float]] = {}
        for name, budget in (budgets or {}).items():
            if budget is None:
                continue
            if name not in self.specs:
                raise ValueError(
                    f"RobustValidation: budgets[{name!r}]: {name!r} is not one of the attacks {sorted(self.specs)}"
                )
            items = list(budget.items()) if isinstance(budget, Mapping) else []
            if len(items) != 1:
                raise ValueError(
                    f"RobustValidation: budgets[{name!r}] must name one distance metric and its size "
                    f"(e.g. {{linf_mm: 20}}), got {budget}"
                )
            check_budgets({items[0][0]: [items[0][1]]}, f"RobustValidation: budgets[{name!r}]")
            self.budgets[name] = (items[0][0], float(items[0][1]))
        self.every_n_epochs, self.num_samples = int(every_n_epochs), int(num_samples)
        self._attacks: dict[str, Attack] = {}
        self._due = False
        self._seen = 0
        self._counts: dict[str, int] = {}
        self._spent = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build each attack against ``pl_module.classifier`` on the model's layout."""
        layout = pl_module.hparams.layout
        self._attacks = {name: spec.build(pl_module.classifier, layout) for name, spec in self.specs.items()}

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether this validation epoch measures robust accuracy (never the sanity check)."""
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def quota(self, trainer: pl.Trainer) -> int:
        """The clips this rank attacks: its share of ``num_samples``."""
        return math.ceil(self.num_samples / trainer.world_size)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the epoch's counts."""
        self._due = self.due(trainer)
        self._seen, self._spent = 0, 0.0
        self._counts = {"clean": 0, **dict.fromkeys(self._attacks, 0)}

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs,
        batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Attack the batch's first clips until this rank's :meth:`quota` is reached; count the clean and the
        robust ones."""
        take = self.quota(trainer) - self._seen
        if not self._due or take <= 0:
            return
        start = time.perf_counter()
        with torch.inference_mode(False):
            x, y, lengths = (t[:take].clone() for t in batch[:3])
            with torch.no_grad():
                pred = pl_module.classifier(x).argmax(1)
            self._counts["clean"] += int((pred == y).sum())
            for name, attack in self._attacks.items():
                res = attack(x, y, lengths)
                if name in self.budgets:
                    size, budget = self.budgets[name]
                    coords, coords_adv = attack.coordinates(x), attack.coordinates(res.x_adv)
                    sizes = per_sample_metrics(coords, coords_adv, lengths, attack.layout)[size]
                    self._counts[name] += int(robust_within(y, pred, res.pred_adv, sizes, budget).sum())
                else:
                    self._counts[name] += int((res.pred_adv == y).sum())
        self._seen += len(y)
        self._spent += time.perf_counter() - start

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sum the counts over ranks and log the accuracies."""
        if not self._due:
            return
        names = ["clean", *self._attacks]
        counts = torch.tensor([self._seen, *(self._counts[n] for n in names)], dtype=torch.float64)
        counts = trainer.strategy.reduce(counts.to(pl_module.device), reduce_op="sum").cpu()
        total = float(counts[0])
        if total == 0:
            log.warning("RobustValidation: the validation set is empty; no robust accuracy this epoch")
            return
        metrics = {"val/robust_clips": total, "val/clean_acc_subset": float(counts[1]) / total}
        metrics.update(
            {f"val/robust_acc_{n}": float(c) / total for n, c in zip(names[1:], counts[2:], strict=True)}
        )
        metrics["val/robust_time_s"] = self._spent
        # already summed over ranks: every rank logs the same values
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)


def _specs(attacks: Mapping[str, Any] | Sequence[Any]) -> dict[str, AttackSpec]:
    """The attacks of :class:`RobustValidation` by the name their metrics take: a mapping's keys (a null
    entry is left out), or for a list each spec's attack name."""
    if isinstance(attacks, Mapping):
        named = {k: v for k, v in attacks.items() if v is not None}
    elif isinstance(attacks, Sequence) and not isinstance(attacks, str):
        named = {}
        for spec in attacks:
            name = AttackSpec.parse(spec, "attacks[]", "RobustValidation").name
            if name in named:
                raise ValueError(
                    f"RobustValidation: attacks: {name!r} twice in the list; name each one in a mapping "
                    f"({{{name}: ..., {name}_2: ...}}), the names their metrics take"
                )
            named[name] = spec
    else:
        raise TypeError(
            f"RobustValidation: attacks must be a mapping or a list of attack specs, got {attacks!r}"
        )
    if not named:
        raise ValueError("RobustValidation: attacks is empty; give at least one registered attack")
    specs = {k: AttackSpec.parse(v, f"attacks.{k}", "RobustValidation") for k, v in named.items()}
    check_params(
        "RobustValidation",
        {f"attacks.{k}.targeted": (s.targeted, not s.targeted, "false (validation clips have no target labels)")
         for k, s in specs.items()},
        "setting(s)",
    )  # fmt: skip
    return specs
