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
    """Late fusion of classifiers' scores: ``forward(x) = sum_s w_s * stream_s(x)``.

    2s-AGCN's two-stream ensemble (Shi et al., CVPR 2019; lshiwjx/2s-AGCN ``ensemble.py``).

    Args:
        streams: the trained classifiers, each ``(N, C, T, V, M) -> (N, K)`` with ``forward_features``.
            All of them take the keypoint-score channel (``score_channel``), or none does.
        weights: one weight per stream (default 1 each; 2s-AGCN weighs the bone stream by ``alpha``).

    Shape:
        - x: ``(N, C, T, V, M)`` raw coordinates.
        - output: ``(N, K)``; ``forward_features(x)``: the streams' features concatenated,
          ``(N, sum_s D_s)``.

    Example:
        >>> import torch
        >>> from lightning_skel.models import build_model
        >>> joint, bone = (build_model("stgcn", 5, "kinect20", num_persons=1, channels=8) for _ in "jb")
        >>> ScoreFusion([joint, bone], weights=[1.0, 0.6])(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])
    """

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
