"""SGN: Semantics-Guided Neural Network (Zhang, Lan, Zeng, Xing, Xue, Zheng, CVPR 2020, "Semantics-Guided
Neural Networks for Efficient Skeleton-Based Human Action Recognition").

Dynamics (positions and frame differences, each embedded by a small MLP after a BN over ``C * V``) plus the
semantics of the joint (an embedded one-hot joint index) feed a joint-level module: three residual graph
convolutions over a data-driven adjacency ``G_t = softmax_j(theta(z_t)_i . phi(z_t)_j)`` computed per frame.
The embedded one-hot frame index is added, joints are max-pooled, and a frame-level CNN (temporal kernel 3,
then 1x1) is max-pooled over frames. Persons are folded into the batch and merged by a maximum.

At its defaults on one person and ``T = num_frames = 20`` frames this is the function of the official
``model.SGN(num_classes, 'NTU', seg=20, args, bias=True)`` (microsoft/SGN ``model.py``), layer for layer:
``joint_embed`` / ``dif_embed`` (``norm_data`` and two ``cnn1x1``), ``spa_embed``, ``tem_embed``,
``compute_g1`` (``g1`` = theta, ``g2`` = phi), ``gcn1``-``gcn3`` and ``cnn`` (``local``: ``cnn1`` is the
temporal convolution, kept here as ``(3, 1)`` over ``(T, V)``, the official ``(1, 3)`` over ``(V, T)``).
The official network takes ``(N, seg, 75)``, frames by 25 joints times xyz, i.e. ``(N, 3, seg, 25, 1)``
here; its two persons are interleaved as rows by its data loader (the ``sgn`` input pipeline,
:mod:`lightning_skel.data.pipelines.sgn`). Its one-hot ``spa`` / ``tem`` inputs are tensors built for one
fixed batch size; here they are buffers broadcast over any batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.models.stgcn import TemporalConv
from lightning_skel.skeleton.layouts import Layout


class _Embed(nn.Module):
    """SGN's ``embed``: optional BN over the ``C * V`` channels of ``(N, C, T, V)``, then two 1x1 convolutions
    with ReLU: ``(N, C, T, V) -> (N, out, T, V)``."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, num_joints: int | None) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_channels * num_joints) if num_joints else None
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.bn is not None:
            n, c, t, v = x.shape
            h = self.bn(x.transpose(2, 3).reshape(n, c * v, t))  # (N, C*V, T)
            x = h.view(n, c, v, t).transpose(2, 3)  # (N, C, T, V)
        return self.mlp(x)


