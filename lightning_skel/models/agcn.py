"""2s-AGCN: Two-Stream Adaptive Graph Convolutional Networks (Shi, Zhang, Cheng, Lu, CVPR 2019,
"Two-Stream Adaptive Graph Convolutional Networks for Skeleton-Based Action Recognition").

The adaptive graph convolution sums, over the K = 3 spatial partition subsets, ``A_k + B_k + C_k``: the fixed
partition of the layout (:func:`~lightning_skel.models.graph.spatial_partition`), a learned graph ``B_k``
(initialised to zero) and a data-dependent graph ``C_k`` (embedded gaussian: the softmax over joints of
``theta(x)^T phi(x)``). One network is trained per stream: the ``joint`` or the ``bone`` modality, which the
:class:`~lightning_skel.models.Classifier` computes; :class:`~lightning_skel.models.ensemble.ScoreFusion`
adds the two streams' scores.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from lightning_skel.models.graph import GRAPHS, official_ntu_partition, spatial_partition
from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import TemporalConv, stage_plan
from lightning_skel.skeleton.layouts import Layout


def _temporal_unit(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    """2s-AGCN's ``unit_tcn``: a ``(kernel, 1)`` convolution with temporal stride, then BN."""
    conv = TemporalConv(in_channels, out_channels, kernel, stride)
    nn.init.kaiming_normal_(conv.conv.weight, mode="fan_out")
    nn.init.zeros_(conv.conv.bias)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class AdaptiveGraphConv(nn.Module):
    """2s-AGCN's adaptive graph convolution ``unit_gcn`` (Shi et al., CVPR 2019, eq. 3).

    For each subset k, ``C_k[n, i, j] = softmax_j(theta_k(x)_i . phi_k(x)_j / (C_e T))`` with 1x1 embeddings
    of ``C_e = C_out / embed_ratio`` channels. The output is
    ``ReLU(BN(sum_k W_k x (A_k + B_k + C_k)^T) + down(x))``. The K subset convolutions ``W_k`` are one 1x1
    convolution over the K aggregated inputs stacked on the channel axis (the same linear map). Their K
    biases stay apart (``subset_bias``, as the official ``conv_d`` list holds them) and are added summed.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        graph: the fixed partition ``A``, ``(K, V, V)``.
        embed_ratio: ``C_out / C_e`` (default 4).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``; :meth:`graphs`: ``(N, K, V, V)``.

    Example:
        >>> from lightning_skel.models.graph import spatial_partition
        >>> gcn = AdaptiveGraphConv(3, 8, spatial_partition("kinect20", normalize="subset"))
        >>> gcn(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 16, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, graph: np.ndarray, embed_ratio: int = 4) -> None:
        super().__init__()
        a = torch.as_tensor(graph, dtype=torch.float32)
        self.num_subsets = k = a.shape[0]
        self.register_buffer("A", a)  # (K, V, V) fixed partition
        self.B = nn.Parameter(torch.zeros_like(a))  # learned graph, initialised to zero (paper, eq. 3)
        embed = max(out_channels // embed_ratio, 1)
        self.theta = nn.Conv2d(in_channels, k * embed, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, k * embed, kernel_size=1)
        self.conv = nn.Conv2d(k * in_channels, out_channels, kernel_size=1, bias=False)
        self.subset_bias = nn.Parameter(torch.zeros(k, out_channels))
        self.bn = nn.BatchNorm2d(out_channels)
        if in_channels == out_channels:
            self.down = nn.Identity()
        else:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)
        # The official initialisation: kaiming for the embeddings, N(0, 2 / (C_out C_in K)) for the subset
        # convolutions, and the output BN's scale at 1e-6 so that every block starts close to its residual.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / (out_channels * in_channels * k)))
        nn.init.constant_(self.bn.weight, 1e-6)
        nn.init.zeros_(self.bn.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a state_dict without subset_bias holds the K biases summed, as conv.bias
        bias = state_dict.pop(prefix + "conv.bias", None)
        if bias is not None and prefix + "subset_bias" not in state_dict:
            state_dict[prefix + "subset_bias"] = torch.cat(
                [bias[None], bias.new_zeros(self.num_subsets - 1, *bias.shape)]
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def graphs(self, x: Tensor) -> Tensor:
        """The per-sample graphs ``A + B + C``: ``(N, C_in, T, V) -> (N, K, V, V)``."""
        n, _, t, v = x.shape
        theta = self.theta(x).view(n, self.num_subsets, -1, t, v)  # (N, K, C_e, T, V)
        phi = self.phi(x).view(n, self.num_subsets, -1, t, v)
        scores = torch.einsum("nkcti,nkctj->nkij", theta, phi) / (theta.shape[2] * t)  # (N, K, V, V)
        return self.A + self.B + scores.softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v = x.shape
        h = torch.einsum("nctj,nkij->nkcti", x, self.graphs(x))  # (N, K, C_in, T, V)
        h = self.conv(h.reshape(n, self.num_subsets * c, t, v)) + self.subset_bias.sum(0)[:, None, None]
        h = self.bn(h)  # (N, C_out, T, V)
        return self.relu(h + self.down(x))


class AGCNBlock(nn.Module):
    """2s-AGCN's ``TCN_GCN_unit``: ``ReLU(dropout(tcn(gcn(x))) + residual(x))``.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        graph: the fixed partition ``(K, V, V)``.
        stride: the temporal stride (default 1).
        temporal_kernel: ``tcn``'s kernel, odd (default 9).
        embed_ratio: as :class:`AdaptiveGraphConv` takes it (default 4).
        dropout: after ``tcn`` (default 0).
        residual: the identity where the shape allows, else a strided 1x1 convolution + BN; ``False``:
            none (default true).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> from lightning_skel.models.graph import spatial_partition
        >>> block = AGCNBlock(3, 8, spatial_partition("kinect20", normalize="subset"), stride=2)
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
        embed_ratio: int = 4,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.gcn = AdaptiveGraphConv(in_channels, out_channels, graph, embed_ratio)
        self.tcn = _temporal_unit(out_channels, out_channels, temporal_kernel, stride)
        self.dropout = nn.Dropout(dropout)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = _temporal_unit(in_channels, out_channels, 1, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(self.tcn(self.gcn(x)))
        if self.residual is not None:
            h = h + self.residual(x)
        return self.relu(h)


@MODELS.register("agcn")
class AGCN(nn.Module):
    """One stream of 2s-AGCN, "Two-Stream Adaptive Graph Convolutional Networks for Skeleton-Based Action
    Recognition".

    Shi, Zhang, Cheng, Lu, CVPR 2019; official code lshiwjx/2s-AGCN (``model/agcn.py``). The defaults are
    the paper's network: 10 blocks, 64-128-256 channels, embedding ratio 4, no dropout. As in the official
    code, ``data_bn`` normalises the ``M * V * C`` input channels, so the input must carry exactly
    ``num_persons`` persons. The fixed graph is a buffer of every block, so a checkpoint carries it.

    Args:
        num_classes: the classes ``K``.
        layout: the skeleton layout.
        in_channels: coordinates per joint ``C`` (default 3).
        num_persons: persons ``M`` (default 2).
        channels: the first stage's width (default 64).
        num_blocks: the blocks (default 10, :func:`~lightning_skel.models.stgcn.stage_plan`).
        temporal_kernel: odd (default 9).
        embed_ratio: ``C_out / C_e`` of the graph embeddings (default 4).
        dropout: after each block's temporal convolution (default 0).
        graph_center: the partition's centre, a joint name (default the layout's root).
        partition_normalize: ``"subset"`` (default, 2s-AGCN's ``graph/tools.py``) or ``"whole"``
            (:func:`~lightning_skel.models.graph.spatial_partition`).
        graph: ``"layout"`` (default): the partition of the layout's bones. ``"official_ntu"``: the
            official NTU graph (:func:`~lightning_skel.models.graph.official_ntu_partition`) its published
            checkpoints were trained with; the network then computes what ``model/agcn.py`` computes.

    Shape:
        - x: ``(N, C, T, V, M)`` with ``M == num_persons``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, 4 * channels)``, the last block averaged over
          frames, joints and persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = AGCN(5, get_layout("kinect20"), num_persons=1, channels=8, num_blocks=3)
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
        embed_ratio: int = 4,
        dropout: float = 0.0,
        graph_center: str | None = None,
        partition_normalize: str = "subset",
        graph: str = "layout",
    ) -> None:
        check_model_args("agcn", in_channels, num_persons, dropout, temporal_kernel, channels=channels,
                         num_blocks=num_blocks, embed_ratio=embed_ratio,
                         rules={"graph": (graph, graph in GRAPHS, f"one of {GRAPHS}")})  # fmt: skip
        super().__init__()
        self.layout = layout
        self.num_persons = num_persons
        if graph == "layout":
            partition = spatial_partition(layout, center=graph_center, normalize=partition_normalize)
        elif partition_normalize != "subset":
            raise ValueError(
                "graph='official_ntu' is 2s-AGCN's subset-normalised graph; partition_normalize must be 'subset'"
            )
        else:
            partition = official_ntu_partition("agcn", layout, graph_center)
        self.data_bn = nn.BatchNorm1d(num_persons * layout.num_joints * in_channels)
        blocks, c = [], in_channels
        for i, (out, stride) in enumerate(stage_plan(channels, num_blocks)):
            blocks.append(
                AGCNBlock(c, out, partition, stride, temporal_kernel, embed_ratio, dropout, residual=i > 0)
            )
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c
        self.fc = nn.Linear(c, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))

    def forward_features(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        if m != self.num_persons:
            raise ValueError(f"agcn was built for num_persons={self.num_persons}, got input with M={m}")
        h = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))  # (N, M*V*C, T)
        h = h.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)  # (N*M, C, T, V)
        h = self.blocks(h)  # (N*M, C', T', V)
        return h.mean(dim=(2, 3)).view(n, m, -1).mean(1)  # (N, C'), persons averaged

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
