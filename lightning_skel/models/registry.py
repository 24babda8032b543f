"""The model registry: configs name a model, :func:`build_model` builds it for a layout."""

from __future__ import annotations

from typing import Any

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


def model_rules(
    in_channels: int, num_persons: int, dropout: float, temporal_kernel: int | None = None, **sizes: int
) -> dict[str, tuple[Any, bool, str]]:
    """The argument rules the models share, for :func:`lightning_skel.utils.check_params`: ``in_channels``,
    ``num_persons`` and every size in ``sizes`` at least 1, ``dropout`` in [0, 1), and a temporal kernel
    (if the model has one) odd, so that "same" padding keeps the frames."""
    rules = {
        k: (v, v >= 1, ">= 1")
        for k, v in {"in_channels": in_channels, "num_persons": num_persons, **sizes}.items()
    }
    rules["dropout"] = (dropout, 0 <= dropout < 1, "in [0, 1)")
    if temporal_kernel is not None:
        rules["temporal_kernel"] = (
            temporal_kernel,
            temporal_kernel >= 1 and temporal_kernel % 2 == 1,
            "odd and >= 1",
        )
    return rules
