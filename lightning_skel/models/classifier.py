"""The classifier an attack sees: input preprocessing (normalisation, modality) composed with a network.

Keeping the preprocessing inside the module means every consumer (training, attacks, adversarial training,
the emotion term) feeds raw coordinates ``(N, C, T, V, M)`` and differentiates through the same function.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_skel.data.pipelines import build_pipeline
from lightning_skel.data.transforms import TEMPORAL, fit_window
from lightning_skel.skeleton.features import (
    MODALITIES,
    check_modality,
    join_score,
    normalize,
    split_score,
    to_modality,
)
from lightning_skel.skeleton.layouts import get_layout


class Classifier(nn.Module):
    """The classifier an attack sees: ``net(modality(normalize(x)))``, or ``net(modality(pipeline(x)))``.

    The preprocessing lives inside the module, so every consumer feeds raw coordinates and differentiates
    through the same function. A pipeline reproduces a published model's input (docs/METHOD.md section 1).

    Args:
        net: the network, ``(N, C, T, V, M) -> (N, K)`` logits.
        layout: the skeleton layout name of the clips.
        normalize: centre on the root of the first frame and rotate to the canonical facing
            (``"center_rotate"``, default), also scale to unit height (``"full"``), or ``"none"``.
        modality: ``"joint"`` (default), ``"bone"``, ``"bone_agcn"`` (2s-AGCN's bone stream, ``ntu25``) or
            ``"motion"`` (:func:`~lightning_skel.skeleton.features.to_modality`).
        pipeline: an official input pipeline's name (:data:`~lightning_skel.data.pipelines.PIPELINES`) in
            place of ``normalize`` (which must then be ``"none"``); default none.
        pipeline_kwargs: its options.
        score_channel: the input's last channel is the keypoint score of 2D data (default false):
            ``x (N, C + 1, T, V, M)``, coordinates then score. Normalisation and modality act on the
            coordinates only (a bone or motion entry keeps its joint's score); a pipeline, which picks
            frames and persons, takes the whole input.

    Shape:
        - x: ``(N, C, T, V, M)`` raw coordinates in metres.
        - output: ``(N, K)``; with a pipeline of several samplings per clip, the mean of their logits.
          ``forward_features(x)``: the network's ``(N, D)``, averaged likewise.

    Example:
        >>> from lightning_skel.models import build_model
        >>> clf = Classifier(build_model("stgcn", 5, "kinect20", num_persons=1, channels=8), "kinect20")
        >>> clf(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])
    """

    NORMALIZE = ("none", "center_rotate", "full")

    def __init__(
        self,
        net: nn.Module,
        layout: str,
        normalize: str = "center_rotate",
        modality: str = "joint",
        pipeline: str | None = None,
        pipeline_kwargs: dict[str, Any] | None = None,
        score_channel: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(score_channel, bool):
            raise TypeError(f"score_channel must be true or false, got {score_channel!r}")
        if normalize not in self.NORMALIZE:
            raise ValueError(f"normalize must be one of {self.NORMALIZE}, got {normalize!r}")
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if pipeline is not None and normalize != "none":
            raise ValueError(
                f"pipeline {pipeline!r} is the whole input normalisation: normalize must be 'none', got "
                f"{normalize!r}"
            )
        self.net = net
        self.layout = get_layout(layout)
        check_modality(self.layout, modality)
        self.normalize = normalize
        self.modality = modality
        self.score_channel = score_channel
        self.pipeline = (
            None if pipeline is None else build_pipeline(pipeline, self.layout, **(pipeline_kwargs or {}))
        )
        if score_channel and self.pipeline is not None and not self.pipeline.takes_score:
            raise ValueError(
                f"pipeline {pipeline!r} computes on every input channel (it would move the keypoint score as a "
                "coordinate): it cannot take score_channel=true"
            )

    @property
    def samples(self) -> int:
        """Rows per clip the network sees (their logits are averaged)."""
        return 1 if self.pipeline is None else self.pipeline.samples

    def preprocess(self, x: Tensor) -> Tensor:
        if self.pipeline is not None:
            x = self.pipeline(x)
        coords, score = split_score(x, self.score_channel)
        if self.pipeline is None and self.normalize != "none":
            coords = normalize(coords, self.layout, scale=self.normalize == "full")
        return join_score(to_modality(coords, self.layout, self.modality), score)

    def _mean(self, out: Tensor, n: int) -> Tensor:
        return out if self.samples == 1 else out.view(n, self.samples, *out.shape[1:]).mean(1)

    def forward_features(self, x: Tensor) -> Tensor:
        return self._mean(self.net.forward_features(self.preprocess(x)), x.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        return self._mean(self.net(self.preprocess(x)), x.shape[0])


class WindowedClassifier(nn.Module):
    """A classifier with its evaluation window in front: the whole input function of a checkpoint.

    ``forward(x, lengths=None)`` brings each clip's ``lengths`` valid frames (default: all ``T``) to
    ``window`` frames, as the data module does in evaluation, and classifies them. An attack perturbs the
    windowed clips (:meth:`apply_window`) that ``classifier`` takes, as attack.py does.

    Args:
        classifier: the model behind the window, ``(N, C, window, V, M) -> (N, K)``.
        window: frames the classifier sees, at least 2.
        temporal: ``"resample"`` or ``"pad"`` (:func:`~lightning_skel.data.transforms.fit_window`).
        layout: the skeleton layout's name.
        class_names: the ``K`` class names (default none).

    Shape:
        - x: ``(N, C, T, V, M)``, any ``T``; lengths: ``(N,)`` integers in ``[1, T]``.
        - output: ``(N, K)``.

    Example:
        >>> from lightning_skel.models import build_model
        >>> net = build_model("stgcn", 5, "kinect20", num_persons=1, channels=8)
        >>> model = WindowedClassifier(net, window=16, temporal="resample", layout="kinect20")
        >>> model(torch.randn(2, 3, 40, 20, 1), lengths=torch.tensor([40, 25])).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        classifier: nn.Module,
        window: int,
        temporal: str,
        layout: str,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if temporal not in TEMPORAL or int(window) < 2:
            raise ValueError(
                f"window must be >= 2 and temporal one of {TEMPORAL}, got {window}, {temporal!r}"
            )
        self.classifier = classifier
        self.window, self.temporal, self.layout = int(window), temporal, get_layout(layout).name
        self.class_names = None if class_names is None else list(class_names)

    @property
    def score_channel(self) -> bool:
        """Whether the classifier's input ends with the keypoint-score channel."""
        return bool(getattr(self.classifier, "score_channel", False))

    def apply_window(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The clips ``(N, C, window, V, M)`` the classifier sees, and their valid frames ``(N,)``."""
        if x.dim() != 5:
            raise ValueError(f"x must be (N, C, T, V, M), got shape {tuple(x.shape)}")
        n, t = x.shape[0], x.shape[2]
        if lengths is None:
            lengths = torch.full((n,), t, dtype=torch.long, device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device)
        ok = lengths.shape == (n,) and not lengths.is_floating_point()
        if not ok or not bool(((lengths >= 1) & (lengths <= t)).all()):
            raise ValueError(
                f"lengths must be (N,) = ({n},) integers in [1, T = {t}] (the valid frames of each clip), got "
                f"shape {tuple(lengths.shape)}, values {lengths.flatten()[:10].tolist()}"
            )
        return fit_window(x, lengths, self.window, self.temporal)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.classifier(self.apply_window(x, lengths)[0])
