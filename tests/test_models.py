"""Every registered model on every layout (shapes, gradients, no NaN), the graph built from the layout, score
fusion, the affective features and the emotion recognizer's phi across layouts (the experiments that build
them: tests/test_configs.py). Tiny widths and T=16 keep the file to seconds on two CPU cores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_skel.models import Classifier, ScoreFusion, build_model, list_models
from lightning_skel.models.agcn import AdaptiveGraphConv
from lightning_skel.models.emotion import EmotionNet, emotion_plan
from lightning_skel.models.graph import (
    hop_distance,
    normalized_adjacency,
    root_distance,
    spatial_partition,
)
from lightning_skel.models.stgcn import STGCNBlock, TemporalConv, stage_plan
from lightning_skel.skeleton.affective import AFFECTIVE_FEATURES, affective_features, normalized_gait16
from lightning_skel.skeleton.features import to_gait16
from lightning_skel.skeleton.layouts import get_layout

NUM_CLASSES = 5
T = 16
# Tiny versions of every model; a model missing here is tested at its default size.
TINY = {
    "hcn": {"width": 8, "feature_dim": 16, "window": T},  # the reference variant: its head sized for T
    "stgcn": {"channels": 8, "num_blocks": 3},
    "agcn": {"channels": 8, "num_blocks": 3},
    "sgn": {"channels": 8, "num_frames": T},
    "ctrgcn": {"channels": 8, "num_blocks": 3},
    "msg3d": {
        "channels": 24,
        "num_gcn_scales": 3,
        "num_g3d_scales": 2,
        "windows": [3],
        "window_dilations": [1],
    },
    "emotion": {"channels": 8, "temporal_kernel": 9, "affective_dim": 8, "feature_dim": 16},
}
# (layout, C, M): NTU-25 with two persons, Kinect v1 with one, 2D OpenPose with two.
LAYOUTS = [("ntu25", 3, 2), ("kinect20", 3, 1), ("openpose18", 2, 2)]
CASES = [(name, *case) for name in list_models() for case in LAYOUTS] + [("emotion", "gait16", 3, 1)]
# Named variants of a model besides its default, on every layout too: (name, layout, C, M, kwargs).
VARIANT_CASES = [
    pytest.param("hcn", *case, {"variant": "compact"}, id=f"hcn-compact-{case[0]}") for case in LAYOUTS
]


def _model(name: str, layout: str, c: int, m: int, **kw) -> torch.nn.Module:
    return build_model(
        name, NUM_CLASSES, layout, in_channels=c, num_persons=m, **{**TINY.get(name, {}), **kw}
    )


@pytest.mark.parametrize("name", list_models())
def test_bad_model_arguments_fail_at_construction_naming_each(name):
    """Every model checks its size arguments when built, naming the model, every bad argument and its rule
    (a width of 0 otherwise surfaced as a convolution's shape error at the first forward pass)."""
    size = "width" if name == "hcn" else "channels"
    with pytest.raises(ValueError) as err:
        _model(name, "ntu25", 3, 0, **{size: 0, "dropout": 1.5})
    message = str(err.value)
    assert message.startswith(f"{name}: invalid argument(s): ")
    assert f"{size} must be >= " in message and ", got 0" in message
    assert "dropout must be in [0, 1), got 1.5" in message and "num_persons must be >= 1, got 0" in message


def _motion(layout: str, n: int = 2, t: int = T, c: int = 3, m: int = 1, seed: int = 0) -> torch.Tensor:
    """A plausible moving skeleton: the layout's rest pose with smooth per-joint swings, ``(N, C, T, V, M)``."""
    g = torch.Generator().manual_seed(seed)
    rest = torch.as_tensor(get_layout(layout).rest_array)[:, :c]  # (V, C)
    v = rest.shape[0]
    phase = torch.rand(n, 1, 1, v, m, generator=g) * 2 * math.pi
    amp = 0.05 * torch.rand(n, c, 1, v, m, generator=g)
    time = torch.linspace(0, 2 * math.pi, t).view(1, 1, t, 1, 1)
    walk = torch.zeros(n, c, t, 1, 1)
    walk[:, -1] = torch.linspace(0, 1.0, t).view(1, t, 1, 1)  # forward along the last axis
    return rest.T.reshape(1, c, 1, v, 1) + amp * torch.sin(time + phase) + walk


def _random_rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
    return q * torch.sign(torch.det(q))  # a proper rotation


# ---- every model on every layout -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "layout", "c", "m", "kw"), [(*case, {}) for case in CASES] + VARIANT_CASES)
def test_model_shapes_and_gradients(name, layout, c, m, kw):
    net = _model(name, layout, c, m, **kw).train()
    x = torch.randn(2, c, T, get_layout(layout).num_joints, m)
    logits = net(x)
    feats = net.forward_features(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert feats.shape == (2, net.fc.in_features)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    missing = [k for k, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"{name}: no finite gradient for {missing}"
    # a parameter whose gradient stays identically zero never learns (e.g. a conv bias before batch norm);
    # checked after one step, since zero-initialised layers (SGN's graph convolutions) open the path then
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1])).backward()
    dead = [k for k, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"{name}: zero gradient for {dead}"


@pytest.mark.parametrize("name", list_models())
def test_classifier_bone_modality(name):
    """Through the Classifier (normalisation + bone modality), gradients reach the input coordinates."""
    # The emotion recognizer normalises its own input and reads coordinates (its config: none / joint).
    normalize, modality = ("none", "joint") if name == "emotion" else ("center_rotate", "bone")
    clf = Classifier(_model(name, "ntu25", 3, 2), "ntu25", normalize=normalize, modality=modality).train()
    x = _motion("ntu25", m=2).requires_grad_(True)
    logits = clf(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert clf.forward_features(x).shape[0] == 2
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_models_with_padding_and_absent_person():
    """Zero-padded frames and an absent second person keep outputs and input gradients finite."""
    x = _motion("ntu25", m=2)
    x[:, :, 10:] = 0.0
    x[1, ..., 1] = 0.0
    x.requires_grad_(True)
    for name in list_models():
        normalize = "none" if name == "emotion" else "center_rotate"
        clf = Classifier(_model(name, "ntu25", 3, 2), "ntu25", normalize=normalize).eval()
        x.grad = None
        clf(x).sum().backward()
        assert torch.isfinite(x.grad).all(), name


# ---- the graph -----------------------------------------------------------------------------------


def test_hop_and_root_distances_follow_the_tree():
    layout = get_layout("kinect20")
    hops = hop_distance(layout)
    assert (hops == hops.T).all() and (np.diag(hops) == 0).all()
    child, parent = layout.bone_index
    assert (hops[child, parent] == 1).all() and (hops == 1).sum() == 2 * layout.num_bones
    depth = np.zeros(layout.num_joints, dtype=np.int64)
    for j in layout.topological_order[1:]:
        depth[j] = depth[layout.parents[j]] + 1
    np.testing.assert_array_equal(root_distance(layout), depth)
    assert root_distance(layout, "shoulder_center")[layout.index("shoulder_center")] == 0


def test_spatial_partition_sums():
    layout = get_layout("gait16")
    v = layout.num_joints
    a = spatial_partition(layout)
    assert a.shape == (3, v, v) and a.dtype == np.float32
    # ST-GCN ("whole"): the subsets split the row-normalised adjacency with self-loops.
    np.testing.assert_allclose(a.sum(0), normalized_adjacency(layout), atol=1e-7)
    np.testing.assert_allclose(a.sum((0, 2)), np.ones(v), atol=1e-6)
    deg = layout.adjacency.sum(1) + 1
    np.testing.assert_allclose(np.diag(a[0]), 1 / deg, atol=1e-7)
    # Rooted at the tree's root, the centripetal neighbour is the parent, the centrifugal ones the children.
    for j in range(v):
        p = layout.parents[j]
        assert set(np.flatnonzero(a[1, j])) == ({p} if p >= 0 else set())
        assert set(np.flatnonzero(a[2, j])) == set(layout.children(j))
    # 2s-AGCN ("subset"): identity, then each neighbour subset row-normalised on its own.
    s = spatial_partition(layout, normalize="subset")
    np.testing.assert_array_equal(s[0], np.eye(v))
    np.testing.assert_allclose(s[1].sum(1), [float(p >= 0) for p in layout.parents], atol=1e-6)
    np.testing.assert_allclose(s[2].sum(1), [float(bool(layout.children(j))) for j in range(v)], atol=1e-6)
    # Another centre re-orients the tree: the old root's neighbour towards the centre becomes centripetal.
    c = spatial_partition(layout, center="neck")
    assert c[1, layout.root, layout.index("spine")] > 0 and c[2, layout.root, layout.index("spine")] == 0
    with pytest.raises(ValueError, match="normalize must be one of"):
        spatial_partition(layout, normalize="sym")
    with pytest.raises(ValueError, match=r"center must be a joint of 'gait16' \(0..15\), got 16"):
        spatial_partition(layout, center=16)


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "openpose18"])
def test_fixed_adjacency_is_built_from_the_layout(layout):
    """Every GCN's fixed graph is the partition of the layout (of gait16 for the emotion net): no edge list
    is copied anywhere."""
    lay = get_layout(layout)
    expected = {
        "stgcn": spatial_partition(lay),
        "agcn": spatial_partition(lay, normalize="subset"),
        "emotion": spatial_partition("gait16"),
    }
    for name, want in expected.items():
        net = _model(name, layout, 3, 2)
        blocks = [mod for mod in net.modules() if isinstance(mod, (STGCNBlock, AdaptiveGraphConv))]
        assert blocks, name
        for block in blocks:
            np.testing.assert_array_equal(block.A.numpy(), want)
        edges = blocks[0].A.sum(0).numpy() > 0
        graph_layout = get_layout("gait16") if name == "emotion" else lay
        np.testing.assert_array_equal(edges & ~np.eye(len(edges), dtype=bool), graph_layout.adjacency > 0)


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "openpose18"])
def test_ctrgcn_graph_is_built_from_the_layout(layout):
    """CTR-GCN's blocks keep the layout's partition (transposed, as CTR-GCN applies it) and initialise the
    learned topology with it."""
    from lightning_skel.models.ctrgcn import CTRGraphConv

    lay = get_layout(layout)
    net = _model("ctrgcn", layout, 3, 2, graph_center=lay.joint_names[1])
    want = spatial_partition(lay, center=lay.joint_names[1], normalize="subset").transpose(0, 2, 1)
    units = [m for m in net.modules() if isinstance(m, CTRGraphConv)]
    assert len(units) == TINY["ctrgcn"]["num_blocks"]
    for unit in units:
        np.testing.assert_array_equal(unit.A.numpy(), want)
        np.testing.assert_array_equal(unit.PA.detach().numpy(), want)


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "openpose18"])
def test_msg3d_graph_is_built_from_the_layout(layout):
    """MS-G3D's graph convolutions keep the layout's bone graph and derive their scales from it: the graph
    itself, and for G3D the graph of a window of frames (every joint joined to itself and its neighbours in
    every frame of the window)."""
    from lightning_skel.models.graph import multiscale_adjacency
    from lightning_skel.models.msg3d import MultiScaleGraphConv, SpatialTemporalGraphConv

    lay = get_layout(layout)
    net = _model("msg3d", layout, 3, 2, windows=[3, 5], window_dilations=[1, 1])
    sgcn = [m for m in net.modules() if isinstance(m, MultiScaleGraphConv)]
    g3d = [m for m in net.modules() if isinstance(m, SpatialTemporalGraphConv)]
    assert len(sgcn) == 3 and len(g3d) == 6
    for m in sgcn + g3d:
        np.testing.assert_array_equal(m.A_binary.numpy(), lay.adjacency)
    np.testing.assert_array_equal(sgcn[0].A_powers.numpy(), multiscale_adjacency(lay.adjacency, 3))
    v, window = lay.num_joints, g3d[1].window
    assert window == 5
    tiled = np.tile(lay.adjacency + np.eye(v, dtype=np.float32), (window, window))
    np.testing.assert_array_equal(g3d[1].A_scales.numpy(), multiscale_adjacency(tiled, 2))
    assert g3d[1].A_scales.shape == (2 * window * v, window * v)


