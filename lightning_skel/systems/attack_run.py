"""An attack run over a data split: load checkpoints, attack batch by batch, write shards, merge.

Results are written per batch under ``out_dir/shards/`` as they finish (atomically), so a run that is killed
and started again with the same command continues where it stopped and ends with the same files as an
uninterrupted run. Each shard records the run it belongs to (the fingerprint of the run's spec, which holds
the checkpoints' content hashes) and its samples; both are checked before a rerun attacks and again on
merge. Under several processes (Lightning Fabric: ``trainer.strategy=ddp``), batch ``b`` belongs to rank
``b % world_size``: every sample is attacked exactly once, and rank 0 merges the shards.
"""

from __future__ import annotations

import hashlib
import inspect
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
from lightning_skel.checkpoints import CheckpointError, load_checkpoint
from lightning_skel.models import ScoreFusion
from lightning_skel.models.hcn import legacy_model_kwargs
from lightning_skel.progress import ClipProgress
from lightning_skel.skeleton.features import split_score, to_gait16
from lightning_skel.systems.classification import ClassificationSystem
from lightning_skel.utils import check_params, write_json, write_npz

log = logging.getLogger(__name__)

# the defaults a checkpoint that predates a setting is read with
_SYSTEM_DEFAULTS = {
    k: p.default
    for k, p in inspect.signature(ClassificationSystem.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def read_checkpoint(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A ``ClassificationSystem`` checkpoint, read safely (:func:`load_checkpoint`), or a clear
    :class:`CheckpointError`. Its hyper-parameters are complete: a setting the checkpoint predates has
    ``ClassificationSystem``'s default (what building the system from it gives), and an ``hcn`` checkpoint
    from before its variants gets ``variant="compact"``."""
    ckpt = load_checkpoint(path, what)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    needed = {"model", "num_classes", "layout"}
    if not isinstance(hp, dict) or not needed <= set(hp) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{what} {path}: not a lightning_skel classifier checkpoint (no ClassificationSystem hyper-parameters "
            f"{sorted(needed)})"
        )
    hp = {**_SYSTEM_DEFAULTS, **hp}
    if hp["model"] == "hcn":  # saved before hcn had variants: the compact network, named so
        hp["model_kwargs"] = legacy_model_kwargs(hp.get("model_kwargs") or {}, ckpt["state_dict"])
    ckpt["hyper_parameters"] = hp
    return ckpt


def load_classifier(path: str | os.PathLike, what: str = "ckpt") -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's ``Classifier`` (eval mode, on CPU) and its hyper-parameters. Built from the one safe
    read of the file (Lightning's ``load_from_checkpoint`` would unpickle it again, and restore the RNG)."""
    ckpt = read_checkpoint(path, what)
    hp = dict(ckpt["hyper_parameters"])
    try:
        system = ClassificationSystem(**hp)
        system.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # model_kwargs that do not fit its weights
        detail = " ".join(str(e).split())
        raise CheckpointError(
            f"{what} {path}: its hyper-parameters do not rebuild its classifier (model {hp['model']!r}, "
            f"model_kwargs {hp.get('model_kwargs')!r}): {type(e).__name__}: {detail[:300]}"
        ) from e
    return system.classifier.eval(), hp


# what the streams of a score fusion must share: the clips each sees are windowed once, as the first
# checkpoint's data says, and their scores are added class by class; one input, with or without the
# keypoint-score channel
FUSION_KEYS = ("layout", "num_classes", "class_names", "data_name", "window", "score_channel")


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
    ``forward`` gives emotion logits, ``forward_features`` phi (docs/METHOD.md section 2)."""

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

    @property
    def key(self) -> str:
        """The run's fingerprint, recorded in the manifest and in every shard."""
        return fingerprint(self.spec)

    def check_out_dir(self, index: Tensor) -> None:
        """Refuse an out_dir that holds another run's shards, and any shard that is unreadable, of another run
        or not of the samples ``index`` puts in its batch; then record this run's fingerprint. Without a
        manifest the shards' own records decide."""
        manifest = self.shard_dir / "manifest.json"
        if manifest.is_file():
            try:
                theirs = json.loads(manifest.read_text())
            except (ValueError, OSError) as e:
                raise ValueError(
                    f"attack manifest {manifest} is unreadable ({type(e).__name__}: {e}); delete it (the shards "
                    "record their run themselves)"
                ) from e
            if theirs.get("fingerprint") != self.key:
                spec = theirs.get("spec") or {}
                differs = sorted(k for k in {*spec, *self.spec} if spec.get(k) != self.spec.get(k))
                raise ValueError(
                    f"out_dir {self.out_dir} holds shards of another attack run (fingerprint {theirs.get('fingerprint')}, "
                    f"this run {self.key}; the run differs in {', '.join(differs) or 'its fingerprint'}); choose "
                    f"another out_dir or delete {self.shard_dir}"
                )
        for b in range(self.num_batches(len(index))):
            if self.shard_path(b).is_file():
                self.read_shard(b, index, ("run", "index"))
        if not manifest.is_file():
            write_json(manifest, {"fingerprint": self.key, "spec": self.spec})

    def shard_path(self, b: int) -> Path:
        return self.shard_dir / f"batch_{b:06d}.npz"

    def read_shard(self, b: int, index: Tensor, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Shard ``b``'s arrays (``keys``, or all), checked to be this run's and to hold the samples ``index``
        puts in batch ``b``; a :class:`ValueError` naming the shard file otherwise."""
        path = self.shard_path(b)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in (keys or f.files) if k in f.files}
        except Exception as e:  # numpy and zipfile raise many types for a damaged file; report them as one
            raise ValueError(
                f"attack shard {path} is unreadable ({type(e).__name__}: {e}); delete it to recompute its batch"
            ) from e
        run = str(arrays["run"]) if "run" in arrays else None
        if run != self.key:
            raise ValueError(
                f"attack shard {path} belongs to another attack run (run {run}, this run {self.key}); choose "
                f"another out_dir or delete {self.shard_dir}"
            )
        want = index[b * self.batch_size : (b + 1) * self.batch_size].cpu().numpy()
        got = arrays.get("index")
        if got is None or not np.array_equal(got, want):
            raise ValueError(
                f"attack shard {path} holds samples {_head(got)} where batch {b} of this run has {_head(want)}; "
                "delete it to recompute its batch"
            )
        return arrays

    def num_batches(self, n: int) -> int:
        return (n + self.batch_size - 1) // self.batch_size

    def batches(self, n: int, rank: int = 0, world: int = 1) -> dict[int, slice]:
        """Rank ``rank``'s batches of ``n`` clips: batch id to its rows."""
        bs = self.batch_size
        return {
            b: slice(b * bs, min((b + 1) * bs, n)) for b in range(self.num_batches(n)) if b % world == rank
        }

    def run(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor,
        index: Tensor,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        progress: ClipProgress | None = None,
    ) -> list[int]:
        """Attack this rank's batches that have no shard yet; return the batch ids attacked now. ``progress``
        counts the clips as they finish (those of reused shards first, with :meth:`ClipProgress.skip`)."""
        self.classifier.to(device)
        if self.emotion is not None:
            self.emotion.to(device)
        done_now = []
        mine = self.batches(len(y), rank, world)
        todo = [b for b in mine if not self.shard_path(b).is_file()]
        if len(todo) < len(mine):
            reused = sum(mine[b].stop - mine[b].start for b in mine if b not in todo)
            who = f"rank {rank}: " if world > 1 else ""
            log.info(
                "%sresumed: reused %d of %d shards (%d clips) in %s",
                who, len(mine) - len(todo), len(mine), reused, self.shard_dir,
            )  # fmt: skip
            if progress is not None:
                progress.skip(reused)
        for b in todo:
            sl = mine[b]
            self._attack_batch(
                b, x[sl].to(device), y[sl].to(device), lengths[sl].to(device), index[sl].to(device),
                None if progress is None else progress.advance,
            )  # fmt: skip
            done_now.append(b)
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

    def _attack_batch(self, b: int, x, y, lengths, index, on_clips_done=None) -> None:
        attack = self.build(b)
        attack.on_clips_done = on_clips_done
        target = (
            targets_for(y, index, self.num_classes, self.seed) if self.targeted else torch.full_like(y, -1)
        )
        # the attack labels the clean clips and attacks only those the classifier gets right
        res = attack(x, y, lengths, target if self.targeted else None)
        pred_clean, pred_adv = res.pred_clean, res.pred_adv
        success, attacked, grad_evals = res.success, res.attacked, res.grad_evals
        # shards hold coordinates; a score channel, which the attack returns unchanged, is the shard's score
        x_adv, score = split_score(res.x_adv, attack.score_channel)
        x = attack.coordinates(x)
        metrics = per_sample_metrics(x, x_adv, lengths, self.layout, self.emotion)
        arrays = {
            "index": index, "x": x, "x_adv": x_adv, "y": y, "target": target, "lengths": lengths,
            "pred_clean": pred_clean, "pred_adv": pred_adv, "success": success, "attacked": attacked,
            "grad_evals": grad_evals,
            **({} if score is None else {"score": score[:, 0]}),
            **{f"m_{k}": v for k, v in metrics.items()},
        }  # fmt: skip
        shard = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
        write_npz(self.shard_path(b), {**shard, "run": np.array(self.key)})

    def merge(self, index: Tensor) -> dict[str, np.ndarray]:
        """All shards of the samples ``index`` in sample order, as arrays; a missing shard, or one that
        :meth:`read_shard` refuses, is an error."""
        batches = range(self.num_batches(len(index)))
        missing = [b for b in batches if not self.shard_path(b).is_file()]
        if missing:
            raise RuntimeError(f"attack shards missing for batches {missing[:10]} in {self.shard_dir}")
        parts = []
        for b in batches:
            part = self.read_shard(b, index)
            del part["run"]
            if parts and set(part) != set(parts[0]):
                raise ValueError(
                    f"attack shard {self.shard_path(b)} holds arrays {sorted(part)}, batch 0's "
                    f"{sorted(parts[0])}; delete it to recompute its batch"
                )
            parts.append(part)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _head(a: np.ndarray | None, k: int = 8) -> str:
    """The first ``k`` entries of an index array, for an error message."""
    return "none" if a is None else f"{a[:k].tolist()}{' ...' if a.size > k else ''}"


def _accepted(attack_name: str) -> set[str]:
    import inspect

    from lightning_skel.attacks.base import ATTACKS

    return set(inspect.signature(ATTACKS.get(attack_name).__init__).parameters)
