"""HCN: Hierarchical Co-occurrence Network (Li et al., IJCAI 2018, "Co-occurrence Feature Learning from
Skeleton Data for Action Recognition and Detection with Hierarchical Aggregation").

Two streams (joint coordinates and their frame differences), each with point-level convolutions that treat
the coordinates as channels and then co-occurrence convolutions that treat the joints as channels, so every
filter sees all joints at once. The streams are concatenated, convolved further, and the persons are merged
by an element-wise maximum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import fold_persons
from lightning_skel.skeleton.features import to_modality
from lightning_skel.skeleton.layouts import Layout


def _stream(in_channels: int, num_joints: int, width: int, dropout: float) -> nn.Sequential:
    half = width // 2
    return nn.Sequential(
        # point level: (N*M, C, T, V)
        # no conv bias before batch norm: the norm's shift makes it redundant (its gradient is zero)
        nn.Conv2d(in_channels, width, kernel_size=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, half, kernel_size=(3, 1), padding=(1, 0), bias=False),
        nn.BatchNorm2d(half),
        # joints become channels: (N*M, V, T, half)
        _Permute(0, 3, 2, 1),
        nn.Conv2d(num_joints, half, kernel_size=3, padding=1),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(half, width, kernel_size=3, padding=1),
        nn.Dropout2d(dropout),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class _Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims).contiguous()


@MODELS.register("hcn")
class HCN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        width: int = 64,
        feature_dim: int = 256,
        dropout: float = 0.5,
    ) -> None:
        check_model_args("hcn", in_channels, num_persons, dropout, feature_dim=feature_dim, rules={
            "width": (width, width >= 2, ">= 2 (the second point-level layer has width // 2 channels)"),
        })  # fmt: skip
        super().__init__()
        self.layout = layout
        v = layout.num_joints
        # Per-channel-and-joint input normalisation, as ST-GCN's data_bn: raw coordinates in metres and their
        # frame differences differ in scale by two orders of magnitude.
        self.joint_bn = nn.BatchNorm1d(in_channels * v)
        self.motion_bn = nn.BatchNorm1d(in_channels * v)
        self.joint = _stream(in_channels, v, width, dropout)
        self.motion = _stream(in_channels, v, width, dropout)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * width, 2 * width, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(2 * width, 4 * width, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.AdaptiveMaxPool2d((4, 2)),
        )
        self.fc7 = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * width * 8, feature_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        n, m = x.shape[0], x.shape[4]
        motion = to_modality(x, self.layout, "motion")
        # persons into the batch: (N, C, T, V, M) -> (N*M, C, T, V)
        joint = fold_persons(x, self.joint_bn)
        motion = fold_persons(motion, self.motion_bn)
        h = self.fuse(torch.cat([self.joint(joint), self.motion(motion)], dim=1))
        h = self.fc7(h).view(n, m, -1)
        return h.max(dim=1).values  # persons merged by element-wise maximum

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
