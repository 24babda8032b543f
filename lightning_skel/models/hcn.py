"""HCN: Hierarchical Co-occurrence Network (Li et al., IJCAI 2018, "Co-occurrence Feature Learning from
Skeleton Data for Action Recognition and Detection with Hierarchical Aggregation").

Two streams (joint coordinates and their frame differences), each with point-level convolutions that treat
the coordinates as channels and then co-occurrence convolutions that treat the joints as channels, so every
filter sees all joints at once. The streams are concatenated and convolved further; the persons are merged
by an element-wise maximum.

Model ``hcn`` has two variants (``variant=``):

* ``"reference"`` (default, :class:`HCN`): the network of the reference implementation
  (huguyuehuhu/HCN-pytorch ``model/HCN.py``, NTU configs ``experiments/NTU-RGB-D-*/HCN0*/params.json``).
* ``"compact"`` (:class:`CompactHCN`): a smaller network for short CPU runs. Against the reference it has
  per-channel-and-joint input batch norms on both streams, batch-normalised bias-free point-level
  convolutions (conv2 ``width // 2`` wide instead of ``window``), frame differences zero-padded in the last
  frame (the reference resizes the ``T - 1`` differences back to ``T`` frames bilinearly), ceil-mode max
  pools and an adaptive max pool to a 4 x 2 map before the head (the reference floors, and max-pools by 2
  there too, so its head's size depends on ``window``), ``feature_dim=256`` by default (the reference 512),
  the persons merged after ``fc7`` (the reference merges the last convolution's maps), and PyTorch's
  default initialisation (the reference's is Glorot-uniform with zero biases).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import fold_persons
from lightning_skel.skeleton.features import to_modality
from lightning_skel.skeleton.layouts import Layout

VARIANTS = ("reference", "compact")


class HCN(nn.Module):
    """HCN, "Co-occurrence Feature Learning from Skeleton Data for Action Recognition and Detection with
    Hierarchical Aggregation" (Li et al., IJCAI 2018), as the reference implementation builds it.

    The reference is huguyuehuhu/HCN-pytorch (``model/HCN.py``). Per stream and person: ``conv1`` (1x1,
    ``width``, ReLU), ``conv2`` (3x1 over frames, ``window`` channels), the joints become the channels,
    ``conv3`` (3x3, ``width // 2``, max-pool 2), ``conv4`` (3x3, ``width``, dropout, max-pool 2). The
    motion stream sees the frame differences resized from ``T - 1`` to ``T`` frames (bilinear, as the
    reference). The streams are concatenated, then ``conv5`` (3x3, ``2 * width``) and ``conv6`` (3x3,
    ``4 * width``), each ReLU, dropout, max-pool 2. The persons' maps are merged by an element-wise maximum
    and flattened into ``fc7`` (``feature_dim``, ReLU, dropout). No batch norm; convolutions and linear
    layers start Glorot-uniform with zero biases (the reference's init). State_dict keys are the
    reference's (``conv1.0.weight`` ... ``fc7.0.weight``), its ``fc8`` being ``fc``.

    Args:
        num_classes: number of classes.
        layout: the skeleton layout (its ``num_joints`` are ``conv3``'s input channels).
        in_channels: coordinates per joint (default 3).
        num_persons: persons per clip (default 2).
        width: the reference's ``out_channel`` (default 64).
        feature_dim: ``fc7``'s width (default 512, the reference's ``256 * 2``).
        dropout: every dropout's rate (default 0.5).
        window: frames per clip, the reference's ``window_size``: ``conv2``'s width, and with ``T`` the
            size of ``fc7``'s input ``4 * width * (window // 16) ** 2`` (default 64, its NTU config HCN02;
            HCN01 has 32). At least 16.

    Shape:
        - x: ``(N, C, T, V, M)`` with ``T == window``.
        - output: ``(N, K)``; ``forward_features(x)``: ``fc7``'s output ``(N, feature_dim)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = HCN(5, get_layout("kinect20"), num_persons=1, width=8, feature_dim=16, window=16)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])

    ``HCN(60, get_layout("ntu25"))`` is the reference's NTU network, 2.65 M parameters.
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        width: int = 64,
        feature_dim: int = 512,
        dropout: float = 0.5,
        window: int = 64,
    ) -> None:
        check_model_args("hcn", in_channels, num_persons, dropout, feature_dim=feature_dim, rules={
            "width": (width, width >= 2, ">= 2 (conv3 has width // 2 channels)"),
            "window": (window, isinstance(window, int) and window >= 16,
                       "an int >= 16 (four max-pools by 2 over the frames and conv2's channels)"),
        })  # fmt: skip
        super().__init__()
        self.layout = layout
        self.window = window
        v = layout.num_joints
        half = width // 2
        for s in ("", "m"):  # the position stream's layers, then the motion stream's (conv1m ... conv4m)
            self.add_module(f"conv1{s}", nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU()))
            self.add_module(f"conv2{s}", nn.Conv2d(width, window, (3, 1), padding=(1, 0)))
            self.add_module(f"conv3{s}", nn.Sequential(nn.Conv2d(v, half, 3, padding=1), nn.MaxPool2d(2)))
            conv4 = nn.Sequential(
                nn.Conv2d(half, width, 3, padding=1), nn.Dropout2d(dropout), nn.MaxPool2d(2)
            )
            self.add_module(f"conv4{s}", conv4)
        self.conv5 = nn.Sequential(
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.Dropout2d(dropout), nn.MaxPool2d(2)
        )
        self.conv6 = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.Dropout2d(dropout), nn.MaxPool2d(2)
        )
        side = window // 16
        self.fc7 = nn.Sequential(
            nn.Linear(4 * width * side * side, feature_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.fc = nn.Linear(feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _stream(self, x: Tensor, s: str) -> Tensor:
        """One stream on ``(N*M, C, T, V)``: ``(N*M, width, T // 4, window // 4)``."""
        layer = self.get_submodule
        h = layer(f"conv2{s}")(layer(f"conv1{s}")(x))  # (N*M, window, T, V)
        h = h.permute(0, 3, 2, 1).contiguous()  # joints become channels: (N*M, V, T, window)
        return layer(f"conv4{s}")(layer(f"conv3{s}")(h))

    def forward_features(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        if t != self.window:
            raise ValueError(
                f"hcn (reference variant) was built for window={self.window} frames, got T={t}; "
                "set model.kwargs.window to data.window"
            )
        # frame differences, resized from T - 1 to T frames: (N, C * M, T - 1, V) -> (N, C * M, T, V)
        motion = (x[:, :, 1:] - x[:, :, :-1]).permute(0, 1, 4, 2, 3).reshape(n, c * m, t - 1, v)
        motion = F.interpolate(motion, size=(t, v), mode="bilinear", align_corners=False)
        motion = motion.view(n, c, m, t, v).permute(0, 2, 1, 3, 4).reshape(n * m, c, t, v)
        joint = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)  # persons into the batch
        h = torch.cat([self._stream(joint, ""), self._stream(motion, "m")], dim=1)
        h = self.conv6(self.conv5(h))
        h = h.view(n, m, *h.shape[1:]).amax(dim=1)  # persons merged by element-wise maximum
        return self.fc7(h.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


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


class CompactHCN(nn.Module):
    """A compact HCN for short CPU runs (Li et al., IJCAI 2018; the module doc lists how it differs).

    Per-channel-and-joint input batch norms (as ST-GCN's ``data_bn``: coordinates in metres and their frame
    differences differ in scale by two orders of magnitude), each stream's point-level convolutions
    batch-normalised (1x1 ``width``, 3x1 ``width // 2``), co-occurrence convolutions ``width // 2`` and
    ``width``, then ``2 * width`` and ``4 * width`` on both streams, adaptively max-pooled to 4 x 2.

    Args:
        num_classes: number of classes.
        layout: the skeleton layout.
        in_channels: coordinates per joint (default 3).
        num_persons: persons per clip (default 2).
        width: the first convolution's width (default 64).
        feature_dim: ``fc7``'s width (default 256).
        dropout: every dropout's rate (default 0.5).

    Shape:
        - x: ``(N, C, T, V, M)``, any ``T``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, feature_dim)``, ``fc7`` max-pooled over persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = CompactHCN(5, get_layout("kinect20"), num_persons=1, width=8, feature_dim=16)
        >>> net(torch.randn(2, 3, 20, 20, 1)).shape
        torch.Size([2, 5])
    """

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


@MODELS.register("hcn")
def build_hcn(
    num_classes: int, layout: Layout, variant: str = "reference", window: int = 64, **kwargs: Any
) -> nn.Module:
    """Model ``hcn``: :class:`HCN` or :class:`CompactHCN`.

    Args:
        num_classes, layout: as both networks take them.
        variant: ``"reference"`` (default, :class:`HCN`) or ``"compact"`` (:class:`CompactHCN`).
        window: the reference's clip length (default 64); the compact network takes any ``T``.
        **kwargs: the network's other arguments.

    Example:
        >>> from lightning_skel.models import build_model
        >>> net = build_model("hcn", 27, "kinect20", num_persons=1, variant="compact", width=32)
        >>> type(net).__name__, sum(p.numel() for p in net.parameters())
        ('CompactHCN', 398891)
    """
    if variant == "reference":
        return HCN(num_classes, layout, window=window, **kwargs)
    if variant == "compact":
        return CompactHCN(num_classes, layout, **kwargs)
    raise ValueError(f"hcn: variant must be one of {VARIANTS}, got {variant!r}")
