"""The official input pipelines inside the Classifier: the registry, the wiring, the averaging of a
pipeline's several samplings per clip."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lightning_skel.data.pipelines import PIPELINES, Pipeline, build_pipeline
from lightning_skel.models import Classifier


class _Twice(Pipeline):
    """Two samplings per clip: the clip and the clip scaled by 3 (so that the mean of linear logits is the
    logits of the clip scaled by 2)."""

    samples = 2

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([x, 3 * x], 1).flatten(0, 1)


class _Linear(torch.nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(d, k, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))

    def forward_features(self, x: Tensor) -> Tensor:
        return x.flatten(1)


def test_unknown_pipeline_lists_the_known_ones():
    with pytest.raises(KeyError, match="stgcn"):
        build_pipeline("nope", "ntu25")


def test_stgcn_pipeline_passes_clips_through():
    x = torch.randn(2, 3, 7, 25, 2)
    assert build_pipeline("stgcn", "ntu25")(x) is x


def test_pipeline_replaces_normalize_and_averages_the_samplings(monkeypatch):
    monkeypatch.setitem(PIPELINES._items, "twice", _Twice)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 20, 1, dtype=torch.float64)
    net = _Linear(3 * 5 * 20, 6)
    clf = Classifier(net, "kinect20", normalize="none", pipeline="twice")
    assert clf.samples == 2
    want = net(2 * x)  # affine: the mean of f(x) and f(3x) is f(2x)
    torch.testing.assert_close(clf(x), want, rtol=0, atol=1e-12)
    assert clf.forward_features(x).shape == (4, 300)
    with pytest.raises(ValueError, match="normalize must be 'none'"):
        Classifier(net, "kinect20", normalize="center_rotate", pipeline="twice")


def test_a_pipeline_that_computes_on_coordinates_refuses_a_score_channel():
    """A centring or rotation would treat the keypoint score as a coordinate; the pass-through takes it."""
    net = _Linear(4 * 5 * 25, 6)
    with pytest.raises(ValueError, match="cannot take score_channel"):
        Classifier(net, "ntu25", normalize="none", pipeline="agcn", score_channel=True)
    clf = Classifier(net, "ntu25", normalize="none", pipeline="stgcn", score_channel=True)
    x = torch.randn(2, 4, 5, 25, 1, dtype=torch.float64)
    torch.testing.assert_close(clf(x), net(x), rtol=0, atol=0)
