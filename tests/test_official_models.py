"""The published networks' graphs: the official NTU RGB+D graph of 2s-AGCN, CTR-GCN and MS-G3D, CTR-GCN's
partition of it and MS-G3D's multi-scale adjacency."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_skel.models.ctrgcn import ctrgcn_partition
from lightning_skel.models.graph import hops, multiscale_adjacency, official_ntu_graph
from lightning_skel.skeleton.layouts import get_layout


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
