"""An attack run over a data split: load checkpoints, attack batch by batch, write shards, merge.

Results are written per batch under ``out_dir/shards/`` as they finish (atomically), so a run that is killed
and started again with the same command continues where it stopped and ends with the same files as an
uninterrupted run. Under several processes (Lightning Fabric: ``trainer.strategy=ddp``), batch ``b`` belongs
to rank ``b % world_size``: every sample is attacked exactly once, and rank 0 merges the shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightning_skel.attacks import build_attack
from lightning_skel.attacks.metrics import per_sample_metrics
from lightning_skel.models import ScoreFusion
from lightning_skel.skeleton.features import to_gait16
from lightning_skel.systems.classification import ClassificationSystem
from lightning_skel.utils import check_params, write_json, write_npz

log = logging.getLogger(__name__)

SHARD_KEYS = (
    "index",
    "x",
    "x_adv",
    "y",
    "target",
    "lengths",
    "pred_clean",
    "pred_adv",
    "success",
    "attacked",
    "grad_evals",
)


class CheckpointError(ValueError):
    """A checkpoint that is not what the run needs (wrong kind, wrong layout, unreadable)."""


def read_hparams(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The hyper-parameters of a ``ClassificationSystem`` checkpoint, or a clear :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a non-checkpoint file; report them as one
        raise CheckpointError(
            f"{what} {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from e
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    needed = {"model", "num_classes", "layout"}
    if not isinstance(hp, dict) or not needed <= set(hp) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{what} {path}: not a lightning_skel classifier checkpoint (no ClassificationSystem hyper-parameters "
            f"{sorted(needed)})"
        )
    return dict(hp)


def load_classifier(path: str | os.PathLike, what: str = "ckpt") -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's ``Classifier`` (eval mode, on CPU) and its hyper-parameters."""
    hp = read_hparams(path, what)
    try:
        system = ClassificationSystem.load_from_checkpoint(path, map_location="cpu")
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # model_kwargs that do not fit its weights
        detail = " ".join(str(e).split())
        raise CheckpointError(
            f"{what} {path}: its hyper-parameters do not rebuild its classifier (model {hp['model']!r}, "
            f"model_kwargs {hp.get('model_kwargs')!r}): {type(e).__name__}: {detail[:300]}"
        ) from e
    return system.classifier.eval(), hp


# what the streams of a score fusion must share: the clips each sees are windowed once, as the first
# checkpoint's data says, and their scores are added class by class
FUSION_KEYS = ("layout", "num_classes", "class_names", "data_name", "window")


def load_classifiers(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    what: str = "ckpt",
) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier of one checkpoint, or the late fusion of several (2s-AGCN: the joint and the bone
    stream, each a checkpoint of its own), as one model: ``sum_s weights[s] * stream_s(x)``, weights 1 by
    default. Returns the model (eval mode, on CPU) and the hyper-parameters of the first checkpoint, with
    ``model`` naming every stream (``"agcn+agcn"``).

    Streams that do not share :data:`FUSION_KEYS` are refused with a :class:`CheckpointError` naming both
    files; ``weights`` must give one weight per checkpoint."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise CheckpointError(f"{what}: no checkpoint given")
    if weights is not None and len(weights) != len(paths):
        raise ValueError(f"fusion_weights: {len(weights)} weights for {len(paths)} checkpoints ({what})")
    loaded = [load_classifier(p, what) for p in paths]
    if len(loaded) == 1:
        if weights is not None:
            raise ValueError(f"fusion_weights weigh the streams of several checkpoints; {what} names one")
        return loaded[0]
    first = loaded[0][1]
    for path, (_, hp) in zip(paths[1:], loaded[1:], strict=True):
        for key in FUSION_KEYS:
            if hp.get(key) != first.get(key):
                raise CheckpointError(
                    f"cannot fuse {path} with {paths[0]}: {key} {hp.get(key)!r} != {first.get(key)!r}"
                )
    fused = ScoreFusion([m for m, _ in loaded], weights).eval()
    return fused, {**first, "model": "+".join(h["model"] for _, h in loaded)}


class EmotionFeatures(nn.Module):
    """The emotion recognizer seen from another layout: maps ``source_layout`` onto ``gait16`` first.
    ``forward`` gives emotion logits, ``forward_features`` phi (METHOD.md section 2)."""

    def __init__(self, emotion: nn.Module, source_layout: str, emotion_layout: str) -> None:
        super().__init__()
        self.emotion, self.source_layout, self.emotion_layout = emotion, source_layout, emotion_layout

    def _map(self, x: Tensor) -> Tensor:
        return x if self.source_layout == self.emotion_layout else to_gait16(x, self.source_layout)

    def forward(self, x: Tensor) -> Tensor:
        return self.emotion(self._map(x))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.emotion.forward_features(self._map(x))


