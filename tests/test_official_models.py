"""CTR-GCN and MS-G3D are the published networks: the official state_dicts of the fixtures load into the
project's models built with the official NTU graph and reproduce the official logits; the graphs they are
built from; the graph a model was built with travels in its state_dict."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_skel.models import build_model
from lightning_skel.models.ctrgcn import ctrgcn_partition
from lightning_skel.models.graph import hops, multiscale_adjacency, official_ntu_graph
from lightning_skel.skeleton.layouts import get_layout

# Values computed by the official code (its README lists every file), beside the checkout.
OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"
requires_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason=f"official-code fixtures not found at {OFFICIAL}"
)
# The buffers holding the graph, which the official code keeps as plain attributes (not in its state_dict).
GRAPH_BUFFERS = {"ctrgcn": ".gcn1.A", "msg3d": ".A_binary"}


def _official(name: str) -> tuple[torch.nn.Module, dict]:
    """The fixture of ``name`` and the project's model built with the official graph, the fixture's
    state_dict loaded: every key but the graph buffers matches, and nothing is left over."""
    fixture = torch.load(OFFICIAL / f"{name}.pt", weights_only=True)
    net = build_model(name, 60, "ntu25", in_channels=3, num_persons=2, graph="official_ntu")
    result = net.load_state_dict(fixture["state_dict"], strict=False)
    graph_keys = {k for k in net.state_dict() if k.endswith(GRAPH_BUFFERS[name])}
    assert graph_keys and set(result.missing_keys) == graph_keys
    assert result.unexpected_keys == []
    return net.eval(), fixture


@requires_official
@pytest.mark.parametrize("name", ["ctrgcn", "msg3d"])
def test_official_state_dict_reproduces_the_official_logits_in_float32(name):
    """float32 within 1e-4 of the largest |logit| (CPU float32 rounding depends on the kernels and threads;
    the official code itself differs by 4e-7 relative between 1 and 2 threads)."""
    net, fixture = _official(name)
    assert sum(p.numel() for p in net.parameters()) == {"ctrgcn": 1_446_672, "msg3d": 3_194_595}[name]
    with torch.no_grad():
        logits = net(fixture["input"])
    want = fixture["logits"]
    assert (logits - want).abs().max() <= 1e-4 * want.abs().max()
    assert (logits.argmax(1) == want.argmax(1)).all()


@requires_official
@pytest.mark.parametrize("name", ["ctrgcn", "msg3d"])
def test_official_state_dict_reproduces_the_official_logits_in_float64(name):
    """float64 within 1e-9. MS-G3D's normalised graphs are float32 constants in the official code (cast to
    float64 in the fixture's float64 run); the project builds them the same way, so they agree exactly."""
    net, fixture = _official(name)
    with torch.no_grad():
        logits = copy.deepcopy(net).double()(fixture["input"].double())
    assert logits.dtype == torch.float64
    assert (logits - fixture["logits_f64"]).abs().max() <= 1e-9


# ---- the graphs -----------------------------------------------------------------------------------------


def _edges(layout) -> set[frozenset[str]]:
    return {frozenset((layout.joint_names[c], layout.joint_names[p])) for c, p in layout.bones}


def test_official_ntu_graph_differs_from_ntu25_at_the_hands():
    official, ntu = official_ntu_graph(), get_layout("ntu25")
    assert official.joint_names == ntu.joint_names
    assert official.joint_names[official.root] == "spine_shoulder"

    def pairs(*names: tuple[str, str]) -> set[frozenset[str]]:
        return {frozenset((f"{s}_{a}", f"{s}_{b}")) for s in ("left", "right") for a, b in names}

    assert _edges(ntu) - _edges(official) == pairs(("hand_tip", "hand"), ("thumb", "wrist"))
    assert _edges(official) - _edges(ntu) == pairs(("hand_tip", "thumb"), ("thumb", "hand"))


