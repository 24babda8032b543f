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
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightning_skel.attacks import build_attack
from lightning_skel.attacks.metrics import per_sample_metrics
from lightning_skel.progress import ClipProgress
from lightning_skel.skeleton.features import split_score
from lightning_skel.utils import check_params, write_json, write_npz

log = logging.getLogger(__name__)


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
