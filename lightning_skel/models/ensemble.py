"""Late score fusion of trained classifiers, as the two streams of 2s-AGCN (Shi et al., CVPR 2019: the scores
of the joint and the bone stream are added; the official ``ensemble.py`` weighs the bone stream by ``alpha``).

The fusion is built from trained :class:`~lightning_skel.models.Classifier` objects (each with its own
normalisation and modality), not from a registry name, and is itself a classifier of raw coordinates
``(N, C, T, V, M)``, so attacks differentiate through every stream at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ScoreFusion(nn.Module):
    """``forward(x) = sum_s w_s * stream_s(x)``: ``(N, num_classes)``; ``forward_features(x)`` is the
    concatenation of the streams' features, ``(N, sum_s D_s)``. ``weights`` default to one per stream.
    ``score_channel`` is the streams' own: all of them take the keypoint-score channel, or none does."""

    def __init__(self, streams: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(streams) == 0:
            raise ValueError("ScoreFusion needs at least one stream")
        weights = [1.0] * len(streams) if weights is None else list(weights)
        if len(weights) != len(streams):
            raise ValueError(f"ScoreFusion got {len(weights)} weights for {len(streams)} streams")
        channels = {bool(getattr(s, "score_channel", False)) for s in streams}
        if len(channels) > 1:
            raise ValueError("ScoreFusion streams disagree on score_channel: all or none must take the score")
        self.score_channel = channels.pop()
        self.streams = nn.ModuleList(streams)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        scores = [stream(x) for stream in self.streams]
        if len({s.shape for s in scores}) != 1:
            raise ValueError(
                f"ScoreFusion streams disagree on the score shape: {[tuple(s.shape) for s in scores]}"
            )
        logits = torch.stack(scores)  # (S, N, num_classes)
        return torch.einsum("s,snk->nk", self.weights.to(logits.dtype), logits)

    def forward_features(self, x: Tensor) -> Tensor:
        return torch.cat([stream.forward_features(x) for stream in self.streams], dim=1)
