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
    """A checkpoint that is not what the run needs (wrong kind, wrong layout, unreadable, unsafe). Its message
    starts with the config key the file came from and the path; train.py and attack.py print it as one line.

    Example:

    >>> try:
    ...     load_checkpoint("runs/x/checkpoints/last.ckpt", "ckpt")
    ... except CheckpointError as e:
    ...     print(e)
    ckpt runs/x/checkpoints/last.ckpt: no such file
    """


def _unsafe_globals(path: Path) -> list[str]:
    """The globals beyond torch's safe ones that a zip checkpoint's pickle names ([] for other files)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        return []


def load_checkpoint(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """Unpickle the checkpoint file ``path`` with ``weights_only=True`` (no code from the file runs).

    Args:
        path: the file.
        what: the config key it came from (``ckpt``, ``emotion_ckpt``, ``init_from``, ``ckpt_path``), which
            starts every error message.
        map_location: where tensors go, as ``torch.load`` takes it (default the CPU).

    Returns:
        What the file holds (for a Lightning checkpoint, a dict with ``state_dict`` and
        ``hyper_parameters``).

    Raises:
        CheckpointError: the file is missing, names globals beyond torch's safe ones, or is no readable
            PyTorch checkpoint.

    Example:
        >>> torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, "last.ckpt")
        >>> load_checkpoint("last.ckpt", "ckpt")["state_dict"]["w"]
        tensor([1., 1.])
        >>> torch.save({"where": Path("x")}, "unsafe.ckpt")  # a pickled object: refused
        >>> load_checkpoint("unsafe.ckpt", "ckpt")
        Traceback (most recent call last):
        lightning_skel.checkpoints.CheckpointError: ckpt unsafe.ckpt: refused, it needs pathlib... to load, ...
    """
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
    """Lightning's checkpoint reads and writes, for ``Trainer(plugins=[...])``; it takes no arguments.

    Reads (``ckpt_path`` resume, testing a checkpoint) go through :func:`load_checkpoint`, whatever
    ``weights_only`` Lightning passes. Writes go to a temporary file beside the target, fsynced and renamed
    onto it: Lightning's own stage the file in ``$TMPDIR`` and, when that is another filesystem, copy it over
    the target in place, where a kill or a full disk leaves it truncated.

    Example:

    >>> import torch
    >>> io = SafeCheckpointIO()  # pl.Trainer(plugins=[io]) reads and writes through it
    >>> io.save_checkpoint({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, "last.ckpt")
    >>> ckpt = io.load_checkpoint("last.ckpt")
    >>> ckpt["epoch"], ckpt["state_dict"]["w"].shape
    (3, torch.Size([2]))
    """

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        """The checkpoint ``path`` read by :func:`load_checkpoint` (``weights_only`` is always true)."""
        return load_checkpoint(path, "ckpt_path", map_location)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (``storage_options`` is refused: local files only)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def read_checkpoint(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A classifier checkpoint (``train.py`` or ``models.convert`` wrote it), read by :func:`load_checkpoint`.

    Args:
        path: the file.
        what: the config key it came from, which starts every error message.

    Returns:
        The checkpoint dict, with ``state_dict`` and the ``ClassificationSystem`` ``hyper_parameters`` as
        saved (at least ``model``, ``num_classes`` and ``layout``).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or the file is not a classifier checkpoint (a bare
            ``state_dict``, another project's file).

    Example:
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # an untrained SGN
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> hp = read_checkpoint("sgn.ckpt", "ckpt")["hyper_parameters"]
        >>> hp["model"], hp["layout"], hp["num_classes"]
        ('sgn', 'kinect20', 2)
    """
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
    """The classifier of a checkpoint, rebuilt from its hyper-parameters with its weights.

    Built from the one safe read of the file (Lightning's ``load_from_checkpoint`` would unpickle it again,
    and restore the random state).

    Args:
        path: a classifier checkpoint (:func:`read_checkpoint`).
        what: the config key it came from (default ``ckpt``), which starts every error message.

    Returns:
        The :class:`~lightning_skel.models.Classifier` in eval mode on the CPU, ``(N, C, T, V, M)`` clips in
        metres (the checkpoint's window; ``C + 1`` channels with ``score_channel``) to ``(N, K)`` logits, and
        the checkpoint's hyper-parameters.

    Raises:
        CheckpointError: as :func:`read_checkpoint`, or the hyper-parameters do not rebuild a network that
            takes the weights.

    Example:
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # an untrained SGN
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> model, hp = load_classifier("sgn.ckpt")
        >>> model(torch.zeros(4, 3, 16, 20, 2)).shape  # x (N, C, T, V, M), windowed as hp["window"] says
        torch.Size([4, 2])
    """
    ckpt = read_checkpoint(path, what)
    hp = dict(ckpt["hyper_parameters"])
    return _rebuild(ckpt, hp, path, what), hp


def _rebuild(ckpt: dict[str, Any], hp: dict[str, Any], path: str | os.PathLike, what: str) -> nn.Module:
    """The classifier ``ClassificationSystem(**hp)`` holds, with the checkpoint's weights, in eval mode; a
    :class:`CheckpointError` naming ``what`` and ``path`` when they do not fit."""
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
    """The classifier of one checkpoint, or the late fusion of several as one model (2s-AGCN: the joint and
    the bone stream, each a checkpoint of its own): ``sum_s weights[s] * stream_s(x)``.

    Args:
        paths: one classifier checkpoint, or a list of them trained on the same data (they must share
            :data:`FUSION_KEYS`).
        weights: one score weight per checkpoint (default 1 each); only for several checkpoints.
        what: the config key they came from (default ``ckpt``), which starts every error message.

    Returns:
        The model in eval mode on the CPU, ``(N, C, T, V, M)`` to ``(N, K)`` logits, and the
        hyper-parameters of the first checkpoint with ``model`` naming every stream (``"agcn+agcn"``).

    Raises:
        CheckpointError: as :func:`load_classifier`, no checkpoint given, or streams that differ in a key
            of :data:`FUSION_KEYS` (both files named).
        ValueError: ``weights`` not one per checkpoint, or given for one checkpoint.

    Example:
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # an untrained SGN
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> model, hp = load_classifiers(["sgn.ckpt", "sgn.ckpt"], weights=[1.0, 0.5])  # as [joint, bone]
        >>> hp["model"], model(torch.zeros(4, 3, 16, 20, 2)).shape  # the weighted sum of the streams' logits
        ('sgn+sgn', torch.Size([4, 2]))
    """
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
    """The emotion recognizer of a checkpoint (model ``emotion``, docs/METHOD.md section 7), built for clips
    of ``layout``, frozen: phi of the ADMM attack's emotion term and of the emotion metrics.

    Args:
        path: a checkpoint of the emotion recognizer, trained on ``gait16`` or on ``layout``.
        layout: the layout of the clips it will read (the attacked classifier's).

    Returns:
        The recognizer's :class:`~lightning_skel.models.Classifier` in eval mode on the CPU, parameters
        without gradients: ``forward(x (N, C, T, V, M)) -> (N, 4)`` emotion logits and
        ``forward_features(x) -> (N, feature_dim)`` phi, ``x`` in ``layout``, in metres.

    Raises:
        CheckpointError: as :func:`read_checkpoint`, a checkpoint of another model, or one trained on a
            third layout.

    Example:
        >>> net = ClassificationSystem("emotion", 4, "gait16", window=16)  # an untrained recognizer
        >>> torch.save({"hyper_parameters": dict(net.hparams), "state_dict": net.state_dict()}, "emo.ckpt")
        >>> emotion = load_emotion("emo.ckpt", "ntu25")
        >>> emotion.forward_features(torch.zeros(2, 3, 16, 25, 2)).shape  # phi of ntu25 clips in metres
        torch.Size([2, 96])
    """
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
