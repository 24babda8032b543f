"""CTR-GCN: channel-wise topology refinement graph convolution (Chen, Zhang, Yuan, Li, Deng, Hu, ICCV 2021,
"Channel-wise Topology Refinement Graph Convolution for Skeleton-Based Action Recognition").

Each block's graph convolution sums, over the K = 3 subsets of the spatial partition, a channel-wise graph
``alpha * conv4(tanh(phi(x)_u - psi(x)_v)) + A_k`` (the shared topology ``A_k``, learned, refined per output
channel by the pairwise differences of the joints' temporally pooled embeddings) applied to ``conv3(x)``; the
temporal part is MS-G3D's multi-scale temporal convolution with kernel 5 and dilations 1 and 2.

Module and parameter names are the official ``Uason-Chen/CTR-GCN`` ones (``l1.gcn1.convs.0.conv1``,
``l*.gcn1.PA``, ``l*.gcn1.alpha``, ``data_bn``, ``fc``), so the published state_dicts load into
:class:`CTRGCN` built with ``graph="official_ntu"``. Each block keeps the partition it was built with as a buffer
``A``, saved with the weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from lightning_skel.models.graph import model_graph, spatial_partition
from lightning_skel.models.msg3d import MultiScaleTemporalConv, TemporalConvBN, person_batch
from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import stage_plan
from lightning_skel.skeleton.layouts import Layout


def ctrgcn_partition(layout: Layout, center: str | None = None) -> np.ndarray:
    """CTR-GCN's (and 2s-AGCN's) spatial graph as CTR-GCN applies it: ``out[u] = sum_v A[k, u, v] x[v]``.

    Subset 0 is the identity. Subset 1 holds ``u``'s neighbours farther from ``center`` (weight 1). Subset 2
    holds ``u``'s neighbour closer to ``center``, weighted 1 / (its number of neighbours farther from
    ``center``). That is the transpose of :func:`~lightning_skel.models.graph.spatial_partition` with
    ``"subset"`` normalisation, which is how 2s-AGCN applies the same matrices (``x @ A``).

    Args:
        layout: the layout whose bone tree is the graph.
        center: a joint name (default the layout's root).

    Returns:
        ``(3, V, V)`` float32.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> ctrgcn_partition(get_layout("kinect20")).shape
        (3, 20, 20)
    """
    return np.ascontiguousarray(
        spatial_partition(layout, center=center, normalize="subset").transpose(0, 2, 1)
    )


class CTRGC(nn.Module):
    """One subset of CTR-GCN's channel-wise topology refinement (``CTRGC``; Chen et al., ICCV 2021).

    ``out[n, c, t, u] = sum_v (alpha * R[n, c, u, v] + A[u, v]) conv3(x)[n, c, t, v]`` with
    ``R = conv4(tanh(conv1(x)_u - conv2(x)_v))``, the embeddings averaged over frames. ``forward(x, a,
    alpha)`` takes the shared topology ``a (V, V)`` and the refinement's scale ``alpha (1,)``.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        first: the first block, on the input coordinates: 8 embedding channels, else ``C_in / 8`` (at least
            1). The official code tests ``C_in in (3, 9)`` instead, which 2-D input breaks.

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``.

    Example:
        >>> ctrgc = CTRGC(3, 8, first=True)
        >>> ctrgc(torch.randn(2, 3, 16, 20), torch.eye(20), torch.zeros(1)).shape
        torch.Size([2, 8, 16, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool) -> None:
        super().__init__()
        rel = 8 if first else max(in_channels // 8, 1)
        self.conv1 = nn.Conv2d(in_channels, rel, 1)
        self.conv2 = nn.Conv2d(in_channels, rel, 1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv4 = nn.Conv2d(rel, out_channels, 1)
        self.tanh = nn.Tanh()

    def forward(self, x: Tensor, a: Tensor, alpha: Tensor) -> Tensor:
        # conv1, conv2 are linear: averaging over frames first is the same and T times cheaper
        xm = x.mean(2, keepdim=True)  # (N, C_in, 1, V)
        x1, x2 = self.conv1(xm).squeeze(2), self.conv2(xm).squeeze(2)  # (N, R, V)
        rel = self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # (N, R, V, V)
        graph = self.conv4(rel) * alpha + a  # (N, C_out, V, V)
        return torch.einsum("ncuv,nctv->nctu", graph, self.conv3(x))


class CTRGraphConv(nn.Module):
    """CTR-GCN's ``unit_gcn``: ``ReLU(BN(sum_k CTRGC_k(x, PA_k)) + down(x))``.

    ``alpha``, the refinement's scale, starts at 0.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        graph: the partition ``A``, ``(K, V, V)`` (:func:`ctrgcn_partition`).
        first: the first block (:class:`CTRGC`).
        adaptive: learn the topology ``PA``, initialised to ``A``; ``False``: use ``A`` itself.

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> gcn = CTRGraphConv(3, 8, ctrgcn_partition(get_layout("kinect20")), first=True, adaptive=True)
        >>> gcn(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 16, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, graph: np.ndarray, first: bool, adaptive: bool):
        super().__init__()
        a = torch.as_tensor(graph, dtype=torch.float32)
        self.register_buffer("A", a)  # (K, V, V), the partition the block was built with
        self.adaptive = adaptive
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels, first) for _ in range(a.shape[0]))
        if in_channels == out_channels:
            self.down = nn.Identity()
        else:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        if adaptive:
            self.PA = nn.Parameter(a.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        # The official initialisation: kaiming convolutions, unit BNs, the output BN's scale at 1e-6 so that
        # every block starts close to its residual.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.bn.weight, 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        a = self.PA if self.adaptive else self.A
        y = sum(conv(x, a[k], self.alpha) for k, conv in enumerate(self.convs))
        return self.relu(self.bn(y) + self.down(x))


class CTRGCNBlock(nn.Module):
    """CTR-GCN's ``TCN_GCN_unit``: ``ReLU(tcn1(gcn1(x)) + residual(x))``.

    ``tcn1`` is the multi-scale temporal convolution
    (:class:`~lightning_skel.models.msg3d.MultiScaleTemporalConv`) without a residual or an activation of
    its own.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        graph: the partition ``(K, V, V)`` (:func:`ctrgcn_partition`).
        stride: the temporal stride (default 1).
        residual: the identity where the shape allows, else a strided 1x1 convolution + BN; ``False``:
            none (default true).
        adaptive: learn the topology (default true, :class:`CTRGraphConv`).
        kernel: ``tcn1``'s temporal kernel (default 5).
        dilations: ``tcn1``'s dilations (default ``(1, 2)``).
        first: the first block (default false, :class:`CTRGC`).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> block = CTRGCNBlock(8, 8, ctrgcn_partition(get_layout("kinect20")), stride=2)
        >>> block(torch.randn(2, 8, 16, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        graph: np.ndarray,
        stride: int = 1,
        residual: bool = True,
        adaptive: bool = True,
        kernel: int = 5,
        dilations: tuple[int, ...] = (1, 2),
        first: bool = False,
    ) -> None:
        super().__init__()
        self.gcn1 = CTRGraphConv(in_channels, out_channels, graph, first, adaptive)
        self.tcn1 = MultiScaleTemporalConv(
            out_channels, out_channels, kernel, stride, dilations, residual=False, activation=False
        )
        for m in self.tcn1.modules():  # CTR-GCN's weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalConvBN(in_channels, out_channels, 1, stride)
            nn.init.kaiming_normal_(self.residual.conv.weight, mode="fan_out")
            nn.init.zeros_(self.residual.conv.bias)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            h = h + self.residual(x)
        return self.relu(h)


@MODELS.register("ctrgcn")
class CTRGCN(nn.Module):
    """CTR-GCN, "Channel-wise Topology Refinement Graph Convolution for Skeleton-Based Action Recognition".

    Chen, Zhang, Yuan, Li, Deng, Hu, ICCV 2021; official code Uason-Chen/CTR-GCN (``model/ctrgcn.py``).
    The defaults are the paper's network (``config/nturgbd-cross-subject/default.yaml``): 10 blocks,
    64-128-256 channels, the learned topology; 1.45 M parameters on ``ntu25`` with M=2. The blocks
    ``l1 .. l<num_blocks>`` follow :func:`~lightning_skel.models.stgcn.stage_plan`. ``data_bn`` normalises
    the ``M * V * C`` input channels, so the input must carry exactly ``num_persons`` persons.

    Args:
        num_classes: the classes ``K``.
        layout: the skeleton layout.
        in_channels: coordinates per joint ``C`` (default 3).
        num_persons: persons ``M`` (default 2).
        channels: the first stage's width, a multiple of 4 (the temporal branches; default 64).
        num_blocks: the blocks (default 10).
        dropout: before ``fc`` (the official ``drop_out``; default 0, as the NTU configs).
        adaptive: learn the topology (default true).
        graph: ``"layout"`` (default): the layout's bone tree. ``"official_ntu"``: the official NTU graph,
            centred on ``spine_shoulder``, to load the published checkpoints.
        graph_center: the partition's centre, a joint name (default the layout's root).

    Shape:
        - x: ``(N, C, T, V, M)`` with ``M == num_persons``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, 4 * channels)``, the last block averaged over
          frames, joints and persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = CTRGCN(5, get_layout("kinect20"), num_persons=1, channels=8, num_blocks=3)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])

    UTD-MHAD's CPU-sized network (experiment ``utd_ctrgcn``) is
    ``build_model("ctrgcn", 27, "kinect20", num_persons=1, channels=32, num_blocks=6)``.
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        channels: int = 64,
        num_blocks: int = 10,
        dropout: float = 0.0,
        adaptive: bool = True,
        graph: str = "layout",
        graph_center: str | None = None,
    ) -> None:
        check_model_args(
            "ctrgcn", in_channels, num_persons, dropout,
            rules={"channels": (channels, channels >= 4 and channels % 4 == 0, ">= 4 and a multiple of 4")},
            num_blocks=num_blocks,
        )  # fmt: skip
        super().__init__()
        self.layout = layout
        self.num_persons = num_persons
        g = model_graph("ctrgcn", layout, graph)
        partition = ctrgcn_partition(g, graph_center)
        self.data_bn = nn.BatchNorm1d(num_persons * layout.num_joints * in_channels)
        c = in_channels
        for i, (out, stride) in enumerate(stage_plan(channels, num_blocks)):
            block = CTRGCNBlock(c, out, partition, stride, residual=i > 0, adaptive=adaptive, first=i == 0)
            self.add_module(f"l{i + 1}", block)
            c = out
        self.num_blocks = num_blocks
        self.feature_dim = c
        self.drop_out = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))

    def forward_features(self, x: Tensor) -> Tensor:
        n, m = x.shape[0], x.shape[-1]
        h = person_batch(self.data_bn, x, self.num_persons, "ctrgcn")  # (N*M, C, T, V)
        for i in range(1, self.num_blocks + 1):
            h = getattr(self, f"l{i}")(h)
        return h.mean(dim=(2, 3)).view(n, m, -1).mean(1)  # (N, C'), persons averaged

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop_out(self.forward_features(x)))
