"""Official checkpoints imported exactly: the official ST-GCN / 2s-AGCN state_dicts of the fixtures beside the
checkout (../shared/fixtures/official, README there) go through the import and reproduce the official logits."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import DATA

from lightning_skel.checkpoints import CheckpointError
from lightning_skel.models import build_model
from lightning_skel.models.convert import convert, map_state_dict, unwrap
from lightning_skel.models.graph import official_ntu_partition, spatial_partition
from lightning_skel.systems.attack_run import load_classifier

FIXTURES = DATA.parent / "fixtures" / "official"
requires_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"official fixtures not found at {FIXTURES}"
)


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt")


@requires_fixtures
@pytest.mark.parametrize("name", ["stgcn", "agcn"])
def test_imported_checkpoint_reproduces_official_logits(tmp_path, name):
    fx = _fixture(name)
    sd_path = tmp_path / "official.pt"
    torch.save(fx["state_dict"], sd_path)
    out = tmp_path / "imported.ckpt"
    convert(name, sd_path, out, "ntu60_xsub")
    classifier, hp = load_classifier(out)
    assert hp["model"] == name and hp["model_kwargs"]["graph"] == "official_ntu"
    assert hp["layout"] == "ntu25" and len(hp["class_names"]) == 60 and hp["normalize"] == "none"
    assert sum(p.numel() for p in classifier.parameters()) == sum(
        v.numel()
        for k, v in fx["state_dict"].items()
        if k != "A" and "running" not in k and "num_batches" not in k
    )
    with torch.no_grad():
        logits = classifier(fx["input"])  # normalize none, joint: the network on the official input
        scale = fx["logits"].abs().max()
        assert (logits - fx["logits"]).abs().max() <= 1e-4 * scale
        logits64 = classifier.double()(fx["input"].double())
    assert (logits64 - fx["logits_f64"]).abs().max() <= 1e-9


@requires_fixtures
def test_import_refuses_missing_and_unexpected_keys(tmp_path):
    sd = OrderedDict(_fixture("stgcn")["state_dict"])
    del sd["st_gcn_networks.3.gcn.conv.bias"]
    sd["st_gcn_networks.3.extra.weight"] = torch.zeros(7, 2)
    sd["fcn.weight"] = torch.zeros(60, 128, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as err:
        convert("stgcn", path, tmp_path / "out.ckpt", "ntu60_xsub")
    msg = str(err.value)
    assert "missing (1): st_gcn_networks.3.gcn.conv.bias [192]" in msg
    assert "unexpected (1): st_gcn_networks.3.extra.weight [7, 2]" in msg
    assert "fcn.weight [60, 128, 1, 1] (expected [60, 256, 1, 1])" in msg
    assert not (tmp_path / "out.ckpt").exists()


@requires_fixtures
def test_import_accepts_released_key_variants(tmp_path):
    """DataParallel prefixes, {'state_dict'} / {'model'} wrappers, and the released 2s-AGCN names (conv_res for
    down, l1a for l1) map to the same network as the current names."""
    sd = _fixture("agcn")["state_dict"]
    project = build_model("agcn", 60, "ntu25", graph="official_ntu").state_dict()
    want = map_state_dict("agcn", sd, project)

    def released(k: str) -> str:
        return re.sub(r"^l1\.", "l1a.", re.sub(r"^(l[158]\.gcn1\.)down\.", r"\1conv_res.", k))

    assert any(".conv_res." in released(k) for k in sd)
    variants = [
        {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        {"model": OrderedDict((released(k), v) for k, v in sd.items()), "epoch": 49},
        OrderedDict((f"module.{released(k)}", v) for k, v in sd.items()),
    ]
    for obj in variants:
        got = map_state_dict("agcn", unwrap(obj, "variant"), project)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    path = tmp_path / "released.pt"
    torch.save(variants[1], path)
    convert("agcn", path, tmp_path / "out.ckpt", "ntu60_xsub")
    ckpt = torch.load(tmp_path / "out.ckpt", weights_only=True)
    for k, v in want.items():
        assert torch.equal(ckpt["state_dict"][f"classifier.net.{k}"], v)


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