def load_emotion(path: str | os.PathLike, layout: str) -> EmotionFeatures:
    """The emotion recognizer of checkpoint ``path`` applied to clips of ``layout``."""
    model, hp = load_classifier(path, "emotion_ckpt")
    if hp["model"] != "emotion":
        raise CheckpointError(
            f"emotion_ckpt {path}: a {hp['model']!r} classifier, not an emotion recognizer ('emotion')"
        )
    if hp["layout"] not in ("gait16", layout):
        raise CheckpointError(
            f"emotion_ckpt {path}: trained on layout {hp['layout']!r}, which cannot take {layout!r} clips "
            "(an emotion recognizer must be trained on gait16 or on the classifier's layout)"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    return EmotionFeatures(model, layout, hp["layout"]).eval()


def fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def targets_for(y: Tensor, index: Tensor, num_classes: int, seed: int) -> Tensor:
    """A target label != y per sample, fixed by the sample's index and the seed (independent of batching)."""
    offset = ((index * 7919 + seed * 104729) % (num_classes - 1)) + 1
    return (y + offset) % num_classes


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size under 1 (clips per attack call and per shard) with a clear error."""
    check_params(
        "attack run",
        {"batch_size": (batch_size, batch_size >= 1, ">= 1 (clips per attack call and per shard)")},
    )


@dataclass
class AttackRun:
    """Attacks ``x`` (already windowed) in batches and writes shards under ``out_dir/shards``."""

    classifier: nn.Module
    layout: str
    attack_name: str
    attack_kwargs: dict[str, Any]
    out_dir: Path
    spec: dict[str, Any]  # what the run is: a fingerprint guards out_dir against another run's shards
    batch_size: int = 32
    targeted: bool = False
    seed: int = 0
    emotion: nn.Module | None = None
    num_classes: int = 0

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)

    @property
    def shard_dir(self) -> Path:
        return self.out_dir / "shards"

    def check_out_dir(self) -> None:
        """Refuse an out_dir that holds another run's shards; record this run's fingerprint."""
        manifest = self.shard_dir / "manifest.json"
        key = fingerprint(self.spec)
        if manifest.is_file():
            theirs = json.loads(manifest.read_text())
            if theirs.get("fingerprint") != key:
                raise ValueError(
                    f"out_dir {self.out_dir} holds shards of another attack run (fingerprint {theirs.get('fingerprint')}, "
                    f"this run {key}); choose another out_dir or delete {self.shard_dir}"
                )
        else:
            write_json(manifest, {"fingerprint": key, "spec": self.spec})

    def shard_path(self, b: int) -> Path:
        return self.shard_dir / f"batch_{b:06d}.npz"

    def num_batches(self, n: int) -> int:
        return (n + self.batch_size - 1) // self.batch_size

    def run(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor,
        index: Tensor,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        progress=None,
    ) -> list[int]:
        """Attack this rank's batches that have no shard yet; return the batch ids attacked now."""
        self.classifier.to(device)
        if self.emotion is not None:
            self.emotion.to(device)
        done_now = []
        mine = [b for b in range(self.num_batches(len(y))) if b % world == rank]
        todo = [b for b in mine if not self.shard_path(b).is_file()]
        if len(todo) < len(mine):
            log.info(
                "rank %d: resuming, %d of %d batches already done", rank, len(mine) - len(todo), len(mine)
            )
        for b in todo:
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            self._attack_batch(
                b, x[sl].to(device), y[sl].to(device), lengths[sl].to(device), index[sl].to(device)
            )
            done_now.append(b)
            if progress is not None:
                progress()
        return done_now

    def build(self, batch: int = 0):
        """The attack for batch ``batch`` (seeded per batch, so results do not depend on the rank)."""
        kwargs = dict(self.attack_kwargs)
        accepted = _accepted(self.attack_name)
        if "seed" in accepted:
            kwargs["seed"] = self.seed + batch
        if self.emotion is not None and "emotion_model" in accepted:
            kwargs["emotion_model"] = self.emotion
        return build_attack(self.attack_name, self.classifier, self.layout, targeted=self.targeted, **kwargs)

    def _attack_batch(self, b: int, x, y, lengths, index) -> None:
        attack = self.build(b)
        with torch.no_grad():
            pred_clean = self.classifier(x).argmax(1)
        target = (
            targets_for(y, index, self.num_classes, self.seed) if self.targeted else torch.full_like(y, -1)
        )
        attacked = pred_clean == y  # only clips the classifier gets right are attacked
        x_adv = x.clone()
        pred_adv = pred_clean.clone()
        grad_evals = torch.zeros_like(y)
        success = torch.zeros_like(attacked)
        if attacked.any():
            res = attack(
                x[attacked], y[attacked], lengths[attacked], target[attacked] if self.targeted else None
            )
            x_adv[attacked] = res.x_adv
            pred_adv[attacked] = res.pred_adv
            grad_evals[attacked] = res.grad_evals
            success[attacked] = res.success
        metrics = per_sample_metrics(x, x_adv, lengths, self.layout, self.emotion)
        arrays = {
            "index": index, "x": x, "x_adv": x_adv, "y": y, "target": target, "lengths": lengths,
            "pred_clean": pred_clean, "pred_adv": pred_adv, "success": success, "attacked": attacked,
            "grad_evals": grad_evals,
            **{f"m_{k}": v for k, v in metrics.items()},
        }  # fmt: skip
        write_npz(self.shard_path(b), {k: v.detach().cpu().numpy() for k, v in arrays.items()})

    def merge(self, n: int) -> dict[str, np.ndarray]:
        """All shards in sample order, as arrays; a missing shard is an error."""
        missing = [b for b in range(self.num_batches(n)) if not self.shard_path(b).is_file()]
        if missing:
            raise RuntimeError(f"attack shards missing for batches {missing[:10]} in {self.shard_dir}")
        parts = []
        for b in range(self.num_batches(n)):
            with np.load(self.shard_path(b), allow_pickle=False) as f:
                parts.append({k: f[k] for k in f.files})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _accepted(attack_name: str) -> set[str]:
    import inspect

    from lightning_skel.attacks.base import ATTACKS

    return set(inspect.signature(ATTACKS.get(attack_name).__init__).parameters)
