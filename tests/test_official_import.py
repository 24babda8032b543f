"""Official checkpoints imported exactly: the official ST-GCN / 2s-AGCN / CTR-GCN / MS-G3D state_dicts of the
fixtures beside the checkout (../shared/fixtures/official, README there) go through the import, record their
official input pipeline, and reproduce the official logits."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import DATA

from lightning_skel.checkpoints import CheckpointError, load_classifier
from lightning_skel.data.pipelines import PIPELINES
from lightning_skel.models import build_model
from lightning_skel.models.convert import OFFICIAL_FORMATS, convert, map_state_dict, unwrap
from lightning_skel.models.graph import official_ntu_partition, spatial_partition

FIXTURES = DATA.parent / "fixtures" / "official"
requires_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"official fixtures not found at {FIXTURES}"
)


FORMATS = ["stgcn", "agcn", "ctrgcn", "msg3d"]
# the official input pipeline each import records: MS-G3D's data preparation is 2s-AGCN's
PIPELINE = {"stgcn": "stgcn", "agcn": "agcn", "ctrgcn": "ctrgcn", "msg3d": "agcn"}


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt")


def test_every_format_records_its_official_pipeline():
    assert all(fmt.pipeline in PIPELINES for fmt in OFFICIAL_FORMATS.values())
    assert {name: fmt.pipeline for name, fmt in OFFICIAL_FORMATS.items() if name in PIPELINE} == PIPELINE
    assert set(FORMATS) <= set(OFFICIAL_FORMATS)


@requires_fixtures
@pytest.mark.parametrize("name", FORMATS)
def test_imported_checkpoint_reproduces_official_logits(tmp_path, name):
    fx = _fixture(name)
    sd_path = tmp_path / "official.pt"
    torch.save(fx["state_dict"], sd_path)
    out = tmp_path / "imported.ckpt"
    convert(name, sd_path, out, "ntu60_xsub")
    assert torch.load(out, weights_only=True)["hyper_parameters"]["pipeline"] == PIPELINE[name]
    classifier, hp = load_classifier(out)
    assert hp["model"] == name and hp["model_kwargs"]["graph"] == "official_ntu"
    assert hp["layout"] == "ntu25" and len(hp["class_names"]) == 60 and hp["normalize"] == "none"
    assert hp["pipeline"] == PIPELINE[name] and classifier.pipeline is not None
    net = classifier.net
    assert sum(p.numel() for p in net.parameters()) == sum(
        v.numel()
        for k, v in fx["state_dict"].items()
        if k != "A" and "running" not in k and "num_batches" not in k
    )
    scale = fx["logits"].abs().max()
    with torch.no_grad():
        logits = net(fx["input"])  # the official network on the official input
        assert (logits - fx["logits"]).abs().max() <= 1e-4 * scale
        if name == "stgcn":  # its pipeline is the identity: raw clips are the official input
            assert (classifier(fx["input"]) - fx["logits"]).abs().max() <= 1e-4 * scale
        logits64 = net.double()(fx["input"].double())
    assert (logits64 - fx["logits_f64"]).abs().max() <= 1e-9


# per format: an official key the test removes, and the head's weight, whose shape it changes
BROKEN = {
    "stgcn": ("st_gcn_networks.3.gcn.conv.bias", "fcn.weight"),
    "agcn": ("l4.gcn1.conv_d.1.weight", "fc.weight"),
    "ctrgcn": ("l4.gcn1.convs.1.conv2.weight", "fc.weight"),
    "msg3d": ("gcn3d2.gcn3d.0.gcn3d.1.A_res", "fc.weight"),
}


@requires_fixtures
@pytest.mark.parametrize("name", FORMATS)
def test_import_refuses_missing_and_unexpected_keys(tmp_path, name):
    sd = OrderedDict(_fixture(name)["state_dict"])
    gone, head = BROKEN[name]
    gone_shape, head_shape = list(sd.pop(gone).shape), list(sd[head].shape)
    sd["blocks.3.extra.weight"] = torch.zeros(7, 2)
    narrow = [head_shape[0], head_shape[1] // 2, *head_shape[2:]]
    sd[head] = torch.zeros(narrow)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as err:
        convert(name, path, tmp_path / "out.ckpt", "ntu60_xsub")
    msg = str(err.value)
    assert f"not an official {name} checkpoint ({OFFICIAL_FORMATS[name].repo})" in msg
    assert f"missing (1): {gone} {gone_shape}" in msg
    assert "unexpected (1): blocks.3.extra.weight [7, 2]" in msg
    assert f"wrong shape (1): {head} {narrow} (expected {head_shape})" in msg
    assert not (tmp_path / "out.ckpt").exists()


@requires_fixtures
@pytest.mark.parametrize("name", ["ctrgcn", "msg3d"])
def test_import_accepts_wrappers_and_dataparallel_prefixes(tmp_path, name):
    """{'state_dict'} / {'model'} wrappers and ``module.`` prefixes map to the same network as the bare
    state_dict; the project keys the official file lacks are the graph buffers only."""
    sd = _fixture(name)["state_dict"]
    fmt = OFFICIAL_FORMATS[name]
    project = build_model(name, 60, "ntu25", **fmt.model_kwargs).state_dict()
    want = map_state_dict(name, sd, project)
    assert {k for k in want if k not in sd} == {k for k in project if k.endswith((".gcn1.A", ".A_binary"))}
    variants = [
        {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        {"model": OrderedDict(sd), "epoch": 64},
        OrderedDict((f"module.{k}", v) for k, v in sd.items()),
    ]
    for obj in variants:
        got = map_state_dict(name, unwrap(obj, "variant"), project)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    path = tmp_path / "wrapped.pt"
    torch.save(variants[0], path)
    convert(name, path, tmp_path / "out.ckpt", "ntu60_xsub")
    ckpt = torch.load(tmp_path / "out.ckpt", weights_only=True)
    assert ckpt["imported_from"] == {"repo": fmt.repo, "file": "wrapped.pt", "format": name}
    for k, v in want.items():
        assert torch.equal(ckpt["state_dict"][f"classifier.net.{k}"], v)


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