def test_ctrgcn_partition_is_the_official_spatial_graph():
    """CTR-GCN's graph/tools.py ``get_spatial_graph``: the identity; ``In[u, v] = 1`` where ``v``'s inward
    neighbour (one hop closer to spine_shoulder) is ``u``; ``Out[v, u] = 1 / (number of joints whose inward
    neighbour is u)``."""
    g = official_ntu_graph()
    a = ctrgcn_partition(g)
    v = g.num_joints
    inward = [(j, g.parents[j]) for j in range(v) if g.parents[j] >= 0]
    fan_in = np.bincount([p for _, p in inward], minlength=v)
    want = np.zeros((3, v, v), dtype=np.float32)
    want[0] = np.eye(v)
    for j, p in inward:
        want[1, p, j] = 1.0
        want[2, j, p] = 1.0 / fan_in[p]
    np.testing.assert_array_equal(a, want)
    spine_mid, spine_shoulder = g.index("spine_mid"), g.index("spine_shoulder")
    assert a[2, spine_mid, spine_shoulder] == 0.25  # spine_shoulder: spine_mid, neck and both shoulders


def test_multiscale_adjacency_scales_are_hop_rings_normalised():
    layout = get_layout("kinect20")
    v = layout.num_joints
    a = multiscale_adjacency(layout.adjacency, 13).reshape(13, v, v)
    assert a.dtype == np.float32
    h = hops(layout.adjacency)
    np.testing.assert_array_equal(a[0], np.eye(v))
    for k in range(1, 13):
        ring = (h == k) | np.eye(v, dtype=bool)
        deg = ring.sum(1).astype(np.float64)
        want = np.where(ring, 1 / np.sqrt(deg[:, None] * deg[None, :]), 0.0)
        np.testing.assert_allclose(a[k], want, rtol=1e-7, atol=0)
        assert (a[k] > 0).tolist() == ring.tolist()
    with pytest.raises(ValueError, match="num_scales must be >= 1, got 0"):
        multiscale_adjacency(layout.adjacency, 0)


@pytest.mark.parametrize("name", ["ctrgcn", "msg3d"])
def test_graph_argument_errors_name_the_model(name):
    with pytest.raises(
        ValueError, match=rf"{name}: graph must be one of \('layout', 'official_ntu'\), got 'ntu'"
    ):
        build_model(name, 5, "ntu25", graph="ntu")
    official_on_kinect = (
        rf"{name}: graph='official_ntu' is the NTU RGB\+D graph, for layout 'ntu25', got 'kinect20'"
    )
    with pytest.raises(ValueError, match=official_on_kinect):
        build_model(name, 5, "kinect20", num_persons=1, graph="official_ntu")


TINY = {
    "ctrgcn": {"channels": 8, "num_blocks": 3, "adaptive": False},
    "msg3d": {"channels": 6, "num_gcn_scales": 4, "num_g3d_scales": 3},
}


@pytest.mark.parametrize("name", ["ctrgcn", "msg3d"])
def test_the_graph_travels_in_the_state_dict(name):
    """A model built with the official graph hands it, through its state_dict, to a model built with the
    layout's: the graph buffers, MS-G3D's normalised graphs derived from them, and so the outputs, become
    the official ones (CTR-GCN without the learned topology, where the partition enters the forward)."""
    torch.manual_seed(0)
    official = build_model(name, 5, "ntu25", graph="official_ntu", **TINY[name]).eval()
    own = build_model(name, 5, "ntu25", **TINY[name]).eval()
    graph_keys = [k for k in own.state_dict() if k.endswith(GRAPH_BUFFERS[name])]
    assert graph_keys and all(not torch.equal(own.get_buffer(k), official.get_buffer(k)) for k in graph_keys)
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        own.load_state_dict(official.state_dict())
        torch.testing.assert_close(own(x), official(x), rtol=0, atol=0)
    for (key, mine), (_, theirs) in zip(own.named_buffers(), official.named_buffers(), strict=True):
        assert torch.equal(mine, theirs), key
    if name == "msg3d":
        np.testing.assert_array_equal(own.sgcn1[0].A_binary.numpy(), official_ntu_graph().adjacency)
        assert "sgcn1.0.A_powers" not in own.state_dict()  # derived, not saved
