"""Checkpoint files: read without running code from them, written without ever truncating one in place,
and the classifiers (one, a score fusion of several, the emotion recognizer) rebuilt from them.

Every checkpoint the project reads (``ckpt``, ``emotion_ckpt``, ``init_from``, ``ckpt_path``) is unpickled
with ``weights_only=True``. The project's own checkpoints hold only what that allows (tensors, numbers,
strings, containers), so there is no allow-list of further types: a file that names any other global is
refused, with the file and the globals named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from lightning_skel.models import ScoreFusion
from lightning_skel.systems.classification import ClassificationSystem
from lightning_skel.utils import atomic_open


class CheckpointError(ValueError):
    """A checkpoint that is not what the run needs (wrong kind, wrong layout, unreadable, unsafe)."""


def _unsafe_globals(path: Path) -> list[str]:
    """The globals beyond torch's safe ones that a zip checkpoint's pickle names ([] for other files)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        return []


def load_checkpoint(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """Unpickle checkpoint ``path`` with ``weights_only=True``, or raise a :class:`CheckpointError` that
    starts with ``what`` (the config key the file came from) and the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    unsafe = _unsafe_globals(path)
    if unsafe:
        raise CheckpointError(
            f"{what} {path}: refused, it needs {', '.join(unsafe)} to load, and unpickling that can run code "
            "from the file; a lightning_skel checkpoint holds only tensors, numbers, strings and containers"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a non-checkpoint file; report them as one
        raise CheckpointError(
            f"{what} {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from e


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reads and writes, for ``Trainer(plugins=[...])``.

    Reads (``ckpt_path`` resume, testing a checkpoint) go through :func:`load_checkpoint`, whatever
    ``weights_only`` Lightning passes. Writes go to a temporary file beside the target, fsynced and renamed
    onto it: Lightning's own stage the file in ``$TMPDIR`` and, when that is another filesystem, copy it over
    the target in place, where a kill or a full disk leaves it truncated."""

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, "ckpt_path", map_location)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def read_checkpoint(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A ``ClassificationSystem`` checkpoint, read safely (:func:`load_checkpoint`), or a clear
    :class:`CheckpointError`."""
    ckpt = load_checkpoint(path, what)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    needed = {"model", "num_classes", "layout"}
    if not isinstance(hp, dict) or not needed <= set(hp) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{what} {path}: not a lightning_skel classifier checkpoint (no ClassificationSystem hyper-parameters "
            f"{sorted(needed)})"
        )
    return ckpt


def load_classifier(path: str | os.PathLike, what: str = "ckpt") -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's ``Classifier`` (eval mode, on CPU) and its hyper-parameters. Built from the one safe
    read of the file (Lightning's ``load_from_checkpoint`` would unpickle it again, and restore the RNG)."""
    ckpt = read_checkpoint(path, what)
    hp = dict(ckpt["hyper_parameters"])
    return _rebuild(ckpt, hp, path, what), hp


def _rebuild(ckpt: dict[str, Any], hp: dict[str, Any], path: str | os.PathLike, what: str) -> nn.Module:
    """The classifier ``ClassificationSystem(**hp)`` holds, with the checkpoint's weights, in eval mode."""
    try:
        system = ClassificationSystem(**hp)
        system.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # model_kwargs that do not fit its weights
        detail = " ".join(str(e).split())
        raise CheckpointError(
            f"{what} {path}: its hyper-parameters do not rebuild its classifier (model {hp['model']!r}, "
            f"model_kwargs {hp.get('model_kwargs')!r}): {type(e).__name__}: {detail[:300]}"
        ) from e
    return system.classifier.eval()


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


def load_emotion(path: str | os.PathLike, layout: str) -> nn.Module:
    """The emotion recognizer of checkpoint ``path`` applied to clips of ``layout``."""
    ckpt = read_checkpoint(path, "emotion_ckpt")
    hp = ckpt["hyper_parameters"]
    if hp["model"] != "emotion":
        raise CheckpointError(
            f"emotion_ckpt {path}: a {hp['model']!r} classifier, not an emotion recognizer ('emotion')"
        )
    if hp["layout"] not in ("gait16", layout):
        raise CheckpointError(
            f"emotion_ckpt {path}: trained on layout {hp['layout']!r}, which cannot take {layout!r} clips "
            "(an emotion recognizer must be trained on gait16 or on the classifier's layout)"
        )
    # the recognizer maps its input onto gait16 itself and its weights do not depend on the layout: built
    # for the clips' layout, it reads them as they are
    model = _rebuild(ckpt, {**hp, "layout": layout}, path, "emotion_ckpt")
    for p in model.parameters():
        p.requires_grad_(False)
    return model