def test_msg3d_temporal_windows_are_the_zero_padded_frames_around_each_start():
    """MS-G3D's windows (official: ``nn.Unfold``, frames moved next to the joints) as strided views."""
    from lightning_skel.models.msg3d import TemporalWindows

    x = torch.randn(2, 3, 11, 4)
    for window, stride, dilation in [(3, 1, 1), (5, 2, 1), (3, 2, 2)]:
        got = TemporalWindows(window, stride, dilation)(x)
        pad = dilation * (window - 1) // 2
        unfold = torch.nn.Unfold((window, 1), dilation=(dilation, 1), stride=(stride, 1), padding=(pad, 0))
        starts = (11 - 1) // stride + 1
        want = (
            unfold(x).view(2, 3, window, starts, 4).permute(0, 1, 3, 2, 4).reshape(2, 3, starts, window * 4)
        )
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_stage_plan_is_the_papers_network():
    assert stage_plan(64, 10) == [(64, 1)] * 4 + [(128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]
    assert stage_plan(8, 3) == [(8, 1), (16, 2), (32, 2)]
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        stage_plan(8, 0)
    assert emotion_plan(32, 3) == [(32, 1), (64, 2), (64, 2)]  # STEP
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        emotion_plan(32, 0)


def test_temporal_conv_is_a_same_padded_convolution():
    """The explicit padding (a workaround for a CPU heap corruption in torch's padded Conv2d backward) is
    the same operator as Conv2d's own padding."""
    conv = TemporalConv(4, 6, kernel=75, stride=2)
    x = torch.randn(2, 4, 30, 5)
    want = torch.nn.functional.conv2d(x, conv.conv.weight, conv.conv.bias, stride=(2, 1), padding=(37, 0))
    torch.testing.assert_close(conv(x), want)
    with pytest.raises(ValueError, match="temporal kernel must be odd, got 8"):
        TemporalConv(4, 6, kernel=8)


@pytest.mark.parametrize(("c_in", "c_out"), [(3, 8), (8, 8), (8, 4)])
def test_graph_conv_is_st_gcn_s_operator(c_in, c_out):
    """The block's graph convolution, computed graph first, equals ST-GCN's order (the 1x1 convolution to
    K * C_out channels, then each subset's adjacency times its edge importance over joints), bias included,
    and so do its gradients with respect to the input, the weights and the edge importance."""
    from lightning_skel.models.graph import spatial_partition

    torch.manual_seed(0)
    block = STGCNBlock(c_in, c_out, spatial_partition(get_layout("kinect20"))).double()
    with torch.no_grad():
        block.importance.uniform_(0.5, 1.5)
        block.gcn.bias.normal_()
    x = torch.randn(2, c_in, 6, 20, dtype=torch.float64, requires_grad=True)
    h = block.gcn(x).view(2, block.num_subsets, c_out, 6, 20)
    want = torch.einsum("nkctj,kij->ncti", h, block.adjacency)
    got = block.graph_conv(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    seed = torch.randn_like(want)
    params = (x, block.gcn.weight, block.gcn.bias, block.importance)
    g_want = torch.autograd.grad((want * seed).sum(), params)
    g_got = torch.autograd.grad((got * seed).sum(), params)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ---- model-specific behaviour ----------------------------------------------------------------------


def test_sgn_accepts_any_length_up_to_num_frames():
    net = _model("sgn", "kinect20", 3, 1).eval()
    for t in (1, 5, T):
        assert net(torch.randn(2, 3, t, 20, 1)).shape == (2, NUM_CLASSES)
    with pytest.raises(ValueError, match=f"num_frames={T} frames, got T={T + 1}"):
        net(torch.randn(2, 3, T + 1, 20, 1))


def test_agcn_needs_its_number_of_persons():
    net = _model("agcn", "ntu25", 3, 2)
    with pytest.raises(ValueError, match="num_persons=2, got input with M=1"):
        net(torch.randn(2, 3, T, 25, 1))


def _hcn_reference_parameters(c: int, v: int, width: int, window: int, feature_dim: int, k: int) -> int:
    """The parameter count of huguyuehuhu/HCN-pytorch ``model/HCN.py`` read off its layers (weights + biases;
    ``num_person`` enters no layer): per stream ``conv1`` 1x1 C->width, ``conv2`` 3x1 width->window, ``conv3``
    3x3 V->width/2, ``conv4`` 3x3 width/2->width; ``conv5`` 3x3 2w->2w, ``conv6`` 3x3 2w->4w; ``fc7``
    4w * (window/16)^2 -> feature_dim (its ``256*2``), ``fc8`` feature_dim -> K."""

    def conv(i: int, o: int, kh: int, kw: int) -> int:
        return i * o * kh * kw + o

    half, side = width // 2, window // 16
    stream = conv(c, width, 1, 1) + conv(width, window, 3, 1) + conv(v, half, 3, 3) + conv(half, width, 3, 3)
    fused = conv(2 * width, 2 * width, 3, 3) + conv(2 * width, 4 * width, 3, 3)
    head = (4 * width * side * side + 1) * feature_dim + (feature_dim + 1) * k
    return 2 * stream + fused + head


@pytest.mark.parametrize(("window", "count"), [(64, 2_647_868), (32, 1_062_652)])
def test_hcn_reference_has_the_reference_parameter_count(window, count):
    """At the reference's NTU-60 configs (experiments/NTU-RGB-D-CS/HCN02/params.json: in_channel 3,
    out_channel 64, window_size 64, num_joint 25, num_person 2, num_class 60; HCN01: window_size 32) the
    default ``hcn`` has the reference's parameters, layer by layer as in its code (counts from that code's
    layer shapes, :func:`_hcn_reference_parameters`), and no batch norm."""
    net = build_model("hcn", 60, "ntu25", in_channels=3, num_persons=2, width=64, window=window)
    assert _hcn_reference_parameters(3, 25, 64, window, 512, 60) == count
    assert sum(p.numel() for p in net.parameters()) == count
    assert not [mod for mod in net.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    assert net.conv2.out_channels == window and net.fc7[0].in_features == 256 * (window // 16) ** 2
    streams = [f"conv{i}{s}" for s in ("", "m") for i in range(1, 5)]
    assert [name for name, _ in net.named_children()] == [*streams, "conv5", "conv6", "fc7", "fc"]


def test_hcn_compact_variant_is_the_network_the_figures_were_measured_with():
    """``variant="compact"``: the network of the UTD-MHAD figures (configs/experiment/utd_hcn.yaml's sizes,
    0.26 M parameters), its input batch norms and state_dict keys as before the variants existed."""
    net = build_model("hcn", 27, "kinect20", num_persons=1, variant="compact", width=32, feature_dim=128)
    assert sum(p.numel() for p in net.parameters()) == 264_235
    assert [name for name, _ in net.named_children()] == ["joint_bn", "motion_bn", "joint", "motion", "fuse",
                                                          "fc7", "fc"]  # fmt: skip
    # any clip length: an adaptive pool before the head
    for t in (9, 40):
        assert net.eval()(torch.randn(2, 3, t, 20, 1)).shape == (2, 27)


def test_hcn_reference_merges_persons_before_fc7_and_resizes_the_motion():
    """The persons' last maps are merged by a maximum before ``fc7`` (so swapping persons changes nothing), and
    the motion stream sees the ``T - 1`` frame differences linearly resized to ``T`` frames: a clip moving
    at constant speed has the same differences in every frame, so its motion input is that constant."""
    net = _model("hcn", "ntu25", 3, 2).eval()
    x = torch.randn(2, 3, T, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x.flip(-1)), rtol=0, atol=0)
        seen = []
        hook = net.conv1m.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
        step = torch.randn(1, 3, 1, 25, 1)
        net(torch.arange(T).view(1, 1, T, 1, 1) * step.expand(1, 3, 1, 25, 2))
        hook.remove()
    assert seen[0].shape == (2, 3, T, 25)  # (N * M, C, T, V)
    torch.testing.assert_close(seen[0], step[..., 0].expand(2, 3, T, 25), rtol=1e-6, atol=1e-6)


def test_hcn_arguments_name_the_variant_and_the_window():
    with pytest.raises(
        ValueError, match=r"hcn: variant must be one of \('reference', 'compact'\), got 'small'"
    ):
        build_model("hcn", 5, "ntu25", variant="small")
    with pytest.raises(ValueError, match="window must be an int >= 16"):
        build_model("hcn", 5, "ntu25", window=8)
    net = _model("hcn", "ntu25", 3, 2)
    with pytest.raises(
        ValueError, match=rf"built for window={T} frames, got T={T + 4}; set model.kwargs.window"
    ):
        net(torch.randn(2, 3, T + 4, 25, 2))


def test_score_fusion_adds_the_streams():
    joint = Classifier(_model("agcn", "kinect20", 3, 1), "kinect20", modality="joint").eval()
    bone = Classifier(_model("agcn", "kinect20", 3, 1), "kinect20", modality="bone").eval()
    x = _motion("kinect20")
    with torch.no_grad():
        fused = ScoreFusion([joint, bone])
        torch.testing.assert_close(fused(x), joint(x) + bone(x))
        weighted = ScoreFusion([joint, bone], weights=[1.0, 0.5])
        torch.testing.assert_close(weighted(x), joint(x) + 0.5 * bone(x))
        torch.testing.assert_close(
            fused.forward_features(x), torch.cat([joint.forward_features(x), bone.forward_features(x)], 1)
        )
    with pytest.raises(ValueError, match="2 weights for 1 streams"):
        ScoreFusion([joint], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="at least one stream"):
        ScoreFusion([])


# ---- affective features and phi ---------------------------------------------------------------------


def _affect(x: torch.Tensor, layout: str, lengths: torch.Tensor | None = None) -> torch.Tensor:
    return affective_features(normalized_gait16(x, layout, lengths), lengths)


def test_affective_features_shape_and_names():
    f = _affect(_motion("kinect20"), "kinect20")
    assert f.shape == (2, len(AFFECTIVE_FEATURES)) and len(set(AFFECTIVE_FEATURES)) == len(AFFECTIVE_FEATURES)
    assert torch.isfinite(f).all()
    angles = [i for i, k in enumerate(AFFECTIVE_FEATURES) if k.startswith(("angle_", "tilt_"))]
    assert ((f[:, angles] >= 0) & (f[:, angles] <= math.pi)).all()


def test_affective_features_invariant_to_rotation_translation_scale():
    x = _motion("ntu25", seed=1)
    r = _random_rotation(3)
    moved = 1.7 * torch.einsum("ij,njtvm->nitvm", r, x) + torch.tensor([0.4, -1.2, 3.0]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(_affect(moved, "ntu25"), _affect(x, "ntu25"), atol=2e-4, rtol=1e-4)


def test_affective_features_of_a_static_clip_have_zero_speed():
    x = _motion("kinect20")[:, :, :1].expand(-1, -1, T, -1, -1).contiguous()
    f = _affect(x, "kinect20")
    moving = [i for i, k in enumerate(AFFECTIVE_FEATURES) if "_speed_" in k or "_accel_" in k]
    assert len(moving) == 24
    torch.testing.assert_close(f[:, moving], torch.zeros(2, len(moving)), atol=1e-5, rtol=0)


def test_affective_features_average_over_valid_frames_only():
    x = _motion("kinect20")
    lengths = torch.tensor([T, 10])
    padded = x.clone()
    padded[1, :, 10:] = 0.0
    f = _affect(padded, "kinect20", lengths)
    torch.testing.assert_close(f[1], _affect(x[1:, :, :10], "kinect20")[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f[0], _affect(x[:1], "kinect20")[0], atol=1e-5, rtol=1e-5)


def test_affective_features_have_finite_gradients_at_degenerate_poses():
    x = _motion("gait16")
    x[:, :, :, get_layout("gait16").index("left_hand")] = x[:, :, :, get_layout("gait16").index("left_elbow")]
    x[:, :, 12:] = 0.0  # padding
    x.requires_grad_(True)
    _affect(x, "gait16").sum().backward()
    assert torch.isfinite(x.grad).all()


def test_affective_features_in_2d():
    x = _motion("openpose18", c=2, m=2)
    assert torch.isfinite(_affect(x, "openpose18")).all()


def test_emotion_phi_is_the_same_through_any_layout():
    """phi on an NTU-25 clip equals phi of that clip mapped to gait16 in a gait16 recognizer with the same
    weights: the recognizer's weights do not depend on the input layout."""
    on_ntu = _model("emotion", "ntu25", 3, 2).eval()
    on_gait = _model("emotion", "gait16", 3, 1).eval()
    on_gait.load_state_dict(on_ntu.state_dict())
    x = _motion("ntu25", m=2, seed=2)
    with torch.no_grad():
        phi = on_ntu.forward_features(x)
        assert isinstance(on_ntu, EmotionNet) and phi.shape == (2, on_ntu.feature_dim)
        torch.testing.assert_close(on_gait.forward_features(to_gait16(x, "ntu25")), phi, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(on_ntu.gait_features(on_ntu.to_gait(x)), phi)
        # Only the first person is read.
        torch.testing.assert_close(on_ntu.forward_features(x[..., :1]), phi)
        # The normalisation makes phi blind to where the subject stands, which way it faces and its size.
        moved = 0.8 * torch.einsum("ij,njtvm->nitvm", _random_rotation(5), x) + 2.0
        torch.testing.assert_close(on_ntu.forward_features(moved), phi, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("name", list_models())
def test_every_model_compiles_whole_for_the_attack_check(name, monkeypatch):
    """ADMM's ``compile=True`` compiles the classifier's forward-only candidate check for any number of rows:
    every registered model, behind the Classifier's normalisation, traces as one graph (no break) and gives
    the eager labels, for several rows and for one (a size torch.compile specialises). The model has run
    once eagerly, as before any attack (the clips it classifies correctly): on Python 3.11 a layout property
    computed for the first time inside the compiled region breaks the graph (functools.cached_property
    takes a lock). Graphs captured with the eager backend: inductor's code generation would take minutes
    here (benchmarks/attack_utd.py's ``_compiled`` configurations run it on UTD-MHAD, docs/RESULTS.md)."""
    import functools

    from torch._dynamo.utils import counters

    from lightning_skel.attacks import build_attack

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    normalize = "none" if name == "emotion" else "center_rotate"
    clf = Classifier(_model(name, "ntu25", 3, 2), "ntu25", normalize=normalize).eval()
    with torch.no_grad():
        clf(_motion("ntu25", n=2, m=2))
    attack = build_attack("admm", clf, "ntu25", compile=True)
    torch._dynamo.reset()
    counters.clear()
    for n in (3, 1, 2):
        x = _motion("ntu25", n=n, m=2, seed=n)
        with torch.no_grad():
            pred, passes = attack._labels(x)
            assert pred.tolist() == clf(x).argmax(1).tolist()
        assert set(passes.tolist()) <= {1, 2}
    assert counters["stats"]["unique_graphs"] >= 1
    assert not counters["graph_break"], dict(counters["graph_break"])
