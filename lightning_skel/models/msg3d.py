"""MS-G3D: disentangled multi-scale aggregation and unified spatial-temporal graph convolution (Liu, Zhang,
Chen, Wang, Ouyang, CVPR 2020, "Disentangling and Unifying Graph Convolutions for Skeleton-Based Action
Recognition").

Each of the three stages adds two pathways over ``(N, C, T, V)``: a multi-scale graph convolution whose scale
``k`` aggregates the joints exactly ``k`` hops away (:func:`~lightning_skel.models.graph.multiscale_adjacency`)
followed by two multi-scale temporal convolutions, and G3D, the same multi-scale aggregation over the graph
of ``tau`` consecutive frames (every joint joined to itself and its neighbours in each frame of the window)
for windows of 3 and 5 frames. The multi-scale temporal convolution (:class:`MultiScaleTemporalConv`) is also
CTR-GCN's.

Module and parameter names are the official ``kenziyuliu/MS-G3D`` ones (``sgcn1``, ``gcn3d1``, ``tcn1``,
``*.A_res``, ...), so the published state_dicts load into :class:`MSG3D` built with ``graph="official_ntu"``.
The graph each module was built with is a buffer ``A_binary`` saved with the weights; the normalised
multi-scale graphs are derived from it on construction and again on loading a state_dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_skel.models.graph import model_graph, multiscale_adjacency
from lightning_skel.models.registry import MODELS, check_model_args
from lightning_skel.skeleton.layouts import Layout


def person_batch(data_bn: nn.BatchNorm1d, x: Tensor, num_persons: int, owner: str) -> Tensor:
    """The input stage of the 2s-AGCN family: ``data_bn`` over the ``M * V * C`` channels, persons folded.

    Args:
        data_bn: ``BatchNorm1d(M * V * C)``.
        x: ``(N, C, T, V, M)``.
        num_persons: the ``M`` the model was built for; another ``M`` is a ``ValueError``.
        owner: the model's name, the start of that error.

    Returns:
        ``(N * M, C, T, V)``, row ``n * M + m``.

    Example:
        >>> person_batch(nn.BatchNorm1d(2 * 20 * 3), torch.randn(4, 3, 16, 20, 2), 2, "msg3d").shape
        torch.Size([8, 3, 16, 20])
    """
    n, c, t, v, m = x.shape
    if m != num_persons:
        raise ValueError(f"{owner} was built for num_persons={num_persons}, got input with M={m}")
    h = data_bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))  # (N, M*V*C, T)
    return h.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)


class TemporalConvBN(nn.Module):
    """A ``(kernel, 1)`` convolution over frames with "same" zero padding, then BN.

    MS-G3D's and CTR-GCN's ``TemporalConv``, and CTR-GCN's ``unit_tcn``. The padding is explicit, as in
    :class:`~lightning_skel.models.stgcn.TemporalConv` (a CPU heap corruption in Conv2d's backward).

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        kernel: odd (default 1).
        stride: the temporal stride (default 1).
        dilation: the temporal dilation (default 1).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> conv = TemporalConvBN(3, 8, kernel=5, stride=2, dilation=2)
        >>> conv(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, dilation: int = 1
    ):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"temporal kernel must be odd, got {kernel}")
        self.pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), (stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (0, 0, self.pad, self.pad))
        return self.bn(self.conv(x))


