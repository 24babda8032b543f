"""The model registry: configs name a model, :func:`build_model` builds it for a layout."""

from __future__ import annotations

from torch import nn

from lightning_skel.registry import Registry
from lightning_skel.skeleton.layouts import Layout, get_layout

MODELS: Registry = Registry("model")


def build_model(name: str, num_classes: int, layout: str | Layout, **kwargs) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes on ``layout``.

    Every model takes ``(N, C, T, V, M)`` and has ``forward_features(x) -> (N, D)`` and a head ``fc``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return MODELS.get(name)(num_classes=num_classes, layout=get_layout(layout), **kwargs)


def list_models() -> list[str]:
    return MODELS.names()
