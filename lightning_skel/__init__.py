"""lightning_skel: skeleton-based action recognition under adversarial attack, on PyTorch Lightning."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning_skel.models.classifier import WindowedClassifier

__version__ = "0.1.0"
__all__ = ["load_classifier"]


def load_classifier(
    path: str | os.PathLike | Sequence[str | os.PathLike], weights: Sequence[float] | None = None
) -> WindowedClassifier:
    """A trained checkpoint's classifier with its whole input function, evaluation window included.

    Args:
        path: a checkpoint written by train.py, or a list of them trained on the same data, fused as one
            classifier by adding their scores (2s-AGCN's joint and bone streams).
        weights: one weight per fused checkpoint (default 1 each).

    Returns:
        A :class:`~lightning_skel.models.WindowedClassifier` in eval mode on the CPU (``.to(device)`` moves
        it). ``model(x, lengths)`` takes raw clips ``x (N, C, T, V, M)`` of any length T, in metres, and
        their valid frames ``lengths (N,)`` (default: all T), brings them to the checkpoint's window as
        training and attack.py did (``model.window`` frames, ``model.temporal``) and returns the logits
        ``(N, K)`` over ``model.class_names``. ``model.apply_window(x, lengths)`` gives the windowed clips
        and ``model.classifier`` the classifier that takes them, the one to attack. Where
        ``model.score_channel`` (a checkpoint trained with ``data.score_channel``), the last channel of ``x``
        is the keypoint score, which attacks leave unchanged. Attack the windowed clips:
        ``build_attack("admm", model.classifier, model.layout)(xw, y, lw)``.

    Raises:
        CheckpointError (a ValueError): the file is missing, unreadable or not a classifier checkpoint.

    Example:
        >>> import torch
        >>> from lightning_skel.systems import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # untrained, saved as train.py does
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> model = load_classifier("sgn.ckpt")
        >>> x, lengths = torch.zeros(4, 3, 40, 20, 2), torch.tensor([40, 30, 20, 10])  # any T
        >>> xw, lw = model.apply_window(x, lengths)  # resampled to the checkpoint's 16 frames
        >>> model(x, lengths).shape, xw.shape, model.temporal
        (torch.Size([4, 2]), torch.Size([4, 3, 16, 20, 2]), 'resample')
    """
    import inspect

    from lightning_skel.checkpoints import load_classifiers
    from lightning_skel.data.datamodule import SkeletonDataModule
    from lightning_skel.models.classifier import WindowedClassifier

    classifier, hp = load_classifiers(path, weights)
    temporal = (hp.get("data_config") or {}).get("temporal")
    if temporal is None:  # the data config left it to the data module's default
        temporal = inspect.signature(SkeletonDataModule).parameters["temporal"].default
    return WindowedClassifier(classifier, hp["window"], temporal, hp["layout"], hp.get("class_names")).eval()