class _GraphConv(nn.Module):
    """SGN's ``gcn_spa``: ``ReLU(BN(W (G x) + W1 x))`` with a per-frame adjacency ``G: (N, T, V, V)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.w = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.w1 = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        h = torch.einsum("ntij,nctj->ncti", g, x)  # (N, C, T, V)
        return self.relu(self.bn(self.w(h) + self.w1(x)))


@MODELS.register("sgn")
class SGN(nn.Module):
    """SGN, "Semantics-Guided Neural Networks for Efficient Skeleton-Based Human Action Recognition".

    Zhang, Lan, Zeng, Xing, Xue, Zheng, CVPR 2020; official code microsoft/SGN (``model.py``). At its
    defaults, on one person and ``T = 20`` frames, it computes the official ``SGN(num_classes, 'NTU',
    seg=20, args, bias=True)`` (see the module doc).

    Args:
        num_classes: the number of classes.
        layout: the skeleton layout (its joints size the joint one-hot and the BN over ``C * V``).
        in_channels: coordinates per joint ``C`` (default 3).
        num_persons: persons ``M`` in the input (default 2); they share the weights (folded into the batch)
            and their features are max-pooled, so the weights do not depend on it. The official network sees
            one person: its loader turns two bodies into consecutive rows (the ``sgn`` pipeline).
        channels: the width unit (default 64, the paper's and the official only one): ``channels``-d
            dynamics and joint embeddings (and the embeddings' hidden layers), a ``4 * channels`` joint-level
            output and ``8 * channels`` features.
        num_frames: the size of the frame-index one-hot embedding, the longest ``T`` accepted (default 20,
            the official ``seg``); frame ``t`` gets the embedding of index ``t``, so a shorter clip uses the
            first ``T`` (the official network takes exactly ``seg`` frames).
        dropout: the frame-level CNN's channel dropout (default 0.2, the official).

    Shape:
        - x: ``(N, C, T, V, M)`` with ``T <= num_frames``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, 8 * channels)``, the frame-level CNN
          max-pooled over frames and persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = SGN(60, get_layout("ntu25"))  # the official network
        >>> net(torch.randn(2, 3, 20, 25, 1)).shape
        torch.Size([2, 60])
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        channels: int = 64,
        num_frames: int = 20,
        dropout: float = 0.2,
    ) -> None:
        check_model_args("sgn", in_channels, num_persons, dropout, channels=channels, num_frames=num_frames)
        super().__init__()
        self.layout = layout
        self.num_frames = num_frames
        v, c = layout.num_joints, channels
        self.register_buffer("joint_onehot", torch.eye(v).view(1, v, 1, v), persistent=False)  # (1, V, 1, V)
        self.register_buffer(
            "frame_onehot", torch.eye(num_frames).view(1, num_frames, num_frames, 1), persistent=False
        )  # (1, F, F, 1): channel f is one at frame f
        self.joint_embed = _Embed(in_channels, c, c, v)
        self.dif_embed = _Embed(in_channels, c, c, v)
        self.spa_embed = _Embed(v, c, c, None)
        self.tem_embed = _Embed(num_frames, c, 4 * c, None)
        self.compute_g = nn.ModuleDict(
            {"theta": nn.Conv2d(2 * c, 4 * c, 1), "phi": nn.Conv2d(2 * c, 4 * c, 1)}
        )
        self.gcn = nn.ModuleList(
            [_GraphConv(2 * c, 2 * c), _GraphConv(2 * c, 4 * c), _GraphConv(4 * c, 4 * c)]
        )
        self.frame_cnn = nn.Sequential(
            TemporalConv(4 * c, 4 * c, kernel=3),
            nn.BatchNorm2d(4 * c),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(4 * c, 8 * c, kernel_size=1),
            nn.BatchNorm2d(8 * c),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = 8 * c
        self.fc = nn.Linear(8 * c, num_classes)
        # The official initialisation: N(0, 2 / (k_h k_w C_out)) for every convolution, and the graph
        # convolutions' W at zero so that the joint-level module starts as a per-joint MLP.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        for gcn in self.gcn:
            nn.init.zeros_(gcn.w.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        if t > self.num_frames:
            raise ValueError(
                f"sgn was built for at most num_frames={self.num_frames} frames, got T={t}; "
                "raise model.kwargs.num_frames or lower data.window"
            )
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)  # (N*M, C, T, V)
        dif = F.pad(x[:, :, 1:] - x[:, :, :-1], (0, 0, 1, 0))  # zero motion at the first frame
        dynamics = self.joint_embed(x) + self.dif_embed(dif)  # (N*M, c, T, V)
        joint = self.spa_embed(self.joint_onehot).expand(n * m, -1, t, -1)  # (N*M, c, T, V)
        z = torch.cat([dynamics, joint], dim=1)  # (N*M, 2c, T, V)
        theta = self.compute_g["theta"](z)
        phi = self.compute_g["phi"](z)
        g = torch.einsum("ncti,nctj->ntij", theta, phi).softmax(dim=-1)  # (N*M, T, V, V)
        for gcn in self.gcn:
            z = gcn(z, g)  # (N*M, 4c, T, V) after the last
        z = z + self.tem_embed(self.frame_onehot[:, :, :t])  # frame semantics, (1, 4c, T, 1) broadcast
        h = self.frame_cnn(z.amax(dim=3, keepdim=True))  # joints max-pooled: (N*M, 8c, T, 1)
        return h.amax(dim=(2, 3)).view(n, m, -1).amax(1)  # (N, 8c): frames, then persons, max-pooled

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
