"""The model registry: configs name a model, :func:`build_model` builds it for a layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from lightning_skel.registry import Registry
from lightning_skel.skeleton.layouts import Layout, get_layout
from lightning_skel.utils import check_params

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


def check_model_args(
    owner: str,
    in_channels: int,
    num_persons: int,
    dropout: float,
    temporal_kernel: int | None = None,
    rules: Mapping[str, tuple[Any, bool, str]] | None = None,
    **sizes: int,
) -> None:
    """Check a model's arguments when it is built (:func:`lightning_skel.utils.check_params`, one error
    naming every bad one): the rules the models share, ``in_channels``, ``num_persons`` and every size in
    ``sizes`` at least 1, ``dropout`` in [0, 1) and a temporal kernel (if the model has one) odd, so that
    "same" padding keeps the frames; and the model's own ``rules``."""
    shared = {
        k: (v, v >= 1, ">= 1")
        for k, v in {"in_channels": in_channels, "num_persons": num_persons, **sizes}.items()
    }
    shared["dropout"] = (dropout, 0 <= dropout < 1, "in [0, 1)")
    if temporal_kernel is not None:
        shared["temporal_kernel"] = (
            temporal_kernel,
            temporal_kernel >= 1 and temporal_kernel % 2 == 1,
            "odd and >= 1",
        )
    check_params(owner, {**shared, **(rules or {})})