class MultiScaleTemporalConv(nn.Module):
    """MS-G3D's multi-scale temporal convolution (MS-TCN; Liu et al., CVPR 2020), CTR-GCN's too.

    ``len(dilations) + 2`` branches of ``C_out / (len(dilations) + 2)`` channels each, concatenated. Per
    dilation: a 1x1 convolution, BN, ReLU and a dilated ``(kernel, 1)`` convolution + BN. Then a 1x1
    convolution, BN, ReLU, max-pooling over 3 frames and BN; and a strided 1x1 convolution + BN. Plus the
    residual and a final ReLU.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``, a multiple of the branches.
        kernel: the dilated branches' kernel, odd (default 3).
        stride: the temporal stride (default 1).
        dilations: one branch per dilation (default ``(1, 2, 3, 4)``).
        residual: the identity where the shape allows, else a strided 1x1 convolution + BN; ``False``:
            none (default true).
        activation: the final ReLU (default true).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> tcn = MultiScaleTemporalConv(6, 12, stride=2)
        >>> tcn(torch.randn(2, 6, 16, 20)).shape
        torch.Size([2, 12, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2, 3, 4),
        residual: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        num_branches = len(dilations) + 2
        if out_channels % num_branches:
            raise ValueError(
                f"out_channels ({out_channels}) must be a multiple of the {num_branches} branches"
            )
        c = out_channels // num_branches
        branches = [
            nn.Sequential(
                nn.Conv2d(in_channels, c, 1),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                TemporalConvBN(c, c, kernel, stride, dilation),
            )
            for dilation in dilations
        ]
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, c, 1),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((3, 1), (stride, 1), (1, 0)),
                nn.BatchNorm2d(c),
            )
        )
        branches.append(nn.Sequential(nn.Conv2d(in_channels, c, 1, (stride, 1)), nn.BatchNorm2d(c)))
        self.branches = nn.ModuleList(branches)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalConvBN(in_channels, out_channels, 1, stride)
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([branch(x) for branch in self.branches], dim=1)
        if self.residual is not None:
            out = out + self.residual(x)
        return self.act(out)


class MLP(nn.Module):
    """MS-G3D's one-layer ``MLP``: a 1x1 convolution, BN and a ReLU.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        activation: the ReLU (default true).

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``.

    Example:
        >>> MLP(3, 8)(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 16, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True) if activation else nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class _MultiScaleAggregation(nn.Module):
    """The multi-scale aggregation shared by both pathways: ``sum_u (A_k + A_res_k)[v, u] x[..., u]`` for each
    scale ``k``, the scales stacked on the channel axis (scale-major), then ``mlp``.

    ``A_binary`` ``(V, V)`` is the graph (a persistent buffer); the scales ``(K * V', V')`` are derived from
    :meth:`scale_graph` of it (a non-persistent buffer), again whenever a state_dict is loaded; ``A_res`` is
    the learned residual mask, initialised near zero.
    """

    derived = "A_powers"

    def __init__(self, adjacency: np.ndarray, num_scales: int, mlp: MLP, window: int = 1) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.window = window
        self.register_buffer("A_binary", torch.as_tensor(adjacency, dtype=torch.float32))
        self.register_buffer(self.derived, self._scales(), persistent=False)
        self.A_res = nn.Parameter(torch.empty_like(getattr(self, self.derived)).uniform_(-1e-6, 1e-6))
        self.mlp = mlp

    def scale_graph(self, adjacency: np.ndarray) -> np.ndarray:
        """The graph the scales are taken over: the joints' graph itself (overridden by G3D)."""
        return adjacency

    def _scales(self) -> Tensor:
        a = self.A_binary.detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(multiscale_adjacency(self.scale_graph(a), self.num_scales))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        scales = getattr(self, self.derived)
        with torch.no_grad():
            scales.copy_(self._scales().to(scales))

    def aggregate(self, x: Tensor) -> Tensor:
        """``(N, C, T, V') -> (N, K * C, T, V')``."""
        n, c, t, v = x.shape
        a = getattr(self, self.derived) + self.A_res  # (K * V', V')
        h = torch.einsum("vu,nctu->nctv", a, x).view(n, c, t, self.num_scales, v)
        return h.permute(0, 3, 1, 2, 4).reshape(n, self.num_scales * c, t, v)


class MultiScaleGraphConv(_MultiScaleAggregation):
    """MS-G3D's ``MultiScale_GraphConv``: the disentangled aggregation, then a 1x1 convolution, BN and ReLU.

    ``A_powers`` ``(K * V, V)`` are the scales of the graph ``A_binary``
    (:func:`~lightning_skel.models.graph.multiscale_adjacency`); ``A_res`` is the learned residual mask.

    Args:
        num_scales: the scales ``K``.
        in_channels, out_channels: ``C_in`` and ``C_out``.
        adjacency: the graph ``(V, V)``, nonzero entries are edges.

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, T, V)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> gcn = MultiScaleGraphConv(4, 3, 8, get_layout("kinect20").adjacency)
        >>> gcn(torch.randn(2, 3, 16, 20)).shape, gcn.A_powers.shape
        (torch.Size([2, 8, 16, 20]), torch.Size([80, 20]))
    """

    def __init__(self, num_scales: int, in_channels: int, out_channels: int, adjacency: np.ndarray) -> None:
        super().__init__(adjacency, num_scales, MLP(in_channels * num_scales, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.aggregate(x))


class SpatialTemporalGraphConv(_MultiScaleAggregation):
    """MS-G3D's ``SpatialTemporal_MS_GCN``: the multi-scale aggregation over a window of frames.

    The window's ``(window V, window V)`` graph tiles ``A_binary + I``: every joint joined to itself and its
    neighbours in every frame of the window. Then a 1x1 convolution, BN and ReLU.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        adjacency: the joints' graph ``(V, V)``.
        num_scales: the scales ``K``.
        window: the frames of a window.

    Shape:
        ``(N, C_in, T', window V) -> (N, C_out, T', window V)`` (:class:`TemporalWindows`' output).

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> gcn = SpatialTemporalGraphConv(3, 8, get_layout("kinect20").adjacency, num_scales=2, window=3)
        >>> gcn(torch.randn(2, 3, 16, 3 * 20)).shape
        torch.Size([2, 8, 16, 60])
    """

    derived = "A_scales"

    def __init__(
        self, in_channels: int, out_channels: int, adjacency: np.ndarray, num_scales: int, window: int
    ):
        super().__init__(
            adjacency, num_scales, MLP(in_channels * num_scales, out_channels, activation=False), window
        )
        self.act = nn.ReLU(inplace=True)

    def scale_graph(self, adjacency: np.ndarray) -> np.ndarray:
        return np.tile(adjacency + np.eye(len(adjacency), dtype=adjacency.dtype), (self.window, self.window))

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.mlp(self.aggregate(x)))


