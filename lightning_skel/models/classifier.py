"""The classifier an attack sees: input preprocessing (normalisation, modality) composed with a network.

Keeping the preprocessing inside the module means every consumer (training, attacks, adversarial training,
the emotion term) feeds raw coordinates ``(N, C, T, V, M)`` and differentiates through the same function.
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_skel.skeleton.features import MODALITIES, normalize, to_modality
from lightning_skel.skeleton.layouts import get_layout


class Classifier(nn.Module):
    """``net(modality(normalize(x)))``. ``normalize``: centre on the root of the first frame and rotate to
    the canonical facing (``"center_rotate"``), also scale to unit height (``"full"``), or ``"none"``."""

    NORMALIZE = ("none", "center_rotate", "full")

    def __init__(
        self, net: nn.Module, layout: str, normalize: str = "center_rotate", modality: str = "joint"
    ) -> None:
        super().__init__()
        if normalize not in self.NORMALIZE:
            raise ValueError(f"normalize must be one of {self.NORMALIZE}, got {normalize!r}")
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.net = net
        self.layout = get_layout(layout)
        self.normalize = normalize
        self.modality = modality

    def preprocess(self, x: Tensor) -> Tensor:
        if self.normalize != "none":
            x = normalize(x, self.layout, scale=self.normalize == "full")
        return to_modality(x, self.layout, self.modality)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net.forward_features(self.preprocess(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(x))
