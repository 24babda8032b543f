"""ST-GCN: Spatial Temporal Graph Convolutional Networks (Yan, Xiong, Lin, AAAI 2018, "Spatial Temporal Graph
Convolutional Networks for Skeleton-Based Action Recognition").

Each block is a graph convolution over the spatial configuration partition (self / centripetal /
centrifugal, :func:`~lightning_skel.models.graph.spatial_partition`) with a learnable edge-importance mask,
followed by a temporal convolution (kernel 9) and a residual connection. The blocks here are shared with
the emotion recognizer (:mod:`lightning_skel.models.emotion`, STEP is an ST-GCN on ``gait16``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_skel.models.graph import GRAPHS, official_ntu_partition, spatial_partition
from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.skeleton.layouts import Layout


def stage_plan(channels: int, num_blocks: int) -> list[tuple[int, int]]:
    """``(out_channels, stride)`` of each block of the ST-GCN / 2s-AGCN backbone.

    Three stages of widths ``channels``, ``2 channels``, ``4 channels`` hold 40 %, 30 %, 30 % of the
    blocks; the first block of stages two and three has temporal stride 2.

    Args:
        channels: the first stage's width, at least 1.
        num_blocks: the blocks, at least 1.

    Example:
        >>> stage_plan(64, 10)  # the papers' network: 64 x4, 128 x3, 256 x3
        [(64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]
    """
    if channels < 1 or num_blocks < 1:
        raise ValueError(f"channels and num_blocks must be >= 1, got {channels}, {num_blocks}")
    first, second = int(0.4 * num_blocks + 0.5), int(0.7 * num_blocks + 0.5)
    plan = []
    for i in range(num_blocks):
        stage = 0 if i < first else 1 if i < second else 2
        start = i in (first, second) and i > 0
        plan.append((channels * 2**stage, 2 if start else 1))
    return plan


class TemporalConv(nn.Module):
    """A ``(kernel, 1)`` convolution over frames with temporal ``stride`` and "same" zero padding.

    The padding is explicit (``F.pad``, then an unpadded convolution: the same operator). The CPU backward
    of ``Conv2d`` with an implicit padding comparable to ``T`` corrupts the heap in torch 2.13, which
    STEP's kernel 75 meets on every clip shorter than 75 frames.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        kernel: the temporal kernel, odd.
        stride: the temporal stride (default 1).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> conv = TemporalConv(3, 8, kernel=9, stride=2)
        >>> conv(torch.randn(2, 3, 15, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"temporal kernel must be odd, got {kernel}")
        self.pad = (kernel - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), (stride, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 0, self.pad, self.pad)))