class TemporalWindows(nn.Module):
    """MS-G3D's ``UnfoldTemporalWindows``: windows of frames laid out along the joint axis.

    Args:
        window: the frames of a window, ``dilation`` apart, zero padded at the ends.
        stride: a window starts at every ``stride``-th frame (default 1).
        dilation: frames between a window's frames (default 1).

    Shape:
        ``(N, C, T, V) -> (N, C, ceil(T / stride), window V)``, frame-major within a window.

    Example:
        >>> TemporalWindows(3)(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 3, 16, 60])
    """

    def __init__(self, window: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.window, self.stride, self.dilation = window, stride, dilation
        self.pad = dilation * (window - 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        n, c, _, v = x.shape
        span = self.dilation * (self.window - 1) + 1
        w = F.pad(x, (0, 0, self.pad, self.pad)).unfold(2, span, self.stride)  # (N, C, T', V, span)
        w = w[..., :: self.dilation]  # (N, C, T', V, window)
        return w.transpose(3, 4).reshape(n, c, w.shape[2], self.window * v)


class G3D(nn.Module):
    """One G3D pathway (MS-G3D's ``MS_G3D``, embedding factor 1), without activation.

    Temporal windows (:class:`TemporalWindows`), the spatial-temporal multi-scale graph convolution
    (:class:`SpatialTemporalGraphConv`), then a ``(1, window, 1)`` 3-D convolution + BN that collapses each
    window.

    Args:
        in_channels, out_channels: ``C_in`` and ``C_out``.
        adjacency: the joints' graph ``(V, V)``.
        num_scales: the scales ``K``.
        window, stride, dilation: as :class:`TemporalWindows` takes them.
        first: the first block, on the input coordinates: it widens to ``C_out`` in the graph convolution;
            the others widen in the collapse.

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> g3d = G3D(3, 8, get_layout("kinect20").adjacency, 2, window=3, stride=2, dilation=1, first=True)
        >>> g3d(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: np.ndarray,
        num_scales: int,
        window: int,
        stride: int,
        dilation: int,
        first: bool,
    ) -> None:
        super().__init__()
        self.window = window
        self.embed_channels = out_channels if first else in_channels
        self.gcn3d = nn.Sequential(
            TemporalWindows(window, stride, dilation),
            SpatialTemporalGraphConv(in_channels, self.embed_channels, adjacency, num_scales, window),
        )
        self.out_conv = nn.Conv3d(self.embed_channels, out_channels, kernel_size=(1, window, 1))
        self.out_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        n, _, _, v = x.shape
        h = self.gcn3d(x)  # (N, C_e, T', window V)
        h = self.out_conv(h.view(n, self.embed_channels, -1, self.window, v)).squeeze(3)  # (N, C_out, T', V)
        return self.out_bn(h)


class MultiWindowG3D(nn.Module):
    """MS-G3D's ``MultiWindow_MS_G3D``: the sum of one :class:`G3D` per window size, no activation.

    Args:
        in_channels, out_channels, adjacency, num_scales, stride, first: as :class:`G3D` takes them.
        windows: the window sizes.
        dilations: one dilation per window.

    Shape:
        ``(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)``.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> a = get_layout("kinect20").adjacency
        >>> g3d = MultiWindowG3D(3, 8, a, num_scales=2, windows=(3, 5), dilations=(1, 1), stride=2, first=True)
        >>> g3d(torch.randn(2, 3, 16, 20)).shape
        torch.Size([2, 8, 8, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: np.ndarray,
        num_scales: int,
        windows: Sequence[int],
        dilations: Sequence[int],
        stride: int,
        first: bool = False,
    ) -> None:
        super().__init__()
        self.gcn3d = nn.ModuleList(
            G3D(in_channels, out_channels, adjacency, num_scales, w, stride, d, first)
            for w, d in zip(windows, dilations, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return sum(g(x) for g in self.gcn3d)


@MODELS.register("msg3d")
class MSG3D(nn.Module):
    """MS-G3D, "Disentangling and Unifying Graph Convolutions for Skeleton-Based Action Recognition".

    Liu, Zhang, Chen, Wang, Ouyang, CVPR 2020; official code kenziyuliu/MS-G3D (``model/msg3d.py``). The
    defaults are the paper's NTU network (``config/nturgbd-cross-subject/train_joint.yaml``): 96-192-384
    channels, 13 graph scales, 6 G3D scales, windows 3 and 5 with dilation 1; 3.19 M parameters on
    ``ntu25`` with M=2. ``data_bn`` normalises the ``M * V * C`` input channels, so the input must carry
    exactly ``num_persons`` persons.

    Args:
        num_classes: the classes ``K``.
        layout: the skeleton layout.
        in_channels: coordinates per joint ``C`` (default 3).
        num_persons: persons ``M`` (default 2).
        channels: the first stage's width, a multiple of 6 (the temporal branches; default 96).
        num_gcn_scales: the scales of the graph convolutions (default 13).
        num_g3d_scales: the scales of the G3D pathways (default 6).
        windows: the G3D window sizes, odd (default ``(3, 5)``).
        window_dilations: one dilation per window (default ``(1, 1)``).
        dropout: before ``fc``, for small data sets (not in the paper; default 0).
        graph: ``"layout"`` (default): the layout's bone tree. ``"official_ntu"``: the official NTU graph,
            to load the published checkpoints.

    Shape:
        - x: ``(N, C, T, V, M)`` with ``M == num_persons``.
        - output: ``(N, K)``; ``forward_features(x)``: ``(N, 4 * channels)``, the last stage averaged over
          frames, joints and persons.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> net = MSG3D(5, get_layout("kinect20"), num_persons=1, channels=6, num_gcn_scales=2)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])

    UTD-MHAD's CPU-sized network (experiment ``utd_msg3d``) is
    ``build_model("msg3d", 27, "kinect20", num_persons=1, channels=24)``.
    """

    def __init__(
        self,
        num_classes: int,
        layout: Layout,
        in_channels: int = 3,
        num_persons: int = 2,
        channels: int = 96,
        num_gcn_scales: int = 13,
        num_g3d_scales: int = 6,
        windows: Sequence[int] = (3, 5),
        window_dilations: Sequence[int] = (1, 1),
        dropout: float = 0.0,
        graph: str = "layout",
    ) -> None:
        windows, window_dilations = tuple(windows), tuple(window_dilations)
        check_model_args(
            "msg3d", in_channels, num_persons, dropout,
            rules={
                "channels": (channels, channels >= 6 and channels % 6 == 0, ">= 6 and a multiple of 6"),
                "windows": (windows, bool(windows) and all(w >= 1 and w % 2 for w in windows),
                            "a non-empty list of odd sizes >= 1"),
                "window_dilations": (window_dilations, len(window_dilations) == len(windows)
                                     and all(d >= 1 for d in window_dilations), "one dilation >= 1 per window"),
            },
            num_gcn_scales=num_gcn_scales, num_g3d_scales=num_g3d_scales,
        )  # fmt: skip
        super().__init__()
        self.layout = layout
        self.num_persons = num_persons
        a = model_graph("msg3d", layout, graph).adjacency  # (V, V) 0/1, no self-loops
        self.data_bn = nn.BatchNorm1d(num_persons * layout.num_joints * in_channels)
        c = [in_channels, channels, 2 * channels, 4 * channels]
        for i in (1, 2, 3):
            stride = 1 if i == 1 else 2
            g3d = MultiWindowG3D(c[i - 1], c[i], a, num_g3d_scales, windows, window_dilations, stride, i == 1)
            sgcn = nn.Sequential(
                MultiScaleGraphConv(num_gcn_scales, c[i - 1], c[i - 1] if i > 1 else c[i], a),
                MultiScaleTemporalConv(c[i - 1] if i > 1 else c[i], c[i], stride=stride),
                MultiScaleTemporalConv(c[i], c[i], activation=False),
            )
            self.add_module(f"gcn3d{i}", g3d)
            self.add_module(f"sgcn{i}", sgcn)
            self.add_module(f"tcn{i}", MultiScaleTemporalConv(c[i], c[i]))
        self.feature_dim = c[3]
        self.drop_out = nn.Dropout(dropout)
        self.fc = nn.Linear(c[3], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        n, m = x.shape[0], x.shape[-1]
        h = person_batch(self.data_bn, x, self.num_persons, "msg3d")  # (N*M, C, T, V)
        for stage in (
            (self.sgcn1, self.gcn3d1, self.tcn1),
            (self.sgcn2, self.gcn3d2, self.tcn2),
            (self.sgcn3, self.gcn3d3, self.tcn3),
        ):
            sgcn, g3d, tcn = stage
            h = tcn(F.relu(sgcn(h) + g3d(h)))  # the two pathways summed, then activated
        return h.mean(dim=(2, 3)).view(n, m, -1).mean(1)  # (N, 4 channels), persons averaged

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop_out(self.forward_features(x)))
