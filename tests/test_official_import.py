"""The official graphs of ST-GCN and 2s-AGCN as a model option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_skel.models import build_model
from lightning_skel.models.graph import official_ntu_partition, spatial_partition


def test_official_graph_is_an_option_and_travels_in_the_checkpoint():
    """The layout's graph stays the default; the official NTU graph is a named option, on ntu25 only; the graph
    a model holds is in its state_dict, so a checkpoint carries it."""
    own = build_model("stgcn", 60, "ntu25", channels=4, num_blocks=2).state_dict()
    official = build_model("stgcn", 60, "ntu25", channels=4, num_blocks=2, graph="official_ntu").state_dict()
    np.testing.assert_array_equal(own["blocks.0.A"].numpy(), spatial_partition("ntu25"))
    np.testing.assert_array_equal(official["blocks.1.A"].numpy(), official_ntu_partition("stgcn", "ntu25"))
    assert not torch.equal(own["blocks.0.A"], official["blocks.0.A"])
    agcn = build_model("agcn", 60, "ntu25", channels=4, num_blocks=2, graph="official_ntu").state_dict()
    np.testing.assert_array_equal(agcn["blocks.0.gcn.A"].numpy(), official_ntu_partition("agcn", "ntu25"))
    with pytest.raises(ValueError, match="needs layout 'ntu25'"):
        build_model("agcn", 27, "kinect20", graph="official_ntu")
    with pytest.raises(ValueError, match="graph must be one of"):
        build_model("stgcn", 60, "ntu25", graph="paper")


def test_official_graphs_follow_the_official_definitions():
    """2s-AGCN: self, centripetal, centrifugal, each subset normalised (so 0, 1, 1/2, 1/4 only); ST-GCN:
    whole-normalised subsets that sum to the normalised adjacency with self-loops, its subset 1 holding the
    neighbours at least as far from spine_shoulder as the joint, with distances capped at 1 hop."""
    a = official_ntu_partition("agcn", "ntu25")
    assert set(np.unique(a).tolist()) == {0.0, 0.25, 0.5, 1.0}
    np.testing.assert_array_equal(a[0], np.eye(25, dtype=np.float32))
    s = official_ntu_partition("stgcn", "ntu25")
    adj = (s.sum(0) > 0).astype(np.float64)
    np.testing.assert_allclose(s.sum(0), adj / adj.sum(1, keepdims=True), rtol=1e-6)
    # left_hand_tip (21) hangs on left_thumb (22) in the official graph, not on left_hand (7)
    assert s[:, 21, 22].sum() > 0 and s[:, 21, 7].sum() == 0
    # both left_elbow (5) and left_wrist (6) are more than a hop from spine_shoulder: the same capped
    # distance, so each is in the other's subset 1
    assert s[1, 5, 6] > 0 and s[1, 6, 5] > 0


def test_agcn_reads_checkpoints_with_the_summed_subset_bias():
    """Checkpoints from before ``subset_bias`` hold the K subset biases summed in ``conv.bias``."""
    net = build_model("agcn", 27, "kinect20", channels=4, num_blocks=2).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    old = {}
    for k, v in net.state_dict().items():
        if k.endswith("gcn.subset_bias"):
            old[k.replace("subset_bias", "conv.bias")] = v.sum(0)
        else:
            old[k] = v
    other = build_model("agcn", 27, "kinect20", channels=4, num_blocks=2).eval()
    other.load_state_dict(old)
    x = torch.randn(2, 3, 12, 20, 2)
    with torch.no_grad():
        torch.testing.assert_close(other(x), net(x))