class STGCNBlock(nn.Module):
    """One ST-GCN unit (Yan et al., AAAI 2018; yysijie/st-gcn ``net/st_gcn.py``).

    ``gcn``: a 1x1 convolution to ``K * C_out`` channels, then the sum over the K partition subsets of
    ``A_k * importance_k`` applied over joints. ``tcn``: BN, ReLU, a ``(temporal_kernel, 1)`` convolution
    with the stride, BN, dropout. Then the residual and a ReLU.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        graph: the partition ``(K, V, V)``, ``A[k, i, j]`` the weight of joint ``j`` for joint ``i``.
        stride: the temporal stride (default 1).
        temporal_kernel: odd (default 9).
        dropout: in ``tcn`` (default 0).
        residual: the identity where the shape allows, else a strided 1x1 convolution + BN; ``False``:
            none (default true).
        edge_importance: a learnable mask ``importance`` on the graph (default true).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> from lightning_skel.models.graph import spatial_partition
        >>> block = STGCNBlock(3, 8, spatial_partition("kinect20"), stride=2)
        >>> block(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        graph: np.ndarray,
        stride: int = 1,
        temporal_kernel: int = 9,
        dropout: float = 0.0,
        residual: bool = True,
        edge_importance: bool = True,
    ) -> None:
        super().__init__()
        a = torch.as_tensor(graph, dtype=torch.float32)
        self.register_buffer("A", a)  # (K, V, V), A[k, i, j]: weight of joint j in the update of joint i
        self.importance = nn.Parameter(torch.ones_like(a)) if edge_importance else None
        self.num_subsets = a.shape[0]
        self.gcn = nn.Conv2d(in_channels, out_channels * self.num_subsets, kernel_size=1)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            TemporalConv(out_channels, out_channels, temporal_kernel, stride),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    @property
    def adjacency(self) -> Tensor:
        """The partition as used: ``A * importance``, ``(K, V, V)``."""
        return self.A if self.importance is None else self.A * self.importance

    def graph_conv(self, x: Tensor) -> Tensor:
        """``sum_k (A_k * importance_k)`` applied over joints to the k-th ``C_out`` channels of ``gcn(x)``:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``.

        Computed in the other order, which the linearity of both maps allows. The K subsets are applied to
        the input over joints first (one matrix product, joints to K x joints). One 1x1 convolution with
        ``gcn``'s weight regrouped by subset then maps the ``C_in * K`` channels to ``C_out``. ``gcn``'s
        bias, which the original order sends through the graph too, is added as its image
        ``sum_k b_k (row sums of A_k)``. The original order needs ``gcn``'s ``K * C_out`` channels moved next
        to the joints (a copy forward and backward) and ``C_out / C_in`` times the work (docs/RESULTS.md).
        Same parameters, same values up to rounding (tests/test_models.py)."""
        n, c_in, t, v = x.shape
        a = self.adjacency  # (K, V, V)
        k = self.num_subsets
        # one product (N C_in T, V) x (V, K V), M[j, k V + i] = A[k, i, j], rather than K small ones
        xa = x.reshape(-1, v).matmul(a.permute(2, 0, 1).reshape(v, k * v))
        xa = xa.view(n, c_in, t, k, v).transpose(2, 3).reshape(n, c_in * k, t, v)  # channels (c_in, k)
        w = self.gcn.weight.view(k, -1, c_in)  # (K, C_out, C_in)
        c_out = w.shape[1]
        h = F.conv2d(xa, w.permute(1, 2, 0).reshape(c_out, c_in * k, 1, 1))
        if self.gcn.bias is not None:
            h = h + torch.einsum("kc,ki->ci", self.gcn.bias.view(k, c_out), a.sum(2)).unsqueeze(1)
        return h

    def forward(self, x: Tensor) -> Tensor:
        h = self.tcn(self.graph_conv(x))
        if self.residual is not None:
            h = h + self.residual(x)
        return self.relu(h)


def st_gcn_blocks(
    in_channels: int,
    plan: list[tuple[int, int]],
    graph: np.ndarray,
    temporal_kernel: int = 9,
    dropout: float = 0.0,
    edge_importance: bool = True,
) -> nn.Sequential:
    """The ST-GCN block stack: one :class:`STGCNBlock` per entry of ``plan``.

    The first block has no residual and no dropout, as in the official ``st_gcn.py``.

    Args:
        in_channels: the first block's ``C_in``.
        plan: ``(out_channels, stride)`` per block (:func:`stage_plan`).
        graph, temporal_kernel, dropout, edge_importance: as :class:`STGCNBlock` takes them.

    Example:
        >>> from lightning_skel.models.graph import spatial_partition
        >>> blocks = st_gcn_blocks(3, [(8, 1), (16, 2)], spatial_partition("kinect20"))
        >>> blocks(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 16, 8, 20])
    """
    blocks, c = [], in_channels
    for i, (out, stride) in enumerate(plan):
        blocks.append(
            STGCNBlock(
                c,
                out,
                graph,
                stride=stride,
                temporal_kernel=temporal_kernel,
                dropout=0.0 if i == 0 else dropout,
                residual=i > 0,
                edge_importance=edge_importance,
            )
        )
        c = out
    return nn.Sequential(*blocks)


def fold_persons(x: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """ST-GCN's input stage: ``bn`` over the ``V * C`` channels, persons folded into the batch.

    Args:
        x: ``(N, C, T, V, M)``.
        bn: ``BatchNorm1d(V * C)`` (``data_bn``).

    Returns:
        ``(N * M, C, T, V)``, person-minor (row ``n * M + m``).

    Example:
        >>> fold_persons(torch.randn(2, 3, 16, 20, 2), nn.BatchNorm1d(3 * 20)).shape
        torch.Size([4, 3, 16, 20])
    """
    n, c, t, v, m = x.shape
    h = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)  # (N*M, V*C, T)
    h = bn(h)
    return h.view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()  # (N*M, C, T, V)


@MODELS.register("stgcn")
class STGCN(nn.Module):
    """ST-GCN, "Spatial Temporal Graph Convolutional Networks for Skeleton-Based Action Recognition".

    Yan, Xiong, Lin, AAAI 2018; official code yysijie/st-gcn (``net/st_gcn.py``). The defaults are the
    paper's network: 10 blocks, 64-128-256 channels, temporal kernel 9, dropout 0.5 (the official NTU
    configs), edge importance on. The fixed graph is a buffer of every block, so a checkpoint carries it.

    Args:
        num_classes: the classes ``K``.
        layout: the skeleton layout.
        in_channels: coordinates per joint ``C`` (default 3).
        num_persons: persons ``M`` (default 2; folded into the batch, so the weights do not depend on it).
        channels: the first stage's width (default 64).
        num_blocks: the blocks (default 10, :func:`stage_plan`).
        temporal_kernel: odd (default 9).
        dropout: in every block but the first (default 0.5).
        edge_importance: learnable edge masks (default true).
        graph_center: the partition's centre, a joint name (default the layout's root); ``graph="layout"``
            only.
        graph: ``"layout"`` (default): the spatial partition of the layout's bones. ``"official_ntu"``: the
            official NTU graph (:func:`~lightning_skel.models.graph.official_ntu_partition`), which its
            published checkpoints hold; the network then computes what ``net/st_gcn.py`` computes.

    Shape:
        - x: ``(N, C, T, V, M)``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, 4 * channels)``, the last block average-pooled
          over frames and joints, then averaged over persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = STGCN(5, get_layout("kinect20"), num_persons=1, channels=8, num_blocks=3)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        channels: int = 64,
        num_blocks: int = 10,
        temporal_kernel: int = 9,
        dropout: float = 0.5,
        edge_importance: bool = True,
        graph_center: str | None = None,
        graph: str = "layout",
    ) -> None:
        check_model_args("stgcn", in_channels, num_persons, dropout, temporal_kernel, channels=channels,
                         num_blocks=num_blocks, rules={"graph": (graph, graph in GRAPHS, f"one of {GRAPHS}")})  # fmt: skip
        super().__init__()
        self.layout = layout
        plan = stage_plan(channels, num_blocks)
        self.data_bn = nn.BatchNorm1d(in_channels * layout.num_joints)
        if graph == "layout":
            partition = spatial_partition(layout, center=graph_center)
        else:
            partition = official_ntu_partition("stgcn", layout, graph_center)
        self.blocks = st_gcn_blocks(
            in_channels,
            plan,
            partition,
            temporal_kernel=temporal_kernel,
            dropout=dropout,
            edge_importance=edge_importance,
        )
        self.feature_dim = plan[-1][0]
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        n, m = x.shape[0], x.shape[4]
        h = self.blocks(fold_persons(x, self.data_bn))  # (N*M, C', T', V)
        return h.mean(dim=(2, 3)).view(n, m, -1).mean(1)  # (N, C'), persons averaged

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
