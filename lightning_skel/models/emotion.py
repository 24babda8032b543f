"""The emotion recognizer of docs/METHOD.md section 7, after STEP (Bhattacharya, Mittal, Chandra, Randhavane, Bera,
Manocha, AAAI 2020, "STEP: Spatial Temporal Graph Convolutional Networks for Emotion Perception from Gaits").

A shallow ST-GCN on ``gait16`` (the blocks of :mod:`lightning_skel.models.stgcn`; STEP: 32, 64, 64 channels,
temporal strides 1, 2, 2, temporal kernel 75) pooled over frames and joints, concatenated with an MLP
embedding of the affective features (:func:`~lightning_skel.skeleton.affective.affective_features`), then a
penultimate layer and the head over the four perceived emotions (happy, angry, sad, neutral).

The model normalises its own input, so it reads sequences of any layout: ``layout`` is the layout of the
data it is given (the registry passes the data's layout), and :meth:`EmotionNet.to_gait` maps the first
person onto ``gait16`` and normalises it (root-centred, canonical facing, unit height) before the network
sees it. Its ``Classifier`` therefore uses ``normalize: none``.

``forward_features(x)`` is phi of docs/METHOD.md section 2: the penultimate features ``(N, feature_dim)`` (the
input of ``fc``, after its ReLU) of a frozen recognizer, differentiable with respect to ``x`` through the
mapping, the normalisation and the affective features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.models.graph import spatial_partition
from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import fold_persons, st_gcn_blocks
from lightning_skel.skeleton.affective import AFFECTIVE_FEATURES, affective_features, normalized_gait16
from lightning_skel.skeleton.layouts import GAIT16_JOINTS, Layout, get_layout


def emotion_plan(channels: int, num_blocks: int) -> list[tuple[int, int]]:
    """``(out_channels, stride)`` per block: ``channels`` then ``2 channels``, stride 2 at blocks 1 and 2.

    Args:
        channels: the first block's width, at least 1.
        num_blocks: the blocks, at least 1.

    Example:
        >>> emotion_plan(32, 3)  # STEP's network
        [(32, 1), (64, 2), (64, 2)]
    """
    if channels < 1 or num_blocks < 1:
        raise ValueError(f"channels and num_blocks must be >= 1, got {channels}, {num_blocks}")
    return [(channels if i == 0 else 2 * channels, 2 if i in (1, 2) else 1) for i in range(num_blocks)]


@MODELS.register("emotion")
class EmotionNet(nn.Module):
    """The emotion recognizer after STEP, "STEP: Spatial Temporal Graph Convolutional Networks for Emotion
    Perception from Gaits" (Bhattacharya et al., AAAI 2020; docs/METHOD.md section 7).

    Only the first person is used. The weights do not depend on ``layout``: a recognizer trained on
    Emotion-Gait (``gait16``) loads into one built for ``ntu25``.

    Args:
        num_classes: the emotions ``K`` (4: happy, angry, sad, neutral).
        layout: the layout of the data it is given (mapped onto ``gait16`` inside).
        in_channels: ``C``, 3 or 2 for 2D data (default 3).
        num_persons: persons ``M`` of the input (default 2; the network does not depend on it).
        channels: the first block's width (default 32, STEP's; :func:`emotion_plan`).
        num_blocks: the ST-GCN blocks (default 3).
        temporal_kernel: odd (default 75, STEP's).
        affective_dim: the width of the affective features' embedding (default 32).
        feature_dim: the penultimate features' width (default 96).
        dropout: in the blocks and before the penultimate layer (default 0).

    Shape:
        - x: ``(N, C, T, V, M)`` in ``layout``.
        - output: ``(N, K)``; ``forward_features(x)``: phi, ``(N, feature_dim)``;
          ``to_gait(x)``: ``(N, C, T, 16, 1)``; ``gait_features(to_gait(x)) == forward_features(x)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = EmotionNet(4, get_layout("kinect20"), channels=4, temporal_kernel=9, feature_dim=8)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape, net.forward_features(torch.randn(2, 3, 16, 20, 1)).shape
        (torch.Size([2, 4]), torch.Size([2, 8]))
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        channels: int = 32,
        num_blocks: int = 3,
        temporal_kernel: int = 75,
        affective_dim: int = 32,
        feature_dim: int = 96,
        dropout: float = 0.0,
    ) -> None:
        check_model_args("emotion", in_channels, num_persons, dropout, temporal_kernel, channels=channels,
                         num_blocks=num_blocks, affective_dim=affective_dim, feature_dim=feature_dim)  # fmt: skip
        super().__init__()
        self.layout = layout
        self.num_persons = num_persons
        gait = get_layout("gait16")
        plan = emotion_plan(channels, num_blocks)
        self.data_bn = nn.BatchNorm1d(in_channels * len(GAIT16_JOINTS))
        self.blocks = st_gcn_blocks(in_channels, plan, spatial_partition(gait), temporal_kernel, dropout)
        num_affective = len(AFFECTIVE_FEATURES)
        self.affective = nn.Sequential(
            nn.BatchNorm1d(num_affective),  # angles (rad), distances (heights) and speeds differ in scale
            nn.Linear(num_affective, affective_dim),
            nn.ReLU(inplace=True),
        )
        self.penultimate = nn.Sequential(
            nn.BatchNorm1d(plan[-1][0] + affective_dim),  # STEP's data_bn2 over the concatenation
            nn.Dropout(dropout),
            nn.Linear(plan[-1][0] + affective_dim, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = feature_dim
        self.fc = nn.Linear(feature_dim, num_classes)

    def to_gait(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(N, C, T, V, M)`` in ``self.layout`` -> normalised first-person gait16 ``(N, C, T, 16, 1)``."""
        return normalized_gait16(x, self.layout, lengths)

    def gait_features(self, g: Tensor) -> Tensor:
        """phi of a normalised gait16 batch ``(N, C, T, 16, 1)``: ``(N, feature_dim)``."""
        n = g.shape[0]
        h = self.blocks(fold_persons(g, self.data_bn))  # (N, C', T', 16)
        graph = h.mean(dim=(2, 3)).view(n, -1)  # (N, C')
        affect = self.affective(affective_features(g))  # (N, affective_dim)
        return self.penultimate(torch.cat([graph, affect], dim=1))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.gait_features(self.to_gait(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
